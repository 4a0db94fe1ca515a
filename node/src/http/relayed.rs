//! Forwarding's HTTP side, where the session is: a request a peer relayed here runs through
//! `/mcp` as if its client were connected here ([`Owner`], the owner-side handler
//! `cluster::start` is given), and its answer goes back through the peer link.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Method, StatusCode};

use super::body::{Body, SseStream};
use super::forward::{from_pairs, to_pairs};
use super::headers::SESSION_ID;
use super::mcp;
use super::{panics, repeat};
use crate::cluster::relay::{Handler, Reply};
use crate::jsonrpc;
use crate::node::Node;
use crate::session::layer::{Hops, RelayRequest};
use crate::session::{SSE_KEEPALIVE, SessionId};

/// The owner side: runs requests peers relay here through `/mcp` (given to `cluster::start`).
#[derive(Debug)]
pub struct Owner {
    node: Arc<Node>,
}

impl Owner {
    /// The handler for `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl Handler for Owner {
    /// Through the local handler, answer streamed back. A panic in it is caught and counted
    /// ([`panics::catch`]); the peer is answered 500 at once (or, once the answer streams, its
    /// stream is ended) instead of waiting out its `forwardTimeoutMs`.
    fn serve(
        &self,
        from: SocketAddr,
        hops: Hops,
        req: RelayRequest,
        reply: Arc<Reply>,
    ) -> BoxFuture<'static, ()> {
        let node = self.node.clone();
        Box::pin(async move {
            let body = req.body.clone();
            let served = panics::catch(
                &node,
                panics::Origin::Forwarded(from),
                relay(&node, hops, req, &reply),
            )
            .await;
            if served.is_err() {
                if reply.head_sent() {
                    reply.end(false);
                } else {
                    let (status, headers, body) = failed(&body);
                    reply.head(status, headers, Some(body));
                }
            }
        })
    }
}

/// Runs a relayed request and sends its answer back.
async fn relay(node: &Arc<Node>, hops: Hops, req: RelayRequest, reply: &Reply) {
    let method = Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET);
    let headers = from_pairs(&req.headers);
    // Something in it must not run twice: the forwarding node notes that it starts before it
    // does, so it never sends it again if this node dies now (`repeat.rs`). The body is read
    // once for that, and served from what was read.
    let parsed = repeat::parse(&req.body);
    if parsed
        .as_ref()
        .is_some_and(|p| repeat::must_not_repeat(p, |tool| repeat::may_repeat(node, tool)))
        && !reply.before_effect().await
    {
        reply.head(
            StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            Vec::new(),
            Some(Bytes::from_static(b"")),
        );
        return;
    }
    let resp = mcp::handle_relayed(
        node.clone(),
        method,
        &req.target,
        &headers,
        req.body,
        hops,
        parsed.and_then(repeat::Parsed::into_single),
    )
    .await;
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    match body {
        Body::Full(b) => {
            reply.head(
                status,
                to_pairs(&parts.headers),
                Some(b.unwrap_or_default()),
            );
        }
        Body::Stream(mut s) => {
            if !reply.head(status, to_pairs(&parts.headers), None) {
                return;
            }
            loop {
                let Some(chunk) = s.next_chunk().await else {
                    reply.end(moved(node, &headers, &s));
                    return;
                };
                if chunk.as_ref() == SSE_KEEPALIVE {
                    // The forwarding node keeps its client's stream alive itself.
                    continue;
                }
                // A full peer queue ends the relay: the client resumes later.
                if !reply.chunk(chunk) {
                    return;
                }
            }
        }
    }
}

/// Whether a stream served for a peer ended because its session moved: this node let the
/// stream go as the session left (handed off or being handed off: a drain, rebalancing; or
/// superseded), or relayed it from a node that said so (or went down) in its turn. The peer
/// then re-attaches it where the session went (`reattach.rs`) instead of ending its client's
/// stream; a session deleted, expired or whose stream a newer one replaced is still held (or
/// gone for good) and is not "leaving".
fn moved(node: &Node, headers: &http::HeaderMap, s: &SseStream) -> bool {
    if s.ended_by_move() {
        return true;
    }
    let id = headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(SessionId::parse);
    match (id, node.layer()) {
        (Some(id), Some(layer)) => layer.is_leaving(id),
        _ => false,
    }
}

/// The answer to a relayed request whose handling failed: 500 with a JSON-RPC internal error,
/// with the request's id when its body has one.
fn failed(body: &[u8]) -> (u16, Vec<(String, Bytes)>, Bytes) {
    let id = serde_json::from_slice::<&serde_json::value::RawValue>(body)
        .ok()
        .and_then(|raw| match jsonrpc::parse_message(raw) {
            Ok(jsonrpc::Incoming::Request(r)) => Some(r.id),
            Ok(_) => None,
            Err(e) => e.id,
        });
    let error = jsonrpc::RpcError::internal("the server failed while handling this request");
    (
        StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
        vec![(
            http::header::CONTENT_TYPE.as_str().to_owned(),
            Bytes::from_static(b"application/json"),
        )],
        Bytes::from(jsonrpc::error_response(id.as_ref(), &error)),
    )
}
