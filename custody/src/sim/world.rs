//! The simulated cluster: nodes, networks, clock, clients, scenario operations and checks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, DefaultHasher};

type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcp_cluster::membership::{self, Membership, NodeId, NodeMeta};
use mcp_cluster::sim::Network;
use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use super::client::{Client, Reader, hash};
use super::links::{Faults, Idx, Links};
use crate::action::{Action, Route, Ticket};
use crate::config::Config;
use crate::data::{NewSession, SessionData, StreamKind};
use crate::id::SessionId;
use crate::machine::{Custody, Role};

/// What a simulation runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes started by [`Op::Start`].
    pub nodes: Idx,
    /// Clients, each with one session.
    pub clients: usize,
    /// The session layer's configuration on every node (`has_seeds` is set by the world, and
    /// `cluster_size`, when 0, to `nodes`).
    pub custody: Config,
    /// The membership's configuration on every node.
    pub membership: membership::Config,
    /// One-way delay of data links and gossip.
    pub delay: Duration,
    /// Jitter on top.
    pub jitter: Duration,
    /// Mean time between two actions of one client.
    pub op_period: Duration,
    /// How often each node sends a notification to some of its sessions' GET streams.
    pub notify_period: Duration,
    /// How many sessions each such round picks.
    pub notify_batch: usize,
    /// How often every node's ownership is scanned for two owners at one epoch.
    pub check_period: Duration,
    /// Print what happens (for replaying a failing seed).
    pub trace: bool,
    /// Print every message and action about sessions whose id starts with this hex prefix.
    pub watch: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let custody = Config {
            // Large enough that no event a client needs is evicted in a simulation: a client
            // that resumes after minutes still finds every event (eviction is tested apart).
            event_log_capacity: 100_000,
            ..Config::default()
        };
        Self {
            nodes: 3,
            clients: 100,
            custody,
            membership: membership::Config::default(),
            delay: Duration::from_micros(200),
            jitter: Duration::from_micros(200),
            op_period: Duration::from_millis(500),
            notify_period: Duration::from_millis(100),
            notify_batch: 2,
            check_period: Duration::from_millis(500),
            trace: false,
            watch: None,
        }
    }
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Op {
    /// Start every node (seeds: the nodes started before it) and wait until they see each
    /// other.
    Start,
    /// Let virtual time pass.
    Wait(Duration),
    /// Stop a node abruptly (its memory is lost).
    Kill(Idx),
    /// Start a stopped node again at its address, with a new generation and nothing held.
    Restart(Idx),
    /// Freeze a node (a stalled or starved process): it handles nothing until the end;
    /// what is sent to it waits.
    Stall {
        /// The node.
        node: Idx,
        /// For how long.
        duration: Duration,
    },
    /// Cut every link between the two groups (gossip and data).
    Partition(Vec<Idx>, Vec<Idx>),
    /// Restore every cut link.
    Heal,
    /// Every data connection of a node fails once (what is in flight is lost).
    FailLinks(Idx),
    /// Message faults on data links.
    SetFaults(Faults),
    /// Drain a node (hand its sessions off), then leave and stop it.
    Drain(Idx),
    /// Start draining a node and go on at once (the script decides what happens meanwhile;
    /// a later [`Op::Drain`] of it waits for the end, then leaves and stops it).
    BeginDrain(Idx),
    /// Clients act (`true`) or pause.
    Load(bool),
    /// Every acknowledged session that is not legitimately lost is served again within the
    /// bound.
    AssertServed {
        /// The bound.
        within: Duration,
    },
    /// Within the bound: every session has exactly one owner among running nodes and its
    /// replicas hold its latest copy, and no other node holds one.
    AssertConverged {
        /// The bound.
        within: Duration,
    },
    /// Within the bound, no running node owns more than its share of sessions by more than
    /// `slack` (0.1: 10 %).
    AssertBalanced {
        /// The bound.
        within: Duration,
        /// Allowed excess over the share.
        slack: f64,
    },
}

/// What a run showed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Invariant violations (empty: the run passed).
    pub violations: Vec<String>,
    /// Sessions acknowledged.
    pub acked: usize,
    /// Sessions lost while every holder was dead (allowed).
    pub lost_legit: usize,
    /// Events clients received.
    pub events_seen: u64,
    /// Calls made.
    pub calls: u64,
    /// Streams resumed elsewhere.
    pub resumes: u64,
    /// Take-overs, hand-offs and supersedes, summed over nodes.
    pub takeovers: u64,
    /// Hand-offs.
    pub handoffs: u64,
    /// Supersedes.
    pub superseded: u64,
    /// Longest time an `AssertServed` waited.
    pub served_within: Duration,
    /// Longest time an `AssertConverged` waited.
    pub converged_within: Duration,
    /// Virtual time simulated.
    pub simulated: Duration,
    /// Messages on data links.
    pub messages: u64,
}

#[derive(Debug)]
struct Node {
    running: bool,
    generation: u64,
    membership: Option<Membership>,
    custody: Option<Custody>,
    stalled_until: Duration,
    /// Readers attached here: (session, stream) → client.
    readers: Map<(SessionId, u32), usize>,
    takeovers: u64,
    handoffs: u64,
    superseded: u64,
}

/// The simulated cluster.
#[derive(Debug)]
pub struct World {
    cfg: SimConfig,
    seed: u64,
    base: Instant,
    now: Duration,
    nodes: Vec<Node>,
    gossip: Network,
    links: Links,
    rng: SmallRng,
    clients: Vec<Client>,
    by_session: Map<SessionId, usize>,
    tickets: Map<(Idx, u64, Ticket), usize>,
    queue: BinaryHeap<Reverse<(Duration, usize)>>,
    load: bool,
    next_notify: Duration,
    next_check: Duration,
    next_view: Duration,
    next_meta: Duration,
    report: Report,
    steps: u64,
    last_path: String,
    /// The tag the next level change gets (client.rs, `Level`): unique in the run.
    next_tag: i64,
}

/// The simulated address of node `i`.
pub fn addr(i: Idx) -> SocketAddr {
    let [hi, lo] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, 1, hi, lo), 7000))
}

fn idx(a: SocketAddr) -> Option<Idx> {
    match a.ip() {
        std::net::IpAddr::V4(ip) => {
            let o = ip.octets();
            Some(u16::from_be_bytes([o[2], o[3]]))
        }
        std::net::IpAddr::V6(_) => None,
    }
}

const VIEW_REFRESH: Duration = Duration::from_millis(100);
const META_REFRESH: Duration = Duration::from_millis(500);

/// Where a client's request ended up.
enum Found {
    At(Idx),
    Retry,
    Unknown(Idx),
}

impl World {
    /// A world whose every random choice follows `seed`.
    pub fn new(cfg: SimConfig, seed: u64) -> Self {
        let mut clients = Vec::with_capacity(cfg.clients);
        clients.resize_with(cfg.clients, Client::default);
        let mut w = Self {
            base: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            gossip: Network::new(seed),
            links: Links::new(seed, cfg.delay, cfg.jitter),
            rng: SmallRng::seed_from_u64(seed ^ 0x00c1_1e47),
            clients,
            by_session: Map::default(),
            tickets: Map::default(),
            queue: BinaryHeap::new(),
            load: true,
            next_notify: Duration::ZERO,
            next_check: Duration::ZERO,
            next_view: Duration::ZERO,
            next_meta: Duration::ZERO,
            report: Report::default(),
            steps: 0,
            last_path: String::new(),
            // Above every session's initial `next_request` (1).
            next_tag: 2,
            seed,
            cfg,
        };
        let link = mcp_cluster::sim::Link {
            drop: 0.0,
            delay: w.cfg.delay,
            jitter: w.cfg.jitter,
        };
        w.gossip.set_default_link(link);
        for c in 0..w.clients.len() {
            let at = w.jittered(w.cfg.op_period);
            w.queue.push(Reverse((at, c)));
        }
        w
    }

    /// Runs the scenario; the report (its `violations` empty when every invariant held).
    pub fn run(&mut self, ops: &[Op]) -> Report {
        for op in ops {
            if self.cfg.trace {
                eprintln!("[{:>9.3}s] op {op:?}", self.now.as_secs_f64());
            }
            self.apply(op);
            if self.report.violations.len() > 20 {
                break;
            }
        }
        self.report.simulated = self.now;
        self.report.messages = self.links.sent;
        self.report.acked = self.clients.iter().filter(|c| c.acked).count();
        self.report.lost_legit = self.clients.iter().filter(|c| c.lost_legit).count();
        self.report.calls = self.clients.iter().map(|c| c.calls).sum();
        for n in &self.nodes {
            self.report.takeovers += n.takeovers;
            self.report.handoffs += n.handoffs;
            self.report.superseded += n.superseded;
        }
        self.report.clone()
    }

    fn violation(&mut self, what: String) {
        if self.cfg.trace {
            eprintln!("[{:>9.3}s] VIOLATION {what}", self.now.as_secs_f64());
        }
        if self.report.violations.len() <= 20 {
            self.report
                .violations
                .push(format!("at {:.3}s: {what}", self.now.as_secs_f64()));
        }
    }

    fn watched(&self, id: u128) -> bool {
        self.cfg
            .watch
            .as_ref()
            .is_some_and(|w| SessionId(id).to_string().starts_with(w.as_str()))
    }

    fn msg_session(msg: &crate::wire::CustodyMsg) -> Option<u128> {
        use crate::wire::CustodyMsg as M;
        match msg {
            M::Replicate(r) => Some(r.session),
            M::Resync { session } | M::Forget { session, .. } | M::Superseded { session, .. } => {
                Some(*session)
            }
            M::Acks(a) => a.first().map(|a| a.session),
            _ => None,
        }
    }

    fn jittered(&mut self, mean: Duration) -> Duration {
        let f: f64 = self.rng.random_range(0.2..1.8);
        self.now + mean.mul_f64(f)
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn live(&self, i: Idx) -> bool {
        self.nodes
            .get(usize::from(i))
            .is_some_and(|n| n.running && n.stalled_until <= self.now)
    }

    // ----- operations --------------------------------------------------------------------

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Start => {
                for i in 0..self.cfg.nodes {
                    self.start(i, 1 + i as u64);
                }
                self.settle(Duration::from_secs(5));
            }
            Op::Wait(d) => self.advance(self.now + *d),
            Op::Kill(i) => self.stop(*i),
            Op::Restart(i) => {
                if !self.nodes.get(usize::from(*i)).is_some_and(|n| n.running) {
                    let generation = self.nodes.get(usize::from(*i)).map_or(1, |n| {
                        n.generation + 1_000_000 + self.now.as_millis() as u64
                    });
                    self.start(*i, generation);
                }
            }
            Op::Stall { node, duration } => {
                if let Some(n) = self.nodes.get_mut(usize::from(*node)) {
                    n.stalled_until = n.stalled_until.max(self.now + *duration);
                }
            }
            Op::Partition(a, b) => {
                for x in a {
                    for y in b {
                        self.gossip.remove_link(*x, *y);
                        self.links.cut(*x, *y);
                    }
                }
            }
            Op::Heal => {
                self.gossip.heal();
                self.links.heal();
            }
            Op::FailLinks(i) => {
                for j in 0..self.nodes.len() as Idx {
                    if j != *i {
                        self.links.fail(*i, j);
                    }
                }
            }
            Op::SetFaults(f) => self.links.faults = *f,
            Op::Drain(i) => self.drain(*i),
            Op::BeginDrain(i) => self.begin_drain(*i),
            Op::Load(on) => self.load = *on,
            Op::AssertServed { within } => self.assert_served(*within),
            Op::AssertConverged { within } => self.assert_converged(*within),
            Op::AssertBalanced { within, slack } => self.assert_balanced(*within, *slack),
        }
    }

    fn start(&mut self, i: Idx, generation: u64) {
        let id = NodeId::new(addr(i), generation);
        let meta = NodeMeta {
            name: format!("n{i}"),
            connections: 0,
            sessions: 0,
            draining: false,
            address: String::new(),
        };
        let seed = self.seed ^ (u64::from(i) << 40) ^ generation;
        let Ok(mut m) =
            Membership::new(id, meta, self.cfg.membership.clone(), seed, self.instant())
        else {
            self.violation(format!("node {i}: membership would not start"));
            return;
        };
        let seeds: Vec<SocketAddr> = (0..self.nodes.len() as Idx)
            .filter(|j| *j != i && self.nodes[usize::from(*j)].running)
            .map(addr)
            .collect();
        let has_seeds = !seeds.is_empty() || i > 0;
        let _ = m.join(seeds, self.instant());
        let custody = Custody::new(
            id,
            Config {
                has_seeds,
                cluster_size: match self.cfg.custody.cluster_size {
                    0 => usize::from(self.cfg.nodes),
                    n => n,
                },
                ..self.cfg.custody.clone()
            },
            seed,
            self.instant(),
        );
        let node = Node {
            running: true,
            generation,
            membership: Some(m),
            custody: Some(custody),
            stalled_until: Duration::ZERO,
            readers: Map::default(),
            takeovers: 0,
            handoffs: 0,
            superseded: 0,
        };
        let u = usize::from(i);
        if u < self.nodes.len() {
            let old = std::mem::replace(&mut self.nodes[u], node);
            self.nodes[u].takeovers = old.takeovers;
            self.nodes[u].handoffs = old.handoffs;
            self.nodes[u].superseded = old.superseded;
        } else {
            while self.nodes.len() < u {
                self.nodes.push(Node {
                    running: false,
                    generation: 0,
                    membership: None,
                    custody: None,
                    stalled_until: Duration::ZERO,
                    readers: Map::default(),
                    takeovers: 0,
                    handoffs: 0,
                    superseded: 0,
                });
            }
            self.nodes.push(node);
        }
        self.flush_membership(i, true);
    }

    /// A node stops; its readers end; sessions none of whose holders survive are lost
    /// legitimately.
    fn stop(&mut self, i: Idx) {
        let Some(n) = self.nodes.get_mut(usize::from(i)) else {
            return;
        };
        if !n.running {
            return;
        }
        n.running = false;
        n.membership = None;
        n.custody = None;
        let readers: Vec<((SessionId, u32), usize)> = n.readers.drain().collect();
        for ((_, stream), c) in readers {
            if let Some(r) = self.clients[c].reader_mut(stream) {
                r.at = None;
            }
        }
        self.links.fail_all(i);
        self.count_orphaned_sessions();
    }

    /// Marks the sessions no running node holds any more, as acknowledged to their client,
    /// as lost with all their holders (allowed). A copy older than what the client was told
    /// (a log level it set, events it saw) does not hold the session: reviving it would
    /// undo acknowledged changes, which the checks flag.
    fn count_orphaned_sessions(&mut self) {
        for c in 0..self.clients.len() {
            let cl = &self.clients[c];
            let Some(id) = cl.session.filter(|_| cl.acked && !cl.lost_legit) else {
                continue;
            };
            let held = self
                .nodes
                .iter()
                .filter(|n| n.running)
                .filter_map(|n| n.custody.as_ref()?.sessions.get(&id))
                .any(|e| Self::holds_acknowledged(cl, &e.data));
            if !held {
                self.clients[c].lost_legit = true;
            }
        }
    }

    fn holds_acknowledged(cl: &Client, data: &SessionData) -> bool {
        // The level acknowledged last, one a change of unknown outcome set, or the one a
        // change in flight sets.
        let have = (data.log_level, data.next_request);
        if !cl.level_may_be(have) && cl.updating.is_none_or(|(_, _, _, v)| v != have) {
            return false;
        }
        // A stream the copy lacks holds what the client saw only if the copy knew it and
        // dropped it since (past `MAX_STREAMS`, as its owner did): a stream opened after the
        // copy was made is one whose events the copy never had.
        cl.seen
            .iter()
            .all(|(stream, seen)| match data.stream(*stream) {
                Some(s) => {
                    usize::try_from(s.next_seq.saturating_sub(1)).unwrap_or(usize::MAX)
                        >= seen.len()
                }
                None => seen.is_empty() || *stream < data.next_stream,
            })
    }

    fn begin_drain(&mut self, i: Idx) {
        if !self.live(i) {
            return;
        }
        if let Some(c) = self.nodes[usize::from(i)].custody.as_mut() {
            c.set_draining(true);
        }
        self.publish_meta(i);
    }

    fn drain(&mut self, i: Idx) {
        if !self.live(i) {
            return;
        }
        self.begin_drain(i);
        let deadline = self.now + Duration::from_secs(15);
        while self.now < deadline {
            self.advance(self.now + Duration::from_millis(50));
            let done = self.nodes[usize::from(i)]
                .custody
                .as_ref()
                .is_none_or(|c| c.owned() == 0);
            if done {
                break;
            }
        }
        if let Some(m) = self.nodes[usize::from(i)].membership.as_mut() {
            let at = self.base + self.now;
            let _ = m.leave(at);
        }
        self.flush_membership(i, false);
        self.advance(self.now + Duration::from_millis(100));
        self.stop(i);
    }

    // ----- the clock -----------------------------------------------------------------------

    fn advance(&mut self, until: Duration) {
        loop {
            let mut next = Duration::MAX;
            if let Some(t) = self.gossip.next_arrival() {
                next = next.min(t);
            }
            if let Some(t) = self.links.next_arrival() {
                next = next.min(t);
            }
            for n in self.nodes.iter().filter(|n| n.running) {
                let (Some(m), Some(c)) = (&n.membership, &n.custody) else {
                    continue;
                };
                let t = m
                    .poll_timeout()
                    .min(c.poll_timeout())
                    .saturating_duration_since(self.base)
                    .max(n.stalled_until);
                next = next.min(t);
            }
            if self.load
                && let Some(Reverse((t, _))) = self.queue.peek()
            {
                next = next.min(*t);
            }
            next = next
                .min(self.next_notify)
                .min(self.next_check)
                .min(self.next_view)
                .min(self.next_meta);
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.steps += 1;
            self.step();
            if self.report.violations.len() > 20 {
                break;
            }
        }
        self.now = self.now.max(until);
    }

    /// Everything due now.
    fn step(&mut self) {
        let at = self.instant();
        while let Some((from, to, data)) = self.gossip.pop_due(self.now) {
            let Some(n) = self.nodes.get_mut(usize::from(to)) else {
                continue;
            };
            if !n.running {
                continue;
            }
            if n.stalled_until > self.now {
                self.gossip.requeue(n.stalled_until, from, to, data);
                continue;
            }
            if let Some(m) = n.membership.as_mut() {
                let r = m.handle_packet(&data, at);
                if std::env::var("SIM_GOSSIP").is_ok()
                    && self.now > Duration::from_millis(5600)
                    && self.now < Duration::from_millis(7600)
                {
                    eprintln!(
                        "[{:>9.3}s] gossip {from} -> {to} ({} B): {r:?}",
                        self.now.as_secs_f64(),
                        data.len()
                    );
                }
            }
            self.flush_membership(to, false);
        }
        while let Some((from, to, msg)) = self.links.pop_due(self.now) {
            let Some(n) = self.nodes.get_mut(usize::from(to)) else {
                continue;
            };
            if !n.running {
                continue;
            }
            if n.stalled_until > self.now {
                let until = n.stalled_until;
                self.links.requeue(until, from, to, msg);
                continue;
            }
            let show = self.cfg.watch.is_some()
                && match &msg {
                    crate::wire::CustodyMsg::Acks(a) => a.iter().any(|a| self.watched(a.session)),
                    crate::wire::CustodyMsg::Inquire { sessions, .. } => {
                        sessions.iter().any(|s| self.watched(*s))
                    }
                    crate::wire::CustodyMsg::Holdings { entries, .. } => {
                        entries.iter().any(|h| self.watched(h.session))
                    }
                    crate::wire::CustodyMsg::Dropped(notes) => {
                        notes.iter().any(|d| self.watched(d.session))
                    }
                    crate::wire::CustodyMsg::DropsNoted(entries) => {
                        entries.iter().any(|e| self.watched(e.0))
                    }
                    m => Self::msg_session(m).is_some_and(|id| self.watched(id)),
                };
            if show {
                let detail = match &msg {
                    crate::wire::CustodyMsg::Holdings { entries, .. } => format!(
                        " {:?}",
                        entries
                            .iter()
                            .filter(|h| self.watched(h.session))
                            .collect::<Vec<_>>()
                    ),
                    crate::wire::CustodyMsg::Dropped(notes) => format!(
                        " {:?}",
                        notes
                            .iter()
                            .filter(|d| self.watched(d.session))
                            .map(|d| (d.member, d.below, d.forced))
                            .collect::<Vec<_>>()
                    ),
                    crate::wire::CustodyMsg::DropsNoted(entries) => format!(
                        " {:?}",
                        entries
                            .iter()
                            .filter(|e| self.watched(e.0))
                            .map(|e| (e.1, e.2, e.3))
                            .collect::<Vec<_>>()
                    ),
                    _ => String::new(),
                };
                eprintln!(
                    "[{:>9.3}s] {from} -> {to}: {}{detail}",
                    self.now.as_secs_f64(),
                    short(&msg)
                );
            }
            let Some(n) = self.nodes.get_mut(usize::from(to)) else {
                continue;
            };
            if let Some(c) = n.custody.as_mut() {
                c.handle_message(addr(from), msg, at);
            }
            self.drain_actions(to);
        }
        for i in 0..self.nodes.len() as Idx {
            if !self.live(i) {
                continue;
            }
            let n = &mut self.nodes[usize::from(i)];
            if let Some(m) = n.membership.as_mut()
                && m.poll_timeout() <= at
            {
                let _ = m.handle_timeout(at);
                self.flush_membership(i, false);
            }
            let n = &mut self.nodes[usize::from(i)];
            if let Some(c) = n.custody.as_mut()
                && c.poll_timeout() <= at
            {
                c.handle_timeout(at);
                self.drain_actions(i);
            }
        }
        if self.now >= self.next_view {
            self.next_view = self.now + VIEW_REFRESH;
            for i in 0..self.nodes.len() as Idx {
                if self.live(i) {
                    self.push_view(i);
                }
            }
        }
        if self.now >= self.next_meta {
            self.next_meta = self.now + META_REFRESH;
            for i in 0..self.nodes.len() as Idx {
                if self.live(i) {
                    self.publish_meta(i);
                }
            }
        }
        if self.now >= self.next_notify {
            self.next_notify = self.now + self.cfg.notify_period;
            if self.load {
                self.notify_round();
            }
        }
        if self.now >= self.next_check {
            self.next_check = self.now + self.cfg.check_period;
            self.check_owners();
        }
        while self.load
            && let Some(Reverse((t, c))) = self.queue.peek().copied()
            && t <= self.now
        {
            self.queue.pop();
            self.client_act(c);
        }
    }

    fn flush_membership(&mut self, i: Idx, force_view: bool) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(usize::from(i)) else {
            return;
        };
        let Some(m) = n.membership.as_mut() else {
            return;
        };
        while let Some(t) = m.poll_transmit() {
            if let Some(to) = idx(t.to.addr) {
                self.gossip.send(now, i, to, t.data);
            }
        }
        let mut changed = force_view;
        while m.poll_event().is_some() {
            changed = true;
        }
        if changed {
            self.push_view(i);
        }
    }

    fn push_view(&mut self, i: Idx) {
        let at = self.instant();
        let n = &mut self.nodes[usize::from(i)];
        if let (Some(m), Some(c)) = (n.membership.as_ref(), n.custody.as_mut()) {
            c.set_view(&m.view(), at);
        }
        self.drain_actions(i);
    }

    fn publish_meta(&mut self, i: Idx) {
        if std::env::var("SIM_NO_META").is_ok() {
            return;
        }
        let at = self.instant();
        let n = &mut self.nodes[usize::from(i)];
        if let (Some(m), Some(c)) = (n.membership.as_mut(), n.custody.as_ref()) {
            let meta = NodeMeta {
                name: format!("n{i}"),
                connections: 0,
                sessions: c.owned() as u64,
                draining: c.is_draining(),
                address: String::new(),
            };
            if *m.meta() != meta {
                let _ = m.set_meta(meta, at);
            }
        }
        self.flush_membership(i, false);
    }

    // ----- actions -------------------------------------------------------------------------

    fn drain_actions(&mut self, i: Idx) {
        loop {
            let Some(a) = self.nodes[usize::from(i)]
                .custody
                .as_mut()
                .and_then(Custody::poll_action)
            else {
                return;
            };
            self.execute(i, a);
        }
    }

    fn execute(&mut self, i: Idx, a: Action) {
        let generation = self.nodes[usize::from(i)].generation;
        if self.cfg.watch.is_some() {
            let id = match &a {
                Action::Deliver { session, .. }
                | Action::StreamEnded { session, .. }
                | Action::Released { session, .. }
                | Action::Acquired { session, .. } => Some(session.0),
                _ => None,
            };
            if id.is_some_and(|id| self.watched(id)) {
                eprintln!("[{:>9.3}s] node {i}: {a:?}", self.now.as_secs_f64());
            }
        }
        match a {
            Action::Send { to, msg } => {
                if let Some(j) = idx(to) {
                    self.links.send(self.now, i, j, msg);
                }
            }
            Action::Deliver {
                session,
                stream,
                seq,
                json,
            } => {
                if let Some(c) = self.nodes[usize::from(i)]
                    .readers
                    .get(&(session, stream))
                    .copied()
                {
                    self.deliver(c, i, stream, seq, &json);
                }
            }
            Action::StreamEnded { session, stream } => {
                if let Some(c) = self.nodes[usize::from(i)]
                    .readers
                    .remove(&(session, stream))
                    && let Some(r) = self.clients[c].reader_mut(stream)
                {
                    r.ended = true;
                    r.at = None;
                }
            }
            Action::Settled { ticket, ok } => {
                let Some(c) = self.tickets.remove(&(i, generation, ticket)) else {
                    return;
                };
                let client = &mut self.clients[c];
                if client
                    .creating
                    .is_some_and(|(n, g, t)| (n, g, t) == (i, generation, ticket))
                {
                    client.creating = None;
                    if ok {
                        client.acked = true;
                    } else {
                        client.session = None;
                    }
                } else if let Some((n, g, t, v)) = client.updating
                    && (n, g, t) == (i, generation, ticket)
                {
                    client.updating = None;
                    // Not acknowledged is not "not applied": like a timeout, the change may
                    // or may not have taken effect.
                    if ok {
                        client.level = Some(v);
                        client.level_alt = None;
                    } else {
                        client.level_unknown(v);
                    }
                    if let Some(id) = client.session
                        && self.watched(id.0)
                    {
                        eprintln!(
                            "[{:>9.3}s] node {i}: level {v:?} settled ok={ok}",
                            self.now.as_secs_f64()
                        );
                    }
                }
            }
            Action::Released { session, .. } => {
                let n = &mut self.nodes[usize::from(i)];
                let gone: Vec<(u32, usize)> = n
                    .readers
                    .iter()
                    .filter(|((s, _), _)| *s == session)
                    .map(|((_, st), c)| (*st, *c))
                    .collect();
                for (st, _) in &gone {
                    n.readers.remove(&(session, *st));
                }
                if let Some(c) = n.custody.as_ref() {
                    let s = c.stats();
                    n.superseded = n.superseded.max(s.superseded);
                    n.handoffs = n.handoffs.max(s.handoffs_sent);
                }
                for (st, c) in gone {
                    if let Some(r) = self.clients[c].reader_mut(st) {
                        r.at = None;
                    }
                }
            }
            Action::Acquired { .. } => {
                let n = &mut self.nodes[usize::from(i)];
                if let Some(c) = n.custody.as_ref() {
                    n.takeovers = n.takeovers.max(c.stats().takeovers);
                }
            }
            Action::Announce { .. } => {}
        }
    }

    fn deliver(&mut self, c: usize, node: Idx, stream: u32, seq: u32, json: &Bytes) {
        let h = hash(json);
        let generation = self.nodes[usize::from(node)].generation;
        let client = &mut self.clients[c];
        let Some(r) = client.reader_mut(stream) else {
            return;
        };
        if r.at != Some((node, generation)) {
            return;
        }
        if seq <= r.last {
            return; // shown already (a replay raced a delivery): the reader skips it
        }
        if seq != r.last + 1 {
            let last = r.last;
            let id = client.session;
            self.violation(format!(
                "client {c} session {id:?} stream {stream}: event {seq} after {last} (a gap)"
            ));
            return;
        }
        r.last = seq;
        let seen = client.seen.entry(stream).or_default();
        seen.push(h);
        self.report.events_seen += 1;
    }

    // ----- clients -------------------------------------------------------------------------

    fn reschedule(&mut self, c: usize) {
        let at = self.jittered(self.cfg.op_period);
        self.queue.push(Reverse((at, c)));
    }

    fn client_act(&mut self, c: usize) {
        if self.clients[c].lost || self.clients[c].lost_legit {
            return;
        }
        self.reschedule(c);
        // A node that died before settling will never settle.
        if let Some((n, g, _)) = self.clients[c].creating
            && !self.node_is(n, g)
        {
            self.clients[c].creating = None;
            self.clients[c].session = None;
        }
        if let Some((n, g, _, v)) = self.clients[c].updating
            && !self.node_is(n, g)
        {
            // Its node died before answering: the change may or may not have survived.
            self.clients[c].updating = None;
            self.clients[c].level_unknown(v);
        }
        if !self.clients[c].idle() {
            return;
        }
        if !self.clients[c].acked {
            self.create(c);
            return;
        }
        let Some(id) = self.clients[c].session else {
            return;
        };
        let resume = self.clients[c]
            .readers
            .iter()
            .find(|r| r.at.is_none() && !r.ended)
            .map(|r| r.stream);
        let roll: f64 = self.rng.random();
        let has_get = self.clients[c]
            .readers
            .iter()
            .any(|r| r.kind == StreamKind::Standalone && !r.ended);
        let at = match self.find(id) {
            Found::At(x) => x,
            Found::Retry => return,
            Found::Unknown(x) => {
                self.lost(c, id, x);
                return;
            }
        };
        self.check_level(c, id, at);
        if let Some(stream) = resume {
            self.resume(c, id, at, stream);
        } else if roll < 0.55 {
            self.call(c, id, at);
        } else if roll < 0.70 {
            self.set_level(c, id, at);
        } else if roll < 0.80 && !has_get {
            self.open_get(c, id, at);
        }
        self.drain_actions(at);
    }

    fn node_is(&self, i: Idx, generation: u64) -> bool {
        self.nodes
            .get(usize::from(i))
            .is_some_and(|n| n.running && n.generation == generation)
    }

    fn pick_node(&mut self) -> Option<Idx> {
        let live: Vec<Idx> = (0..self.nodes.len() as Idx)
            .filter(|i| {
                self.live(*i)
                    && self.nodes[usize::from(*i)]
                        .custody
                        .as_ref()
                        .is_some_and(|c| !c.is_draining())
            })
            .collect();
        if live.is_empty() {
            return None;
        }
        Some(live[self.rng.random_range(0..live.len())])
    }

    fn create(&mut self, c: usize) {
        let Some(i) = self.pick_node() else {
            return;
        };
        let at = self.instant();
        let generation = self.nodes[usize::from(i)].generation;
        let Some(custody) = self.nodes[usize::from(i)].custody.as_mut() else {
            return;
        };
        if let Ok((id, ticket)) = custody.create(
            NewSession {
                version: 2,
                caps: "{}".into(),
                principal: format!("client-{c}").into(),
            },
            at,
        ) {
            let client = &mut self.clients[c];
            if let Some(old) = client.session.take() {
                self.by_session.remove(&old);
            }
            client.session = Some(id);
            client.creating = Some((i, generation, ticket));
            client.readers.clear();
            client.seen.clear();
            client.level = None;
            client.level_alt = None;
            self.by_session.insert(id, c);
            self.tickets.insert((i, generation, ticket), c);
        }
        self.drain_actions(i);
    }

    /// Follows the routing from a random node, as a request through a Service would.
    fn find(&mut self, id: SessionId) -> Found {
        let Some(mut at) = self.pick_node() else {
            return Found::Retry;
        };
        let now = self.instant();
        let mut path = Vec::new();
        for hop in 0..=crate::route::MAX_HOPS {
            let Some(custody) = self.nodes[usize::from(at)].custody.as_mut() else {
                return Found::Retry;
            };
            let r = custody.route(id, hop, now);
            path.push((at, r));
            self.drain_actions(at);
            match r {
                Route::Local => return Found::At(at),
                Route::Forward(a) => {
                    let Some(j) = idx(a) else {
                        return Found::Retry;
                    };
                    if !self.live(j) || !self.links.up(at, j) {
                        return Found::Retry;
                    }
                    at = j;
                }
                Route::NotFound => {
                    self.last_path = format!("{path:?}");
                    return Found::Unknown(at);
                }
                Route::Wait | Route::NoQuorum | Route::Joining => {
                    self.last_path = format!("{path:?}");
                    return Found::Retry;
                }
            }
        }
        self.last_path = format!("{path:?}");
        Found::Unknown(at)
    }

    fn describe(&self, id: SessionId) -> Vec<String> {
        let holders: Vec<Idx> = (0..self.nodes.len() as Idx)
            .filter(|i| {
                self.nodes[usize::from(*i)]
                    .custody
                    .as_ref()
                    .is_some_and(|x| x.sessions.contains_key(&id))
            })
            .collect();
        holders
            .iter()
            .map(|i| {
                let x = self.nodes[usize::from(*i)].custody.as_ref();
                match x.and_then(|x| x.sessions.get(&id)).map(|e| &e.role) {
                    Some(Role::Owner(o)) => format!(
                        "{i}: owner epoch {} confirm {} handoff {:?} busy {} set {:?}",
                        o.epoch,
                        o.confirm,
                        o.handoff.map(|h| h.to),
                        o.busy,
                        o.set.iter().map(|t| t.addr).collect::<Vec<_>>()
                    ),
                    Some(Role::Copy(k)) => format!(
                        "{i}: copy of {} epoch {} replicas {:?} deferred {:?}",
                        k.owner,
                        k.epoch,
                        k.replicas,
                        x.and_then(|x| x.deferred.get(&id))
                    ),
                    None => String::new(),
                }
            })
            .collect()
    }

    fn lost(&mut self, c: usize, id: SessionId, at: Idx) {
        if self.clients[c].lost_legit {
            return;
        }
        // Held somewhere still? Then routing failed to find it: that is a loss to the client.
        self.clients[c].lost = true;
        let roles = self.describe(id);
        let path = self.last_path.clone();
        self.violation(format!(
            "client {c}: acknowledged session {id} answered 404 at node {at} (held by {roles:?}; path {path})"
        ));
    }

    fn check_level(&mut self, c: usize, id: SessionId, at: Idx) {
        let client = &self.clients[c];
        if client.updating.is_some() {
            return;
        }
        let Some(want) = client.level else {
            return;
        };
        let have = self.nodes[usize::from(at)]
            .custody
            .as_ref()
            .and_then(|x| x.session(id))
            .map(|d| (d.log_level, d.next_request));
        if !have.is_some_and(|h| client.level_may_be(h)) {
            self.violation(format!(
                "client {c}: acknowledged log level {want:?} (level, change) of {id} is {have:?} at node {at}"
            ));
        }
    }

    fn attach(&mut self, c: usize, id: SessionId, at: Idx, stream: u32, kind: StreamKind) {
        let generation = self.nodes[usize::from(at)].generation;
        self.nodes[usize::from(at)].readers.insert((id, stream), c);
        let client = &mut self.clients[c];
        client.readers.retain(|r| !r.ended || r.stream == stream);
        match client.reader_mut(stream) {
            Some(r) => r.at = Some((at, generation)),
            None => client.readers.push(Reader {
                stream,
                kind,
                at: Some((at, generation)),
                last: 0,
                ended: false,
            }),
        }
    }

    fn call(&mut self, c: usize, id: SessionId, at: Idx) {
        let calls = self.clients[c].calls;
        let n = self.rng.random_range(1..=3u32);
        let Some(x) = self.nodes[usize::from(at)].custody.as_mut() else {
            return;
        };
        if !x.begin(id) {
            return;
        }
        let Some(stream) = x.open_stream(id, StreamKind::Response) else {
            x.end(id);
            return;
        };
        self.attach(c, id, at, stream, StreamKind::Response);
        let x = self.nodes[usize::from(at)]
            .custody
            .as_mut()
            .expect("custody checked above");
        for k in 0..n {
            x.append(
                id,
                stream,
                Bytes::from(format!("{{\"c\":{c},\"call\":{calls},\"k\":{k}}}")),
            );
        }
        x.finish_stream(id, stream);
        x.end(id);
        self.clients[c].calls += 1;
    }

    fn set_level(&mut self, c: usize, id: SessionId, at: Idx) {
        let v = self.rng.random_range(0..8u8);
        let generation = self.nodes[usize::from(at)].generation;
        if self.watched(id.0) {
            eprintln!(
                "[{:>9.3}s] node {at}: client sets level {v}",
                self.now.as_secs_f64()
            );
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let Some(x) = self.nodes[usize::from(at)].custody.as_mut() else {
            return;
        };
        // A change of value is tagged (client.rs, `Level`); setting the value the session has
        // changes nothing, tag included, so such a change stays one the machine settles
        // without a copy of its own (seed 8832).
        let set = |d: &mut SessionData| {
            if d.log_level != v {
                d.log_level = v;
                d.next_request = tag;
            }
        };
        if let Some(t) = x.update(id, set) {
            let now = x
                .session(id)
                .map_or((v, tag), |d| (d.log_level, d.next_request));
            self.clients[c].updating = Some((at, generation, t, now));
            self.tickets.insert((at, generation, t), c);
        }
    }

    fn open_get(&mut self, c: usize, id: SessionId, at: Idx) {
        let Some(x) = self.nodes[usize::from(at)].custody.as_mut() else {
            return;
        };
        if let Some(stream) = x.open_stream(id, StreamKind::Standalone) {
            self.attach(c, id, at, stream, StreamKind::Standalone);
        }
    }

    /// A reader resumes at `at` with its last event id.
    fn resume(&mut self, c: usize, id: SessionId, at: Idx, stream: u32) {
        self.report.resumes += 1;
        let Some(r) = self.clients[c]
            .readers
            .iter()
            .find(|r| r.stream == stream)
            .cloned()
        else {
            return;
        };
        let Some(x) = self.nodes[usize::from(at)].custody.as_ref() else {
            return;
        };
        let Some(data) = x.session(id) else {
            return;
        };
        let Some(log) = data.stream(stream) else {
            if r.last > 0 {
                self.violation(format!(
                    "client {c}: stream {stream} of {id} is gone at node {at} after the client saw event {}",
                    r.last
                ));
            }
            // Never shown anything: its opening may not have been durable. Drop it.
            self.clients[c].readers.retain(|x| x.stream != stream);
            return;
        };
        let have = log.next_seq().saturating_sub(1);
        if have < r.last {
            self.violation(format!(
                "client {c}: stream {stream} of {id} ends at event {have} at node {at}, the client saw {}",
                r.last
            ));
            return;
        }
        if let Some(seen) = self.clients[c].seen.get(&stream) {
            for (q, ev) in &log.log {
                let Some(h) = seen.get(*q as usize - 1) else {
                    continue;
                };
                if *h != hash(ev) {
                    self.violation(format!(
                        "client {c}: event {q} of stream {stream} of {id} differs at node {at} from what the client saw"
                    ));
                    return;
                }
            }
        }
        let replay = log.replay(r.last);
        if !replay.complete {
            self.violation(format!(
                "client {c}: stream {stream} of {id} lost events after {} (log evicted)",
                r.last
            ));
        }
        self.attach(c, id, at, stream, r.kind);
        for (seq, json) in &replay.events {
            self.deliver(c, at, stream, *seq, json);
        }
        if replay.finished {
            self.nodes[usize::from(at)].readers.remove(&(id, stream));
            if let Some(r) = self.clients[c].reader_mut(stream) {
                r.ended = true;
                r.at = None;
            }
        }
    }

    /// Server-side notifications on some sessions' GET streams (resource updates, logs).
    fn notify_round(&mut self) {
        if self.clients.is_empty() {
            return;
        }
        for i in 0..self.nodes.len() as Idx {
            if !self.live(i) {
                continue;
            }
            for _ in 0..self.cfg.notify_batch {
                let c = self.rng.random_range(0..self.clients.len());
                let Some(id) = self.clients[c].session else {
                    continue;
                };
                let Some(x) = self.nodes[usize::from(i)].custody.as_mut() else {
                    continue;
                };
                let Some(stream) = x.session(id).and_then(|d| d.standalone()) else {
                    continue;
                };
                let n = self.report.events_seen;
                x.append(
                    id,
                    stream,
                    Bytes::from(format!("{{\"notify\":{n},\"node\":{i}}}")),
                );
            }
            self.drain_actions(i);
        }
    }

    // ----- checks --------------------------------------------------------------------------

    /// Invariant 4: at most one owner per epoch among running nodes.
    fn check_owners(&mut self) {
        if let Some(w) = self.cfg.watch.clone() {
            let mut line = Vec::new();
            for (i, n) in self.nodes.iter().enumerate() {
                let Some(c) = n.custody.as_ref().filter(|_| n.running) else {
                    continue;
                };
                for (id, e) in &c.sessions {
                    if id.to_string().starts_with(w.as_str()) {
                        line.push(match &e.role {
                            Role::Owner(o) => format!(
                                "{i}: owner e{} seq {} confirm {} handoff {:?} set {:?} pending {} quorum {} touch {}",
                                o.epoch,
                                o.seq,
                                o.confirm,
                                o.handoff.map(|h| h.to),
                                o.set.iter().map(|t| (t.addr.ip().to_string(), t.acked)).collect::<Vec<_>>(),
                                o.pending.len(),
                                c.members.quorum(),
                                c.in_touch(self.base + self.now)
                            ),
                            Role::Copy(k) => format!("{i}: copy of {} e{} seq {}", k.owner, k.epoch, k.seq),
                        });
                    }
                }
            }
            eprintln!("[{:>9.3}s] state {line:?}", self.now.as_secs_f64());
            if std::env::var("SIM_VIEWS").is_ok() {
                for (i, n) in self.nodes.iter().enumerate() {
                    if let (Some(m), true) = (n.membership.as_ref(), n.running) {
                        let v: Vec<String> = m
                            .view()
                            .iter()
                            .map(|r| {
                                format!("{}#{}:{:?}", r.id.addr.ip(), r.id.generation, r.state)
                            })
                            .collect();
                        eprintln!("      view {i}: {v:?}");
                    }
                }
            }
        }
        let mut owners: Map<SessionId, Vec<(Idx, u32)>> = Map::default();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(c) = n.custody.as_ref().filter(|_| n.running) else {
                continue;
            };
            for (id, e) in &c.sessions {
                // An owner still waiting for a majority to note its claim changes nothing yet.
                if let Role::Owner(o) = &e.role
                    && o.confirm == 0
                {
                    owners.entry(*id).or_default().push((i as Idx, o.epoch));
                }
            }
        }
        let mut bad = Vec::new();
        for (id, list) in owners {
            for (k, a) in list.iter().enumerate() {
                if list[k + 1..].iter().any(|b| b.1 == a.1) {
                    bad.push(format!(
                        "session {id} has two owners at epoch {}: {list:?}",
                        a.1
                    ));
                    break;
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    fn assert_served(&mut self, within: Duration) {
        let start = self.now;
        let mut waiting: Vec<usize> = (0..self.clients.len())
            .filter(|c| {
                let cl = &self.clients[*c];
                cl.acked && !cl.lost && !cl.lost_legit
            })
            .collect();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for c in waiting {
                let Some(id) = self.clients[c].session else {
                    continue;
                };
                match self.find(id) {
                    Found::At(_) => {}
                    Found::Retry => still.push(c),
                    Found::Unknown(x) => self.lost(c, id, x),
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if self.now - start >= within {
                let n = waiting.len();
                let first = self.clients[waiting[0]].session;
                let roles = first.map(|id| self.describe(id)).unwrap_or_default();
                let path = self.last_path.clone();
                self.violation(format!(
                    "{n} sessions not served within {within:?} (first: client {}, session {first:?}: {roles:?}; path {path})",
                    waiting[0]
                ));
                return;
            }
            self.advance(self.now + Duration::from_millis(20));
        }
        self.report.served_within = self.report.served_within.max(self.now - start);
    }

    /// Whether every session has one owner whose replicas hold its latest copy, and no
    /// other copies exist; `None` when so, else what is not.
    fn convergence_gap(&self) -> Option<String> {
        let mut owner_of: Map<SessionId, (Idx, u32, u64, Vec<SocketAddr>)> = Map::default();
        let mut copies: Map<SessionId, Vec<(Idx, SocketAddr, u32, u64)>> = Map::default();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(c) = n.custody.as_ref().filter(|_| n.running) else {
                continue;
            };
            for (id, e) in &c.sessions {
                match &e.role {
                    Role::Owner(o) => {
                        if !o.pending.is_empty() || o.handoff.is_some() {
                            return Some(format!("{id} at node {i} has copies in flight"));
                        }
                        if owner_of
                            .insert(
                                *id,
                                (
                                    i as Idx,
                                    o.epoch,
                                    o.seq,
                                    // A member dropped while gone stays listed, leaving
                                    // and copied nothing, until showing what its copy may
                                    // lack makes the owner announce the drop (an idle
                                    // session may never): it is not a replica. (Its copy,
                                    // if any, is counted below as a copy that should not be.)
                                    o.set
                                        .iter()
                                        .filter(|t| !(t.leaving && t.dropped_below.is_some()))
                                        .map(|t| t.addr)
                                        .collect(),
                                ),
                            )
                            .is_some()
                        {
                            return Some(format!("{id} has two owners"));
                        }
                    }
                    Role::Copy(k) => copies.entry(*id).or_default().push((
                        i as Idx,
                        k.owner.addr,
                        k.epoch,
                        k.seq,
                    )),
                }
            }
        }
        let takers = self
            .nodes
            .iter()
            .filter(|n| n.running && n.custody.as_ref().is_some_and(|c| !c.is_draining()))
            .count();
        let want = self
            .cfg
            .custody
            .replication_factor
            .saturating_sub(1)
            .min(takers.saturating_sub(1));
        for c in &self.clients {
            let Some(id) = c.session.filter(|_| c.acked && !c.lost && !c.lost_legit) else {
                continue;
            };
            if !owner_of.contains_key(&id) {
                return Some(format!("{id} has no owner"));
            }
        }
        for (id, (i, epoch, seq, set)) in &owner_of {
            if set.len() != want {
                return Some(format!(
                    "{id} at node {i} has {} replicas, not {want}",
                    set.len()
                ));
            }
            let held = copies.remove(id).unwrap_or_default();
            for a in set {
                let ok = held
                    .iter()
                    .any(|(j, o, e, s)| addr(*j) == *a && *o == addr(*i) && e == epoch && s == seq);
                if !ok {
                    return Some(format!(
                        "{id}: replica {a} lacks copy {seq} at epoch {epoch}"
                    ));
                }
            }
            if held.len() != set.len() {
                return Some(format!("{id}: copies at {held:?}, replicas {set:?}"));
            }
        }
        copies
            .into_iter()
            .next()
            .map(|(id, held)| format!("copies of {id} without an owner: {held:?}"))
    }

    fn assert_converged(&mut self, within: Duration) {
        let start = self.now;
        while let Some(gap) = self.convergence_gap() {
            if self.now - start >= within {
                self.violation(format!("not converged within {within:?}: {gap}"));
                return;
            }
            self.advance(self.now + Duration::from_millis(100));
        }
        self.report.converged_within = self.report.converged_within.max(self.now - start);
    }

    fn assert_balanced(&mut self, within: Duration, slack: f64) {
        let start = self.now;
        loop {
            let owned: Vec<(Idx, usize)> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.running)
                .filter_map(|(i, n)| n.custody.as_ref().map(|c| (i as Idx, c.owned())))
                .collect();
            let total: usize = owned.iter().map(|(_, n)| n).sum();
            let share = total as f64 / owned.len().max(1) as f64;
            let worst = owned.iter().max_by_key(|(_, n)| *n).copied();
            match worst {
                Some((i, n)) if n as f64 > share * (1.0 + slack) + 1.0 => {
                    if self.now - start >= within {
                        self.violation(format!(
                            "node {i} owns {n} sessions after {within:?}, share {share:.0} (+{:.0} %): {owned:?}",
                            slack * 100.0
                        ));
                        return;
                    }
                }
                _ => return,
            }
            self.advance(self.now + Duration::from_millis(200));
        }
    }

    /// Runs until every node sees every other alive (bounded).
    fn settle(&mut self, within: Duration) {
        let start = self.now;
        while self.now - start < within {
            self.advance(self.now + Duration::from_millis(50));
            let n = self.nodes.iter().filter(|n| n.running).count();
            let all = self.nodes.iter().filter(|n| n.running).all(|x| {
                x.custody
                    .as_ref()
                    .is_some_and(|c| c.members().live().len() == n)
            });
            if all {
                return;
            }
        }
        self.violation(format!("the cluster did not form within {within:?}"));
    }
}

fn short(msg: &crate::wire::CustodyMsg) -> String {
    use crate::wire::CustodyMsg as M;
    match msg {
        M::Replicate(r) => format!(
            "Replicate epoch {} seq {} owner {} full {} handoff {} level {} ({}) streams {:?}",
            r.epoch,
            r.seq,
            r.owner,
            r.full,
            r.handoff,
            r.state.log_level,
            r.state.next_request,
            r.streams
                .iter()
                .map(|s| (s.id, s.next_seq, s.finished, s.events.len()))
                .collect::<Vec<_>>()
        ),
        M::Inquire { id, sessions } => format!("Inquire {id} ({} sessions)", sessions.len()),
        M::Holdings { id, voter, entries } => format!(
            "Holdings {id}{} ({} entries) {:?}",
            if *voter { "" } else { " (not a voter)" },
            entries.len(),
            entries.first()
        ),
        M::Dropped(notes) => format!("Dropped ({} notes)", notes.len()),
        M::DropsNoted(entries) => format!("DropsNoted ({} entries)", entries.len()),
        m => format!("{m:?}"),
    }
}
