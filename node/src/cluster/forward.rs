//! Forwarding: a client request for a session held on another node is relayed to it over the
//! peer link, and the answer (a JSON body, or an SSE stream chunk by chunk) comes back the same
//! way, so the client never sees which node holds its session.
//!
//! - Forwarding side ([`intercept`]): sends `Forward`, waits (bounded by `forwardTimeoutMs`)
//!   for the `ForwardHead`; a streamed answer becomes an SSE body fed by `ForwardChunk`s. When
//!   the client goes away, `ForwardCancel` stops the owner's side. When the target is declared
//!   down before answering, the request is routed again (to the successor).
//! - Owner side ([`serve`]): runs the request through the local `/mcp` handler, as if the
//!   client were connected here, and streams the answer back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::peers::{Peers, Route};
use super::wire::{Forward, ForwardHead, PeerMsg};
use crate::http::body::{Body, StreamGuard};
use crate::http::mcp::{self, SESSION_ID};
use crate::http::panics;
use crate::http::reply;
use crate::jsonrpc;
use crate::node::Node;
use crate::session::SessionId;
use crate::stream_queue;

/// An SSE comment that keeps intermediaries from closing an idle stream
/// (`StreamState::keepalive` writes the same).
const KEEPALIVE: &[u8] = b":\n\n";

/// Times a request is routed again because its target went down while it waited.
const REROUTES: u32 = 2;

enum Head {
    Full(StatusCode, HeaderMap, Bytes),
    Stream(StatusCode, HeaderMap, stream_queue::Receiver),
}

struct Pending {
    to: SocketAddr,
    head: Option<oneshot::Sender<Head>>,
    chunks: Option<stream_queue::Sender>,
    /// The next chunk number expected.
    next_chunk: u32,
}

/// Requests in flight between this node and its peers, both ways.
#[derive(Default)]
pub struct Relays {
    next: AtomicU64,
    /// Requests this node forwarded, by request number.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Answers this node streams to a peer, by (peer, its request number).
    serving: Mutex<HashMap<(SocketAddr, u64), AbortHandle>>,
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
    /// A peer is down: its answers will not come (the clients' streams end, and they resume
    /// elsewhere), and nobody reads what we stream to it.
    pub fn peer_down(&self, addr: SocketAddr) {
        self.pending.lock().retain(|_, p| p.to != addr);
        self.serving.lock().retain(|(from, _), h| {
            if *from == addr {
                h.abort();
            }
            *from != addr
        });
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

    /// Forwarded requests waiting for an answer or streaming one.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().len()
    }

    /// Sends an SSE keep-alive comment on every relayed stream (its owner sends none over
    /// the peer link); a full queue skips it (events are waiting anyway).
    pub fn keepalive(&self) {
        for p in self.pending.lock().values() {
            if let Some(tx) = &p.chunks {
                let _ = tx.try_send(Bytes::from_static(KEEPALIVE));
            }
        }
    }

    /// Requests peers forwarded to this node that are being served.
    pub fn serving(&self) -> usize {
        self.serving.lock().len()
    }
}

fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-connection"
    )
}

fn to_pairs(h: &HeaderMap) -> Vec<(String, Bytes)> {
    h.iter()
        .filter(|(k, _)| !hop_by_hop(k.as_str()))
        .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

fn from_pairs(pairs: &[(String, Bytes)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) && !hop_by_hop(k.as_str())
        {
            h.append(k, v);
        }
    }
    h
}

/// If the request names a session held on another node, forwards it there and returns the
/// answer; `None` when it is to be served here (held here, or nobody holds it: 404 here).
pub async fn intercept(
    node: &Arc<Node>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
    hop: u8,
) -> Option<Response<Body>> {
    let peers = node.peers.get()?;
    let id = headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(SessionId::parse)?;
    if !peers.has_quorum() {
        node.metrics.cluster.no_quorum();
        return Some(no_quorum(node));
    }
    let mut reroutes = 0;
    let mut waits = 0;
    loop {
        let to = match peers.route(node, id, hop) {
            Route::Local => return None,
            Route::Wait if waits < 40 => {
                // The owner is down and this node is taking over after the grace period.
                waits += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Route::Wait => {
                node.metrics
                    .cluster
                    .forwarded(super::metrics::ForwardOutcome::timeout);
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the session is being taken over; retry",
                    node.settings.config.limits.retry_after_secs,
                ));
            }
            Route::NotFound if peers.settled() => return None,
            Route::NotFound => {
                // Not part of the cluster yet (just started): the session may well live on a
                // peer; the client's retry comes after this node joined.
                node.metrics
                    .cluster
                    .forwarded(super::metrics::ForwardOutcome::not_joined);
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "this node is joining its cluster; retry",
                    node.settings.config.limits.retry_after_secs,
                ));
            }
            Route::Forward(to) => to,
        };
        match forward_once(node, peers, to, hop, method, target, headers, body).await {
            Ok(resp) => return Some(resp),
            Err(Failed::TargetDown) if reroutes < REROUTES => {
                reroutes += 1;
                // Let the membership view catch up with the event that dropped the request.
                for _ in 0..20 {
                    if !peers.live().iter().any(|m| m.addr == to) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(why) => {
                node.metrics.cluster.forwarded(why.label());
                let limits = &node.settings.config.limits;
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the node holding this session did not answer; retry",
                    limits.retry_after_secs,
                ));
            }
        }
    }
}

/// 503 for a session request on the minority side of a partition.
pub fn no_quorum(node: &Node) -> Response<Body> {
    reply::overloaded(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "this node cannot reach most of its cluster; retry (another node may serve the session)",
        node.settings.config.limits.retry_after_secs,
    )
}

#[derive(Debug, Clone, Copy)]
enum Failed {
    /// The peer's queue refused the request.
    Refused,
    /// No answer in time.
    Timeout,
    /// The peer went down before answering.
    TargetDown,
}

impl Failed {
    fn label(self) -> super::metrics::ForwardOutcome {
        use super::metrics::ForwardOutcome as O;
        match self {
            Self::Refused => O::refused,
            Self::Timeout => O::timeout,
            Self::TargetDown => O::target_down,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward_once(
    node: &Arc<Node>,
    peers: &Arc<Peers>,
    to: SocketAddr,
    hop: u8,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>, Failed> {
    let relays = &peers.relays;
    let req = relays.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    relays.pending.lock().insert(
        req,
        Pending {
            to,
            head: Some(tx),
            chunks: None,
            next_chunk: 0,
        },
    );
    let msg = PeerMsg::Forward(Box::new(Forward {
        req,
        hop: hop + 1,
        method: method.as_str().to_owned(),
        target: target.to_owned(),
        headers: to_pairs(headers),
        body: body.clone(),
    }));
    let started = Instant::now();
    if !peers.send(to, &msg) {
        relays.pending.lock().remove(&req);
        return Err(Failed::Refused);
    }
    let head = match tokio::time::timeout(peers.forward_timeout, rx).await {
        Ok(Ok(head)) => head,
        Ok(Err(_)) => return Err(Failed::TargetDown),
        Err(_) => {
            relays.pending.lock().remove(&req);
            peers.send(to, &PeerMsg::ForwardCancel { req });
            return Err(Failed::Timeout);
        }
    };
    let m = &node.metrics.cluster;
    m.forward_seconds(started.elapsed().as_secs_f64());
    m.forwarded(super::metrics::ForwardOutcome::ok);
    let (status, headers, body) = match head {
        Head::Full(s, h, b) => (s, h, Body::full(b)),
        Head::Stream(s, h, rx) => {
            let peers = peers.clone();
            let guard = StreamGuard::new(move || {
                if peers.relays.pending.lock().remove(&req).is_some() {
                    peers.send(to, &PeerMsg::ForwardCancel { req });
                }
            });
            (s, h, Body::sse(None, rx, Some(guard)))
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

/// The head of an answer to a request this node forwarded.
pub fn on_head(node: &Node, peers: &Peers, from: SocketAddr, h: ForwardHead) {
    let mut pending = peers.relays.pending.lock();
    let Some(p) = pending.get_mut(&h.req).filter(|p| p.to == from) else {
        drop(pending);
        if h.streaming {
            peers.send(from, &PeerMsg::ForwardCancel { req: h.req });
        }
        return;
    };
    let Some(head_tx) = p.head.take() else {
        return;
    };
    let status = StatusCode::from_u16(h.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = from_pairs(&h.headers);
    let delivered = if h.streaming {
        let cap = node.settings.config.limits.outbound_queue as usize;
        let (tx, rx) = stream_queue::channel(cap);
        p.chunks = Some(tx);
        head_tx.send(Head::Stream(status, headers, rx)).is_ok()
    } else {
        pending.remove(&h.req);
        head_tx.send(Head::Full(status, headers, h.body)).is_ok()
    };
    if !delivered {
        // The waiter timed out meanwhile.
        pending.remove(&h.req);
        drop(pending);
        if h.streaming {
            peers.send(from, &PeerMsg::ForwardCancel { req: h.req });
        }
    }
}

/// A chunk of a streamed answer.
pub fn on_chunk(peers: &Peers, from: SocketAddr, req: u64, seq: u32, end: bool, data: Bytes) {
    let mut pending = peers.relays.pending.lock();
    let Some(p) = pending.get_mut(&req).filter(|p| p.to == from) else {
        return;
    };
    // A gap (chunks lost with a failed connection): end the client's stream rather than
    // deliver it with a hole; the client resumes with Last-Event-ID from the log.
    let in_order = seq == p.next_chunk;
    p.next_chunk = seq.wrapping_add(1);
    let ok = in_order
        && (data.is_empty()
            || p.chunks
                .as_ref()
                .is_some_and(|tx| tx.try_send(data).is_ok()));
    if end || !ok {
        pending.remove(&req); // dropping the sender ends the client's stream
        drop(pending);
        if !ok && !end {
            // The client reads too slowly (or left): it resumes with Last-Event-ID.
            peers.send(from, &PeerMsg::ForwardCancel { req });
        }
    }
}

/// The forwarding node's client went away.
pub fn on_cancel(peers: &Peers, from: SocketAddr, req: u64) {
    let serving = peers.relays.serving.lock().remove(&(from, req));
    if let Some(h) = serving {
        h.abort();
    }
}

/// A request served for a peer: its entry in `serving` is removed when the task ends, however
/// it ends (answered, aborted, panicked), so nothing is left for a `ForwardCancel` to find.
struct Serving {
    peers: Arc<Peers>,
    key: (SocketAddr, u64),
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.peers.relays.serving.lock().remove(&self.key);
    }
}

/// How far the answer to a forwarded request got, so a panic can still end it properly.
#[derive(Debug, Default)]
struct Sent {
    /// The head went out (a panic must then end the stream, not send a head).
    head: AtomicBool,
    /// The next chunk number.
    next_chunk: AtomicU32,
}

/// Serves a request a peer forwarded: through the local handler, answer streamed back. A panic
/// in it is caught and counted ([`panics::catch`]); the peer is answered 500 at once (or, once
/// the answer streams, its stream is ended) instead of waiting out its `forwardTimeoutMs`.
pub fn serve(node: Arc<Node>, peers: Arc<Peers>, from: SocketAddr, f: Forward) {
    let req = f.req;
    let entry = Serving {
        peers: peers.clone(),
        key: (from, req),
    };
    // Held across the spawn so the task's own removal (at its end) comes after the insert.
    let mut serving = peers.relays.serving.lock();
    let handle = tokio::spawn(async move {
        let entry = entry;
        let peers = &entry.peers;
        let sent = Sent::default();
        let body = f.body.clone();
        let served = panics::catch(
            &node,
            panics::Origin::Forwarded(from),
            relay(&node, peers, from, f, &sent),
        )
        .await;
        if served.is_err() {
            let msg = if sent.head.load(Ordering::Acquire) {
                PeerMsg::ForwardChunk {
                    req,
                    seq: sent.next_chunk.load(Ordering::Acquire),
                    end: true,
                    data: Bytes::new(),
                }
            } else {
                failed_head(req, &body)
            };
            peers.send(from, &msg);
        }
    });
    serving.insert((from, req), handle.abort_handle());
}

/// Runs the forwarded request and sends its answer back to `from`.
async fn relay(node: &Arc<Node>, peers: &Peers, from: SocketAddr, f: Forward, sent: &Sent) {
    let req = f.req;
    let method = Method::from_bytes(f.method.as_bytes()).unwrap_or(Method::GET);
    let headers = from_pairs(&f.headers);
    let resp = mcp::handle_hop(node.clone(), method, &f.target, &headers, f.body, f.hop).await;
    let (parts, body) = resp.into_parts();
    let head = |streaming: bool, body: Bytes| {
        PeerMsg::ForwardHead(Box::new(ForwardHead {
            req,
            status: parts.status.as_u16(),
            headers: to_pairs(&parts.headers),
            streaming,
            body,
        }))
    };
    match body {
        Body::Full(b) => {
            sent.head.store(true, Ordering::Release);
            peers.send(from, &head(false, b.unwrap_or_default()));
        }
        Body::Stream(mut s) => {
            sent.head.store(true, Ordering::Release);
            if !peers.send(from, &head(true, Bytes::new())) {
                return;
            }
            loop {
                let chunk = s.next_chunk().await;
                if chunk.as_deref() == Some(KEEPALIVE) {
                    // The forwarding node keeps its client's stream alive itself.
                    continue;
                }
                let seq = sent.next_chunk.fetch_add(1, Ordering::AcqRel);
                let msg = PeerMsg::ForwardChunk {
                    req,
                    seq,
                    end: chunk.is_none(),
                    data: chunk.clone().unwrap_or_default(),
                };
                // A full peer queue ends the relay: the client resumes later.
                if !peers.send(from, &msg) || chunk.is_none() {
                    return;
                }
            }
        }
    }
}

/// The head of a 500 answer for a forwarded request whose handling failed: a JSON-RPC
/// internal error, with the request's id when its body has one.
fn failed_head(req: u64, body: &[u8]) -> PeerMsg {
    let id = serde_json::from_slice::<&serde_json::value::RawValue>(body)
        .ok()
        .and_then(|raw| match jsonrpc::parse_message(raw) {
            Ok(jsonrpc::Incoming::Request(r)) => Some(r.id),
            Ok(_) => None,
            Err(e) => e.id,
        });
    let error = jsonrpc::RpcError::internal("the server failed while handling this request");
    PeerMsg::ForwardHead(Box::new(ForwardHead {
        req,
        status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
        headers: vec![(
            http::header::CONTENT_TYPE.as_str().to_owned(),
            Bytes::from_static(b"application/json"),
        )],
        streaming: false,
        body: Bytes::from(jsonrpc::error_response(id.as_ref(), &error)),
    }))
}
