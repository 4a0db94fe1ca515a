//! The simulated network: packets in flight ordered by arrival time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

/// A node's index in the simulation.
pub type Idx = u16;

/// One direction of a link between two nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Probability in [0, 1] that a packet is lost.
    pub drop: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly in `[0, jitter]` per packet.
    pub jitter: Duration,
}

impl Default for Link {
    /// A LAN: 100 µs one way, up to 100 µs jitter, no loss.
    fn default() -> Self {
        Self {
            drop: 0.0,
            delay: Duration::from_micros(100),
            jitter: Duration::from_micros(100),
        }
    }
}

/// Packets in flight between simulated nodes.
#[derive(Debug)]
pub struct Network {
    rng: SmallRng,
    seq: u64,
    default_link: Link,
    links: HashMap<(Idx, Idx), Link>,
    removed: HashSet<(Idx, Idx)>,
    in_flight: BinaryHeap<Reverse<(Duration, u64, Idx, Idx)>>,
    payloads: HashMap<u64, Bytes>,
    /// Packets handed to the network.
    pub sent: u64,
    /// Packets lost to `drop` or a removed link.
    pub dropped: u64,
}

impl Network {
    /// A network whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
            default_link: Link::default(),
            links: HashMap::new(),
            removed: HashSet::new(),
            in_flight: BinaryHeap::new(),
            payloads: HashMap::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// Sets the link used where no per-link setting exists.
    pub fn set_default_link(&mut self, link: Link) {
        self.default_link = link;
    }

    /// Sets one direction of one link.
    pub fn set_link(&mut self, from: Idx, to: Idx, link: Link) {
        self.links.insert((from, to), link);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn remove_link(&mut self, a: Idx, b: Idx) {
        self.removed.insert((a, b));
        self.removed.insert((b, a));
    }

    /// Restores every removed link.
    pub fn heal(&mut self) {
        self.removed.clear();
    }

    /// Queues a packet sent at `now`; it may be lost.
    pub fn send(&mut self, now: Duration, from: Idx, to: Idx, data: Bytes) {
        self.sent += 1;
        let link = self
            .links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.default_link);
        if self.removed.contains(&(from, to))
            || (link.drop > 0.0 && self.rng.random_bool(link.drop))
        {
            self.dropped += 1;
            return;
        }
        let jitter = if link.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(link.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.random_range(0..=nanos))
        };
        self.seq += 1;
        self.in_flight
            .push(Reverse((now + link.delay + jitter, self.seq, from, to)));
        self.payloads.insert(self.seq, data);
    }

    /// Puts a packet back to arrive at `at` (its receiver was stalled).
    pub fn requeue(&mut self, at: Duration, from: Idx, to: Idx, data: Bytes) {
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, from, to)));
        self.payloads.insert(self.seq, data);
    }

    /// When the next packet arrives.
    pub fn next_arrival(&self) -> Option<Duration> {
        self.in_flight.peek().map(|Reverse((at, ..))| *at)
    }

    /// The next packet arriving at or before `now`: (from, to, data).
    pub fn pop_due(&mut self, now: Duration) -> Option<(Idx, Idx, Bytes)> {
        let Reverse((at, seq, from, to)) = *self.in_flight.peek()?;
        if at > now {
            return None;
        }
        self.in_flight.pop();
        let data = self.payloads.remove(&seq)?;
        Some((from, to, data))
    }
}
