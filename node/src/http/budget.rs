//! The node-wide budget for buffered request bytes (`limits.maxBufferedRequestBytes`): every
//! buffer a connection grows to hold a request head or body is counted here first (and the
//! bytes of a pipelined request kept while an answer is written or streams), and a
//! request that would take the node past the budget is answered 503 + `Retry-After` before
//! its body is read. Bytes are given back by [`BudgetGuard`]'s drop, so a connection that
//! ends in any way (answered, timed out, reset, panicked) cannot keep them.
//!
//! What is counted is what the buffers grow to (their capacity as requested), so the figure is
//! the request memory held, give or take the allocator's rounding; `mcp_buffered_request_bytes`
//! shows it.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// Bytes held by request buffers across all connections of a node, and their limit.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    limit: u64,
    gauge: Gauge,
}

/// The budget would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffered request bytes would exceed the node's budget")]
pub struct Exhausted;

impl BodyBudget {
    /// A budget of `limit` bytes; `gauge` follows what is in use.
    pub fn new(limit: u64, gauge: Gauge) -> Self {
        Self {
            used: AtomicU64::new(0),
            limit,
            gauge,
        }
    }

    /// Bytes in use now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// A guard holding nothing yet.
    pub fn guard(&self) -> BudgetGuard<'_> {
        BudgetGuard {
            budget: self,
            held: 0,
        }
    }

    fn try_take(&self, n: u64) -> Result<(), Exhausted> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .map_err(|_| Exhausted)?;
        self.gauge.inc_by(n as i64);
        Ok(())
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.gauge.dec_by(n as i64);
    }
}

/// The bytes one request holds; given back on drop.
#[derive(Debug)]
pub struct BudgetGuard<'a> {
    budget: &'a BodyBudget,
    held: u64,
}

impl BudgetGuard<'_> {
    /// Makes this guard hold at least `total` bytes, or fails leaving it as it was.
    pub fn grow_to(&mut self, total: usize) -> Result<(), Exhausted> {
        let total = total as u64;
        if total > self.held {
            self.budget.try_take(total - self.held)?;
            self.held = total;
        }
        Ok(())
    }

    /// Makes this guard hold at most `total` bytes, giving back the rest.
    pub fn shrink_to(&mut self, total: usize) {
        let total = total as u64;
        if total < self.held {
            self.budget.give_back(self.held - total);
            self.held = total;
        }
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_take_within_the_limit_and_give_back_on_drop() {
        let budget = BodyBudget::new(100, Gauge::default());
        let mut a = budget.guard();
        a.grow_to(60).expect("fits");
        a.grow_to(40).expect("already held");
        assert_eq!(a.held(), 60);
        let mut b = budget.guard();
        assert_eq!(b.grow_to(41), Err(Exhausted));
        assert_eq!(b.held(), 0, "a refused growth takes nothing");
        b.grow_to(40).expect("exactly the rest");
        assert_eq!(budget.used(), 100);
        a.shrink_to(70);
        assert_eq!(a.held(), 60, "shrinking never takes more");
        a.shrink_to(10);
        assert_eq!((a.held(), budget.used()), (10, 50));
        drop(a);
        assert_eq!(budget.used(), 40);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = b;
            panic!("request task failed");
        }));
        assert!(caught.is_err());
        assert_eq!(budget.used(), 0, "a panic gives the bytes back too");
        assert_eq!(budget.guard().grow_to(usize::MAX), Err(Exhausted));
        assert_eq!(budget.used(), 0);
    }
}
