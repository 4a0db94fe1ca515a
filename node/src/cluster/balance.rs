//! [`Balancer`]: whether this node moves some of its sessions to other members now, how many,
//! and which members may receive them — a pure decision over the gossiped session counts, so
//! each case is tested without a cluster (docs/PROTOCOL.md, "Rebalancing").
//!
//! Nothing else moves sessions back after churn: a node owns what it initialized, a drain hands
//! everything to the successors and a death to the replicas, so after a rolling restart the
//! last node restarted owns nothing and the next crash hits the others' surplus. The rule:
//! - `share` = the sessions owned by the live members that are not draining, over their
//!   number (this node's own count exact, the others' as gossiped, plus what this node sent
//!   them that their gossip does not show yet);
//! - a node owning more than `share × (1 + slack)` moves the surplus, each session to its
//!   successor (the top-ranked other member, as a drain does) if that member is under its
//!   share, and never more to one member than it lacks;
//! - `rate` is the whole cluster's: each node that moves takes `rate / movers` per second,
//!   `movers` being the members over `share × (1 + slack)` as the gossip shows them (this
//!   node included), so five full nodes after a restart do not move five times as fast as one
//!   (at 100K they ended 1,000 streams a second and, with connection shedding beside them,
//!   cost 6,022 sessions: docs/PROTOCOL.md, "Rebalancing");
//! - not while this node is busy (its admission control refuses, or a window of its
//!   hand-offs waits for acknowledgements): moving sessions is deferred, never a cost;
//! - only in a calm cluster: this node and every member live, none suspect or draining, a
//!   majority seen, and the members unchanged for [`SETTLE`] — a rebalance racing a failure or
//!   a drain would move sessions towards a node that is going away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the live members must have stayed the same (nobody joined, left, died, restarted
/// or started draining) before a node moves sessions for balance. Longer than a rolling
/// restart's step (the next node goes seconds after the last one rejoined: moving sessions
/// meanwhile would move them twice) and than `routing::SURE_AFTER_CHANGE` (5 s); short enough
/// that the spread is even within a minute of a change.
pub const SETTLE: Duration = Duration::from_secs(15);

/// How far above its share a node may own before it moves sessions: 5 %, under the 10 % the
/// spread must stay within once settled.
pub const SLACK: f64 = 0.05;

/// Sessions are not moved while the cluster's total (this node's count plus the gossiped
/// ones) changed by more than [`CHANGING_FRACTION`] of it (plus [`CHANGING_SLACK`]) within
/// this window: while clients open or close sessions fast, every node's own count is ahead of
/// the gossiped ones it compares with, so each sees itself above its share (at 100K, in the
/// ramp, nodes moved sessions back and forth that way).
pub const CHANGING_WINDOW: Duration = Duration::from_secs(5);
/// See [`CHANGING_WINDOW`].
pub const CHANGING_FRACTION: f64 = 0.02;
/// See [`CHANGING_WINDOW`].
pub const CHANGING_SLACK: u64 = 20;

/// A node with this many hand-offs waiting for their acknowledgement is busy (`Input::busy`):
/// the drain's window per successor, the size measured at 100K (docs/PROTOCOL.md, "Drain
/// hand-off"). Acknowledgements that come slowly (a loaded receiver or sender) thus slow the
/// moves down to what the cluster absorbs, whatever the rate.
pub const WINDOW: usize = 64;

/// The most hand-offs one round may send: the token bucket holds at most this many seconds of
/// `rate`, so a node that waited does not send a burst.
const BURST_SECS: f64 = 0.5;

/// How long hand-offs sent to a member count on top of its gossiped count: by then its gossip
/// shows them (published every `loadPublishMs`, 500 ms by default, then spread in well under
/// a second).
const PENDING_FOR: Duration = Duration::from_secs(5);

/// Whether a node owning `owned` sessions takes one more handed to it for balance, given the
/// gossiped counts of the other live, non-draining members: not when that would put it above
/// `share × (1 + slack)`, the bound its senders move down to. The senders decide on gossiped
/// counts that lag; two of them, each seeing this node emptier than it was (the other's
/// hand-offs not gossiped yet), both sent it more after the spread was even, once past share
/// + 10 %. This node's own count is exact. (A drain's hand-offs are always taken.)
pub fn takes_rebalanced(owned: u64, others: &[u64], slack: f64) -> bool {
    let total = others.iter().fold(owned, |t, n| t.saturating_add(*n));
    let share = total as f64 / (others.len() + 1) as f64;
    (owned.saturating_add(1)) as f64 <= share * (1.0 + slack)
}

/// Of the receivers with their room left, the one with the most (the first of equals), if any
/// has room: where a rebalancing round sends a session none of whose successors has room
/// (`Peers::rebalance_round`'s last pass).
pub fn most_room(room: impl IntoIterator<Item = (SocketAddr, usize)>) -> Option<SocketAddr> {
    room.into_iter()
        .filter(|(_, n)| *n > 0)
        .fold(
            None,
            |best: Option<(SocketAddr, usize)>, (a, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((a, n)),
            },
        )
        .map(|(a, _)| a)
}

/// What a member is, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Live and taking sessions.
    Alive,
    /// Not answering probes yet not declared down.
    Suspect,
    /// Live and draining (it hands its sessions off).
    Draining,
    /// Down (dead, left, or an old identity): not counted.
    Down,
}

/// One other member: its address, gossiped owned-session count and standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its peer address.
    pub addr: SocketAddr,
    /// Sessions it owns, as it last gossiped.
    pub sessions: u64,
    /// What it is.
    pub standing: Standing,
}

/// What this node knows when it decides.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Sessions owned here, hand-offs in flight not counted.
    pub owned: u64,
    /// Whether this node drains.
    pub draining: bool,
    /// The other members.
    pub members: &'a [Member],
    /// Whether this node sees a majority.
    pub quorum: bool,
    /// Whether this node has joined its cluster.
    pub settled: bool,
    /// How long the live members have been what they are.
    pub stable_for: Duration,
    /// Whether this node is busy: its admission control refuses new sessions (replication
    /// lags), or [`WINDOW`] of its hand-offs wait for their acknowledgements.
    pub busy: bool,
}

/// Why nothing moves this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Rebalancing is switched off (`rate` 0).
    Off,
    /// This node or a member drains.
    Draining,
    /// A member is suspect.
    Suspect,
    /// No majority in sight.
    NoQuorum,
    /// Not joined yet, or the members changed less than [`SETTLE`] ago.
    Unsettled,
    /// The cluster's total changed fast within [`CHANGING_WINDOW`] (sessions being opened
    /// or closed): the gossiped counts lag.
    Changing,
    /// This node is busy (`Input::busy`).
    Busy,
    /// No other member takes sessions.
    Alone,
    /// This node owns no more than `share × (1 + slack)`.
    Balanced,
    /// No member is under its share.
    NoReceiver,
    /// The rate allows none this round.
    Paced,
}

/// The decision of one round.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Move nothing.
    Hold(Hold),
    /// Move at most `count` sessions, each only to a member listed, at most the number given
    /// with it.
    Move {
        /// Sessions to move this round.
        count: usize,
        /// Members under their share and how many each may still receive.
        receivers: Vec<(SocketAddr, usize)>,
        /// The share used.
        share: f64,
    },
}

/// The rebalancing decision of one node across rounds: its pacing budget and the hand-offs it
/// sent that the receivers' gossip may not show yet.
#[derive(Debug)]
pub struct Balancer {
    /// The cluster's rate (sessions per second, all movers together).
    rate: f64,
    slack: f64,
    budget: f64,
    /// The members moving sessions (this node included) at the last decision: this node's
    /// share of the rate is `rate / movers`.
    movers: usize,
    last: Option<Instant>,
    /// Per receiver: its gossiped count when nothing sent to it was pending (the base the
    /// batches add to), and the batches sent to it within [`PENDING_FOR`] (when, how many).
    pending: HashMap<SocketAddr, (u64, Vec<(Instant, u64)>)>,
    /// The cluster's total as seen at each decision within [`CHANGING_WINDOW`], oldest first.
    totals: std::collections::VecDeque<(Instant, u64)>,
}

impl Balancer {
    /// `rate`: sessions per second the cluster may move, split over the nodes that move (0:
    /// never); `slack`: how far above its share (0.05 = 5 %) a node may own before it moves
    /// any.
    pub fn new(rate: f64, slack: f64) -> Self {
        Self {
            rate,
            slack,
            budget: 0.0,
            movers: 1,
            last: None,
            pending: HashMap::new(),
            totals: std::collections::VecDeque::new(),
        }
    }

    /// Records the cluster's total now (this node's count and the live members' gossiped
    /// ones; a receiver of hand-offs counts at least its count before them plus them, so
    /// moves keep the total whether its gossip shows them yet or not) and says whether it
    /// moved by more than the bound within [`CHANGING_WINDOW`], and the largest total seen
    /// within it.
    fn total_changing(&mut self, now: Instant, input: &Input<'_>) -> (bool, u64) {
        // Gossiped counts are a peer's word: added saturating, as every count here.
        let total = input
            .members
            .iter()
            .filter(|m| m.standing != Standing::Down)
            .map(|m| match self.pending.get(&m.addr) {
                Some((base, b)) if !b.is_empty() => {
                    m.sessions.max(base.saturating_add(self.pending_to(m.addr)))
                }
                _ => m.sessions,
            })
            .fold(input.owned, u64::saturating_add);
        while self
            .totals
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > CHANGING_WINDOW)
        {
            self.totals.pop_front();
        }
        self.totals.push_back((now, total));
        let (lo, hi) = self
            .totals
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), (_, n)| (lo.min(*n), hi.max(*n)));
        (
            (hi - lo) as f64 > hi as f64 * CHANGING_FRACTION + CHANGING_SLACK as f64,
            hi,
        )
    }

    /// Decides this round at `now`.
    pub fn decide(&mut self, now: Instant, input: &Input<'_>) -> Plan {
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        let rate = self.node_rate();
        self.budget = (self.budget + rate * elapsed.as_secs_f64()).min(rate * BURST_SECS);
        self.observe(now, input.members);
        let (changing, recent_total) = self.total_changing(now, input);
        let hold = |h| Plan::Hold(h);
        if self.rate <= 0.0 {
            return hold(Hold::Off);
        }
        let live = || {
            input
                .members
                .iter()
                .filter(|m| m.standing != Standing::Down)
        };
        if input.draining || live().any(|m| m.standing == Standing::Draining) {
            return hold(Hold::Draining);
        }
        if live().any(|m| m.standing == Standing::Suspect) {
            return hold(Hold::Suspect);
        }
        if !input.quorum {
            return hold(Hold::NoQuorum);
        }
        if !input.settled || input.stable_for < SETTLE {
            return hold(Hold::Unsettled);
        }
        if changing {
            return hold(Hold::Changing);
        }
        if input.busy {
            return hold(Hold::Busy);
        }
        let others: Vec<(SocketAddr, u64)> = live()
            .map(|m| (m.addr, m.sessions.saturating_add(self.pending_to(m.addr))))
            .collect();
        if others.is_empty() {
            return hold(Hold::Alone);
        }
        // Moves keep the total, so a total lower than one seen moments ago is a receiver whose
        // gossip does not show another member's hand-offs yet: the share is taken from the
        // largest total of the window. (From the current one, a node saw the share fall as its
        // peer's count dropped while the receiver's had not grown yet, and sent more after the
        // spread was even: [60, 60, 0] became [35, 35, 50] in the process test.)
        let total = others
            .iter()
            .map(|(_, n)| *n)
            .fold(input.owned, u64::saturating_add);
        let share = total.max(recent_total) as f64 / (others.len() + 1) as f64;
        let bound = share * (1.0 + self.slack);
        let surplus = input.owned as f64 - bound;
        if surplus < 1.0 {
            return hold(Hold::Balanced);
        }
        // This node and the others over the bound share the cluster's rate. (Their counts
        // are as gossiped: a mover whose gossip lags is counted a moment longer, which only
        // slows this node down.)
        self.movers = 1 + others.iter().filter(|(_, n)| *n as f64 > bound).count();
        self.budget = self.budget.min(self.node_rate() * BURST_SECS);
        let receivers: Vec<(SocketAddr, usize)> = others
            .iter()
            .filter(|(_, n)| (*n as f64) < share)
            .map(|(a, n)| (*a, (share - *n as f64).ceil() as usize))
            .collect();
        if receivers.is_empty() {
            return hold(Hold::NoReceiver);
        }
        let count = (self.budget.floor() as usize).min(surplus.ceil() as usize);
        if count == 0 {
            return hold(Hold::Paced);
        }
        Plan::Move {
            count,
            receivers,
            share,
        }
    }

    /// This node's part of the cluster's rate: `rate / movers`.
    fn node_rate(&self) -> f64 {
        self.rate / self.movers.max(1) as f64
    }

    /// This round sent `n` hand-offs to `to` (they count against the budget and on top of
    /// `to`'s gossiped count until it shows them).
    pub fn sent(&mut self, now: Instant, to: SocketAddr, n: u64) {
        if n == 0 {
            return;
        }
        self.budget = (self.budget - n as f64).max(0.0);
        // Receivers come from `decide`, which saw them: their entry exists.
        if let Some((_, batches)) = self.pending.get_mut(&to) {
            batches.push((now, n));
        }
    }

    fn pending_to(&self, addr: SocketAddr) -> u64 {
        self.pending.get(&addr).map_or(0, |(_, b)| {
            b.iter().map(|(_, n)| *n).fold(0, u64::saturating_add)
        })
    }

    /// Forgets the batches older than [`PENDING_FOR`]: the receivers' gossip shows them by
    /// now. A receiver's growth does not pay a batch off earlier: it may be another member's
    /// hand-offs arriving. Taking it for this node's own made a node see a receiver emptier
    /// than it was and send it more after the spread was even (process test
    /// `a_restarted_node_gets_its_share_of_the_sessions_back`: [42, 42, 36] became [42, 35,
    /// 43], and once a node went over share + 10 %). Counting a batch twice for a moment
    /// (gossiped and pending) only makes this node send less until it expires.
    fn observe(&mut self, now: Instant, members: &[Member]) {
        // A restarted member may be listed twice (its old identity down): the live one counts.
        let live = || members.iter().filter(|m| m.standing != Standing::Down);
        for m in live() {
            let (base, batches) = self.pending.entry(m.addr).or_default();
            batches.retain(|(at, _)| now.saturating_duration_since(*at) < PENDING_FOR);
            if batches.is_empty() {
                *base = m.sessions;
            }
        }
        self.pending.retain(|a, _| live().any(|m| m.addr == *a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7946))
    }

    fn alive(i: u8, sessions: u64) -> Member {
        Member {
            addr: addr(i),
            sessions,
            standing: Standing::Alive,
        }
    }

    fn calm(owned: u64, members: &[Member]) -> Input<'_> {
        Input {
            owned,
            draining: false,
            members,
            quorum: true,
            settled: true,
            stable_for: SETTLE,
            busy: false,
        }
    }

    /// A balancer that has been running a while (its budget full; its first look at the
    /// cluster's total out of the [`CHANGING_WINDOW`]).
    fn warm(rate: f64) -> (Balancer, Instant) {
        let mut b = Balancer::new(rate, SLACK);
        let t0 = Instant::now();
        let none: [Member; 0] = [];
        b.decide(t0, &calm(0, &none));
        (b, t0 + CHANGING_WINDOW + Duration::from_secs(1))
    }

    #[test]
    fn the_surplus_goes_to_the_members_under_their_share() {
        // 65 / 35 / 0 after a rolling restart: share 33.3.
        let (mut b, now) = warm(200.0);
        let members = [alive(2, 35), alive(3, 0)];
        let Plan::Move {
            count,
            receivers,
            share,
        } = b.decide(now, &calm(65, &members))
        else {
            panic!("moves");
        };
        assert!((share - 100.0 / 3.0).abs() < 1e-9, "{share}");
        // Down to share × 1.05 = 35: 30 sessions.
        assert_eq!(count, 30);
        assert_eq!(receivers, vec![(addr(3), 34)], "node 2 is over its share");
    }

    #[test]
    fn nothing_moves_while_sessions_are_being_opened_fast() {
        let (mut b, now) = warm(200.0);
        // A ramp: everyone's count grows 100 a second; this node's own count is ahead of the
        // gossiped ones, so it looks 10 % over its share each time.
        // (The first look has nothing to compare with; rounds come every 250 ms.)
        for i in 0..5u64 {
            let t = now + Duration::from_secs(i);
            let members = [alive(2, 1_000 + 100 * i), alive(3, 1_000 + 100 * i)];
            let plan = b.decide(t, &calm(1_100 + 100 * i + 10, &members));
            if i > 0 {
                assert_eq!(plan, Plan::Hold(Hold::Changing), "second {i}");
            }
        }
        // The ramp over: once the window has only calm totals, the surplus moves.
        let members = [alive(2, 1_400), alive(3, 1_400)];
        let calm_at = now + Duration::from_secs(4) + CHANGING_WINDOW + Duration::from_millis(1);
        b.decide(calm_at - Duration::from_secs(1), &calm(1_600, &members));
        assert!(matches!(
            b.decide(calm_at, &calm(1_600, &members)),
            Plan::Move { .. }
        ));
    }

    #[test]
    fn within_the_slack_nothing_moves() {
        let (mut b, now) = warm(200.0);
        let members = [alive(2, 100), alive(3, 95)];
        // share 100, 105 allowed.
        assert_eq!(
            b.decide(now, &calm(105, &members)),
            Plan::Hold(Hold::Balanced)
        );
        let Plan::Move { count, .. } = b.decide(now, &calm(110, &members)) else {
            panic!("110 is over 105 (share 101.7 × 1.05 = 106.75)");
        };
        assert_eq!(count, 4);
    }

    #[test]
    fn the_rate_paces_the_rounds() {
        let mut b = Balancer::new(100.0, SLACK);
        let t0 = Instant::now();
        let members = [alive(2, 0), alive(3, 0)];
        assert_eq!(
            b.decide(t0, &calm(3000, &members)),
            Plan::Hold(Hold::Paced),
            "no budget before time passes"
        );
        let t1 = t0 + Duration::from_millis(100);
        let Plan::Move { count, .. } = b.decide(t1, &calm(3000, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 10, "100/s over 100 ms");
        b.sent(t1, addr(2), 10);
        // A long pause does not make a burst: at most half a second of the rate.
        let t2 = t1 + Duration::from_secs(60);
        let Plan::Move { count, .. } = b.decide(t2, &calm(2990, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 50);
        assert_eq!(
            Balancer::new(0.0, SLACK).decide(t2, &calm(3000, &members)),
            Plan::Hold(Hold::Off)
        );
    }

    #[test]
    fn the_cluster_rate_is_split_over_the_members_that_move() {
        // After a restart at 100K (run B of stop 22): five full nodes each moved at the whole
        // rate. Three over the bound here (this node, nodes 2 and 3): each gets a third.
        let (mut b, now) = warm(300.0);
        let members = [alive(2, 3_000), alive(3, 3_000), alive(4, 0)];
        let Plan::Move { count, .. } = b.decide(now, &calm(3_000, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 50, "300/s over 3 movers, half a second of it");
        b.sent(now, addr(4), 50);
        // A second later: 100 more (its third of the rate), not 300.
        let later = now + Duration::from_secs(1);
        let Plan::Move { count, .. } = b.decide(later, &calm(2_950, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 50, "the budget holds half a second of 100/s");
        // Alone over the bound, a node takes the whole rate.
        let (mut b, now) = warm(300.0);
        let members = [alive(2, 0), alive(3, 0), alive(4, 0)];
        let Plan::Move { count, .. } = b.decide(now, &calm(900, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 150, "300/s, half a second of it");
    }

    #[test]
    fn a_busy_node_moves_nothing_until_it_is_not() {
        let (mut b, now) = warm(200.0);
        let members = [alive(2, 0), alive(3, 0)];
        let mut input = calm(300, &members);
        input.busy = true;
        assert_eq!(b.decide(now, &input), Plan::Hold(Hold::Busy));
        // Not busy any more: it moves, no more than the budget allows (no catch-up burst).
        let later = now + Duration::from_secs(10);
        let Plan::Move { count, .. } = b.decide(later, &calm(300, &members)) else {
            panic!("moves");
        };
        assert_eq!(count, 100);
    }

    #[test]
    fn nothing_moves_while_the_cluster_is_not_calm() {
        let (mut b, now) = warm(200.0);
        let under = [alive(2, 0), alive(3, 0)];
        let mut input = calm(300, &under);
        input.draining = true;
        assert_eq!(b.decide(now, &input), Plan::Hold(Hold::Draining));
        let draining = [
            alive(2, 0),
            Member {
                standing: Standing::Draining,
                ..alive(3, 0)
            },
        ];
        assert_eq!(
            b.decide(now, &calm(300, &draining)),
            Plan::Hold(Hold::Draining)
        );
        let suspect = [
            alive(2, 0),
            Member {
                standing: Standing::Suspect,
                ..alive(3, 0)
            },
        ];
        assert_eq!(
            b.decide(now, &calm(300, &suspect)),
            Plan::Hold(Hold::Suspect)
        );
        let mut input = calm(300, &under);
        input.quorum = false;
        assert_eq!(b.decide(now, &input), Plan::Hold(Hold::NoQuorum));
        let mut input = calm(300, &under);
        input.stable_for = SETTLE - Duration::from_millis(1);
        assert_eq!(b.decide(now, &input), Plan::Hold(Hold::Unsettled));
        let mut input = calm(300, &under);
        input.settled = false;
        assert_eq!(b.decide(now, &input), Plan::Hold(Hold::Unsettled));
        let none: [Member; 0] = [];
        assert_eq!(b.decide(now, &calm(300, &none)), Plan::Hold(Hold::Alone));
    }

    #[test]
    fn a_dead_member_counts_for_nothing() {
        let (mut b, now) = warm(200.0);
        // The dead member's old count (and it being under) is ignored: share 50 of 2.
        let members = [
            alive(2, 40),
            Member {
                standing: Standing::Down,
                ..alive(3, 0)
            },
        ];
        let Plan::Move {
            count, receivers, ..
        } = b.decide(now, &calm(60, &members))
        else {
            panic!("moves");
        };
        assert_eq!(receivers, vec![(addr(2), 10)]);
        assert_eq!(count, 8, "60 - 50 × 1.05 = 7.5");
    }

    #[test]
    fn hand_offs_the_gossip_does_not_show_yet_count_for_the_receiver() {
        let (mut b, now) = warm(1000.0);
        let members = [alive(2, 100), alive(3, 0)];
        let Plan::Move {
            count, receivers, ..
        } = b.decide(now, &calm(200, &members))
        else {
            panic!("moves");
        };
        assert_eq!(receivers, vec![(addr(3), 100)]);
        assert_eq!(count, 95, "200 - 100 × 1.05");
        b.sent(now, addr(3), 60);
        // Next round, before node 3 gossips its new count: it is seen at 60, not 0, so the
        // share stays 100 and this node (at 140) moves only what is left.
        let later = now + Duration::from_millis(100);
        let Plan::Move {
            count,
            receivers,
            share,
        } = b.decide(later, &calm(140, &members))
        else {
            panic!("moves");
        };
        assert!((share - 100.0).abs() < 1e-9, "{share}");
        assert_eq!(receivers, vec![(addr(3), 40)]);
        assert_eq!(count, 35);
        // Node 3 gossips 40 of them: the 95 sent still count on top until they expire (the
        // 40 may be another member's), so it counts as 135.
        b.sent(later, addr(3), 35);
        let members = [alive(2, 100), alive(3, 40)];
        let Plan::Hold(h) = b.decide(later + Duration::from_millis(100), &calm(105, &members))
        else {
            panic!("balanced: node 3 counts 40 gossiped + 95 pending");
        };
        assert_eq!(h, Hold::Balanced);
        // Pending batches expire: after PENDING_FOR only the gossiped count is believed.
        let much_later = later + PENDING_FOR + Duration::from_secs(1);
        let Plan::Move { receivers, .. } = b.decide(much_later, &calm(160, &members)) else {
            panic!("moves again: node 3 shows only 40");
        };
        assert_eq!(receivers, vec![(addr(3), 60)]);
    }

    #[test]
    fn a_receiver_whose_gossip_lags_does_not_lower_the_share() {
        let (mut b, now) = warm(200.0);
        // Restart: node 3 empty, this node and node 2 at 60 each; share 40.
        let Plan::Move { count, .. } = b.decide(now, &calm(60, &[alive(2, 60), alive(3, 0)]))
        else {
            panic!("moves");
        };
        assert_eq!(count, 18, "60 - 40 × 1.05");
        b.sent(now, addr(3), 18);
        // Node 2 sent its 18 too and gossips 42; node 3's gossip shows none of the 36 yet.
        // Seen now the total is 42 + 42 + 18 (this node's pending) = 102, share 34: this
        // node would move 7 more. The total of a moment ago (120) holds the share at 40.
        let later = now + Duration::from_millis(250);
        assert_eq!(
            b.decide(later, &calm(42, &[alive(2, 42), alive(3, 0)])),
            Plan::Hold(Hold::Balanced)
        );
    }

    #[test]
    fn counts_near_the_largest_number_overflow_nothing() {
        let (mut b, now) = warm(200.0);
        let members = [alive(2, u64::MAX), alive(3, u64::MAX - 1)];
        let _ = b.decide(now, &calm(u64::MAX, &members));
        b.sent(now, addr(3), u64::MAX);
        let _ = b.decide(now + Duration::from_millis(250), &calm(u64::MAX, &members));
    }

    #[test]
    fn a_receiver_takes_hand_offs_up_to_the_senders_bound() {
        // 120 sessions on three nodes: share 40, the senders move down to 42.
        assert!(
            takes_rebalanced(0, &[60, 60], SLACK),
            "a restarted node takes"
        );
        assert!(takes_rebalanced(41, &[42, 37], SLACK));
        assert!(!takes_rebalanced(42, &[42, 36], SLACK), "43 > 42");
        // Alone, or with nothing anywhere: it would be above its share.
        assert!(!takes_rebalanced(0, &[], SLACK));
        assert!(!takes_rebalanced(0, &[0, 0], SLACK));
        assert!(
            !takes_rebalanced(u64::MAX, &[u64::MAX], SLACK),
            "no overflow"
        );
    }

    #[test]
    fn a_session_with_no_successor_with_room_goes_where_there_is_most() {
        assert_eq!(
            most_room([(addr(2), 30), (addr(3), 1_050), (addr(4), 1_050)]),
            Some(addr(3)),
            "the first of equals"
        );
        assert_eq!(most_room([(addr(2), 0), (addr(3), 1)]), Some(addr(3)));
        assert_eq!(most_room([(addr(2), 0)]), None);
        assert_eq!(most_room([]), None);
    }

    #[test]
    fn rounding_lets_each_receiver_take_what_it_lacks() {
        let (mut b, now) = warm(200.0);
        // 31 sessions on three nodes: share 10.33, this node may own 10.85 and owns 12.
        let members = [alive(2, 10), alive(3, 9)];
        let Plan::Move {
            count, receivers, ..
        } = b.decide(now, &calm(12, &members))
        else {
            panic!("moves");
        };
        assert_eq!(count, 2);
        assert_eq!(receivers, vec![(addr(2), 1), (addr(3), 2)]);
    }
}
