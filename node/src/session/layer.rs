//! The session layer between nodes as the rest of the node sees it: [`SessionLayer`], which
//! `cluster::start` implements and installs in the node (`Node::layer`) when `cluster.enabled`.
//! The HTTP side and the node's own code call the cluster only through it, so layers point one
//! way: http → session layer → peer transport. Its methods are what a request needs: may this
//! node serve sessions (quorum) and open one ([`Admission`]), where does a session's request go ([`Route`]), relay it to the
//! node that serves it ([`SessionLayer::forward`]), and the hooks a local change calls
//! (a session changed, was created or deleted; a change to announce to the peers), and a
//! drain's hand-off (`node/drain.rs`).
//!
//! The types of a relayed request live here too: what is relayed ([`RelayRequest`]), what
//! comes back ([`Relayed`]), why it failed ([`RelayError`]), and how many nodes it passed
//! ([`Hops`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{Session, SessionId};
use crate::content::ChangeEvent;
use crate::stream_queue;

/// The session layer between nodes (one implementation today: `cluster::peers`).
pub trait SessionLayer: Send + Sync + fmt::Debug {
    /// Whether this node may serve session requests: it sees a majority of its cluster. On
    /// the minority side of a partition session requests get 503, so the two sides never both
    /// change a session.
    fn has_quorum(&self) -> bool;
    /// Whether a new session may be created here now (admission control: refused while
    /// replication lags).
    fn admission(&self) -> Admission;
    /// A fresh id for a session created here, such that every node finds it here.
    fn new_session_id(&self) -> SessionId;
    /// A session created here: resolves once its replicas hold it (or after a bounded wait).
    fn created(&self, s: &Arc<Session>) -> BoxFuture<'static, ()>;
    /// A session's durable state or event log changed: its replicas get the change.
    fn changed(&self, s: &Arc<Session>);
    /// A request changed a session's durable state (log level, subscriptions,
    /// `initialized`) and is about to be answered: resolves once the replicas hold the
    /// change (or after a bounded wait; at once when durability is off), so the answer
    /// survives the owner.
    fn changed_durably(&self, s: &Arc<Session>) -> BoxFuture<'static, ()>;
    /// A session was deleted here: its replicas drop their copies.
    fn deleted(&self, s: &Session);
    /// Tells every live peer about a change announced here (they tell their clients).
    fn announce(&self, event: &ChangeEvent);
    /// Where a request for `id` goes from this node; may take the session over when its
    /// owner is gone and this node succeeds it.
    fn route(&self, id: SessionId, hops: Hops) -> Route;
    /// Whether this node knows its cluster well enough to say a session does not exist: it has
    /// joined it, and its members have not changed lately (a request walked along the ranking
    /// may have missed the holder right after a change). Until then, an unknown session gets
    /// 503, not 404.
    fn settled(&self) -> bool;
    /// Whether the session `id` is leaving this node (handed off, being handed off, or held
    /// here as a copy since a newer owner appeared): a request routed here (`Route::Local`)
    /// that no longer finds it is answered 503, not 404, and its retry goes where it went.
    fn is_leaving(&self, id: SessionId) -> bool;
    /// Whether the session `id`, owned here, is frozen for a hand-off: its copy was sent and
    /// the successor has not acknowledged it yet. A stream must not attach to it then (events
    /// written to it from now on are not in the successor's copy).
    fn is_handing_off(&self, id: SessionId) -> bool {
        let _ = id;
        false
    }
    /// Whether `addr` is a live member.
    fn is_live(&self, addr: SocketAddr) -> bool;
    /// Relays `req` (which `hops` nodes passed already) to `to` and resolves with the head of
    /// its answer, bounded by `cluster.forwardTimeoutMs`.
    fn forward(
        &self,
        to: SocketAddr,
        hops: Hops,
        req: RelayRequest,
    ) -> BoxFuture<'static, Result<Relayed, RelayError>>;
    /// Ends every client stream this node relays from a peer (drain, shutdown): the clients
    /// resume through another node with `Last-Event-ID`; the owners stop sending.
    fn end_relayed_streams(&self);
    /// Ends at most `max` of the client streams this node relays from a peer (a drain ends
    /// them a batch at a time); returns how many it ended.
    fn end_some_relayed_streams(&self, max: usize) -> usize;
    /// Whether a live member other than this node takes hand-offs (a drain can hand its
    /// sessions off, so their streams end one by one as they go).
    fn has_successor(&self) -> bool;
    /// Sends the sessions owned here to their successors (a drain); sessions with a request in
    /// progress wait for a later round. Returns how many are still here.
    fn hand_off_round(&self) -> usize;
    /// Hands every session off, in rounds, until none is left or `deadline` (the last phase of
    /// a shutdown).
    fn hand_off_all(&self, deadline: Duration) -> BoxFuture<'static, ()>;
    /// What a stopping node still waits for between nodes, for the stop's reports
    /// (`node/drain.rs`'s `StopWatch`). Read from a thread outside the runtime, so it never
    /// waits for a lock: a figure whose lock is held right then is `None`.
    fn stop_figures(&self) -> StopFigures {
        StopFigures::default()
    }
    /// Where this node's hand-offs stand, for a drain's progress log (`node/drain.rs`).
    fn handoff_figures(&self) -> HandoffFigures {
        HandoffFigures::default()
    }
}

/// What a stopping node still waits for between nodes ([`SessionLayer::stop_figures`]);
/// `None`: its lock was held when looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopFigures {
    /// Hand-offs sent and not acknowledged yet (their sessions are frozen here).
    pub handing: Option<usize>,
    /// Copies whose acknowledgement holds SSE events back (`cluster.durableEvents`).
    pub held: Option<usize>,
    /// Requests this node forwarded to a peer and streams it relays from one, not ended yet.
    pub relayed: Option<usize>,
    /// Requests peers forwarded here, still being served.
    pub serving: Option<usize>,
}

/// Where a node's hand-offs (drain and rebalancing) stand ([`SessionLayer::handoff_figures`]):
/// counters since the node started, and the state now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandoffFigures {
    /// Hand-offs sent (each try counts).
    pub sent: u64,
    /// Hand-offs acknowledged.
    pub acked: u64,
    /// Hand-offs whose acknowledgement did not come in time (the session thawed here).
    pub gave_up: u64,
    /// Hand-offs the successor's link refused (its queue was full).
    pub refused: u64,
    /// Sessions a drain's round left waiting for room in their successor's window (or for
    /// its busy link), summed over the rounds.
    pub held_back: u64,
    /// Hand-offs sent and not acknowledged yet (their sessions frozen here).
    pub handing: usize,
    /// How long the oldest of those has waited, ms.
    pub oldest_handing_ms: u64,
    /// Acknowledgement times since the last read, ms: (count, p50, p99, max).
    pub ack_ms: (usize, u32, u32, u32),
    /// Messages queued (not yet framed) on each link to a member taking hand-offs.
    pub queued: Vec<(std::net::SocketAddr, usize)>,
}

/// Whether a new session is accepted, or why it is refused before it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Accepted.
    Open,
    /// A replica's acknowledgement was slow (or timed out) a moment ago.
    ReplicationLag,
    /// Too many new sessions wait for their replicas already.
    TooManyWaiting,
}

/// Where a request for a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Served here (owned, or just taken over).
    Local,
    /// Forwarded to this peer.
    Forward(SocketAddr),
    /// Nobody to ask: answered here (404).
    NotFound,
    /// Ask again shortly: this node will take the session over once its owner has stayed down
    /// for the take-over grace, or it is handing the session to its successor (a drain; the
    /// session is frozen until the successor acknowledges, then requests go there).
    Wait,
}

/// How many nodes a request passed before this one (0: it came from a client). Bounded by the
/// session layer (`cluster::routing::MAX_HOPS`); the HTTP side only carries it from a relayed
/// request to the route decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hops(pub u8);

impl Hops {
    /// A request straight from a client.
    pub const CLIENT: Self = Self(0);

    /// The count one node further.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// A client request relayed to the node that serves its session: the HTTP request as it
/// arrived, minus hop-by-hop headers.
#[derive(Debug, Clone)]
pub struct RelayRequest {
    /// HTTP method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Header names and values.
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// The answer to a relayed request, as its head arrived.
#[derive(Debug)]
pub struct Relayed {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, Bytes)>,
    /// The body, whole or streamed.
    pub body: RelayedBody,
}

/// The body of a relayed answer.
#[derive(Debug)]
pub enum RelayedBody {
    /// The whole body.
    Full(Bytes),
    /// SSE chunks as the serving node sends them; the stream ends when it does, or when the
    /// relay breaks (a gap, a slow reader, the serving node gone: the client resumes). Dropping
    /// the [`RelayCancel`] tells the serving node to stop. The [`StreamEnd`] says why it ended
    /// once the queue is over (the relaying node re-attaches a stream whose session moved).
    Stream(stream_queue::Receiver, RelayCancel, StreamEnd),
}

/// Why a relayed stream ended, as the relaying node learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The serving node ended it for a reason of the session's own (deleted, expired, a newer
    /// stream replaced it, the server finished it), or the relay was cut here (a slow reader,
    /// this node draining): the client sees the end.
    Ended,
    /// The serving node let the stream go because its session moved (handed off: a drain or
    /// rebalancing; or superseded): the session is served elsewhere now.
    Moved,
    /// The serving node went down, or chunks were lost with its link: the session may have
    /// moved (a replica takes over), or the node may still hold it.
    PeerLost,
}

impl EndReason {
    /// Whether the session is likely served by another node now, so the stream may be
    /// re-attached there.
    pub fn maybe_moved(self) -> bool {
        matches!(self, Self::Moved | Self::PeerLost)
    }
}

/// Where the relay records why a relayed stream ended, before its queue ends (the reader reads
/// it once the queue says the stream is over). Shared by the relay's entry and the client's
/// body; one byte.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd(Arc<AtomicU8>);

impl StreamEnd {
    /// Records why the stream ends (call before dropping the queue's sender).
    pub fn set(&self, why: EndReason) {
        let v = match why {
            EndReason::Ended => 0,
            EndReason::Moved => 1,
            EndReason::PeerLost => 2,
        };
        self.0.store(v, Ordering::Release);
    }

    /// Why the stream ended ([`EndReason::Ended`] unless the relay said otherwise).
    pub fn get(&self) -> EndReason {
        match self.0.load(Ordering::Acquire) {
            1 => EndReason::Moved,
            2 => EndReason::PeerLost,
            _ => EndReason::Ended,
        }
    }
}

/// Tells the serving node to stop streaming when dropped (the client went away).
pub struct RelayCancel(Option<Box<dyn FnOnce() + Send + Sync>>);

impl RelayCancel {
    /// Calls `cancel` on drop.
    pub fn new(cancel: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(cancel)))
    }
}

impl fmt::Debug for RelayCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayCancel")
    }
}

impl Drop for RelayCancel {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel();
        }
    }
}

/// Why a relayed request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The peer's queue refused the request.
    #[error("the peer's queue refused the request")]
    Refused,
    /// No answer in time.
    #[error("no answer in time")]
    Timeout,
    /// The peer went down before answering.
    #[error("the peer went down before answering")]
    TargetDown,
    /// The peer went down (or did not answer in time) after it said it was starting what
    /// must not run twice (`ForwardStarted`): it may or may not have run; not sent again.
    #[error("the peer went down after starting what must not run twice")]
    OutcomeUnknown,
}
