//! Cluster metrics (`mcp_cluster_*`): members by state, membership events, per-peer RTT.
//! The peer label is a member's name: bounded by the cluster's size, and removed when the
//! member is declared dead.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A member's state as `/cluster` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum StateLabel {
    alive,
    suspect,
    dead,
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum EventLabel {
    up,
    down,
    renamed,
    rejoined,
    active,
    idle,
    defunct,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: StateLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: EventLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// The cluster's metrics, registered in the node's registry.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    members: Family<StateLabels, Gauge>,
    events: Family<EventLabels, Counter>,
    rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
}

impl ClusterMetrics {
    /// Creates the metrics and registers them under `cluster_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "members",
            "Members as this node sees them (itself included), by state",
            m.members.clone(),
        );
        r.register(
            "membership_events",
            "Membership changes seen, by event",
            m.events.clone(),
        );
        r.register(
            "peer_rtt_seconds",
            "Smoothed QUIC round-trip time to each connected peer",
            m.rtt.clone(),
        );
        m
    }

    /// Sets the member count of each state.
    pub fn set_members(&self, alive: i64, suspect: i64, dead: i64) {
        for (state, n) in [
            (StateLabel::alive, alive),
            (StateLabel::suspect, suspect),
            (StateLabel::dead, dead),
        ] {
            self.members.get_or_create(&StateLabels { state }).set(n);
        }
    }

    /// Counts one membership event.
    pub fn event(&self, event: EventLabel) {
        self.events.get_or_create(&EventLabels { event }).inc();
    }

    /// Events of one kind so far.
    pub fn events(&self, event: EventLabel) -> u64 {
        self.events.get_or_create(&EventLabels { event }).get()
    }

    /// Records the RTT to `peer`, or forgets it (`None`: not connected).
    pub fn set_rtt(&self, peer: &str, seconds: Option<f64>) {
        let labels = PeerLabels {
            peer: peer.to_owned(),
        };
        match seconds {
            Some(s) => {
                self.rtt.get_or_create(&labels).set(s);
            }
            None => {
                self.rtt.remove(&labels);
            }
        }
    }
}
