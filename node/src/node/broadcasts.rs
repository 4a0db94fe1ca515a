//! The queue of a node's change broadcasts and their pace ([`SESSIONS_PER_SEC`], [`STEP`]):
//! plain data, used by `announce.rs` (which says why a broadcast is paced).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

use crate::content::change::ChangeEvent;

/// How many sessions a broadcast delivers to per second on one node, at most: 10K sessions
/// take 5 s, 14K (100K on 7 nodes) 7 s. What bounds it is the machine, not the node: on 2
/// shared cores the nodes' broadcasts run together, and at 7 nodes × 10K sessions 5,000/s
/// still saturated it (hold p99 1.9 s, like the unpaced 1.7 s) where 2,000/s gave p95 87 ms,
/// p99 651 ms. At 4 nodes × 10K: unpaced p99 664 ms, 10,000/s 76 ms, 5,000/s 39 ms
/// (`docs/BENCHMARKS.md`, "Change broadcast under load").
pub const SESSIONS_PER_SEC: u64 = 2_000;

/// A broadcast step visits whole registry shards until it has delivered to at least this
/// many sessions, then waits. Only deliveries count: looking at a session that does not
/// take the event (a resource update it did not subscribe to, no GET stream) is a lock and
/// a comparison, so an update for a few subscribers goes out at once, not at the pace of the
/// whole registry.
pub const STEP: usize = 256;

/// The registry's shards, visited one by one (`Registry::for_each_in_slice` with this count
/// visits exactly one shard per slice).
pub(super) const SHARDS: u32 = crate::spread::MAX_SLICES;

/// How long a broadcast waits after a step that delivered to `delivered` sessions.
pub fn pause_after(delivered: usize) -> Duration {
    Duration::from_micros(delivered as u64 * 1_000_000 / SESSIONS_PER_SEC)
}

/// The announcements waiting to be broadcast, and whether a broadcast is under way.
#[derive(Debug, Default)]
pub struct Broadcasts {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<ChangeEvent>,
    running: bool,
}

impl Broadcasts {
    /// Queues `event`; `true` when no broadcast is under way (the caller then runs it, from
    /// [`Broadcasts::next`]), `false` when the one under way will get to it.
    pub(super) fn push(&self, event: ChangeEvent) -> bool {
        let mut q = self.queue.lock();
        if !q.pending.contains(&event) {
            q.pending.push_back(event);
        }
        !std::mem::replace(&mut q.running, true)
    }

    /// The next announcement to broadcast; `None` ends the broadcast under way (the next
    /// [`Broadcasts::push`] returns `true` again).
    pub(super) fn next(&self) -> Option<ChangeEvent> {
        let mut q = self.queue.lock();
        let next = q.pending.pop_front();
        if next.is_none() {
            q.running = false;
        }
        next
    }
}

/// One announcement on its way through the registry.
#[derive(Debug)]
pub struct Job {
    pub(super) event: ChangeEvent,
    /// The notification, serialized once for every session.
    pub(super) json: Vec<u8>,
    /// The next registry shard to visit.
    pub(super) shard: u32,
}

impl Job {
    pub(super) fn new(event: ChangeEvent) -> Self {
        let (method, params) = crate::protocol::notify::change_message(&event);
        let json = crate::jsonrpc::notification(method, &params);
        Self {
            event,
            json,
            shard: 0,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.shard >= SHARDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_duplicate_is_dropped_and_the_running_flag_follows_the_queue() {
        let b = Broadcasts::default();
        assert!(
            b.push(ChangeEvent::ToolsListChanged),
            "idle: the caller runs it"
        );
        assert_eq!(b.next(), Some(ChangeEvent::ToolsListChanged));
        // Under way: the same change again must be broadcast again (sessions already
        // visited heard of the earlier one only) — but once, however often it is queued.
        assert!(!b.push(ChangeEvent::ToolsListChanged));
        assert!(!b.push(ChangeEvent::PromptsListChanged));
        assert!(!b.push(ChangeEvent::ToolsListChanged));
        assert_eq!(b.next(), Some(ChangeEvent::ToolsListChanged));
        assert_eq!(b.next(), Some(ChangeEvent::PromptsListChanged));
        assert_eq!(b.next(), None);
        assert!(
            b.push(ChangeEvent::ToolsListChanged),
            "idle again after None"
        );
    }

    #[test]
    fn the_pause_follows_the_rate() {
        assert_eq!(pause_after(0), Duration::ZERO);
        assert_eq!(
            pause_after(SESSIONS_PER_SEC as usize),
            Duration::from_secs(1)
        );
        assert_eq!(pause_after(STEP) * 2, pause_after(2 * STEP));
    }
}
