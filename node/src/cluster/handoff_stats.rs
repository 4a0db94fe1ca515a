//! Counters of this node's hand-offs (drain and rebalancing), read by a drain's progress log
//! (`node/drain.rs`): how many were sent, acknowledged, given up, refused by a full link or
//! held back by a busy one, and how long each acknowledgement took. The time a hand-off waits
//! for its acknowledgement is the time its session is frozen here, and a client reopening its
//! stream in that time is told 503 (issue 11: at 100K, 9,000-12,000 hand-offs were still
//! unacknowledged 5 s into each drain of a rolling restart).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

pub use crate::session::layer::HandoffFigures;

/// Acknowledgement times kept between two reads (the rest are counted, not kept).
const KEPT_ACK_TIMES: usize = 100_000;

/// The counters (all since the node started).
#[derive(Debug, Default)]
pub(super) struct HandoffStats {
    sent: AtomicU64,
    acked: AtomicU64,
    gave_up: AtomicU64,
    refused: AtomicU64,
    held_back: AtomicU64,
    /// Acknowledgement times in ms since the last [`HandoffStats::take_ack_ms`].
    ack_ms: Mutex<Vec<u32>>,
}

impl HandoffStats {
    pub(super) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn held_back(&self, n: u64) {
        self.held_back.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn acked(&self, took: Duration) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.ack_ms.lock();
        if kept.len() < KEPT_ACK_TIMES {
            kept.push(u32::try_from(took.as_millis()).unwrap_or(u32::MAX));
        }
    }

    /// The counters, and the acknowledgement times since the last call (count, p50, p99,
    /// max), which it clears.
    pub(super) fn read(&self) -> HandoffFigures {
        let mut kept = std::mem::take(&mut *self.ack_ms.lock());
        kept.sort_unstable();
        let at = |q: f64| {
            kept.get(((kept.len() as f64 * q) as usize).min(kept.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        HandoffFigures {
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            held_back: self.held_back.load(Ordering::Relaxed),
            ack_ms: (
                kept.len(),
                at(0.5),
                at(0.99),
                kept.last().copied().unwrap_or(0),
            ),
            ..HandoffFigures::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_reports_the_acknowledgement_times_since_the_last_one() {
        let s = HandoffStats::default();
        for ms in 1..=100 {
            s.sent();
            s.acked(Duration::from_millis(ms));
        }
        s.gave_up();
        let f = s.read();
        assert_eq!((f.sent, f.acked, f.gave_up), (100, 100, 1));
        assert_eq!(f.ack_ms, (100, 51, 100, 100));
        let f = s.read();
        assert_eq!(f.acked, 100, "counters stay");
        assert_eq!(f.ack_ms, (0, 0, 0, 0), "times are taken");
    }
}
