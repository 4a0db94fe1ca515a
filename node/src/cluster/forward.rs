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
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::http::reply;
use crate::node::Node;
use crate::session::SessionId;
use crate::stream_queue;

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
    if let Some(h) = peers.relays.serving.lock().remove(&(from, req)) {
        h.abort();
    }
}

/// Serves a request a peer forwarded: through the local handler, answer streamed back.
pub fn serve(node: Arc<Node>, peers: Arc<Peers>, from: SocketAddr, f: Forward) {
    let req = f.req;
    let task_peers = peers.clone();
    // Held across the spawn so the task's own removal (at its end) comes after the insert.
    let mut serving = peers.relays.serving.lock();
    let handle = tokio::spawn(async move {
        let peers = task_peers;
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
                peers.send(from, &head(false, b.unwrap_or_default()));
            }
            Body::Stream(mut s) => {
                if peers.send(from, &head(true, Bytes::new())) {
                    let mut seq = 0u32;
                    loop {
                        let chunk = s.next_chunk().await;
                        let this = seq;
                        seq = seq.wrapping_add(1);
                        match chunk {
                            Some(data) => {
                                let msg = PeerMsg::ForwardChunk {
                                    req,
                                    seq: this,
                                    end: false,
                                    data,
                                };
                                if !peers.send(from, &msg) {
                                    break; // peer queue full: the client resumes later
                                }
                            }
                            None => {
                                let end = PeerMsg::ForwardChunk {
                                    req,
                                    seq: this,
                                    end: true,
                                    data: Bytes::new(),
                                };
                                peers.send(from, &end);
                                break;
                            }
                        }
                    }
                }
            }
        }
        peers.relays.serving.lock().remove(&(from, req));
    });
    serving.insert((from, req), handle.abort_handle());
}
