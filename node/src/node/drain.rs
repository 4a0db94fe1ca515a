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
//!    `cluster.loadPublishMs` the session layer queues the sessions owned here for their
//!    successors and sends each successor a window of them (`SessionLayer::hand_off_round`;
//!    the protocol is `cluster/peers.rs`'s: `HANDOFF_WINDOW` unacknowledged per successor,
//!    each acknowledgement sending the next), so only the sessions in flight are frozen and
//!    the others stay served here; the node gossips `draining: true` so peers stop choosing
//!    it as a replica. It logs `drain progress` every [`PROGRESS_EVERY`]: sessions owned,
//!    hand-offs sent / acknowledged / in flight, acknowledgement times, the successors' link
//!    queues and the 503s by reason.
//! 3. **Done** ([`Node::drain_progress`], `GET /drain`): alone, when no client is connected
//!    and nothing is in flight; in a cluster, when every session was handed off.
//! 4. **Stop** (SIGTERM only): the accept loop stops and the open connections get
//!    `shutdownGraceSecs` to finish (`http::serve`); then [`finish`] hands off what is left
//!    (bounded by [`HANDOFF_DEADLINE`]: after it, the replicas take over), and only then does
//!    the node leave the membership (`Cluster::leave`), so peers reach it while it drains.
//!
//! `DELETE /drain` ([`Node::cancel_drain`]) calls a `POST /drain` off.
//!
//! A stop has an overall bound ([`stop_bound`]: `shutdownGraceSecs` + [`HANDOFF_DEADLINE`] +
//! [`STOP_SLACK`]). From SIGTERM on, [`StopWatch`] (a thread of its own, outside the runtime,
//! so a wedged runtime cannot silence it) logs every [`STOP_REPORT_EVERY`] which phase
//! ([`StopPhase`]) the stop is in and what it still waits for; past the bound it logs what is
//! abandoned and ends the process (exit status [`ABANDONED_EXIT`]): the replicas take over what
//! it still held, as after a crash.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Node;
pub use super::stop::{Stop, StopPhase};

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
    node.stop.enter(node.now_ms(), StopPhase::Connections);
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
/// only with a session layer); logs the drain's progress every [`PROGRESS_EVERY`] meanwhile.
pub async fn hand_off_while_draining(node: Arc<Node>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress: Option<Progress> = None;
    loop {
        tick.tick().await;
        if node.is_draining()
            && let Some(layer) = node.layer()
        {
            let p = progress.get_or_insert_with(|| Progress::start(&node));
            layer.hand_off_round();
            if p.last.elapsed() >= PROGRESS_EVERY {
                p.log(&node);
            }
        } else if let Some(mut p) = progress.take() {
            p.log(&node);
        }
    }
}

/// How often a drain logs its progress (`drain progress`).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A drain's progress log: per line, the sessions owned here, the hand-offs sent,
/// acknowledged and given up since the drain began, those waiting for their acknowledgement
/// (frozen sessions), the acknowledgement times since the last line, the successors' link
/// queues, and the streams and requests refused with 503 since the drain began, by reason.
struct Progress {
    began: Instant,
    last: Instant,
    at_start: crate::session::layer::HandoffFigures,
    refused_at_start: [u64; 3],
}

const REFUSALS: [crate::metrics::Reason; 3] = [
    crate::metrics::Reason::draining,
    crate::metrics::Reason::draining_owner,
    crate::metrics::Reason::session_moving,
];

impl Progress {
    fn start(node: &Node) -> Self {
        let at_start = node
            .layer()
            .map(|l| l.handoff_figures())
            .unwrap_or_default();
        Self {
            began: Instant::now(),
            last: Instant::now(),
            at_start,
            refused_at_start: REFUSALS.map(|r| node.metrics.rejected(r)),
        }
    }

    fn log(&mut self, node: &Node) {
        self.last = Instant::now();
        let Some(layer) = node.layer() else { return };
        let f = layer.handoff_figures();
        let s = &self.at_start;
        let refused: Vec<u64> = REFUSALS
            .iter()
            .zip(self.refused_at_start)
            .map(|(r, at)| node.metrics.rejected(*r).saturating_sub(at))
            .collect();
        let queued: Vec<String> = f.queued.iter().map(|(a, n)| format!("{a}={n}")).collect();
        tracing::info!(
            node = %node.name,
            draining_for_ms = self.began.elapsed().as_millis() as u64,
            owned = node.sessions.len(),
            handing = f.handing,
            oldest_handing_ms = f.oldest_handing_ms,
            sent = f.sent.saturating_sub(s.sent),
            acked = f.acked.saturating_sub(s.acked),
            gave_up = f.gave_up.saturating_sub(s.gave_up),
            refused_by_link = f.refused.saturating_sub(s.refused),
            held_back = f.held_back.saturating_sub(s.held_back),
            acks = f.ack_ms.0,
            ack_p50_ms = f.ack_ms.1,
            ack_p99_ms = f.ack_ms.2,
            ack_max_ms = f.ack_ms.3,
            queued = %queued.join(","),
            connections = node.connections.load(Ordering::Acquire),
            refused_draining = refused[0],
            refused_draining_owner = refused[1],
            refused_session_moving = refused[2],
            "drain progress"
        );
    }
}

/// SIGTERM's last phase, once the connections are closed: hands every session still here
/// off, in rounds, until none is left or [`HANDOFF_DEADLINE`].
pub async fn finish(node: &Node) {
    node.stop.enter(node.now_ms(), StopPhase::HandOff);
    if let Some(layer) = node.layer() {
        layer.hand_off_all(HANDOFF_DEADLINE).await;
    }
}

/// What a stop may take beyond `shutdownGraceSecs` and [`HANDOFF_DEADLINE`]: the membership
/// leave (about 1.2 s), ending the upstream sessions (1 s), the runtime's own shutdown
/// ([`RUNTIME_STOP`]).
pub const STOP_SLACK: Duration = Duration::from_secs(5);

// The operator gives a pod `shutdownGraceSecs` + this (after its preStop sleep) before it is
// killed: the node's bound must fit in it.
const _: () = assert!(
    HANDOFF_DEADLINE.as_secs() + STOP_SLACK.as_secs()
        == mcpcluster_api::node_config::STOP_BEYOND_GRACE_SECS
);

/// How long the runtime may take to stop its tasks once the stop's phases are over (`main`:
/// `Runtime::shutdown_timeout`; a blocking task still running is left behind).
pub const RUNTIME_STOP: Duration = Duration::from_secs(2);

/// How often a stop that has not ended says where it stands.
pub const STOP_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The exit status of a process whose stop passed [`stop_bound`] and was cut short.
pub const ABANDONED_EXIT: i32 = 70;

/// The longest a stop may take from SIGTERM to the process's exit: `shutdownGraceSecs` for
/// the connections, [`HANDOFF_DEADLINE`] for the last hand-offs, [`STOP_SLACK`] for the rest.
pub fn stop_bound(node: &Node) -> Duration {
    Duration::from_secs(node.settings.config.shutdown_grace_secs)
        .saturating_add(HANDOFF_DEADLINE)
        .saturating_add(STOP_SLACK)
}

/// Where a stop stands: its phase and what it still waits for.
#[derive(Debug, Clone, Copy)]
pub struct StopReport {
    /// The phase.
    pub phase: StopPhase,
    /// How long the phase has lasted.
    pub phase_for: Duration,
    /// Open client connections.
    pub connections: u32,
    /// Requests being handled.
    pub inflight: u32,
    /// Sessions owned here (handed off or taken over by their replicas when the node goes).
    pub sessions: usize,
    /// What the session layer waits for (in a cluster).
    pub between_nodes: Option<crate::session::layer::StopFigures>,
}

impl Node {
    /// Where a stop stands (never waits for a lock: the watchdog calls it from its thread).
    pub fn stop_report(&self) -> StopReport {
        let (phase, phase_for) = self.stop.phase(self.now_ms());
        StopReport {
            phase,
            phase_for,
            connections: self.connections.load(Ordering::Acquire),
            inflight: self.inflight.load(Ordering::Acquire),
            sessions: self.sessions.len(),
            between_nodes: self.layer().map(|l| l.stop_figures()),
        }
    }
}

/// Watches a stop from a thread of its own: every [`STOP_REPORT_EVERY`] it logs the
/// [`StopReport`]; past the bound it logs what is abandoned and exits the process with
/// [`ABANDONED_EXIT`]. Dropping it (the stop ended) ends the thread.
#[derive(Debug)]
pub struct StopWatch {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StopWatch {
    /// Starts watching `node`'s stop, bounded by `bound` from now. Without a thread (the
    /// system refused one) the stop goes on unwatched, and says so.
    pub fn start(node: Arc<Node>, bound: Duration) -> Self {
        Self::start_with(node, bound, STOP_REPORT_EVERY, || {
            std::process::exit(ABANDONED_EXIT)
        })
    }

    /// [`Self::start`] reporting every `every`, with `abandon` run past the bound instead of
    /// the exit (tests).
    fn start_with(
        node: Arc<Node>,
        bound: Duration,
        every: Duration,
        abandon: impl FnOnce() + Send + 'static,
    ) -> Self {
        let (done, rx) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("stop-watch".into())
            .spawn(move || watch(&node, &rx, started, bound, every, abandon));
        match thread {
            Ok(t) => Self {
                done: Some(done),
                thread: Some(t),
            },
            Err(err) => {
                tracing::warn!(error = %err, "cannot start the stop's watchdog: the stop is not bounded");
                Self {
                    done: None,
                    thread: None,
                }
            }
        }
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(
    node: &Node,
    done: &std::sync::mpsc::Receiver<()>,
    started: Instant,
    bound: Duration,
    every: Duration,
    abandon: impl FnOnce(),
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let left = bound.saturating_sub(started.elapsed());
        if left.is_zero() {
            let r = node.stop_report();
            tracing::error!(
                bound_s = bound.as_secs_f64(),
                phase = ?r.phase,
                waiting_for = r.phase.waits_for(),
                phase_for_ms = r.phase_for.as_millis() as u64,
                connections = r.connections,
                inflight = r.inflight,
                sessions = r.sessions,
                between_nodes = ?r.between_nodes,
                "the stop did not end within its bound: exiting now; abandoned: these connections \
                 (their clients reconnect elsewhere), requests in flight, sessions (their replicas \
                 take them over)"
            );
            abandon();
            return;
        }
        match done.recv_timeout(every.min(left)) {
            Err(RecvTimeoutError::Timeout) if started.elapsed() < bound => {
                let r = node.stop_report();
                tracing::warn!(
                    stopping_for_ms = started.elapsed().as_millis() as u64,
                    bound_s = bound.as_secs_f64(),
                    phase = ?r.phase,
                    waiting_for = r.phase.waits_for(),
                    phase_for_ms = r.phase_for.as_millis() as u64,
                    connections = r.connections,
                    inflight = r.inflight,
                    sessions = r.sessions,
                    between_nodes = ?r.between_nodes,
                    "still stopping"
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                tracing::info!(took_ms = started.elapsed().as_millis() as u64, "stopped");
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn node() -> Arc<Node> {
        Node::for_test()
    }

    #[test]
    fn a_stop_past_its_bound_is_abandoned_and_one_within_it_is_not() {
        let n = node();
        n.stop.enter(n.now_ms(), StopPhase::HandOff);
        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = abandoned.clone();
        let w = StopWatch::start_with(
            n.clone(),
            Duration::from_millis(120),
            Duration::from_millis(20),
            move || flag.store(true, Ordering::Release),
        );
        std::thread::sleep(Duration::from_millis(400));
        assert!(abandoned.load(Ordering::Acquire), "past the bound");
        drop(w);
        let report = n.stop_report();
        assert_eq!(report.phase, StopPhase::HandOff);
        assert!(report.phase_for >= Duration::from_millis(400));

        let abandoned = Arc::new(AtomicBool::new(false));
        let flag = abandoned.clone();
        let w = StopWatch::start_with(
            n,
            Duration::from_secs(30),
            Duration::from_millis(20),
            move || flag.store(true, Ordering::Release),
        );
        std::thread::sleep(Duration::from_millis(100));
        drop(w); // the stop ended: the watchdog ends at once
        assert!(!abandoned.load(Ordering::Acquire));
    }

    #[test]
    fn the_default_bound_is_grace_plus_hand_off_plus_slack() {
        assert_eq!(stop_bound(&node()), Duration::from_secs(10 + 10 + 5));
    }
}
