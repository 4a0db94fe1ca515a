//! The sans-IO side of foca's `Runtime`: timers, outgoing packets and events
//! are queued here and drained by the caller.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{Notification, Timer};

use super::NodeId;

/// A gossip packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination member (its `addr` is where the packet goes).
    pub to: NodeId,
    /// The encoded packet; at most `Config::max_packet_size` bytes.
    pub data: Bytes,
}

/// A change in the membership, for the layers above (ownership, replication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member became active (alive or suspect).
    Up(NodeId),
    /// A member was declared down (or left).
    Down(NodeId),
    /// A member came back under a newer identity (restart or rejoin).
    Renamed {
        /// The identity it had.
        old: NodeId,
        /// The identity it has now.
        new: NodeId,
    },
    /// This node was declared down and rejoined under a new generation.
    Rejoined(NodeId),
    /// This node is known by at least one active member.
    Active,
    /// Every other member is down or gone.
    Idle,
    /// This node was declared down and could not renew its identity.
    Defunct,
}

/// Queues filled by foca through the `Runtime` trait.
#[derive(Debug)]
pub(crate) struct Queues {
    pub(crate) now: Instant,
    seq: u64,
    timers: BTreeMap<(Instant, u64), Timer<NodeId>>,
    pub(crate) outbox: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
}

impl Queues {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            now,
            seq: 0,
            timers: BTreeMap::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now`, with
    /// the instant it was due.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer<NodeId>)> {
        let first = *self.timers.keys().next()?;
        if first.0 > now {
            return None;
        }
        self.timers.remove(&first).map(|t| (first.0, t))
    }

    pub(crate) fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}

impl foca::Runtime<NodeId> for Queues {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        let event = match notification {
            Notification::MemberUp(id) => Event::Up(*id),
            Notification::MemberDown(id) => Event::Down(*id),
            Notification::Rename(old, new) => Event::Renamed {
                old: *old,
                new: *new,
            },
            Notification::Rejoin(id) => Event::Rejoined(*id),
            Notification::Active => Event::Active,
            Notification::Idle => Event::Idle,
            Notification::Defunct => Event::Defunct,
        };
        self.events.push_back(event);
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.outbox.push_back(Transmit {
            to,
            data: Bytes::copy_from_slice(data),
        });
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.seq += 1;
        self.timers.insert((self.now + after, self.seq), event);
    }
}
