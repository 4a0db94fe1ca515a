//! The autoscaling decision, as pure state: observations and `now` in, desired replicas and a
//! reason out. No clock and no I/O here (the reconciler passes both in), so every rule is tested
//! deterministically.
//!
//! Rules, in order:
//! 1. No load observed (no node answered `/cluster`): hold, never scale on missing data.
//! 2. The recommendation is `ceil(connections / targetConnectionsPerNode)` clamped into
//!    `[minReplicas, maxReplicas]`.
//! 3. Stabilization (as a HorizontalPodAutoscaler does): scale up to the *lowest*
//!    recommendation seen in the scale-up window, down to the *highest* seen in the scale-down
//!    window; until the autoscaler has observed for a whole window it holds.
//! 4. No scale-down within the scale-down window after a scale-up (no flapping).
//! 5. One step moves at most `maxStepReplicas`.

use std::collections::VecDeque;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use mcpcluster_api::mcpcluster::{AutoscalingSpec, condition::reason};

/// Why the autoscaler chose its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No node reported its load; holding.
    NoMetrics,
    /// The recommendation equals the current size.
    Stable,
    /// Scaling up (possibly by a limited step).
    ScaleUp,
    /// Scaling down (possibly by a limited step).
    ScaleDown,
    /// A different size is recommended but has not persisted for its window.
    Stabilizing,
    /// More is needed but `maxReplicas` is reached.
    AtMax,
    /// Less would do but `minReplicas` is reached.
    AtMin,
}

impl Reason {
    /// The `Scaling` condition reason this decision is reported with.
    pub fn condition_reason(self) -> &'static str {
        match self {
            Reason::NoMetrics | Reason::Stable => reason::STABLE,
            Reason::ScaleUp => reason::SCALING_UP,
            Reason::ScaleDown => reason::SCALING_DOWN,
            Reason::Stabilizing => reason::STABILIZING,
            Reason::AtMax => reason::AT_MAX_REPLICAS,
            Reason::AtMin => reason::AT_MIN_REPLICAS,
        }
    }
}

/// An autoscaling decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to run now.
    pub desired: i32,
    /// The unstabilized recommendation (0 when there were no metrics).
    pub recommendation: i32,
    /// Why.
    pub reason: Reason,
}

/// What one cluster's autoscaler remembers between reconciles.
#[derive(Debug, Clone, Default)]
pub struct Autoscaler {
    /// Recommendations of the longest window, oldest first.
    history: VecDeque<(Timestamp, i32)>,
    /// When the first observation was made: a window counts only once it is covered.
    since: Option<Timestamp>,
    /// The last change this autoscaler made: when, and whether it was up.
    last_scale: Option<(Timestamp, bool)>,
}

fn secs(s: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(s.max(0)))
}

impl Autoscaler {
    /// Records an observation (`connections`: `None` when no node answered) and decides the
    /// replica count starting from `current`.
    pub fn decide(
        &mut self,
        spec: &AutoscalingSpec,
        current: i32,
        connections: Option<i64>,
        now: Timestamp,
    ) -> Decision {
        let (min, max) = (spec.min_replicas, spec.max_replicas.max(spec.min_replicas));
        let Some(connections) = connections else {
            return Decision {
                desired: current.clamp(min, max),
                recommendation: 0,
                reason: Reason::NoMetrics,
            };
        };
        let target = i64::from(spec.target_connections_per_node.max(1));
        let unclamped = (connections.max(0) + target - 1) / target;
        let rec = i32::try_from(unclamped).unwrap_or(i32::MAX).clamp(min, max);

        let since = *self.since.get_or_insert(now);
        self.history.push_back((now, rec));
        let keep = secs(
            spec.scale_up_stabilization_seconds
                .max(spec.scale_down_stabilization_seconds),
        );
        while self.history.front().is_some_and(|(t, _)| *t < now - keep) {
            self.history.pop_front();
        }
        let in_window = |w: SignedDuration| {
            self.history
                .iter()
                .filter(move |(t, _)| *t >= now - w)
                .map(|(_, r)| *r)
        };
        let covered = |w: SignedDuration| since <= now - w;
        let step = spec.max_step_replicas.max(1);
        let hold = |reason| Decision {
            desired: current.clamp(min, max),
            recommendation: rec,
            reason,
        };

        if current < min || current > max {
            // Outside the bounds (an object built in code, or bounds just changed): clamp now.
            return self.scaled(now, current, current.clamp(min, max), rec);
        }
        if rec > current {
            let up = secs(spec.scale_up_stabilization_seconds);
            let stable = in_window(up).min().unwrap_or(rec);
            if !covered(up) || stable <= current {
                return hold(Reason::Stabilizing);
            }
            return self.scaled(now, current, stable.min(current + step), rec);
        }
        if rec < current {
            let down = secs(spec.scale_down_stabilization_seconds);
            let stable = in_window(down).max().unwrap_or(rec);
            let after_up = self.last_scale.is_some_and(|(t, up)| up && t > now - down);
            if !covered(down) || stable >= current || after_up {
                return hold(Reason::Stabilizing);
            }
            return self.scaled(now, current, stable.max(current - step), rec);
        }
        let reason = if unclamped > i64::from(max) {
            Reason::AtMax
        } else if unclamped < i64::from(min) {
            Reason::AtMin
        } else {
            Reason::Stable
        };
        hold(reason)
    }

    fn scaled(&mut self, now: Timestamp, current: i32, desired: i32, rec: i32) -> Decision {
        self.last_scale = Some((now, desired > current));
        Decision {
            desired,
            recommendation: rec,
            reason: if desired > current {
                Reason::ScaleUp
            } else {
                Reason::ScaleDown
            },
        }
    }
}

#[cfg(test)]
#[path = "autoscale_tests.rs"]
mod tests;
