//! The data links between simulated nodes, as the QUIC transport behaves: one FIFO per
//! ordered pair, a delay with jitter, and loss only when a connection fails (everything in
//! flight on it). Partitions cut pairs. Faults the real transport does not have —
//! duplication, reordering, loss of single messages — can be switched on to show the session
//! layer does not depend on their absence for safety.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, DefaultHasher};

type Fixed = BuildHasherDefault<DefaultHasher>;
use std::time::Duration;

use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use crate::wire::CustodyMsg;

/// A node's index.
pub type Idx = u16;

/// Fault rates on every link, per message.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability a message is lost alone.
    pub drop: f64,
    /// Probability a message arrives twice.
    pub duplicate: f64,
    /// Probability a message overtakes the ones before it.
    pub reorder: f64,
}

/// Messages in flight.
#[derive(Debug)]
pub struct Links {
    rng: SmallRng,
    seq: u64,
    /// One-way delay.
    pub delay: Duration,
    /// Extra delay drawn in `[0, jitter]`.
    pub jitter: Duration,
    /// Fault rates.
    pub faults: Faults,
    cut: HashSet<(Idx, Idx), Fixed>,
    last_arrival: HashMap<(Idx, Idx), Duration, Fixed>,
    in_flight: BinaryHeap<Reverse<(Duration, u64, Idx, Idx)>>,
    payloads: HashMap<u64, CustodyMsg, Fixed>,
    /// Messages handed to the links.
    pub sent: u64,
    /// Messages lost (cut links, failed connections, faults).
    pub lost: u64,
}

impl Links {
    /// Links whose random choices follow `seed`.
    pub fn new(seed: u64, delay: Duration, jitter: Duration) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed ^ 0x11_4e_4b),
            seq: 0,
            delay,
            jitter,
            faults: Faults::default(),
            cut: HashSet::default(),
            last_arrival: HashMap::default(),
            in_flight: BinaryHeap::new(),
            payloads: HashMap::default(),
            sent: 0,
            lost: 0,
        }
    }

    /// Cuts both directions between `a` and `b`; what is in flight between them is lost.
    pub fn cut(&mut self, a: Idx, b: Idx) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
        self.fail(a, b);
    }

    /// Restores every cut pair.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether `a` can reach `b`.
    pub fn up(&self, a: Idx, b: Idx) -> bool {
        !self.cut.contains(&(a, b))
    }

    /// A connection between `a` and `b` fails: what is in flight both ways is lost.
    pub fn fail(&mut self, a: Idx, b: Idx) {
        let mut keep = BinaryHeap::new();
        for Reverse(e) in self.in_flight.drain() {
            let (_, seq, from, to) = e;
            if (from == a && to == b) || (from == b && to == a) {
                self.payloads.remove(&seq);
                self.lost += 1;
            } else {
                keep.push(Reverse(e));
            }
        }
        self.in_flight = keep;
    }

    /// Every connection of `a` fails (its process died or restarted).
    pub fn fail_all(&mut self, a: Idx) {
        let mut keep = BinaryHeap::new();
        for Reverse(e) in self.in_flight.drain() {
            let (_, seq, from, to) = e;
            if from == a || to == a {
                self.payloads.remove(&seq);
                self.lost += 1;
            } else {
                keep.push(Reverse(e));
            }
        }
        self.in_flight = keep;
        self.last_arrival.retain(|(f, t), _| *f != a && *t != a);
    }

    /// Sends a message at `now`.
    pub fn send(&mut self, now: Duration, from: Idx, to: Idx, msg: CustodyMsg) {
        self.sent += 1;
        if self.cut.contains(&(from, to)) {
            self.lost += 1;
            return;
        }
        let f = self.faults;
        if f.drop > 0.0 && self.rng.random_bool(f.drop) {
            self.lost += 1;
            return;
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.random_range(0..=self.jitter.as_nanos() as u64))
        };
        let mut at = now + self.delay + jitter;
        let reorder = f.reorder > 0.0 && self.rng.random_bool(f.reorder);
        if !reorder {
            let last = self.last_arrival.entry((from, to)).or_default();
            at = at.max(*last);
            *last = at;
        }
        let dup = f.duplicate > 0.0 && self.rng.random_bool(f.duplicate);
        if dup {
            self.push(at + self.delay, from, to, msg.clone());
        }
        self.push(at, from, to, msg);
    }

    fn push(&mut self, at: Duration, from: Idx, to: Idx, msg: CustodyMsg) {
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, from, to)));
        self.payloads.insert(self.seq, msg);
    }

    /// Puts a message back to arrive at `at` (its receiver is stalled), after the ones
    /// already put back.
    pub fn requeue(&mut self, at: Duration, from: Idx, to: Idx, msg: CustodyMsg) {
        self.push(at, from, to, msg);
    }

    /// When the next message arrives.
    pub fn next_arrival(&self) -> Option<Duration> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    /// The next message arriving at or before `now`: (from, to, message).
    pub fn pop_due(&mut self, now: Duration) -> Option<(Idx, Idx, CustodyMsg)> {
        let Reverse((at, seq, from, to)) = *self.in_flight.peek()?;
        if at > now {
            return None;
        }
        self.in_flight.pop();
        let msg = self.payloads.remove(&seq)?;
        Some((from, to, msg))
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
