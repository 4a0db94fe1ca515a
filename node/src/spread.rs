//! Periodic work over every stream, spread over its period: the items are cut into slices
//! and each tick visits one, so a node holding 14K streams writes ~220 keep-alives every
//! half second instead of 14K at once. A burst of that size kept both cores busy and
//! delayed every request behind it (at 100K sessions, `tools/call` p99 jumped to seconds once
//! per keep-alive period), and every node's burst reached the clients together.
//!
//! An item always falls in the same slice, so it is visited exactly once per period.

use std::time::Duration;

/// Ticks are at least this far apart, whatever the period (an idle node wakes at most a few
/// times a second for this).
const MIN_TICK: Duration = Duration::from_millis(250);

/// At most this many slices (the session registry has 64 shards; more slices would leave
/// some empty).
pub const MAX_SLICES: u32 = 64;

/// Which slice of the items the next tick visits.
#[derive(Debug, Clone)]
pub struct Slices {
    count: u32,
    next: u32,
    tick: Duration,
}

impl Slices {
    /// Slices for work done once per `period` (at least one slice; ticks at least
    /// `MIN_TICK` apart unless the period itself is shorter).
    pub fn over(period: Duration) -> Self {
        let by_tick = (period.as_millis() / MIN_TICK.as_millis()).max(1);
        let count = u32::try_from(by_tick).unwrap_or(MAX_SLICES).min(MAX_SLICES);
        Self {
            count,
            next: 0,
            tick: period / count,
        }
    }

    /// How often to call [`Slices::advance`].
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// How many slices there are.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The slice to visit now; the next call returns the one after it.
    pub fn advance(&mut self) -> u32 {
        let slice = self.next;
        self.next = (self.next + 1) % self.count;
        slice
    }
}

/// Whether item number `n` (a shard index, a request id) belongs to `slice` of `count`.
pub fn in_slice(n: u64, slice: u32, count: u32) -> bool {
    count <= 1 || n % u64::from(count) == u64::from(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_visited_once_per_period() {
        for period_ms in [1_000u64, 15_000, 30_000, 86_400_000] {
            let mut s = Slices::over(Duration::from_millis(period_ms));
            let per_period: Vec<u32> = (0..s.count()).map(|_| s.advance()).collect();
            for item in 0..1_000u64 {
                let visits = per_period
                    .iter()
                    .filter(|&&slice| in_slice(item, slice, s.count()))
                    .count();
                assert_eq!(visits, 1, "item {item}, period {period_ms} ms");
            }
            assert_eq!(
                s.tick() * s.count(),
                Duration::from_millis(period_ms),
                "the ticks of a period add up to it"
            );
        }
    }

    #[test]
    fn ticks_are_bounded_below_and_slices_above() {
        let s = Slices::over(Duration::from_secs(30));
        assert_eq!(s.count(), MAX_SLICES);
        assert!(s.tick() >= MIN_TICK, "{:?}", s.tick());
        let s = Slices::over(Duration::from_secs(1));
        assert_eq!((s.count(), s.tick()), (4, MIN_TICK));
        let s = Slices::over(Duration::from_millis(100));
        assert_eq!((s.count(), s.tick()), (1, Duration::from_millis(100)));
    }
}
