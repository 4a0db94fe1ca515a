//! Relayed GET streams that outlive their session's move. A client's standalone SSE stream
//! held here for a session owned by a peer (`forward.rs`) ends at the owner when the session
//! moves: a hand-off (drain, rebalancing) lets the stream go, and a dead owner's streams end
//! with its peer link. Instead of ending the client's stream, this node opens it again
//! through the ordinary path (`mcp.rs`'s `reopen`: `handle_via` as if its client had reconnected here with
//! `Last-Event-ID` = the id of the last event it got, [`LastEventId`]), which finds the new
//! owner — a peer, or this node after a take-over — and continues the client's body from the
//! new answer. The client sees no end, no gap and no duplicate: the new owner's copy of the
//! log replays exactly the events after that id.
//!
//! Only when the end says the session moved ([`EndReason::maybe_moved`]: the owner's last
//! chunk said `Moved`, or the owner went down, or chunks were lost with its link); never when
//! the client left, the session was deleted or expired, a newer stream replaced this one, the
//! client read too slowly, or this node drains (it is ending its own connections). Bounded:
//! [`ATTEMPTS`] tries within [`WINDOW`], then the client's stream ends as it did before and
//! the client reconnects itself. The route of each try is the session layer's (its hop count
//! bounds the walk), so nodes never pass a stream back and forth.
//!
//! Counted as `mcp_cluster_relayed_streams_reattached_total{outcome}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::{Body, RelayHook, SseStream};
use super::event_ids::LastEventId;
use crate::cluster::metrics::ReattachOutcome;
use crate::node::Node;
use crate::session::layer::{EndReason, StreamEnd};

/// At most this many re-attach tries for one stream within [`WINDOW`]. One try is normally
/// enough: a hand-off's successor holds the session before the old owner lets the stream
/// go, and after a kill -9 the try waits (inside the session layer's routing, up to 2 s)
/// for the take-over. The others cover a 503 while the route settles (a take-over still in
/// its grace period, a hand-off in flight, no quorum for a moment). More would only hold a
/// client whose session is really lost.
pub const ATTEMPTS: u32 = 3;

/// The window [`ATTEMPTS`] counts in, and the longest a client's stream is held open while
/// its new owner is looked for: after 5 s the client is better off reconnecting itself (a
/// load generator gives a stream 15 s to come back; the failover target is "served again
/// in < 5 s"). Also what makes a back-and-forth impossible: a stream moving more often than
/// [`ATTEMPTS`] times in 5 s ends.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Pause before trying again after a 503 (the route was not settled yet).
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Longest wait for the membership view to stop listing a lost peer as live before the first
/// try (the death is seen by every survivor in < 1 s; a link that lost chunks while its peer
/// lives waits this out and tries the same peer again).
const VIEW_CATCH_UP: Duration = Duration::from_secs(1);

/// A relayed stream's end reason and, where the client is connected, what it takes to open
/// it again. Lives in the client's [`SseStream`].
pub struct Relay {
    /// Why the relay ended, as the relay records it.
    end: StreamEnd,
    /// The peer the stream is relayed from.
    from: SocketAddr,
    /// How to open the stream again; only where its client is connected (a node relaying for
    /// a peer reports the end reason instead: `relayed.rs`).
    resume: Option<Box<Resume>>,
}

/// Opens a client's GET stream as if the client had sent it here (`mcp.rs` gives it: the
/// node, the request target, the client's headers with the `Last-Event-ID` to resume from).
pub type Reopen = fn(Arc<Node>, String, HeaderMap) -> BoxFuture<'static, Response<Body>>;

/// How to open the stream again, and the attempts so far.
struct Resume {
    reopen: Reopen,
    node: Arc<Node>,
    target: String,
    headers: HeaderMap,
    /// The last event id written through to the client.
    ids: LastEventId,
    /// The window's start and the attempts in it.
    window: Option<(Instant, u32)>,
    /// A try in progress (started when the relay ended).
    trying: Option<BoxFuture<'static, Response<Body>>>,
    /// When the current end happened: tries stop [`WINDOW`] after it.
    ended_at: Option<Instant>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("end", &self.end.get())
            .field("resumable", &self.resume.is_some())
            .finish()
    }
}

impl Relay {
    /// A stream relayed from `from`, whose end reason `end` holds (not re-attached until
    /// [`arm`]ed).
    pub fn new(end: StreamEnd, from: SocketAddr) -> Self {
        Self {
            end,
            from,
            resume: None,
        }
    }
}

impl RelayHook for Relay {
    fn source(&self) -> (SocketAddr, StreamEnd) {
        (self.from, self.end.clone())
    }

    fn written(&mut self, chunk: &[u8]) {
        if let Some(r) = &mut self.resume {
            r.ids.feed(chunk);
        }
    }

    fn start(&mut self) -> bool {
        let moved = self.end.get().maybe_moved();
        let Some(r) = self.resume.as_deref_mut() else {
            return false;
        };
        if !moved {
            return false;
        }
        if r.node.is_draining() {
            r.node.metrics.cluster.reattached(ReattachOutcome::draining);
            return false;
        }
        let now = Instant::now();
        if r.window.is_none_or(|(since, _)| now - since > WINDOW) {
            r.window = Some((now, 0));
        }
        r.ended_at = Some(now);
        // The peer went down (or its link lost chunks): the membership view that routes the
        // try may not have caught up with the death yet, and a try routed to the dead node
        // waits out `forwardTimeoutMs`; wait (bounded) for the route to change first.
        let lost = (self.end.get() == EndReason::PeerLost).then_some(self.from);
        r.try_next(false, lost)
    }

    /// The session was not found (404), or no try succeeded in time: the client's stream ends.
    fn poll_reattach(&mut self, cx: &mut Context<'_>) -> Poll<Option<SseStream>> {
        let Some(r) = self.resume.as_deref_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let Some(trying) = r.trying.as_mut() else {
                return Poll::Ready(None);
            };
            let answer = ready!(trying.as_mut().poll(cx));
            r.trying = None;
            let (parts, body) = answer.into_parts();
            tracing::debug!(status = %parts.status, "a relayed stream's re-attach try answered");
            let node = r.node.clone();
            let metrics = &node.metrics.cluster;
            match body {
                Body::Stream(s) if parts.status == StatusCode::OK => {
                    metrics.reattached(ReattachOutcome::ok);
                    return Poll::Ready(Some(s));
                }
                _ if parts.status == StatusCode::NOT_FOUND => {
                    metrics.reattached(ReattachOutcome::not_found);
                    return Poll::Ready(None);
                }
                _ if r.try_next(true, None) => {}
                _ => {
                    metrics.reattached(ReattachOutcome::gave_up);
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn trying(&self) -> bool {
        self.resume.as_ref().is_some_and(|r| r.trying.is_some())
    }

    /// A stream served here ends with the session, as any local stream does: no re-attach.
    fn continue_with(&mut self, next: Option<(SocketAddr, StreamEnd)>) {
        match next {
            Some((from, end)) => {
                self.end = end;
                self.from = from;
            }
            None => self.resume = None,
        }
    }
}

impl Resume {
    /// Starts the next try if the budget allows; `pause` first (after a 503); first waits
    /// (bounded) until the view no longer lists `lost` as live, when given.
    fn try_next(&mut self, pause: bool, lost: Option<SocketAddr>) -> bool {
        let now = Instant::now();
        let Some((since, tries)) = self.window.as_mut() else {
            return false;
        };
        if *tries >= ATTEMPTS
            || now - *since > WINDOW
            || self.ended_at.is_some_and(|t| now - t > WINDOW)
            || self.node.is_draining()
        {
            return false;
        }
        *tries += 1;
        let mut headers = self.headers.clone();
        match self
            .ids
            .get()
            .filter(|id| !id.is_empty())
            .and_then(|id| HeaderValue::from_bytes(id).ok())
        {
            Some(id) => headers.insert("last-event-id", id),
            None => headers.remove("last-event-id"),
        };
        let (node, target, reopen) = (self.node.clone(), self.target.clone(), self.reopen);
        self.trying = Some(Box::pin(async move {
            if pause {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            if let (Some(lost), Some(layer)) = (lost, node.layer()) {
                let since = Instant::now();
                while layer.is_live(lost) && since.elapsed() < VIEW_CATCH_UP {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            reopen(node, target, headers).await
        }));
        true
    }
}

/// Makes the relayed stream of `response` (a client's GET forwarded to its session's owner)
/// re-attach itself with `reopen` when its session moves: `target` and `headers` are the
/// client's request.
pub fn arm(
    mut response: Response<Body>,
    node: &Arc<Node>,
    target: &str,
    headers: &HeaderMap,
    reopen: Reopen,
) -> Response<Body> {
    if let Body::Stream(s) = response.body_mut()
        && let Some((from, end)) = s.relay_source()
    {
        let resumed_from = headers.get("last-event-id").map(HeaderValue::as_bytes);
        let mut relay = Relay::new(end, from);
        relay.resume = Some(Box::new(Resume {
            reopen,
            node: node.clone(),
            target: target.to_owned(),
            headers: headers.clone(),
            ids: LastEventId::starting_at(resumed_from),
            window: None,
            trying: None,
            ended_at: None,
        }));
        s.set_relay(Box::new(relay));
    }
    response
}
