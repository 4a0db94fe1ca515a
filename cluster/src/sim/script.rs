//! The scripted simulator: nodes running [`Membership`] over a [`Network`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::net::{Idx, Link, Network};
use crate::membership::{Config, Event, MemberState, Membership, NodeId, NodeMeta, Observation};

/// What a membership test script can do.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Start node `node` and announce it to `seeds`.
    AddNode {
        /// Its index (its address is derived from it).
        node: Idx,
        /// Nodes it announces itself to.
        seeds: Vec<Idx>,
    },
    /// Stop a node abruptly: it sends and receives nothing more.
    Kill(Idx),
    /// Start a killed node again at the same address with a higher
    /// generation (a restarted process), announcing to its old seeds.
    Restart(Idx),
    /// Leave gracefully (then stop).
    Leave(Idx),
    /// Freeze a node (a stalled or CPU-starved process) for a while: it
    /// handles no packet and no timer; packets wait for it, as in a socket
    /// buffer, and its timers fire late.
    Stall {
        /// The node.
        node: Idx,
        /// For how long.
        duration: Duration,
    },
    /// Cut every link between the two groups.
    Partition(Vec<Idx>, Vec<Idx>),
    /// Restore every cut link.
    Heal,
    /// Change the link every pair uses (loss, delay, jitter).
    SetDefaultLink(Link),
    /// Change every link to and from one node (a slow host, a congested NIC).
    SetNodeLinks {
        /// The node.
        node: Idx,
        /// The link it gets in both directions with every other node.
        link: Link,
    },
    /// Let virtual time pass.
    Wait(Duration),
    /// Every running node other than `target` sees `target` as `expect`,
    /// within `within` of virtual time from now.
    AssertAllSee {
        /// The node observed.
        target: Idx,
        /// The state expected.
        expect: Expect,
        /// The bound.
        within: Duration,
    },
    /// `observer` sees `target` as `expect` within `within`.
    AssertSee {
        /// The node whose view is checked.
        observer: Idx,
        /// The node observed.
        target: Idx,
        /// The state expected.
        expect: Expect,
        /// The bound.
        within: Duration,
    },
    /// Every running node sees every running node alive with its metadata,
    /// and every stopped node down or gone, within `within`.
    AssertConverged {
        /// The bound.
        within: Duration,
    },
}

/// An expected state in [`Operation::AssertAllSee`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Alive under its current generation.
    Alive,
    /// Down or forgotten (no live row for its address).
    Down,
}

/// How long an assertion took to hold, in virtual time.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The operation, as `Debug` prints it.
    pub op: String,
    /// Virtual time from the assertion's start until it held.
    pub took: Duration,
}

#[derive(Debug)]
struct SimNode {
    membership: Membership,
    running: bool,
    seeds: Vec<Idx>,
    stalled_until: Duration,
}

/// A simulated cluster: nodes, network and virtual clock.
#[derive(Debug)]
pub struct Sim {
    base: Instant,
    now: Duration,
    config: Config,
    seed: u64,
    nodes: BTreeMap<Idx, SimNode>,
    /// The network (for loss settings and packet counters).
    pub net: Network,
    /// Every `Down` event: (virtual time, observer, member declared down).
    pub downs: Vec<(Duration, Idx, NodeId)>,
    /// Every time a node learned it was declared down and rejoined: (virtual time, node).
    pub rejoins: Vec<(Duration, Idx)>,
    /// Suspicions raised (a node's probe of a member failed): (virtual time, observer).
    pub suspicions: Vec<(Duration, Idx)>,
}

/// The simulated address of node `i`.
pub fn addr(i: Idx) -> SocketAddr {
    let [hi, lo] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, 0, hi, lo), 7000))
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

/// Resolution of assertion polling, in virtual time.
const TICK: Duration = Duration::from_millis(1);

impl Sim {
    /// An empty cluster whose nodes use `config`; `seed` fixes every random choice.
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            base: Instant::now(),
            now: Duration::ZERO,
            config,
            seed,
            nodes: BTreeMap::new(),
            net: Network::new(seed),
            downs: Vec::new(),
            rejoins: Vec::new(),
            suspicions: Vec::new(),
        }
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Node `i`'s membership, if it was ever added.
    pub fn node(&self, i: Idx) -> Option<&Membership> {
        self.nodes.get(&i).map(|n| &n.membership)
    }

    /// Runs `ops` in order; the outcome of each assertion, or the first that failed.
    pub fn run(&mut self, ops: &[Operation]) -> Result<Vec<Outcome>, String> {
        let mut outcomes = Vec::new();
        for op in ops {
            if let Some(took) = self.apply(op)? {
                outcomes.push(Outcome {
                    op: format!("{op:?}"),
                    took,
                });
            }
        }
        Ok(outcomes)
    }

    fn apply(&mut self, op: &Operation) -> Result<Option<Duration>, String> {
        match op {
            Operation::AddNode { node, seeds } => {
                self.start(*node, seeds.clone(), 1 + self.now.as_millis() as u64)?
            }
            Operation::Kill(i) => self.running(*i)?.running = false,
            Operation::Restart(i) => {
                let (seeds, generation) = {
                    let n = self.nodes.get(i).ok_or("restart of unknown node")?;
                    (n.seeds.clone(), n.membership.id().generation + 1_000_000)
                };
                self.start(*i, seeds, generation)?;
            }
            Operation::Leave(i) => {
                let at = self.instant();
                let n = self.running(*i)?;
                n.membership.leave(at).map_err(|e| e.to_string())?;
                self.flush(*i);
                self.running(*i)?.running = false;
            }
            Operation::Stall { node, duration } => {
                let until = self.now + *duration;
                self.running(*node)?.stalled_until = until;
            }
            Operation::Partition(a, b) => {
                for x in a {
                    for y in b {
                        self.net.remove_link(*x, *y);
                    }
                }
            }
            Operation::Heal => self.net.heal(),
            Operation::SetDefaultLink(link) => self.net.set_default_link(*link),
            Operation::SetNodeLinks { node, link } => {
                let others: Vec<Idx> = self.nodes.keys().copied().filter(|i| i != node).collect();
                for o in others {
                    self.net.set_link(*node, o, *link);
                    self.net.set_link(o, *node, *link);
                }
            }
            Operation::Wait(d) => self.advance(self.now + *d),
            Operation::AssertAllSee {
                target,
                expect,
                within,
            } => {
                let (t, e) = (*target, *expect);
                return self
                    .wait_for(*within, |s| s.all_see(t, e))
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "{op:?} did not hold at {:?}: {}",
                            self.now,
                            self.describe(t)
                        )
                    });
            }
            Operation::AssertSee {
                observer,
                target,
                expect,
                within,
            } => {
                let (o, t, e) = (*observer, *target, *expect);
                let holds =
                    move |s: &Self| s.nodes.get(&o).is_some_and(|n| s.sees(&n.membership, t, e));
                return self.wait_for(*within, holds).map(Some).ok_or_else(|| {
                    format!(
                        "{op:?} did not hold at {:?}: {}",
                        self.now,
                        self.describe(t)
                    )
                });
            }
            Operation::AssertConverged { within } => {
                return self
                    .wait_for(*within, Self::converged)
                    .map(Some)
                    .ok_or_else(|| format!("{op:?} did not hold at {:?}", self.now));
            }
        }
        Ok(None)
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn running(&mut self, i: Idx) -> Result<&mut SimNode, String> {
        self.nodes
            .get_mut(&i)
            .filter(|n| n.running)
            .ok_or_else(|| format!("node {i} is not running"))
    }

    fn start(&mut self, i: Idx, seeds: Vec<Idx>, generation: u64) -> Result<(), String> {
        let meta = NodeMeta {
            name: format!("node-{i}"),
            connections: u64::from(i),
            sessions: u64::from(i) * 10,
            draining: false,
            address: String::new(),
        };
        let id = NodeId::new(addr(i), generation);
        let seed = self.seed ^ (u64::from(i) << 32) ^ generation;
        let mut m = Membership::new(id, meta, self.config.clone(), seed, self.instant())
            .map_err(|e| e.to_string())?;
        m.join(seeds.iter().map(|s| addr(*s)), self.instant())
            .map_err(|e| e.to_string())?;
        self.nodes.insert(
            i,
            SimNode {
                membership: m,
                running: true,
                seeds,
                stalled_until: Duration::ZERO,
            },
        );
        self.flush(i);
        Ok(())
    }

    /// Moves node `i`'s packets to the network and records its events.
    fn flush(&mut self, i: Idx) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(&i) else {
            return;
        };
        while let Some(t) = n.membership.poll_transmit() {
            if let Some(to) = idx(t.to.addr) {
                self.net.send(now, i, to, t.data);
            }
        }
        while let Some(e) = n.membership.poll_event() {
            match e {
                Event::Down(id) => self.downs.push((now, i, id)),
                Event::Rejoined(_) => self.rejoins.push((now, i)),
                _ => {}
            }
        }
        while let Some(o) = n.membership.poll_observation() {
            if let Observation::Suspected(_) = o {
                self.suspicions.push((now, i));
            }
        }
    }

    /// Runs every packet and timer up to `until`.
    fn advance(&mut self, until: Duration) {
        loop {
            let next_timer = self
                .nodes
                .values()
                .filter(|n| n.running)
                .map(|n| {
                    n.membership
                        .poll_timeout()
                        .saturating_duration_since(self.base)
                        .max(n.stalled_until)
                })
                .min();
            let next = match (next_timer, self.net.next_arrival()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let at = self.instant();
            while let Some((from, to, data)) = self.net.pop_due(self.now) {
                if let Some(until) = self
                    .nodes
                    .get(&to)
                    .map(|n| n.stalled_until)
                    .filter(|u| *u > self.now)
                {
                    self.net.requeue(until, from, to, data);
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&to).filter(|n| n.running) {
                    // Refused packets (from a down member, stale) are normal.
                    let _ = n.membership.handle_packet(&data, at);
                    self.flush(to);
                }
            }
            let due: Vec<Idx> = self
                .nodes
                .iter()
                .filter(|(_, n)| {
                    n.running && n.stalled_until <= self.now && n.membership.poll_timeout() <= at
                })
                .map(|(i, _)| *i)
                .collect();
            for i in due {
                if let Some(n) = self.nodes.get_mut(&i) {
                    let _ = n.membership.handle_timeout(at);
                }
                self.flush(i);
            }
        }
        self.now = self.now.max(until);
    }

    fn wait_for(&mut self, within: Duration, cond: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = self.now;
        loop {
            if cond(self) {
                return Some(self.now - start);
            }
            if self.now - start >= within {
                return None;
            }
            self.advance(self.now + TICK);
        }
    }

    fn sees(&self, observer: &Membership, target: Idx, expect: Expect) -> bool {
        let Some(t) = self.nodes.get(&target) else {
            return expect == Expect::Down;
        };
        let want = t.membership.id();
        let view = observer.view();
        match expect {
            Expect::Alive => view
                .iter()
                .any(|r| r.id == want && r.state == MemberState::Alive),
            Expect::Down => !view
                .iter()
                .any(|r| r.id.addr == want.addr && r.state.is_live()),
        }
    }

    fn all_see(&self, target: Idx, expect: Expect) -> bool {
        self.nodes
            .iter()
            .filter(|(i, n)| n.running && **i != target)
            .all(|(_, n)| self.sees(&n.membership, target, expect))
    }

    fn converged(&self) -> bool {
        self.nodes.iter().filter(|(_, n)| n.running).all(|(oi, o)| {
            self.nodes
                .iter()
                .filter(|(ti, _)| *ti != oi)
                .all(|(ti, t)| {
                    if !t.running {
                        return self.sees(&o.membership, *ti, Expect::Down);
                    }
                    let want = t.membership.id();
                    o.membership
                        .view()
                        .iter()
                        .any(|r| r.id == want && r.state == MemberState::Alive && r.meta.is_some())
                })
        })
    }

    fn describe(&self, target: Idx) -> String {
        let addr = addr(target);
        let rows: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.running)
            .map(|(i, n)| {
                let state = n
                    .membership
                    .view()
                    .into_iter()
                    .find(|r| r.id.addr == addr)
                    .map(|r| (r.id, r.state));
                format!("{i}:{state:?}")
            })
            .collect();
        rows.join(" ")
    }
}
