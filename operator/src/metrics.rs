//! Prometheus metrics (`mcp_operator_*`, OpenMetrics text on `/metrics`). Labels are closed
//! enums or object names, never error messages.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::ErrorKind;

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Applied and reported.
    success,
    /// Refused: the spec is invalid (reported as a condition and an event).
    invalid,
    /// Failed; requeued with backoff.
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    name: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    duration: Histogram,
    desired: Family<ClusterLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register("reconciles", "Reconciles by outcome", reconciles.clone());
        let errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let desired = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "desired_replicas",
            "Replicas the operator converges each McpCluster to",
            desired.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            desired,
        }
    }

    /// Counts a finished reconcile.
    pub fn reconciled(&self, outcome: Outcome, seconds: f64, error: Option<ErrorKind>) {
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.duration.observe(seconds);
        if let Some(kind) = error {
            self.errors.get_or_create(&KindLabels { kind }).inc();
        }
    }

    /// Records a cluster's desired replicas.
    pub fn set_desired(&self, namespace: &str, name: &str, replicas: i32) {
        self.desired
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(i64::from(replicas));
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.desired.remove(&ClusterLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new();
        m.reconciled(Outcome::success, 0.01, None);
        m.reconciled(Outcome::error, 0.02, Some(ErrorKind::kube_api));
        m.set_desired("ns", "demo", 4);
        let text = m.encode();
        for needle in [
            "mcp_operator_reconciles_total{outcome=\"success\"} 1",
            "mcp_operator_reconcile_errors_total{kind=\"kube_api\"} 1",
            "mcp_operator_reconcile_duration_seconds_count 2",
            "mcp_operator_desired_replicas{namespace=\"ns\",name=\"demo\"} 4",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
