//! Cluster metrics (`mcp_cluster_*`): members by state, membership events, per-peer RTT.
//! The peer label is a member's name: bounded by the cluster's size, and removed when the
//! member is declared dead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use mcp_cluster::frame::FrameStats;
use parking_lot::Mutex;
use prometheus_client::metrics::histogram::Histogram;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::session::layer::Admission;
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

/// How a forwarded request ended (from the forwarding node's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum ForwardOutcome {
    ok,
    refused,
    timeout,
    target_down,
    /// Not forwarded: nobody to ask, and this node cannot be sure nobody holds the session (it
    /// has not joined its cluster yet, or the members changed lately): 503.
    not_joined,
    /// Not sent again after its target went down: a `tools/call` that may act twice, answered
    /// with an unknown outcome (`http/repeat.rs`).
    outcome_unknown,
}

/// Bytes of peer frames: before compression (`raw`) or on the wire (`wire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Stage {
    raw,
    wire,
}

/// How the re-attach of a relayed stream whose session moved ended (`http/reattach.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReattachOutcome {
    /// The client's stream continues from the new owner.
    ok,
    /// The session was not found anywhere (404): the client's stream ends.
    not_found,
    /// No try succeeded within the bound: the client's stream ends (it reconnects itself).
    gave_up,
    /// Not tried: this node drains (it ends its own connections).
    draining,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReattachLabels {
    outcome: ReattachOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: ForwardOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    stage: Stage,
}

/// Seconds: 50 µs to ~3 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
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

/// Why admission control refused a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum AdmissionReason {
    replication_lag,
    too_many_waiting,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AdmissionLabels {
    reason: AdmissionReason,
}

/// The cluster's metrics, registered in the node's registry.
#[derive(Debug)]
pub struct ClusterMetrics {
    members: Family<StateLabels, Gauge>,
    events: Family<EventLabels, Counter>,
    rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    peer_queued: Family<PeerLabels, Gauge>,
    inbound_queued: Gauge,
    forwarded: Family<OutcomeLabels, Counter>,
    forward_seconds: Histogram,
    reattached: Family<ReattachLabels, Counter>,
    ack_seconds: Histogram,
    ack_timeouts: Counter,
    event_durable_seconds: Histogram,
    events_shown_undurable: Counter,
    change_durable_seconds: Histogram,
    changes_answered_undurable: Counter,
    replicated: Counter,
    replication_refused: Counter,
    resyncs: Counter,
    failovers: Counter,
    handoffs_sent: Counter,
    handoffs_received: Counter,
    rebalanced: Counter,
    rebalance_declined: Counter,
    streams_rebalanced: Counter,
    superseded: Counter,
    no_quorum: Counter,
    bad_messages: Counter,
    digest_mismatches: Counter,
    copies_dropped: Counter,
    admission_refused: Family<AdmissionLabels, Counter>,
    replicas: Gauge,
    frames_sent: Counter,
    messages_sent: Counter,
    bytes_sent: Family<StageLabels, Counter>,
    last_frames: Mutex<HashMap<SocketAddr, FrameStats>>,
    /// The failure detector's own figures (`membership_*`).
    pub detector: super::detector::DetectorMetrics,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self {
            members: Family::default(),
            events: Family::default(),
            rtt: Family::default(),
            peer_queued: Family::default(),
            inbound_queued: Gauge::default(),
            forwarded: Family::default(),
            forward_seconds: latency_histogram(),
            reattached: Family::default(),
            ack_seconds: latency_histogram(),
            ack_timeouts: Counter::default(),
            event_durable_seconds: latency_histogram(),
            events_shown_undurable: Counter::default(),
            change_durable_seconds: latency_histogram(),
            changes_answered_undurable: Counter::default(),
            replicated: Counter::default(),
            replication_refused: Counter::default(),
            resyncs: Counter::default(),
            failovers: Counter::default(),
            handoffs_sent: Counter::default(),
            handoffs_received: Counter::default(),
            rebalanced: Counter::default(),
            rebalance_declined: Counter::default(),
            streams_rebalanced: Counter::default(),
            superseded: Counter::default(),
            no_quorum: Counter::default(),
            bad_messages: Counter::default(),
            digest_mismatches: Counter::default(),
            copies_dropped: Counter::default(),
            admission_refused: Family::default(),
            replicas: Gauge::default(),
            frames_sent: Counter::default(),
            messages_sent: Counter::default(),
            bytes_sent: Family::default(),
            last_frames: Mutex::new(HashMap::new()),
            detector: super::detector::DetectorMetrics::default(),
        }
    }
}

impl ClusterMetrics {
    /// Creates the metrics and registers them under `cluster_`.
    pub fn register(registry: &mut Registry) -> Self {
        let mut m = Self::default();
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
        r.register(
            "peer_queued_messages",
            "Messages queued for each connected peer, not yet framed (sampled every tick)",
            m.peer_queued.clone(),
        );
        r.register(
            "inbound_queued_messages",
            "Peer messages received and waiting for this node to handle them",
            m.inbound_queued.clone(),
        );
        r.register(
            "forwarded",
            "Client requests forwarded to the node holding their session, by outcome",
            m.forwarded.clone(),
        );
        r.register(
            "relayed_streams_reattached",
            "Relayed client streams whose session moved, re-attached to its new owner, by outcome",
            m.reattached.clone(),
        );
        r.register(
            "forward_seconds",
            "Forwarded request sent to the owner until its answer's head arrived",
            m.forward_seconds.clone(),
        );
        r.register(
            "replication_ack_seconds",
            "A new session's copy sent until every replica acknowledged it (replication lag)",
            m.ack_seconds.clone(),
        );
        r.register(
            "replication_ack_timeouts",
            "New sessions answered before every replica acknowledged them",
            m.ack_timeouts.clone(),
        );
        r.register(
            "event_durable_seconds",
            "SSE events held for their replicas (cluster.durableEvents): a copy with held events sent until every replica acknowledged it",
            m.event_durable_seconds.clone(),
        );
        r.register(
            "events_shown_undurable",
            "SSE events written to a client before every replica held them (the wait for the acknowledgement ended, a replica's queue refused the copy, or the log evicted a held event): a take-over may lack them",
            m.events_shown_undurable.clone(),
        );
        r.register(
            "change_durable_seconds",
            "Session changes a request made (log level, subscriptions, initialized) waiting for their replicas before the answer (cluster.durableEvents): copy marked until every replica acknowledged it",
            m.change_durable_seconds.clone(),
        );
        r.register(
            "changes_answered_undurable",
            "Requests that changed a session answered before every replica held the change (the wait for the acknowledgement ended, or the session left this node meanwhile): a take-over may undo them",
            m.changes_answered_undurable.clone(),
        );
        r.register(
            "admission_refused",
            "initialize refused with 503 because replication lags (reason: replication_lag, too_many_waiting)",
            m.admission_refused.clone(),
        );
        r.register(
            "digest_mismatches",
            "Owners' digests that differed from the copies held here (an inventory was asked)",
            m.digest_mismatches.clone(),
        );
        r.register(
            "copies_dropped",
            "Copies dropped because their owner's inventory no longer listed them (a lost Forget)",
            m.copies_dropped.clone(),
        );
        r.register(
            "replication_messages",
            "Session copies (whole or deltas) sent to replicas",
            m.replicated.clone(),
        );
        r.register(
            "replication_refused",
            "Session copies a full peer queue refused (the replica resyncs later)",
            m.replication_refused.clone(),
        );
        r.register(
            "resyncs",
            "Full copies asked for after a gap in a replica's copy",
            m.resyncs.clone(),
        );
        r.register(
            "failovers",
            "Sessions this node took over from a dead owner",
            m.failovers.clone(),
        );
        r.register(
            "handoffs_sent",
            "Sessions handed to a peer while draining",
            m.handoffs_sent.clone(),
        );
        r.register(
            "handoffs_received",
            "Sessions received by hand-off (from a draining peer, or rebalanced here)",
            m.handoffs_received.clone(),
        );
        r.register(
            "rebalanced",
            "Sessions handed to a peer under its share because this node owned more than its share",
            m.rebalanced.clone(),
        );
        r.register(
            "rebalance_declined",
            "Hand-offs for balance this node declined because it owned its share already (balance::takes_rebalanced)",
            m.rebalance_declined.clone(),
        );
        r.register(
            "streams_rebalanced",
            "Client streams this node ended while it held far more connections than the cluster's mean, so their clients reconnect elsewhere",
            m.streams_rebalanced.clone(),
        );
        r.register(
            "superseded",
            "Sessions this node stopped owning because a peer owned a newer version",
            m.superseded.clone(),
        );
        r.register(
            "no_quorum_refusals",
            "Session requests refused (503) while this node saw no majority of the cluster",
            m.no_quorum.clone(),
        );
        r.register(
            "bad_messages",
            "Peer messages that did not decode (dropped)",
            m.bad_messages.clone(),
        );
        r.register(
            "replicas",
            "Copies of other nodes' sessions held here",
            m.replicas.clone(),
        );
        r.register(
            "peer_frames_sent",
            "Peer frames sent (all peers)",
            m.frames_sent.clone(),
        );
        r.register(
            "peer_messages_sent",
            "Peer messages sent in those frames (messages / frames = batching factor)",
            m.messages_sent.clone(),
        );
        r.register(
            "peer_bytes_sent",
            "Peer frame bytes before compression (raw) and on the wire",
            m.bytes_sent.clone(),
        );
        m.detector = super::detector::DetectorMetrics::register(r);
        m
    }

    /// Counts a relayed stream's re-attach outcome.
    pub fn reattached(&self, outcome: ReattachOutcome) {
        self.reattached
            .get_or_create(&ReattachLabels { outcome })
            .inc();
    }

    /// Counts a forwarded request's outcome.
    pub fn forwarded(&self, outcome: ForwardOutcome) {
        self.forwarded
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
    /// Records a forward's latency to the head.
    pub fn forward_seconds(&self, s: f64) {
        self.forward_seconds.observe(s);
    }
    /// Records a replica acknowledgement's latency.
    pub fn ack_seconds(&self, s: f64) {
        self.ack_seconds.observe(s);
    }
    /// Counts an acknowledgement that did not come in time.
    pub fn ack_timeout(&self) {
        self.ack_timeouts.inc();
    }
    /// Observes how long held events waited for their replicas.
    pub fn event_durable_seconds(&self, s: f64) {
        self.event_durable_seconds.observe(s);
    }
    /// Counts events shown before every replica held them.
    pub fn events_shown_undurable(&self, n: u32) {
        self.events_shown_undurable.inc_by(u64::from(n));
    }
    /// Observes how long a request's session change waited for its replicas.
    pub fn change_durable_seconds(&self, s: f64) {
        self.change_durable_seconds.observe(s);
    }
    /// Counts a request answered before every replica held the change it made.
    pub fn change_answered_undurable(&self) {
        self.changes_answered_undurable.inc();
    }
    /// Counts a copy sent.
    pub fn replicated(&self) {
        self.replicated.inc();
    }
    /// Counts a copy a full queue refused.
    pub fn replication_refused(&self) {
        self.replication_refused.inc();
    }
    /// Counts an `initialize` refused by admission control.
    pub fn admission_refused(&self, why: Admission) {
        let reason = match why {
            Admission::Open => return,
            Admission::ReplicationLag => AdmissionReason::replication_lag,
            Admission::TooManyWaiting => AdmissionReason::too_many_waiting,
        };
        self.admission_refused
            .get_or_create(&AdmissionLabels { reason })
            .inc();
    }
    /// Counts a digest that differed from the copies held.
    pub fn digest_mismatch(&self) {
        self.digest_mismatches.inc();
    }
    /// Counts copies dropped after an inventory.
    pub fn copies_dropped(&self, n: usize) {
        self.copies_dropped.inc_by(n as u64);
    }
    /// Counts a resync asked for.
    pub fn resync(&self) {
        self.resyncs.inc();
    }
    /// Counts a session taken over.
    pub fn failover(&self) {
        self.failovers.inc();
    }
    /// Sessions taken over so far.
    pub fn failovers(&self) -> u64 {
        self.failovers.get()
    }
    /// Counts a session handed off.
    pub fn handoff_sent(&self) {
        self.handoffs_sent.inc();
    }
    /// Counts a session handed off for balance.
    pub fn rebalanced(&self) {
        self.rebalanced.inc();
    }
    /// Counts a hand-off for balance declined here.
    pub fn rebalance_declined(&self) {
        self.rebalance_declined.inc();
    }
    /// Counts a session received by hand-off.
    pub fn handoff_received(&self) {
        self.handoffs_received.inc();
    }
    /// Counts client streams ended to spread connections out (`connection_balance.rs`).
    pub fn streams_rebalanced(&self, n: u64) {
        self.streams_rebalanced.inc_by(n);
    }
    /// Counts a session given up to a newer owner.
    pub fn superseded(&self) {
        self.superseded.inc();
    }
    /// Counts a session request refused for want of a majority.
    pub fn no_quorum(&self) {
        self.no_quorum.inc();
    }
    /// Counts an undecodable peer message.
    pub fn bad_message(&self) {
        self.bad_messages.inc();
    }
    /// Sets the number of replica copies held.
    pub fn set_replicas(&self, n: usize) {
        self.replicas.set(n as i64);
    }

    /// Adds what the link to `peer` sent since the last call (its counters start again at 0
    /// when the peer is forgotten and reached again).
    pub fn frames(&self, peer: SocketAddr, now: FrameStats) {
        let mut last = self.last_frames.lock();
        let before = last.insert(peer, now).unwrap_or_default();
        let before = if now.frames < before.frames {
            FrameStats::default()
        } else {
            before
        };
        self.frames_sent.inc_by(now.frames - before.frames);
        self.messages_sent.inc_by(now.messages - before.messages);
        self.bytes_sent
            .get_or_create(&StageLabels { stage: Stage::raw })
            .inc_by(now.raw_bytes.saturating_sub(before.raw_bytes));
        self.bytes_sent
            .get_or_create(&StageLabels { stage: Stage::wire })
            .inc_by(now.wire_bytes.saturating_sub(before.wire_bytes));
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

    /// Records the RTT to `peer` and the messages queued for it, or forgets both (`None`:
    /// not connected).
    pub fn set_rtt(&self, peer: &str, seconds: Option<f64>, queued: usize) {
        let labels = PeerLabels {
            peer: peer.to_owned(),
        };
        match seconds {
            Some(s) => {
                self.rtt.get_or_create(&labels).set(s);
                self.peer_queued
                    .get_or_create(&labels)
                    .set(i64::try_from(queued).unwrap_or(i64::MAX));
            }
            None => {
                self.rtt.remove(&labels);
                self.peer_queued.remove(&labels);
            }
        }
    }

    /// Records how many received peer messages wait to be handled.
    pub fn set_inbound_queued(&self, n: usize) {
        self.inbound_queued
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
