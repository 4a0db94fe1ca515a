//! The failure detector's own metrics (`mcp_cluster_membership_*`): how late its timers ran,
//! how long received gossip waited, probe round trips, suspicions raised and heard, verdicts
//! put off, and the local health score. Fed from the membership's thread.

use mcp_cluster::membership::Observation;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Who suspected whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Suspicion {
    /// This node's probe of a peer failed.
    raised,
    /// A peer's probe of this node failed (heard in gossip).
    of_this_node,
}

/// Whether a probe's ack came before the indirect probes would be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum AckTiming {
    in_time,
    late,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SuspicionLabels {
    suspicion: Suspicion,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AckLabels {
    ack: AckTiming,
}

/// Seconds: 25 µs to ~1.6 s.
fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 17))
}

/// The detector's metrics.
#[derive(Debug)]
pub struct DetectorMetrics {
    timer_lateness: Histogram,
    packet_wait: Histogram,
    probe_rtt: Histogram,
    acks: Family<AckLabels, Counter>,
    suspicions: Family<SuspicionLabels, Counter>,
    deferred: Counter,
    health: Gauge,
}

impl Default for DetectorMetrics {
    fn default() -> Self {
        Self {
            timer_lateness: delay_histogram(),
            packet_wait: delay_histogram(),
            probe_rtt: delay_histogram(),
            acks: Family::default(),
            suspicions: Family::default(),
            deferred: Counter::default(),
            health: Gauge::default(),
        }
    }
}

impl DetectorMetrics {
    /// Creates the metrics and registers them in `r` (the `cluster_` registry) as
    /// `membership_*`.
    pub fn register(r: &mut Registry) -> Self {
        let m = Self::default();
        r.register(
            "membership_timer_lateness_seconds",
            "How late the membership's timers ran (its loop waiting for the CPU)",
            m.timer_lateness.clone(),
        );
        r.register(
            "membership_packet_wait_seconds",
            "Received gossip: taken off the socket or connection until handled",
            m.packet_wait.clone(),
        );
        r.register(
            "membership_probe_rtt_seconds",
            "Direct probes: ping queued until its ack was handled",
            m.probe_rtt.clone(),
        );
        r.register(
            "membership_probe_acks",
            "Direct probe acks, in time (before the indirect probes) or late",
            m.acks.clone(),
        );
        r.register(
            "membership_suspicions",
            "Suspicions raised by this node's failed probes, and suspicions of this node heard",
            m.suspicions.clone(),
        );
        r.register(
            "membership_verdicts_deferred",
            "Down verdicts put off because this node's own timers ran late or it was unhealthy",
            m.deferred.clone(),
        );
        r.register(
            "membership_local_health",
            "Local health score (0 = healthy; probe timeouts and verdicts scale with 1 + score)",
            m.health.clone(),
        );
        m
    }

    /// Records one of the detector's measurements.
    pub fn observe(&self, o: &Observation) {
        match *o {
            Observation::TimerLate(d) => self.timer_lateness.observe(d.as_secs_f64()),
            Observation::PacketWaited(d) => self.packet_wait.observe(d.as_secs_f64()),
            Observation::ProbeAck { rtt, in_time } => {
                self.probe_rtt.observe(rtt.as_secs_f64());
                let ack = if in_time {
                    AckTiming::in_time
                } else {
                    AckTiming::late
                };
                self.acks.get_or_create(&AckLabels { ack }).inc();
            }
            Observation::Suspected(_) => self.suspicion(Suspicion::raised),
            Observation::SuspectedHere => self.suspicion(Suspicion::of_this_node),
            Observation::VerdictDeferred { .. } => {
                self.deferred.inc();
            }
            Observation::Health(score) => {
                self.health.set(i64::from(score));
            }
        }
    }

    fn suspicion(&self, suspicion: Suspicion) {
        self.suspicions
            .get_or_create(&SuspicionLabels { suspicion })
            .inc();
    }
}
