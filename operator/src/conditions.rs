//! Status conditions as the Kubernetes API conventions want them: one per type, `status`
//! `True`/`False`/`Unknown`, a CamelCase reason, `observedGeneration` per condition, and a
//! `lastTransitionTime` that moves only when the status flips. Pure: observations in,
//! conditions out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use mcpcluster_api::mcpcluster::condition::{self, reason};

/// One condition before it is stamped with times and generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Condition type (`condition::AVAILABLE`, ...).
    pub type_: &'static str,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl Report {
    /// A condition report.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// What the reconciler saw, for [`reports`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Replicas the cluster is converging to.
    pub desired: i32,
    /// Pods of the StatefulSet that exist.
    pub replicas: i32,
    /// Pods that are ready.
    pub ready: i32,
    /// Pods on the current revision.
    pub updated: i32,
    /// The StatefulSet controller has seen the latest template and every pod runs it.
    pub rollout_complete: bool,
    /// `spec.replicationFactor`.
    pub replication_factor: i32,
    /// Why the spec cannot be applied (an invalid spec the schema could not refuse).
    pub invalid: Option<String>,
    /// Why the last reconcile failed.
    pub failed: Option<String>,
    /// How the nodes' membership views disagree (persistently).
    pub diverged: Option<String>,
    /// The `Scaling` condition (the scaler decides it).
    pub scaling: Option<Report>,
    /// `status.upstreams` and the `UpstreamsReady` condition (`None` inside: no upstreams, the
    /// condition is removed); `None`: not observed this time, both kept as they were.
    pub upstreams: Option<(Vec<mcpcluster_api::UpstreamStatus>, Option<Report>)>,
}

/// The four conditions for what was observed (`UpstreamsReady` is added by `status::build`).
pub fn reports(o: &Observed) -> Vec<Report> {
    use condition::{AVAILABLE, DEGRADED, PROGRESSING, SCALING};
    let needed = o.replication_factor.min(o.desired).max(1);
    let available = if o.desired == 0 {
        Report::new(
            AVAILABLE,
            false,
            reason::SCALED_TO_ZERO,
            "scaled to zero replicas",
        )
    } else if o.ready >= needed {
        Report::new(
            AVAILABLE,
            true,
            reason::MINIMUM_REPLICAS_AVAILABLE,
            format!("{} of {} nodes ready", o.ready, o.desired),
        )
    } else {
        Report::new(
            AVAILABLE,
            false,
            reason::MINIMUM_REPLICAS_UNAVAILABLE,
            format!("{} nodes ready, {needed} needed", o.ready),
        )
    };
    let progressing = if o.rollout_complete && o.updated >= o.replicas {
        Report::new(
            PROGRESSING,
            false,
            reason::ROLLOUT_COMPLETE,
            "every pod runs the current revision",
        )
    } else {
        Report::new(
            PROGRESSING,
            true,
            reason::ROLLOUT_IN_PROGRESS,
            format!(
                "{} of {} pods on the current revision",
                o.updated, o.replicas
            ),
        )
    };
    let degraded = if let Some(why) = &o.invalid {
        Report::new(DEGRADED, true, reason::INVALID_SPEC, why.clone())
    } else if let Some(why) = &o.failed {
        Report::new(DEGRADED, true, reason::RECONCILE_FAILED, why.clone())
    } else if let Some(why) = &o.diverged {
        Report::new(DEGRADED, true, reason::MEMBERSHIP_DIVERGED, why.clone())
    } else if o.desired < o.replication_factor {
        Report::new(
            DEGRADED,
            true,
            reason::BELOW_REPLICATION_FACTOR,
            format!(
                "{} replicas cannot hold {} copies of each session",
                o.desired, o.replication_factor
            ),
        )
    } else if o.ready < o.desired {
        Report::new(
            DEGRADED,
            true,
            reason::REPLICAS_UNAVAILABLE,
            format!("{} of {} nodes not ready", o.desired - o.ready, o.desired),
        )
    } else {
        Report::new(DEGRADED, false, reason::AS_EXPECTED, "")
    };
    let scaling = o.scaling.clone().unwrap_or_else(|| {
        if o.replicas == o.desired {
            Report::new(SCALING, false, reason::STABLE, "")
        } else {
            let up = o.desired > o.replicas;
            Report::new(
                SCALING,
                true,
                if up {
                    reason::SCALING_UP
                } else {
                    reason::SCALING_DOWN
                },
                format!("{} to {} replicas", o.replicas, o.desired),
            )
        }
    });
    vec![available, progressing, degraded, scaling]
}

/// Stamps `reports` into conditions, keeping each previous `lastTransitionTime` whose status
/// did not change. Conditions of other types in `old` are kept as they are.
pub fn merge(
    old: &[Condition],
    reports: Vec<Report>,
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = old
        .iter()
        .filter(|c| !reports.iter().any(|r| r.type_ == c.type_))
        .cloned()
        .collect();
    for r in reports {
        let status = if r.status { "True" } else { "False" };
        let since = old
            .iter()
            .find(|c| c.type_ == r.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(Condition {
            type_: r.type_.to_owned(),
            status: status.to_owned(),
            reason: r.reason.to_owned(),
            message: r.message,
            observed_generation: Some(generation),
            last_transition_time: since,
        });
    }
    out.sort_by_key(|c| {
        condition::ALL
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(usize::MAX)
    });
    out
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
