//! Local health (Lifeguard's "local health multiplier"): a node that sees signs of its own
//! slowness stretches its probe timeouts and defers its verdicts, so a starved node neither
//! suspects nor declares down healthy peers because it read their acks late.
//!
//! The score is a saturating counter in `0..=max`. It rises on evidence that this node (or
//! its links) is slow, and falls on evidence that it is not:
//!
//! | event | change |
//! |---|---|
//! | one of this node's timers ran more than `probe_rtt` late (its loop waited for the CPU) | +1 |
//! | a direct probe's ack arrived after the (scaled) `probe_rtt` | +1 |
//! | a packet said this node is suspect (someone's probe of it failed) | +1 |
//! | a direct probe's ack arrived in time | −1 |
//!
//! A probe that gets no ack at all does not count: a dead peer must not make the survivors
//! slower to declare it dead (memberlist counts it unless the indirect probers answer with a
//! nack, which foca's protocol does not have).
//!
//! The multiplier is `1 + score`: it scales the probe period, the wait before indirect
//! probes, and how long a suspect has to refute before this node declares it down.

use std::time::Duration;

/// The local health score and what feeds it.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    score: u32,
    max: u32,
    late_timer: Duration,
}

impl Health {
    /// A healthy node; `max` is the highest score (0 turns the mechanism off), `late_timer`
    /// how late a timer must run to count.
    pub(crate) fn new(max: u32, late_timer: Duration) -> Self {
        Self {
            score: 0,
            max,
            late_timer,
        }
    }

    /// The current score (0 = healthy).
    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// `1 + score`.
    pub(crate) fn multiplier(&self) -> u32 {
        1 + self.score
    }

    /// Scales a timeout by the multiplier.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d.saturating_mul(self.multiplier())
    }

    /// A timer ran `late` after it was due. True if the score changed.
    pub(crate) fn timer_ran(&mut self, late: Duration) -> bool {
        late > self.late_timer && self.add(1)
    }

    /// A direct probe's ack arrived, in time or not. True if the score changed.
    pub(crate) fn ack(&mut self, in_time: bool) -> bool {
        if in_time { self.sub(1) } else { self.add(1) }
    }

    /// Someone suspects this node. True if the score changed.
    pub(crate) fn suspected(&mut self) -> bool {
        self.add(1)
    }

    fn add(&mut self, n: u32) -> bool {
        let before = self.score;
        self.score = (self.score + n).min(self.max);
        self.score != before
    }

    fn sub(&mut self, n: u32) -> bool {
        let before = self.score;
        self.score = self.score.saturating_sub(n);
        self.score != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_saturates_and_recovers_with_acks_in_time() {
        let mut h = Health::new(3, Duration::from_millis(25));
        assert!(!h.timer_ran(Duration::from_millis(25)), "at the threshold");
        assert!(h.timer_ran(Duration::from_millis(26)));
        assert!(h.ack(false));
        assert!(h.suspected());
        assert!(!h.suspected(), "saturated at max");
        assert_eq!((h.score(), h.multiplier()), (3, 4));
        assert_eq!(
            h.scale(Duration::from_millis(50)),
            Duration::from_millis(200)
        );
        for _ in 0..3 {
            assert!(h.ack(true));
        }
        assert!(!h.ack(true), "healthy stays at 0");
        assert_eq!(
            h.scale(Duration::from_millis(50)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn max_zero_turns_it_off() {
        let mut h = Health::new(0, Duration::from_millis(25));
        assert!(!h.timer_ran(Duration::from_secs(1)));
        assert!(!h.suspected());
        assert_eq!(h.multiplier(), 1);
    }
}
