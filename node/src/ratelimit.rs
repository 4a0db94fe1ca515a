//! A token bucket small enough to live inside every session record (8 bytes).

/// Per-session token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    last_ms: u32,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn full(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: burst as f32,
            last_ms: now_ms as u32,
        }
    }

    /// Takes one token if available (refilling first); `false` means rate limited.
    pub fn try_take(&mut self, rate_per_sec: f64, burst: u32, now_ms: u64) -> bool {
        let now = now_ms as u32;
        let elapsed_ms = now.wrapping_sub(self.last_ms);
        self.last_ms = now;
        let refill = (f64::from(elapsed_ms) * rate_per_sec / 1000.0) as f32;
        self.tokens = (self.tokens + refill).min(burst as f32);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut b = TokenBucket::full(3, 0);
        assert!(b.try_take(10.0, 3, 0));
        assert!(b.try_take(10.0, 3, 0));
        assert!(b.try_take(10.0, 3, 0));
        assert!(!b.try_take(10.0, 3, 0));
        assert!(b.try_take(10.0, 3, 100), "100 ms at 10/s refills one token");
        assert!(!b.try_take(10.0, 3, 100));
        assert!(b.try_take(10.0, 3, 10_000));
    }
}
