//! Drain: how a node stops taking clients and lets its sessions go, in one place. The other
//! layers only react to the draining flag ([`Node::is_draining`], [`Node::drain_started`]).
//!
//! 1. **Begin** ([`Node::begin_drain`]: `POST /drain`, or [`stopping`] for SIGTERM): new
//!    connections and sessions are refused (the accept loop, `initialize`), `/readyz` answers
//!    503 so the Service stops routing here, the session streams end so their clients resume
//!    elsewhere with `Last-Event-ID` ([`Node::end_streams_for_drain`]), and each connection's
//!    next answer says `Connection: close` (`http/conn.rs`). Open connections keep being
//!    served. Alone (or with no peer to take hand-offs) every stream ends at once. In a
//!    cluster the streams end spread out, so the clients do not all come back in the same
//!    instant (at 100K, ~25,000 reopens within 100 ms starved the machine): a stream of a
//!    session owned here ends when its session's hand-off copy is taken (step 2, paced by
//!    the peer links; the reopen waits out the freeze and finds the new owner), and the
//!    streams this node relays for peers' sessions end [`RELAYED_STREAMS_ENDED_PER_SEC`] at a
//!    time.
//! 2. **Hand off** ([`hand_off_while_draining`], in a cluster): while draining, every
//!    `cluster.loadPublishMs` the session layer sends the sessions owned here to their
//!    successors (`SessionLayer::hand_off_round`; the protocol is `cluster/peers.rs`'s), and
//!    the node gossips `draining: true` so peers stop choosing it as a replica.
//! 3. **Done** ([`Node::drain_progress`], `GET /drain`): alone, when no client is connected
//!    and nothing is in flight; in a cluster, when every session was handed off.
//! 4. **Stop** (SIGTERM only): the accept loop stops and the open connections get
//!    `shutdownGraceSecs` to finish (`http::serve`); then [`finish`] hands off what is left
//!    (bounded by [`HANDOFF_DEADLINE`]: after it, the replicas take over), and only then does
//!    the node leave the membership (`Cluster::leave`), so peers reach it while it drains.
//!
//! `DELETE /drain` ([`Node::cancel_drain`]) calls a `POST /drain` off.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Node;

/// How long a leaving node tries to hand its sessions off before it goes anyway (their
/// replicas then take over).
pub const HANDOFF_DEADLINE: Duration = Duration::from_secs(10);

/// How many of the client streams it relays for peers' sessions a draining node ends per
/// second (a node holding ~11,000 ends them in ~4 s, well inside the default 10 s
/// `shutdownGraceSecs`).
pub const RELAYED_STREAMS_ENDED_PER_SEC: usize = 3_000;

/// How often a drain ends its next batch of relayed streams.
const RELAYED_STREAM_BATCH_EVERY: Duration = Duration::from_millis(100);

impl Node {
    /// Starts draining (what `POST /drain` and the first phase of SIGTERM do): new connections
    /// and sessions are refused, `/readyz` answers 503 so the Service stops routing here, and
    /// open streams end so their clients resume on another node. Open connections and
    /// sessions keep being served. Returns whether this call started it (false: already draining).
    pub fn begin_drain(self: &Arc<Self>) -> bool {
        if self.set_draining(true) {
            return false;
        }
        self.end_streams_for_drain();
        tracing::info!(node = %self.name, "draining");
        true
    }

    /// A drain's stream endings: all at once alone or when no peer takes hand-offs; in a
    /// cluster, the owned sessions' streams as their sessions are handed off (`peers.rs`
    /// lets their readers go when it takes the hand-off copy) and the relayed ones in
    /// batches while the node drains ([`RELAYED_STREAMS_ENDED_PER_SEC`]).
    pub fn end_streams_for_drain(self: &Arc<Self>) {
        match self.layer() {
            Some(layer) if layer.has_successor() => {
                tokio::spawn(end_relayed_streams_in_batches(Arc::downgrade(self)));
            }
            _ => self.end_streams(),
        }
    }

    /// Ends every session stream so clients see the node go and resume elsewhere with
    /// `Last-Event-ID` (the events stay in the log).
    pub fn end_streams(&self) {
        self.sessions.for_each(|s| {
            for stream in s.state.lock().streams.iter_mut() {
                stream.detach_to_move();
            }
        });
        // Streams relayed from the peers that own their sessions end too, or their
        // connections would hold a shutdown for its whole grace period.
        if let Some(layer) = self.layer() {
            layer.end_relayed_streams();
        }
    }

    /// Cancels a drain started by `POST /drain` (`DELETE /drain`: the operator's scale-down
    /// was called off): the node is ready and accepts clients again. Streams ended by the
    /// drain stay ended (their clients resumed elsewhere). Not for SIGTERM's drain, which the
    /// admin endpoint does not outlive. Returns whether the node was draining.
    pub fn cancel_drain(&self) -> bool {
        let was = self.set_draining(false);
        if was {
            tracing::info!(node = %self.name, "drain cancelled");
        }
        was
    }

    /// Where a drain stands (`GET /drain`).
    pub fn drain_progress(&self) -> DrainProgress {
        let draining = self.is_draining();
        let connections = self.connections.load(Ordering::Acquire);
        let inflight = self.inflight.load(Ordering::Acquire);
        DrainProgress {
            draining,
            sessions: self.sessions.len(),
            connections,
            // Without peers there is nowhere to hand sessions to, so a drain is done when no
            // client is connected and nothing is in flight. With peers it is done when every
            // session was handed off (clients still connected are served by forwarding).
            done: draining
                && inflight == 0
                && match self.layer() {
                    Some(_) => self.sessions.is_empty(),
                    None => connections == 0,
                },
        }
    }
}

/// SIGTERM's first phase, for `http::serve`'s shutdown: resolves once `stop` does, with the
/// node draining and its streams ended — unconditionally, unlike [`Node::begin_drain`]:
/// streams opened since a `POST /drain` must end too.
pub async fn stopping(node: Arc<Node>, stop: impl Future<Output = ()>) {
    stop.await;
    node.set_draining(true);
    node.end_streams_for_drain();
}

/// Ends the client streams this node relays for peers' sessions, a batch every
/// [`RELAYED_STREAM_BATCH_EVERY`], for as long as the node drains (streams relayed on a
/// connection opened before the drain end too); stops when the drain is called off or the
/// node is gone.
async fn end_relayed_streams_in_batches(node: Weak<Node>) {
    let batch = RELAYED_STREAMS_ENDED_PER_SEC
        * usize::try_from(RELAYED_STREAM_BATCH_EVERY.as_millis()).unwrap_or(1_000)
        / 1_000;
    let mut tick = tokio::time::interval(RELAYED_STREAM_BATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ended = 0usize;
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let Some(layer) = node.layer().filter(|_| node.is_draining()) else {
            return;
        };
        let now = layer.end_some_relayed_streams(batch.max(1));
        ended += now;
        if now == 0 && ended > 0 {
            tracing::info!(node = %node.name, ended, "relayed streams ended for the drain");
            ended = 0;
        }
    }
}

/// Hands sessions off, a round every `period`, whenever the node drains (runs until aborted;
/// only with a session layer).
pub async fn hand_off_while_draining(node: Arc<Node>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node.is_draining()
            && let Some(layer) = node.layer()
        {
            layer.hand_off_round();
        }
    }
}

/// SIGTERM's last phase, once the connections are closed: hands every session still here
/// off, in rounds, until none is left or [`HANDOFF_DEADLINE`].
pub async fn finish(node: &Node) {
    if let Some(layer) = node.layer() {
        layer.hand_off_all(HANDOFF_DEADLINE).await;
    }
}

/// Progress of a drain, as `GET /drain` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DrainProgress {
    /// Whether the node is draining.
    pub draining: bool,
    /// Live legacy sessions still held here.
    pub sessions: usize,
    /// Open client connections.
    pub connections: u32,
    /// Whether the node can be removed without cutting a client off.
    pub done: bool,
}
