//! Where a request for a session goes, as a pure function of what this node holds and the live
//! members (the rules of docs/PROTOCOL.md, "Who owns what, and how a node finds it"), so each
//! case is tested without a cluster.

use std::net::SocketAddr;

use mcp_cluster::membership::{MemberView, NodeId};
use mcp_cluster::ownership;

/// Most nodes a request passes through before it is answered 404.
pub const MAX_HOPS: u8 = 3;

/// What this node holds of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding<'a> {
    /// It owns it.
    Owner,
    /// It handed it off to this peer while draining.
    Moved(SocketAddr),
    /// A replica's copy: the owner's identity and the replica list it sent.
    Replica {
        /// The owner.
        owner: NodeId,
        /// The replicas in the owner's order.
        replicas: &'a [SocketAddr],
    },
    /// Nothing.
    Nothing,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve here.
    Local,
    /// Take the replica's copy over (the owner is gone and this node succeeds it), then serve.
    TakeOver,
    /// Forward to this peer.
    Forward(SocketAddr),
    /// Nobody to ask: 404 here.
    NotFound,
}

/// Decides for the session with hash key `key`, at node `me`, a request that `hop` nodes
/// forwarded already, given the live members (`live`, this node included when live).
pub fn decide(
    key: &[u8],
    holding: &Holding<'_>,
    me: SocketAddr,
    live: &[NodeId],
    hop: u8,
) -> Decision {
    let is_live = |a: SocketAddr| live.iter().any(|m| m.addr == a);
    match holding {
        Holding::Owner => return Decision::Local,
        Holding::Moved(to) if is_live(*to) => return Decision::Forward(*to),
        Holding::Replica { owner, replicas } => {
            if live.contains(owner) {
                return Decision::Forward(owner.addr);
            }
            return match replicas.iter().copied().find(|a| is_live(*a)) {
                Some(a) if a == me => Decision::TakeOver,
                Some(a) => Decision::Forward(a),
                // No replica the owner chose is left: this copy is the best there is.
                None => Decision::TakeOver,
            };
        }
        Holding::Moved(_) | Holding::Nothing => {}
    }
    if hop >= MAX_HOPS {
        return Decision::NotFound;
    }
    let ranked = ownership::rank(key, live);
    let next = if hop == 0 {
        ranked.iter().find(|m| m.addr != me)
    } else {
        // Forwarded here by a node that ranked this one first: ask the next one in rank.
        match ranked.iter().position(|m| m.addr == me) {
            Some(p) => ranked.get(p + 1),
            None => ranked.first(),
        }
    };
    match next {
        Some(m) if m.addr != me => Decision::Forward(m.addr),
        _ => Decision::NotFound,
    }
}

/// Whether a node with this view may serve session requests: it sees a majority of the
/// members it knows (a member that is down after gossiping `draining` left on purpose and does
/// not count), or exactly half of them including the lowest address.
pub fn has_quorum(view: &[MemberView]) -> bool {
    let counts =
        |m: &&MemberView| m.state.is_live() || !m.meta.as_ref().is_some_and(|m| m.draining);
    let (mut live, mut total) = (0, 0);
    for m in view.iter().filter(counts) {
        total += 1;
        live += usize::from(m.state.is_live());
    }
    if live * 2 != total {
        return live * 2 > total;
    }
    view.iter()
        .filter(counts)
        .min_by_key(|m| m.id.addr)
        .is_some_and(|m| m.state.is_live())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_cluster::membership::{MemberState, NodeMeta};

    fn member(i: u8, state: MemberState, draining: bool) -> MemberView {
        MemberView {
            id: node(i, 1),
            state,
            incarnation: 0,
            meta: Some(NodeMeta {
                name: format!("n{i}"),
                address: String::new(),
                connections: 0,
                sessions: 0,
                draining,
            }),
        }
    }

    #[test]
    fn quorum_is_a_majority_of_the_members_that_did_not_leave() {
        use MemberState::{Alive, Down, Suspect};
        let v = |states: &[(u8, MemberState, bool)]| {
            states
                .iter()
                .map(|(i, s, d)| member(*i, *s, *d))
                .collect::<Vec<_>>()
        };
        assert!(has_quorum(&v(&[(1, Alive, false)])), "alone");
        assert!(has_quorum(&v(&[
            (1, Alive, false),
            (2, Suspect, false),
            (3, Down, false)
        ])));
        // The isolated side of 1 | 2.
        assert!(!has_quorum(&v(&[
            (3, Alive, false),
            (1, Down, false),
            (2, Down, false)
        ])));
        // 2 | 2: the side holding the lowest address serves.
        assert!(has_quorum(&v(&[
            (1, Alive, false),
            (2, Alive, false),
            (3, Down, false),
            (4, Down, false)
        ])));
        assert!(!has_quorum(&v(&[
            (3, Alive, false),
            (4, Alive, false),
            (1, Down, false),
            (2, Down, false)
        ])));
        // Members that drained and left do not count: a scale-down keeps the quorum.
        assert!(has_quorum(&v(&[
            (3, Alive, false),
            (1, Down, true),
            (2, Down, true)
        ])));
    }

    fn node(i: u8, generation: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, i], 7946)), generation)
    }

    const KEY: &[u8] = b"session-key-0001";

    fn ranked(live: &[NodeId]) -> Vec<SocketAddr> {
        ownership::rank(KEY, live).iter().map(|m| m.addr).collect()
    }

    #[test]
    fn a_node_holding_nothing_asks_the_top_ranked_then_the_next() {
        let live: Vec<NodeId> = (1..=4).map(|i| node(i, 1)).collect();
        let order = ranked(&live);
        // From a client (hop 0), a node that is not first asks the first.
        let me = order[2];
        assert_eq!(
            decide(KEY, &Holding::Nothing, me, &live, 0),
            Decision::Forward(order[0])
        );
        // The first, holding nothing (e.g. restarted), asks the second, and so on.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live, 0),
            Decision::Forward(order[1])
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live, 1),
            Decision::Forward(order[1])
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[1], &live, 2),
            Decision::Forward(order[2])
        );
        // Bounded: after MAX_HOPS, and at the end of the ranking, the answer is 404 here.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[1], &live, MAX_HOPS),
            Decision::NotFound
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[3], &live, 1),
            Decision::NotFound
        );
        // Alone: nobody to ask.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live[..0], 0),
            Decision::NotFound
        );
    }

    #[test]
    fn the_owner_serves_and_a_drained_node_points_to_where_it_went() {
        let live: Vec<NodeId> = (1..=3).map(|i| node(i, 1)).collect();
        let me = live[0].addr;
        assert_eq!(decide(KEY, &Holding::Owner, me, &live, 2), Decision::Local);
        assert_eq!(
            decide(KEY, &Holding::Moved(live[1].addr), me, &live, 0),
            Decision::Forward(live[1].addr)
        );
        // Where it went is gone: back to ranking.
        let gone = node(9, 1).addr;
        assert!(matches!(
            decide(KEY, &Holding::Moved(gone), me, &live, 0),
            Decision::Forward(_)
        ));
    }

    #[test]
    fn a_replica_forwards_to_a_live_owner_and_the_first_live_replica_takes_over() {
        let owner = node(1, 5);
        let (r1, r2) = (node(2, 1), node(3, 1));
        let replicas = [r1.addr, r2.addr];
        let holding = Holding::Replica {
            owner,
            replicas: &replicas,
        };
        let all = [owner, r1, r2];
        assert_eq!(
            decide(KEY, &holding, r2.addr, &all, 0),
            Decision::Forward(owner.addr)
        );
        // The owner is dead: r1 takes over; r2 forwards to r1.
        let survivors = [r1, r2];
        assert_eq!(
            decide(KEY, &holding, r1.addr, &survivors, 0),
            Decision::TakeOver
        );
        assert_eq!(
            decide(KEY, &holding, r2.addr, &survivors, 0),
            Decision::Forward(r1.addr)
        );
        // r1 is dead too: r2 is next.
        assert_eq!(decide(KEY, &holding, r2.addr, &[r2], 0), Decision::TakeOver);
        // The owner restarted at the same address: another generation, not the owner.
        let restarted = node(1, 6);
        assert_eq!(
            decide(KEY, &holding, r1.addr, &[restarted, r1, r2], 0),
            Decision::TakeOver
        );
    }
}
