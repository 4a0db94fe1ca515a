//! `mcp_admin_refused_total{reason}`: protected admin requests refused, by [`Refusal`];
//! `mcp_admin_connections_refused_total`: connections over the admin port's cap.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::auth::Refusal;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    reason: Refusal,
}

/// The admin endpoint's metrics.
#[derive(Debug, Clone, Default)]
pub struct AdminMetrics {
    refused: Family<RefusedLabels, Counter>,
    connections_refused: Counter,
}

impl AdminMetrics {
    /// Creates and registers them (`mcp_admin_*`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "admin_refused",
            "Admin requests refused for want of valid credentials, by reason",
            m.refused.clone(),
        );
        registry.register(
            "admin_connections_refused",
            "Admin connections refused because the admin port's connection cap was reached",
            m.connections_refused.clone(),
        );
        m
    }

    /// Counts one refusal.
    pub fn refuse(&self, reason: Refusal) {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
    }

    /// Counts one connection refused at the cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Refusals for `reason` so far.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused.get_or_create(&RefusedLabels { reason }).get()
    }
}
