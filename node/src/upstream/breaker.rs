//! [`Breaker`]: one upstream's circuit breaker, a pure state machine (time passed in).
//!
//! - **Closed** (up): every request goes; `breakerFailures` failures in a row (the upstream
//!   unreachable, too slow, an HTTP error status, an answer that is not JSON-RPC) open it.
//!   Any answer the upstream gave as JSON-RPC — a result or an error — is a success: it is up.
//! - **Open** (down): requests are refused at once, without reaching the upstream, until the
//!   backoff has passed (`breakerOpenMs`, doubled after each failed probe, at most
//!   [`MAX_BACKOFF_FACTOR`] times it).
//! - **Half-open**: one request goes as the probe (a client's, or the health check's `ping`);
//!   the others are refused as while open. The probe's success closes the breaker, its failure
//!   opens it again; a probe that ends with no verdict (its caller gave up) lets the next
//!   request probe.

use std::time::{Duration, Instant};

/// The backoff grows to at most this many times `breakerOpenMs`.
pub const MAX_BACKOFF_FACTOR: u32 = 16;

/// The breaker's state, as the `mcp_upstream_state` gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

/// Whether a request may go to the upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// It goes.
    Go,
    /// It goes as the half-open probe: its outcome decides the state.
    Probe,
    /// Refused: the upstream is down; the next probe is allowed after this long.
    Down(Duration),
}

/// How an admitted request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered (a result or a JSON-RPC error).
    Up,
    /// The upstream failed (unreachable, timeout, HTTP error status, invalid answer).
    Failed,
    /// Nothing learned (refused before sending, or the caller stopped waiting).
    Unknown,
}

/// One upstream's circuit breaker; `threshold` 0 never opens.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    base: Duration,
    failures: u32,
    backoff: Duration,
    open_until: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// Opens after `threshold` failures in a row (0: never), down for `base` at first.
    pub fn new(threshold: u32, base: Duration) -> Self {
        Self {
            threshold,
            base,
            failures: 0,
            backoff: base,
            open_until: None,
            probing: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> State {
        match self.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }

    /// How long until the next probe may go (zero when it may go now or the breaker is closed).
    pub fn retry_in(&self, now: Instant) -> Duration {
        self.open_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Whether a request may go at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.open_until {
            None => Admit::Go,
            Some(until) if now < until => Admit::Down(until - now),
            Some(_) if self.probing => Admit::Down(Duration::ZERO),
            Some(_) => {
                self.probing = true;
                Admit::Probe
            }
        }
    }

    /// Records how an admitted request ended (`probe`: it was admitted as the probe).
    /// Returns true when this opened the breaker (from closed or after a failed probe).
    pub fn record(&mut self, now: Instant, probe: bool, verdict: Verdict) -> bool {
        if probe {
            self.probing = false;
        }
        match verdict {
            Verdict::Unknown => false,
            Verdict::Up => {
                if self.open_until.is_none() || probe {
                    self.failures = 0;
                    self.open_until = None;
                    self.backoff = self.base;
                }
                false
            }
            Verdict::Failed if probe => {
                self.backoff = (self.backoff * 2).min(self.base * MAX_BACKOFF_FACTOR);
                self.open_until = Some(now + self.backoff);
                true
            }
            Verdict::Failed => {
                if self.open_until.is_some() || self.threshold == 0 {
                    return false;
                }
                self.failures += 1;
                if self.failures < self.threshold {
                    return false;
                }
                self.backoff = self.base;
                self.open_until = Some(now + self.backoff);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, BASE);
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Go);
            assert!(!b.record(t0, false, Verdict::Failed));
        }
        // A success in between starts the count again.
        assert!(!b.record(t0, false, Verdict::Up));
        for _ in 0..2 {
            assert!(!b.record(t0, false, Verdict::Failed));
        }
        assert_eq!(b.state(t0), State::Closed);
        assert!(
            b.record(t0, false, Verdict::Failed),
            "the third in a row opens it"
        );
        assert_eq!(b.state(t0), State::Open);
        assert_eq!(b.admit(t0), Admit::Down(BASE));
        assert_eq!(
            b.admit(t0 + Duration::from_millis(200)),
            Admit::Down(Duration::from_millis(300))
        );
    }

    #[test]
    fn one_probe_at_a_time_closes_or_reopens_with_a_longer_backoff() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, BASE);
        assert!(b.record(t0, false, Verdict::Failed));
        let t1 = t0 + BASE;
        assert_eq!(b.state(t1), State::HalfOpen);
        assert_eq!(b.admit(t1), Admit::Probe);
        assert_eq!(
            b.admit(t1),
            Admit::Down(Duration::ZERO),
            "one probe at a time"
        );
        // Failed probe: open again for twice as long.
        assert!(b.record(t1, true, Verdict::Failed));
        assert_eq!(b.admit(t1 + BASE), Admit::Down(BASE));
        let t2 = t1 + BASE * 2;
        assert_eq!(b.admit(t2), Admit::Probe);
        // A probe whose caller left lets the next request probe.
        assert!(!b.record(t2, true, Verdict::Unknown));
        assert_eq!(b.admit(t2), Admit::Probe);
        assert!(!b.record(t2, true, Verdict::Up));
        assert_eq!(b.state(t2), State::Closed);
        assert_eq!(b.admit(t2), Admit::Go);
        // Closed again: the backoff starts from the base.
        assert!(b.record(t2, false, Verdict::Failed));
        assert_eq!(b.admit(t2), Admit::Down(BASE));
    }

    #[test]
    fn the_backoff_is_capped() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, BASE);
        b.record(t0, false, Verdict::Failed);
        let mut now = t0;
        for _ in 0..10 {
            now += BASE * MAX_BACKOFF_FACTOR;
            assert_eq!(b.admit(now), Admit::Probe);
            b.record(now, true, Verdict::Failed);
        }
        assert_eq!(b.admit(now), Admit::Down(BASE * MAX_BACKOFF_FACTOR));
    }

    #[test]
    fn a_threshold_of_zero_never_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(0, BASE);
        for _ in 0..100 {
            assert!(!b.record(t0, false, Verdict::Failed));
        }
        assert_eq!(b.admit(t0), Admit::Go);
    }

    #[test]
    fn late_answers_of_requests_sent_before_it_opened_change_nothing() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, BASE);
        b.record(t0, false, Verdict::Failed);
        // A request admitted while closed answers after the breaker opened.
        assert!(!b.record(t0, false, Verdict::Up));
        assert_eq!(b.state(t0), State::Open);
        assert!(!b.record(t0, false, Verdict::Failed));
        assert_eq!(b.admit(t0), Admit::Down(BASE));
    }
}
