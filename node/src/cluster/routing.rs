//! Where a request for a session goes, as a pure function of what this node holds and the live
//! members (the rules of docs/PROTOCOL.md, "Who owns what, and how a node finds it"), so each
//! case is tested without a cluster.

use std::net::SocketAddr;

use mcp_cluster::membership::{MemberView, NodeId};
use mcp_cluster::ownership;

/// Most nodes a request passes through before it is answered 404.
pub const MAX_HOPS: u8 = 3;

/// How long the live members must stay the same (nobody joined, left, died, restarted or
/// started draining) before a node holding nothing of a session may answer 404 for it. A
/// request for a session this node does not hold walks the members in rank order, each node
/// assuming that the ones ranked above it were asked; that holds only when they all see the
/// same members. Right after a change they do not: a restarted node meets its peers one by one
/// (30-100 ms apart here, more under load), and the replica set of every session moves to the
/// new ranking at the same moment (the old replica forgets, the new one has not applied its
/// copy yet). A walk begun on such a view skipped the owner, and its last node answered 404 for
/// a session that was alive (`make e2e-failover` scenario b with a CPU hog, 2 of 11 runs). The
/// membership converges in under a second here even with both cores saturated (a restarted
/// node seen alive by every member in 0.3-0.4 s; a death seen by every survivor in p99
/// 0.86 s, `make bench-detector`), and a forwarded request is answered or given up within
/// `forwardTimeoutMs` (5 s): so until 5 s after a change the answer is 503 with
/// `Retry-After`, and the client's retry is routed on the settled view.
pub const SURE_AFTER_CHANGE: std::time::Duration = std::time::Duration::from_secs(5);

/// What this node holds of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding<'a> {
    /// It owns it.
    Owner,
    /// It owns it and has sent it to its successor (drain or rebalancing); the successor has
    /// not acknowledged yet. The session is frozen: a change made here now would not be in the successor's copy,
    /// and the session leaves this node when the acknowledgement comes, whatever a request
    /// served here is doing with it.
    HandingOff,
    /// It handed it off to this peer (drain, or rebalancing within the last minute).
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
    /// Ask again shortly: the session is moving to another node (a hand-off in flight).
    Wait,
    /// Nobody to ask, and this node is sure nobody holds it: 404 here.
    NotFound,
    /// Nobody to ask, but this node cannot be sure nobody holds it (it has not joined its
    /// cluster yet, or the members changed less than [`SURE_AFTER_CHANGE`] ago): 503 with
    /// `Retry-After`, never 404.
    Unsure,
}

/// Decides for the session with hash key `key`, at node `me`, a request that `hop` nodes
/// forwarded already, given the live members (`live`, this node included when live); `sure`
/// (asked only when nobody is left to ask): whether this node may tell that a session it
/// cannot find does not exist (it has joined its cluster and the members have not changed
/// for [`SURE_AFTER_CHANGE`]).
pub fn decide(
    key: &[u8],
    holding: &Holding<'_>,
    me: SocketAddr,
    live: &[NodeId],
    hop: u8,
    sure: impl FnOnce() -> bool,
) -> Decision {
    let is_live = |a: SocketAddr| live.iter().any(|m| m.addr == a);
    let nobody = || {
        if sure() {
            Decision::NotFound
        } else {
            Decision::Unsure
        }
    };
    match holding {
        Holding::Owner => return Decision::Local,
        Holding::HandingOff => return Decision::Wait,
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
        return nobody();
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
        _ => nobody(),
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
            decide(KEY, &Holding::Nothing, me, &live, 0, || true),
            Decision::Forward(order[0])
        );
        // The first, holding nothing (e.g. restarted), asks the second, and so on.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live, 0, || true),
            Decision::Forward(order[1])
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live, 1, || true),
            Decision::Forward(order[1])
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[1], &live, 2, || true),
            Decision::Forward(order[2])
        );
        // Bounded: after MAX_HOPS, and at the end of the ranking, the answer is 404 here.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[1], &live, MAX_HOPS, || true),
            Decision::NotFound
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[3], &live, 1, || true),
            Decision::NotFound
        );
        // Alone: nobody to ask.
        assert_eq!(
            decide(KEY, &Holding::Nothing, order[0], &live[..0], 0, || true),
            Decision::NotFound
        );
    }

    #[test]
    fn the_owner_serves_and_a_drained_node_points_to_where_it_went() {
        let live: Vec<NodeId> = (1..=3).map(|i| node(i, 1)).collect();
        let me = live[0].addr;
        assert_eq!(
            decide(KEY, &Holding::Owner, me, &live, 2, || true),
            Decision::Local
        );
        assert_eq!(
            decide(KEY, &Holding::Moved(live[1].addr), me, &live, 0, || true),
            Decision::Forward(live[1].addr)
        );
        // Where it went is gone: back to ranking.
        let gone = node(9, 1).addr;
        assert!(matches!(
            decide(KEY, &Holding::Moved(gone), me, &live, 0, || true),
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
            decide(KEY, &holding, r2.addr, &all, 0, || true),
            Decision::Forward(owner.addr)
        );
        // The owner is dead: r1 takes over; r2 forwards to r1.
        let survivors = [r1, r2];
        assert_eq!(
            decide(KEY, &holding, r1.addr, &survivors, 0, || true),
            Decision::TakeOver
        );
        assert_eq!(
            decide(KEY, &holding, r2.addr, &survivors, 0, || true),
            Decision::Forward(r1.addr)
        );
        // r1 is dead too: r2 is next.
        assert_eq!(
            decide(KEY, &holding, r2.addr, &[r2], 0, || true),
            Decision::TakeOver
        );
        // The owner restarted at the same address: another generation, not the owner.
        let restarted = node(1, 6);
        assert_eq!(
            decide(KEY, &holding, r1.addr, &[restarted, r1, r2], 0, || true),
            Decision::TakeOver
        );
    }

    #[test]
    fn a_walk_begun_on_a_partial_view_is_not_answered_404_while_the_members_change() {
        // The sequence of `make e2e-failover` scenario b under a CPU hog (one run's logs): the
        // session is owned by `second` (a hand-off moved it there) and ranks `first` first;
        // `first` has just restarted, holds nothing and has met `third` but not yet `second`;
        // `third` held the replica until `first` came back and replaced it (`Forget`).
        let live: Vec<NodeId> = (1..=3).map(|i| node(i, 1)).collect();
        let order = ranked(&live);
        let (first, second, third) = (order[0], order[1], order[2]);
        let partial: Vec<NodeId> = live.iter().copied().filter(|m| m.addr != second).collect();
        // A client asks `third`, which forwards to the top-ranked member...
        assert_eq!(
            decide(KEY, &Holding::Nothing, third, &live, 0, || false),
            Decision::Forward(first)
        );
        // ...which, not knowing `second` yet, asks the next one in its own ranking...
        assert_eq!(
            decide(KEY, &Holding::Nothing, first, &partial, 1, || false),
            Decision::Forward(third)
        );
        // ...and `third`, last in rank, finds nobody left: the owner was never asked. Right
        // after a change that is no proof the session is gone: 503, the client retries.
        assert_eq!(
            decide(KEY, &Holding::Nothing, third, &live, 2, || false),
            Decision::Unsure
        );
        // Once the members have been the same for a while, the walk is the real one and its
        // end is a 404 (an expired or unknown session).
        assert_eq!(
            decide(KEY, &Holding::Nothing, third, &live, 2, || true),
            Decision::NotFound
        );
        assert_eq!(
            decide(KEY, &Holding::Nothing, second, &live, MAX_HOPS, || false),
            Decision::Unsure
        );
        // A holder answers whatever the view's age.
        assert_eq!(
            decide(KEY, &Holding::Owner, second, &live, 2, || false),
            Decision::Local
        );
    }

    #[test]
    fn a_session_being_handed_off_waits_then_follows_its_successor() {
        let live: Vec<NodeId> = (1..=3).map(|i| node(i, 1)).collect();
        let (me, successor) = (live[0].addr, live[1].addr);
        // Copy sent, not acknowledged: requests wait here instead of changing what the
        // successor will not have (or finding the session gone when the acknowledgement
        // lands), at any hop and whatever the view.
        for hop in 0..=MAX_HOPS {
            assert_eq!(
                decide(KEY, &Holding::HandingOff, me, &live, hop, || true),
                Decision::Wait
            );
        }
        // Acknowledged: forwarded to the successor.
        assert_eq!(
            decide(KEY, &Holding::Moved(successor), me, &live, 1, || true),
            Decision::Forward(successor)
        );
    }
}
