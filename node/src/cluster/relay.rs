//! Forwarding's peer-message side: a request for a session held on another node travels there
//! as `Forward`, and its answer (a JSON body, or an SSE stream chunk by chunk) comes back as
//! `ForwardHead` and `ForwardChunk`s; `ForwardCancel` stops the owner when the client leaves.
//! Its HTTP side (turning a client request into a [`RelayRequest`] and the answer into a
//! response; running a relayed request through `/mcp`) is `http/forward.rs`.
//!
//! - Forwarding side ([`forward`]): sends `Forward`, waits (bounded by `forwardTimeoutMs`) for
//!   the `ForwardHead`; a streamed answer becomes a bounded queue fed by `ForwardChunk`s.
//!   When the target is declared down before answering, the waiter learns it (the caller
//!   routes again). A streamed answer records why it ended ([`StreamEnd`]): the owner's
//!   last chunk says `Moved` when it let the stream go because its session moved, and a
//!   target declared down or a gap in the chunks (lost with a failed link) is `PeerLost`;
//!   the HTTP side then re-attaches the client's stream to the new owner
//!   (`http/reattach.rs`). A slow reader, a cancel, or this node ending its relayed streams
//!   (drain) leave it `Ended`.
//! - Owner side ([`serve`]): hands the request to the [`Handler`] given to `cluster::start`
//!   (the HTTP layer's), which answers through a [`Reply`].
//! - Before the owner runs what must not run twice, it asks ([`Reply::before_effect`]:
//!   `ForwardStarted`, answered `ForwardGo`): a request whose owner then dies, or does not
//!   answer in time, is not sent again — the forwarding side gets
//!   [`RelayError::OutcomeUnknown`] instead of [`RelayError::TargetDown`]. A request sent to
//!   an owner already dead never got that far, so it is routed again as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use mcp_cluster::transport::Transport;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::metrics::ForwardOutcome;
use super::wire::{ChunkEnd, Forward, ForwardHead, PeerMsg};
use crate::node::Node;
use crate::session::SSE_KEEPALIVE;
use crate::session::layer::{
    EndReason, Hops, RelayCancel, RelayError, RelayRequest, Relayed, RelayedBody, StreamEnd,
};
use crate::stream_queue;

/// The owner side's request handler, passed to `cluster::start`: runs a request a peer relayed
/// through the local `/mcp` handler, as if its client were connected here, and answers through
/// `reply`. It must answer even when the request's handling fails (a panic: a 500 head, or
/// the end of a stream already started), or the peer waits out its `forwardTimeoutMs`.
pub trait Handler: Send + Sync + 'static {
    /// Serves `req`, which `hops` nodes passed before this one, relayed by `from`.
    fn serve(
        &self,
        from: SocketAddr,
        hops: Hops,
        req: RelayRequest,
        reply: Arc<Reply>,
    ) -> BoxFuture<'static, ()>;
}

struct Pending {
    to: SocketAddr,
    /// Relayed on behalf of a peer (this node is a middle hop: a session it handed off), not
    /// for a client connected here.
    for_peer: bool,
    head: Option<oneshot::Sender<Relayed>>,
    chunks: Option<stream_queue::Sender>,
    /// Why the streamed answer ended, for the client's side (set before `chunks` is dropped).
    end: StreamEnd,
    /// When the stream's answer started or last had a keep-alive here: a keep-alive goes
    /// only to a stream quiet for a while.
    since: Instant,
    /// The next chunk number expected.
    next_chunk: u32,
    /// The owner said it starts what must not run twice (`ForwardStarted`); shared with the
    /// waiting [`forward`], which reads it when the answer does not come.
    started: Arc<AtomicBool>,
}

/// Requests in flight between this node and its peers, both ways.
pub struct Relays {
    transport: Transport,
    /// How long a forwarded request waits for its answer's head (`cluster.forwardTimeoutMs`).
    timeout: Duration,
    next: AtomicU64,
    /// Requests this node forwarded, by request number.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Answers this node streams to a peer, by (peer, its request number).
    serving: Mutex<HashMap<(SocketAddr, u64), AbortHandle>>,
    /// Requests served here waiting for the forwarding node's `ForwardGo`, by (peer, its
    /// request number).
    go: Mutex<HashMap<(SocketAddr, u64), oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("pending", &self.pending.lock().len())
            .field("serving", &self.serving.lock().len())
            .finish()
    }
}

impl Relays {
    /// The relay table over the peer links of `transport`.
    pub fn new(transport: Transport, timeout: Duration) -> Self {
        Self {
            transport,
            timeout,
            next: AtomicU64::new(0),
            pending: Mutex::default(),
            serving: Mutex::default(),
            go: Mutex::default(),
        }
    }

    /// Sends a message; `false` when the peer's queue refused it (full).
    fn send(&self, to: SocketAddr, msg: &PeerMsg) -> bool {
        self.transport.send(to, msg.to_message()).is_ok()
    }

    /// A peer is down: its answers will not come (the clients' streams end as
    /// [`EndReason::PeerLost`]: re-attached where their sessions went, or the clients resume
    /// elsewhere), and nobody reads what we stream to it.
    pub fn peer_down(&self, addr: SocketAddr) {
        self.pending.lock().retain(|_, p| {
            if p.to == addr {
                p.end.set(EndReason::PeerLost);
            }
            p.to != addr
        });
        self.serving.lock().retain(|(from, _), h| {
            if *from == addr {
                h.abort();
            }
            *from != addr
        });
        // Dropping a waiter's sender says no: nobody is left to tell the client.
        self.go.lock().retain(|(from, _), _| *from != addr);
    }

    /// Drops every forwarded request (their clients' streams end); returns (peer, request)
    /// of each so the peers can be told.
    pub fn take_all(&self) -> Vec<(SocketAddr, u64)> {
        self.pending
            .lock()
            .drain()
            .map(|(req, p)| (p.to, req))
            .collect()
    }

    /// Drops at most `max` forwarded requests whose answer is streaming to a client connected
    /// here (their clients' streams end); returns (peer, request) of each so the peers can be
    /// told. Streams relayed on behalf of a peer (this node handed their session off and
    /// passes the stream on to its new owner) are left: they are not this node's clients, and
    /// ending them would only send their relaying node back here to re-attach them; they end
    /// when this node leaves, and their relaying node re-attaches them to the new owner then.
    pub fn take_streams(&self, max: usize) -> Vec<(SocketAddr, u64)> {
        let mut pending = self.pending.lock();
        let ids: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| p.chunks.is_some() && !p.for_peer)
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        ids.into_iter()
            .filter_map(|id| pending.remove(&id).map(|p| (id, p)))
            .map(|(id, p)| {
                // The client goes elsewhere: its connection closes after the stream's end.
                if let Some(chunks) = &p.chunks {
                    chunks.close_connection_after();
                }
                (p.to, id)
            })
            .collect()
    }

    /// Forwarded requests waiting for an answer or streaming one.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().len()
    }

    /// Sends an SSE keep-alive comment on the relayed streams of `slice` of `count` (by
    /// request id; see `spread.rs`) whose answer started or had a keep-alive at least
    /// `quiet_for` ago; their owner sends none over the peer link. A full queue skips it
    /// (events are waiting anyway).
    pub fn keepalive(&self, slice: u32, count: u32, quiet_for: Duration) {
        for (id, p) in self.pending.lock().iter_mut() {
            if !crate::spread::in_slice(*id, slice, count) || p.since.elapsed() < quiet_for {
                continue;
            }
            if let Some(tx) = &p.chunks {
                let _ = tx.try_send(Bytes::from_static(SSE_KEEPALIVE));
                p.since = Instant::now();
            }
        }
    }

    /// Requests peers forwarded to this node that are being served.
    pub fn serving(&self) -> usize {
        self.serving.lock().len()
    }

    /// [`Self::in_flight`] and [`Self::serving`] without waiting for their locks (`None`:
    /// held right then), for a stopping node's reports.
    pub fn try_counts(&self) -> (Option<usize>, Option<usize>) {
        (
            self.pending.try_lock().map(|p| p.len()),
            self.serving.try_lock().map(|s| s.len()),
        )
    }
}

/// Relays `req` to `to` and waits (bounded) for the head of its answer.
pub async fn forward(
    node: &Node,
    relays: &Arc<Relays>,
    to: SocketAddr,
    hops: Hops,
    req: RelayRequest,
) -> Result<Relayed, RelayError> {
    let id = relays.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    let effect_started = Arc::new(AtomicBool::new(false));
    relays.pending.lock().insert(
        id,
        Pending {
            to,
            for_peer: hops != Hops::CLIENT,
            head: Some(tx),
            chunks: None,
            end: StreamEnd::default(),
            since: Instant::now(),
            next_chunk: 0,
            started: effect_started.clone(),
        },
    );
    let msg = PeerMsg::Forward(Box::new(Forward {
        req: id,
        hop: hops.next().0,
        method: req.method,
        target: req.target,
        headers: req.headers,
        body: req.body,
    }));
    let started = Instant::now();
    if !relays.send(to, &msg) {
        relays.pending.lock().remove(&id);
        return Err(RelayError::Refused);
    }
    let lost = |why| {
        if effect_started.load(Ordering::Acquire) {
            RelayError::OutcomeUnknown
        } else {
            why
        }
    };
    let mut head = match tokio::time::timeout(relays.timeout, rx).await {
        Ok(Ok(head)) => head,
        Ok(Err(_)) => return Err(lost(RelayError::TargetDown)),
        Err(_) => {
            relays.pending.lock().remove(&id);
            relays.send(to, &PeerMsg::ForwardCancel { req: id });
            return Err(lost(RelayError::Timeout));
        }
    };
    let m = &node.metrics.cluster;
    m.forward_seconds(started.elapsed().as_secs_f64());
    m.forwarded(ForwardOutcome::ok);
    if let RelayedBody::Stream(_, cancel, _) = &mut head.body {
        let relays = relays.clone();
        *cancel = RelayCancel::new(move || {
            if relays.pending.lock().remove(&id).is_some() {
                relays.send(to, &PeerMsg::ForwardCancel { req: id });
            }
        });
    }
    Ok(head)
}

/// The head of an answer to a request this node forwarded.
pub fn on_head(node: &Node, relays: &Relays, from: SocketAddr, h: ForwardHead) {
    let mut pending = relays.pending.lock();
    let Some(p) = pending.get_mut(&h.req).filter(|p| p.to == from) else {
        drop(pending);
        if h.streaming {
            relays.send(from, &PeerMsg::ForwardCancel { req: h.req });
        }
        return;
    };
    let Some(head_tx) = p.head.take() else {
        return;
    };
    let body = if h.streaming {
        let cap = node.settings.config.limits.outbound_queue as usize;
        let (tx, rx) = stream_queue::channel(cap);
        p.chunks = Some(tx);
        p.since = Instant::now();
        // The waiter puts the real cancellation in once it has the head.
        RelayedBody::Stream(rx, RelayCancel::new(|| {}), p.end.clone())
    } else {
        pending.remove(&h.req);
        RelayedBody::Full(h.body)
    };
    let head = Relayed {
        status: h.status,
        headers: h.headers,
        body,
    };
    if head_tx.send(head).is_err() {
        // The waiter timed out meanwhile.
        pending.remove(&h.req);
        drop(pending);
        if h.streaming {
            relays.send(from, &PeerMsg::ForwardCancel { req: h.req });
        }
    }
}

/// A chunk of a streamed answer.
pub fn on_chunk(relays: &Relays, from: SocketAddr, req: u64, seq: u32, end: ChunkEnd, data: Bytes) {
    let mut pending = relays.pending.lock();
    let Some(p) = pending.get_mut(&req).filter(|p| p.to == from) else {
        return;
    };
    // A gap (chunks lost with a failed connection): end the relay rather than deliver the
    // stream with a hole; it is re-attached with Last-Event-ID from the log (or the client
    // resumes so itself).
    let in_order = seq == p.next_chunk;
    p.next_chunk = seq.wrapping_add(1);
    let ok = in_order
        && (data.is_empty()
            || p.chunks
                .as_ref()
                .is_some_and(|tx| tx.try_send(data).is_ok()));
    if !in_order {
        p.end.set(EndReason::PeerLost);
    } else if ok && end == ChunkEnd::Moved {
        p.end.set(EndReason::Moved);
    }
    let end = end.is_end();
    if end || !ok {
        pending.remove(&req); // dropping the sender ends the client's stream
        drop(pending);
        if !ok && !end {
            // The client reads too slowly (or left): it resumes with Last-Event-ID.
            relays.send(from, &PeerMsg::ForwardCancel { req });
        }
    }
}

/// The owner of a request forwarded from here is about to run what must not run twice: noted
/// (from now on the request is not sent again), and it may go on. A request no longer waiting
/// here (answered, its client gone) gets no answer: the owner does not run it.
pub fn on_started(relays: &Relays, from: SocketAddr, req: u64) {
    let noted = {
        let pending = relays.pending.lock();
        match pending
            .get(&req)
            .filter(|p| p.to == from && p.head.is_some())
        {
            Some(p) => {
                p.started.store(true, Ordering::Release);
                true
            }
            None => false,
        }
    };
    if noted {
        relays.send(from, &PeerMsg::ForwardGo { req });
    }
}

/// The forwarding node noted the start: the request served here goes on.
pub fn on_go(relays: &Relays, from: SocketAddr, req: u64) {
    if let Some(tx) = relays.go.lock().remove(&(from, req)) {
        let _ = tx.send(());
    }
}

/// The forwarding node's client went away.
pub fn on_cancel(relays: &Relays, from: SocketAddr, req: u64) {
    let serving = relays.serving.lock().remove(&(from, req));
    if let Some(h) = serving {
        h.abort();
    }
}

/// A request served for a peer: its entry in `serving` is removed when the task ends, however
/// it ends (answered, aborted, panicked), so nothing is left for a `ForwardCancel` to find.
struct Serving {
    relays: Arc<Relays>,
    key: (SocketAddr, u64),
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.relays.serving.lock().remove(&self.key);
    }
}

/// Where the owner side sends the answer to one relayed request, and how far it got (so a
/// failed handler can still end it properly).
#[derive(Debug)]
pub struct Reply {
    relays: Arc<Relays>,
    to: SocketAddr,
    req: u64,
    /// The head went out (a failure must then end the stream, not send a head).
    head: AtomicBool,
    /// The next chunk number.
    next_chunk: AtomicU32,
}

impl Reply {
    /// Sends the head: with the whole body (`Some`), or announcing a stream of chunks
    /// (`None`). `false` when the peer's queue refused it.
    pub fn head(&self, status: u16, headers: Vec<(String, Bytes)>, body: Option<Bytes>) -> bool {
        self.head.store(true, Ordering::Release);
        let streaming = body.is_none();
        self.relays.send(
            self.to,
            &PeerMsg::ForwardHead(Box::new(ForwardHead {
                req: self.req,
                status,
                headers,
                streaming,
                body: body.unwrap_or_default(),
            })),
        )
    }

    /// Sends the next chunk of a streamed answer. `false` when the peer's queue refused it
    /// (a full queue ends the relay: the client resumes later).
    pub fn chunk(&self, data: Bytes) -> bool {
        self.send_chunk(ChunkEnd::More, data)
    }

    /// Ends a streamed answer: `moved` when the stream was let go because its session moved
    /// to another node (the relaying node re-attaches it there), else the client sees the end.
    pub fn end(&self, moved: bool) -> bool {
        let end = if moved {
            ChunkEnd::Moved
        } else {
            ChunkEnd::Ended
        };
        self.send_chunk(end, Bytes::new())
    }

    fn send_chunk(&self, end: ChunkEnd, data: Bytes) -> bool {
        let seq = self.next_chunk.fetch_add(1, Ordering::AcqRel);
        self.relays.send(
            self.to,
            &PeerMsg::ForwardChunk {
                req: self.req,
                seq,
                end,
                data,
            },
        )
    }

    /// Whether the head went out.
    pub fn head_sent(&self) -> bool {
        self.head.load(Ordering::Acquire)
    }

    /// Asks the forwarding node before running what must not run twice (`ForwardStarted`)
    /// and waits for its `ForwardGo`, at most `forwardTimeoutMs`: `true` to go on. `false`
    /// (the forwarding node is gone, or no longer waits for this request): do not run it.
    pub async fn before_effect(&self) -> bool {
        /// Removes the waiter however the wait ends (answered, timed out, the task aborted by
        /// a `ForwardCancel`).
        struct Waiting<'a>(&'a Relays, (SocketAddr, u64));
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.go.lock().remove(&self.1);
            }
        }
        let (tx, rx) = oneshot::channel();
        let key = (self.to, self.req);
        self.relays.go.lock().insert(key, tx);
        let _waiting = Waiting(&self.relays, key);
        self.relays
            .send(self.to, &PeerMsg::ForwardStarted { req: self.req })
            && matches!(
                tokio::time::timeout(self.relays.timeout, rx).await,
                Ok(Ok(()))
            )
    }
}

/// Serves a request a peer forwarded: [`Handler::serve`] in a task of its own, registered so
/// a `ForwardCancel` (or the peer's death) aborts it.
pub fn serve(handler: &Arc<dyn Handler>, relays: &Arc<Relays>, from: SocketAddr, f: Forward) {
    let req = f.req;
    let entry = Serving {
        relays: relays.clone(),
        key: (from, req),
    };
    let reply = Arc::new(Reply {
        relays: relays.clone(),
        to: from,
        req,
        head: AtomicBool::new(false),
        next_chunk: AtomicU32::new(0),
    });
    let request = RelayRequest {
        method: f.method,
        target: f.target,
        headers: f.headers,
        body: f.body,
    };
    let served = handler.serve(from, Hops(f.hop), request, reply);
    // Held across the spawn so the task's own removal (at its end) comes after the insert.
    let mut serving = relays.serving.lock();
    let handle = tokio::spawn(async move {
        let _entry = entry;
        served.await;
    });
    serving.insert((from, req), handle.abort_handle());
}
