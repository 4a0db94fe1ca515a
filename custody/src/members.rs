//! The cluster as the session layer sees it: which members are live (alive or suspect) and
//! take new copies (not draining), whether this node has a quorum, each member's gossiped
//! load, and — separately from the gossip verdicts — when this node last heard from each peer
//! directly on the data link (the lease a replica judges an owner by before taking over).

use crate::det::Map;
use std::net::SocketAddr;
use std::time::Instant;

use mcp_cluster::membership::{MemberView, NodeId};

/// Whether a new generation at the same address is the same process renewing its identity
/// (foca's `renew`: the generation plus one per rejoin) rather than a restart (a new process
/// starts at its start time in milliseconds, far above its predecessor's after any real run).
pub fn is_renewal(old: NodeId, new: NodeId) -> bool {
    new.addr == old.addr && new.generation > old.generation && new.generation - old.generation < 100
}

/// One member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// Alive or suspect.
    pub live: bool,
    /// It gossiped `draining`: it takes no new copies and hands its sessions off.
    pub draining: bool,
    /// The sessions it owns, as it last gossiped.
    pub sessions: u64,
}

/// The last message received from an address on the data link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// When.
    pub at: Instant,
    /// The sender's generation, from its last heartbeat (0 until one arrives).
    pub generation: u64,
}

/// The view, as of the last [`Members::update`].
#[derive(Debug, Clone)]
pub struct Members {
    me: NodeId,
    all: Vec<Member>,
    live: Vec<NodeId>,
    takers: Vec<NodeId>,
    quorum: bool,
    /// The configured cluster size (0: unknown). Majorities are counted over at least this
    /// many members: a view can miss members (a process started while a member was down or
    /// stalled never hears of it), and a majority of a partial view is not one of the cluster.
    size: usize,
    contact: Map<SocketAddr, Contact>,
    /// When each address stopped being live (cleared when it is live again).
    down_since: Map<SocketAddr, Instant>,
    /// The last time a member went down, came, or renewed (views differ across nodes for a
    /// while after it).
    last_change: Option<Instant>,
}

/// What changed between two views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Identities that were live and are not any more (down, left, or replaced by a restart).
    pub gone: Vec<NodeId>,
    /// Identities that became live.
    pub came: Vec<NodeId>,
    /// Same process, next generation: `(old, new)`.
    pub renewed: Vec<(NodeId, NodeId)>,
    /// This node's own identity changed (it was declared down somewhere and rejoined).
    pub me_renewed: bool,
    /// A member started or stopped draining.
    pub draining_changed: bool,
}

impl Changes {
    /// Whether anything that affects replica sets changed.
    pub fn any(&self) -> bool {
        !self.gone.is_empty()
            || !self.came.is_empty()
            || !self.renewed.is_empty()
            || self.me_renewed
            || self.draining_changed
    }
}

impl Members {
    /// A node alone, in a cluster configured with `size` members (0: unknown, the members
    /// this node knows decide).
    pub fn new(me: NodeId, size: usize) -> Self {
        let mut m = Self {
            me,
            all: Vec::new(),
            live: Vec::new(),
            takers: Vec::new(),
            quorum: true,
            size,
            contact: Map::default(),
            down_since: Map::default(),
            last_change: None,
        };
        m.set(vec![Member {
            id: me,
            live: true,
            draining: false,
            sessions: 0,
        }]);
        m
    }

    /// This node's identity now.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Live members, this node included.
    pub fn live(&self) -> &[NodeId] {
        &self.live
    }

    /// Live members that take new copies (not draining), this node included unless it drains.
    pub fn takers(&self) -> &[NodeId] {
        &self.takers
    }

    /// Every known member.
    pub fn all(&self) -> &[Member] {
        &self.all
    }

    /// Whether this node may serve sessions: it sees a majority of the cluster — of the
    /// members it knows (a member that is down after gossiping `draining` left on purpose and
    /// does not count) or of the configured size, whichever is larger — or exactly half of
    /// them including the lowest address, when it knows every member.
    pub fn quorum(&self) -> bool {
        self.quorum
    }

    /// Whether an address is live (under any generation).
    pub fn addr_is_live(&self, addr: SocketAddr) -> bool {
        self.live.iter().any(|m| m.addr == addr)
    }

    /// The live identity at an address.
    pub fn live_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.live.iter().copied().find(|m| m.addr == addr)
    }

    /// The member at an address.
    pub fn member(&self, addr: SocketAddr) -> Option<&Member> {
        self.all.iter().find(|m| m.id.addr == addr)
    }

    /// Records a message from `from` (any message proves the sender was alive when it sent it).
    pub fn heard(&mut self, from: SocketAddr, generation: Option<u64>, now: Instant) {
        let c = self.contact.entry(from).or_insert(Contact {
            at: now,
            generation: 0,
        });
        c.at = c.at.max(now);
        if let Some(g) = generation {
            c.generation = c.generation.max(g);
        }
    }

    /// The last contact with an address.
    pub fn contact(&self, addr: SocketAddr) -> Option<Contact> {
        self.contact.get(&addr).copied()
    }

    /// The latest instant a known member stopped being live, among those still down.
    pub fn last_down(&self) -> Option<Instant> {
        self.down_since.values().copied().max()
    }

    /// The last time the set of live members changed.
    pub fn last_change(&self) -> Option<Instant> {
        self.last_change
    }

    /// Replaces the view with the membership's (`view[0]` is this node); `draining` is this
    /// node's own flag; `now` dates the members that went down. Returns what changed.
    pub fn update(
        &mut self,
        view: &[MemberView],
        draining: bool,
        own_sessions: u64,
        now: Instant,
    ) -> Changes {
        let before = self.live.clone();
        let before_takers = self.takers.clone();
        let old_me = self.me;
        let mut all: Vec<Member> = view
            .iter()
            .map(|v| Member {
                id: v.id,
                live: v.state.is_live(),
                draining: v.meta.as_ref().is_some_and(|m| m.draining),
                sessions: v.meta.as_ref().map_or(0, |m| m.sessions),
            })
            .collect();
        if let Some(first) = all.first_mut() {
            first.live = true;
            first.draining = draining;
            first.sessions = own_sessions;
            self.me = first.id;
        }
        self.set(all);
        let mut c = Changes {
            me_renewed: self.me != old_me,
            ..Changes::default()
        };
        for old in &before {
            if self.live.contains(old) || *old == old_me {
                continue;
            }
            match self.live_at(old.addr) {
                Some(new) if is_renewal(*old, new) => c.renewed.push((*old, new)),
                _ => c.gone.push(*old),
            }
        }
        for new in &self.live {
            if !before.contains(new) && *new != self.me && !c.renewed.iter().any(|(_, n)| n == new)
            {
                c.came.push(*new);
            }
        }
        for m in &self.all {
            if m.live {
                self.down_since.remove(&m.id.addr);
            } else {
                self.down_since.entry(m.id.addr).or_insert(now);
            }
        }
        let known: Vec<SocketAddr> = self.all.iter().map(|m| m.id.addr).collect();
        self.down_since.retain(|a, _| known.contains(a));
        c.draining_changed = before_takers.len() != self.takers.len()
            || before_takers.iter().zip(&self.takers).any(|(a, b)| a != b);
        if c.any() {
            self.last_change = Some(now);
        }
        c
    }

    fn set(&mut self, all: Vec<Member>) {
        self.live = all.iter().filter(|m| m.live).map(|m| m.id).collect();
        self.takers = all
            .iter()
            .filter(|m| m.live && !m.draining)
            .map(|m| m.id)
            .collect();
        self.all = all;
        self.quorum = self.decides(|m| m.live);
    }

    /// Whether this node knows as many members as the cluster is configured to have (every
    /// address, draining ones included), so that none it never heard of can be missing.
    pub fn knows_all(&self) -> bool {
        if self.all.len() < self.size {
            return false;
        }
        let mut addrs: Vec<SocketAddr> = self.all.iter().map(|m| m.id.addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs.len() >= self.size
    }

    /// Whether the members for which `ok` holds are a majority of the cluster: more than half
    /// of the members that count (not down after draining), or of the configured size when
    /// this node knows fewer; or exactly half including the lowest address, when this node
    /// knows every member (an unknown one may have a lower address). Any two such groups
    /// share a member — also when their nodes' views differ in who they know.
    fn decides(&self, ok: impl Fn(&Member) -> bool) -> bool {
        let counts = |m: &&Member| m.live || !m.draining;
        let (mut yes, mut known) = (0, 0);
        for m in self.all.iter().filter(counts) {
            known += 1;
            yes += usize::from(ok(m));
        }
        let total = known.max(self.size);
        if yes * 2 != total {
            return yes * 2 > total;
        }
        self.knows_all()
            && self
                .all
                .iter()
                .filter(counts)
                .min_by_key(|m| m.id.addr)
                .is_some_and(ok)
    }
}

impl Members {
    /// Whether this node heard, on the data link within `within`, from a majority of the
    /// members that count for the quorum, by the same rule as [`Members::quorum`] (itself
    /// included). An owner that has not is about to be — or already is —
    /// on the wrong side of a partition and may be taken over: it stops serving before the
    /// other side's lease runs out.
    pub fn majority_heard(&self, now: Instant, within: std::time::Duration) -> bool {
        self.decides(|m| {
            m.id == self.me
                || self
                    .contact
                    .get(&m.id.addr)
                    .is_some_and(|c| now.saturating_duration_since(c.at) < within)
        })
    }
}

impl Members {
    /// Whether `who` (addresses other than this node's) are a majority by the same rule,
    /// without this node: a restarted process that has not learned its predecessor's notes
    /// does not count itself (recovery.rs).
    pub fn majority_without_me(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        self.decides(|m| m.id.addr != self.me.addr && who.contains(&m.id.addr))
    }

    /// Whether every member other than this node that counts for the quorum is in `who`, and
    /// this node knows every member.
    pub fn all_others_in(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        self.knows_all()
            && self
                .all
                .iter()
                .filter(|m| (m.live || !m.draining) && m.id.addr != self.me.addr)
                .all(|m| who.contains(&m.id.addr))
    }

    /// Whether `who` (addresses; this node counts itself) are a majority of the members that
    /// count for the quorum, by the same rule as [`Members::quorum`]: more than half of the
    /// known or configured members, or exactly half including the lowest address when every
    /// member is known. Any two such groups share a member.
    pub fn majority_of(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        self.decides(|m| m.id.addr == self.me.addr || who.contains(&m.id.addr))
    }

    /// How many of the members that count for the quorum `ok` holds for, and how many count
    /// (the known ones, or the configured size when that is larger).
    fn count(&self, ok: impl Fn(&Member) -> bool) -> (usize, usize) {
        let (mut yes, mut known) = (0, 0);
        for m in self.all.iter().filter(|m| m.live || !m.draining) {
            known += 1;
            yes += usize::from(ok(m));
        }
        (yes, known.max(self.size))
    }

    /// Whether `who` (addresses; this node counts itself) are more than half of the cluster —
    /// no tie broken by the lowest address. Notes (claims confirmed, drops noted) and the
    /// inquiries that decide on them count so: a note held by exactly half with the lowest
    /// address rests on that one process's memory, which a restart takes; the restarted
    /// process then needs every other member's notes, and one member down stops every
    /// take-over (seed 14202013).
    pub fn strict_majority_of(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        let (yes, total) = self.count(|m| m.id.addr == self.me.addr || who.contains(&m.id.addr));
        yes * 2 > total
    }

    /// The same without this node: a restarted process that has not learned its
    /// predecessor's notes does not count itself (recovery.rs).
    pub fn strict_majority_without_me(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        let (yes, total) = self.count(|m| m.id.addr != self.me.addr && who.contains(&m.id.addr));
        yes * 2 > total
    }

    /// Whether `who` (addresses other than this node's) are at least half of the cluster: then
    /// they share a member with every strict majority less this node — whatever note such a
    /// majority noted, one of them holds it (a restarted process has learned every note in
    /// force once it has the notes of such a group, recovery.rs).
    pub fn half_without_me(&self, who: &crate::det::Set<SocketAddr>) -> bool {
        let (yes, total) = self.count(|m| m.id.addr != self.me.addr && who.contains(&m.id.addr));
        yes > 0 && yes * 2 >= total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_cluster::membership::{MemberState, NodeMeta};

    fn node(i: u8, generation: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, i], 7946)), generation)
    }

    fn row(i: u8, generation: u64, state: MemberState, draining: bool) -> MemberView {
        MemberView {
            id: node(i, generation),
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
        let q = |rows: &[(u8, MemberState, bool)]| {
            let view: Vec<MemberView> = rows.iter().map(|(i, s, d)| row(*i, 1, *s, *d)).collect();
            let mut m = Members::new(view[0].id, 0);
            m.update(&view, false, 0, Instant::now());
            m.quorum()
        };
        assert!(q(&[(1, Alive, false)]), "alone");
        assert!(q(&[
            (1, Alive, false),
            (2, Suspect, false),
            (3, Down, false)
        ]));
        assert!(!q(&[(3, Alive, false), (1, Down, false), (2, Down, false)]));
        assert!(q(&[
            (1, Alive, false),
            (2, Alive, false),
            (3, Down, false),
            (4, Down, false)
        ]));
        assert!(!q(&[
            (3, Alive, false),
            (4, Alive, false),
            (1, Down, false),
            (2, Down, false)
        ]));
        assert!(
            q(&[(3, Alive, false), (1, Down, true), (2, Down, true)]),
            "drained away"
        );
    }

    #[test]
    fn a_partial_view_counts_the_configured_size() {
        use MemberState::{Alive, Down};
        let view = |rows: &[(u8, MemberState)]| -> Vec<MemberView> {
            rows.iter().map(|(i, s)| row(*i, 1, *s, false)).collect()
        };
        // Seed 11271: a process restarted while node 0 was stalled never heard of it. Its
        // view of 3 members, 2 of them reachable, is no majority of the 4 configured.
        let partial = view(&[(1, Alive), (2, Alive), (3, Down)]);
        let mut m = Members::new(partial[0].id, 4);
        m.update(&partial, false, 0, Instant::now());
        assert!(
            !m.quorum(),
            "2 of 4, and a member it does not know may be the lowest"
        );
        assert!(!m.knows_all());
        let mut no_size = Members::new(partial[0].id, 0);
        no_size.update(&partial, false, 0, Instant::now());
        assert!(
            no_size.quorum(),
            "without a size, the view decides (2 of 3)"
        );
        // The other side knows all 4: exactly half with the lowest address is a majority.
        let full = view(&[(0, Alive), (3, Alive), (1, Down), (2, Down)]);
        let mut other = Members::new(full[0].id, 4);
        other.update(&full, false, 0, Instant::now());
        assert!(other.quorum());
        assert!(other.knows_all());
        // Answers: the same rule, and without this node while it recovers.
        let who: crate::det::Set<SocketAddr> = [node(2, 1).addr].into_iter().collect();
        assert!(!m.majority_of(&who), "2 of 4 without knowing every member");
        assert!(no_size.majority_of(&who));
        assert!(!no_size.majority_without_me(&who), "1 of 3");
        let both: crate::det::Set<SocketAddr> =
            [node(2, 1).addr, node(3, 1).addr].into_iter().collect();
        assert!(no_size.majority_without_me(&both));
        assert!(no_size.all_others_in(&both));
        assert!(!m.all_others_in(&both), "node 0 is unknown to it");
    }

    #[test]
    fn notes_count_more_than_half_with_no_tie_broken() {
        use MemberState::{Alive, Down};
        // Seed 14202013's cluster: node 0 (the lowest address) restarted, node 2 down.
        let view: Vec<MemberView> = [(0, Alive), (1, Alive), (2, Down), (3, Alive)]
            .iter()
            .map(|(i, s)| row(*i, 1, *s, false))
            .collect();
        let mut m = Members::new(view[0].id, 4);
        m.update(&view, false, 0, Instant::now());
        let set = |ids: &[u8]| -> crate::det::Set<SocketAddr> {
            ids.iter().map(|i| node(*i, 1).addr).collect()
        };
        assert!(
            m.majority_of(&set(&[1])),
            "exactly half with the lowest address"
        );
        assert!(!m.strict_majority_of(&set(&[1])), "but no more than half");
        assert!(m.strict_majority_of(&set(&[1, 3])));
        assert!(!m.strict_majority_without_me(&set(&[1, 3])), "2 of 4");
        assert!(
            !m.majority_without_me(&set(&[1, 3])),
            "nor half with the lowest (itself)"
        );
        // Every strict majority less node 0 holds 2 of 1, 2, 3: nodes 1 and 3 share one
        // with each, so their notes are all the notes in force.
        assert!(m.half_without_me(&set(&[1, 3])));
        assert!(!m.half_without_me(&set(&[3])));
    }

    #[test]
    fn changes_tell_deaths_restarts_and_renewals_apart() {
        use MemberState::{Alive, Down};
        let mut m = Members::new(node(1, 1), 0);
        let c = m.update(
            &[
                row(1, 1, Alive, false),
                row(2, 1, Alive, false),
                row(3, 1_000, Alive, false),
            ],
            false,
            0,
            Instant::now(),
        );
        assert_eq!(c.came, vec![node(2, 1), node(3, 1_000)]);
        // 2 renews (same process), 3 restarts (new process).
        let c = m.update(
            &[
                row(1, 1, Alive, false),
                row(2, 2, Alive, false),
                row(3, 90_000, Alive, false),
            ],
            false,
            0,
            Instant::now(),
        );
        assert_eq!(c.renewed, vec![(node(2, 1), node(2, 2))]);
        assert_eq!(c.gone, vec![node(3, 1_000)]);
        assert_eq!(c.came, vec![node(3, 90_000)]);
        let c = m.update(
            &[row(1, 1, Alive, false), row(2, 2, Down, false)],
            false,
            0,
            Instant::now(),
        );
        assert_eq!(c.gone, vec![node(2, 2), node(3, 90_000)]);
        // This node itself renewed.
        let c = m.update(&[row(1, 2, Alive, false)], false, 0, Instant::now());
        assert!(c.me_renewed);
        assert_eq!(m.me(), node(1, 2));
        assert!(is_renewal(
            node(1, 1_795_900_000_000),
            node(1, 1_795_900_000_003)
        ));
        assert!(!is_renewal(
            node(1, 1_795_900_000_000),
            node(1, 1_795_900_004_500)
        ));
    }

    #[test]
    fn draining_members_take_no_copies() {
        use MemberState::Alive;
        let mut m = Members::new(node(1, 1), 0);
        let c = m.update(
            &[row(1, 1, Alive, false), row(2, 1, Alive, true)],
            false,
            0,
            Instant::now(),
        );
        assert_eq!(m.takers(), &[node(1, 1)]);
        assert_eq!(m.live().len(), 2);
        assert!(c.draining_changed || !c.came.is_empty());
        m.update(
            &[row(1, 1, Alive, false), row(2, 1, Alive, true)],
            true,
            0,
            Instant::now(),
        );
        assert!(m.takers().is_empty());
    }
}
