//! Forwarding's HTTP side, where the client is: a client request naming a session held on
//! another node is relayed there through the session layer ([`intercept`], before the era
//! decision), and the answer becomes the client's response, so the client never sees which
//! node holds its session. The owner's side is `relayed.rs`; the peer messages are
//! `cluster/relay.rs`'s.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::body::{Body, StreamGuard};
use super::headers::SESSION_ID;
use super::reattach::Relay;
use super::{repeat, reply};
use crate::cluster::metrics::ForwardOutcome;
use crate::jsonrpc::{RequestId, RpcError, code};
use crate::node::Node;
use crate::session::SessionId;
use crate::session::layer::{
    Hops, RelayError, RelayRequest, Relayed, RelayedBody, Route, SessionLayer,
};
use serde_json::json;

/// Times a request is routed again because its target went down while it waited.
const REROUTES: u32 = 2;

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

/// Headers as relayed: hop-by-hop ones dropped.
pub fn to_pairs(h: &HeaderMap) -> Vec<(String, Bytes)> {
    h.iter()
        .filter(|(k, _)| !hop_by_hop(k.as_str()))
        .map(|(k, v)| (k.as_str().to_owned(), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

/// Headers from a relay (hop-by-hop ones and invalid names or values dropped).
pub fn from_pairs(pairs: &[(String, Bytes)]) -> HeaderMap {
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
    node: &Node,
    layer: &dyn SessionLayer,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: &Bytes,
    hops: Hops,
) -> Option<Response<Body>> {
    let id = headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(SessionId::parse)?;
    if !layer.has_quorum() {
        node.metrics.cluster.no_quorum();
        return Some(no_quorum(node));
    }
    let mut reroutes = 0;
    let mut waits = 0;
    loop {
        let to = match layer.route(id, hops) {
            Route::Local => return None,
            Route::Wait if waits < 40 => {
                // The owner is down and this node is taking over after the grace period.
                waits += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Route::Wait => {
                node.metrics.cluster.forwarded(ForwardOutcome::timeout);
                node.metrics.reject(crate::metrics::Reason::session_moving);
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the session is being taken over; retry",
                    node.settings.config.limits.retry_after_secs,
                ));
            }
            Route::NotFound if layer.settled() => return None,
            Route::NotFound => {
                // Not part of the cluster yet (just started): the session may well live on a
                // peer; the client's retry comes after this node joined.
                node.metrics.cluster.forwarded(ForwardOutcome::not_joined);
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "this node is joining its cluster; retry",
                    node.settings.config.limits.retry_after_secs,
                ));
            }
            Route::Forward(to) => to,
        };
        let req = RelayRequest {
            method: method.as_str().to_owned(),
            target: target.to_owned(),
            headers: to_pairs(headers),
            body: body.clone(),
        };
        match layer.forward(to, hops, req).await {
            Ok(relayed) => return Some(response(relayed, to)),
            Err(RelayError::OutcomeUnknown) => {
                // The owner started what must not run twice, then died or went silent: it may
                // have run; the client decides whether to call again.
                node.metrics
                    .cluster
                    .forwarded(ForwardOutcome::outcome_unknown);
                let answer = repeat::answer_instead(body, |_| false).unwrap_or_else(|| {
                    crate::jsonrpc::error_response(
                        None,
                        &crate::jsonrpc::RpcError::internal(
                            "the node serving this session stopped while running this request",
                        ),
                    )
                });
                return Some(reply::json(StatusCode::OK, answer));
            }
            Err(RelayError::TargetDown) if reroutes < REROUTES => {
                // It never started anything that must not run twice (`http/repeat.rs`).
                reroutes += 1;
                // Let the membership view catch up with the event that dropped the request.
                for _ in 0..20 {
                    if !layer.is_live(to) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(why) => {
                node.metrics.cluster.forwarded(outcome(why));
                return Some(reply::overloaded(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the node holding this session did not answer; retry",
                    node.settings.config.limits.retry_after_secs,
                ));
            }
        }
    }
}

/// A client's POST as it came, for a 2026-07-28 retry that goes on to the node holding its
/// call ([`to_held`]).
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Request target (path and query).
    pub target: &'a str,
    /// The body as it came.
    pub body: &'a Bytes,
    /// The authenticated principal (auth on).
    pub principal: Option<&'a crate::auth::Principal>,
}

/// Where a 2026-07-28 retry's call is held: the node, the call's upstream, the retry's id.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The node holding the call (its peer address).
    pub at: SocketAddr,
    /// The upstream the call went to.
    pub upstream: &'a str,
    /// The retry's JSON-RPC id.
    pub id: &'a RequestId,
}

/// Relays a 2026-07-28 retry to `held.at`, the node holding the call it continues (an upstream
/// asked the client something, `upstream/bridge.rs`), and returns that node's answer. `None`
/// when that node is gone — not a live member, or down before it answered (it never got the
/// retry): the call held there is lost with it, and this node continues it from what the
/// state carries, or refuses (`upstream/bridge.rs`, `Marker::Held`). A node that refused the
/// relay, did not answer in time, or went down after it started is a JSON-RPC error saying so
/// (`reason: gone`): it may still hold the call, or have passed the answer on, so the call is
/// not run here beside it.
pub async fn to_held(
    node: &Node,
    layer: &dyn SessionLayer,
    held: Held<'_>,
    headers: &HeaderMap,
    origin: Origin<'_>,
) -> Option<Response<Body>> {
    let Held {
        at: to,
        upstream,
        id,
    } = held;
    let gone = |why: &str| {
        let e = RpcError::new(
            code::OVERLOADED,
            format!(
                "upstream `{upstream}`: the node holding the call this retry continues ({to}) \
                 {why}; call again"
            ),
        )
        .with_data(json!({ "upstream": upstream, "reason": "gone", "node": to.to_string() }));
        Some(reply::rpc_error(StatusCode::OK, Some(id), &e))
    };
    if !layer.is_live(to) {
        return None;
    }
    let relayed;
    let headers = match origin.principal {
        Some(p) => {
            relayed = crate::auth::forwarded_headers(headers, p);
            &relayed
        }
        None => headers,
    };
    let req = RelayRequest {
        method: "POST".into(),
        target: origin.target.to_owned(),
        headers: to_pairs(headers),
        body: origin.body.clone(),
    };
    match layer.forward(to, Hops::CLIENT, req).await {
        Ok(relayed) => Some(response(relayed, to)),
        Err(why) => {
            node.metrics.cluster.forwarded(outcome(why));
            match why {
                RelayError::TargetDown => None,
                RelayError::Refused => gone("refused it"),
                RelayError::Timeout => gone("did not answer in time"),
                RelayError::OutcomeUnknown => gone("went down after it started"),
            }
        }
    }
}

fn outcome(e: RelayError) -> ForwardOutcome {
    match e {
        RelayError::Refused => ForwardOutcome::refused,
        RelayError::Timeout => ForwardOutcome::timeout,
        RelayError::TargetDown => ForwardOutcome::target_down,
        RelayError::OutcomeUnknown => ForwardOutcome::outcome_unknown,
    }
}

/// The client's response from a relayed answer, which `from` sent.
fn response(relayed: Relayed, from: SocketAddr) -> Response<Body> {
    let status = StatusCode::from_u16(relayed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match relayed.body {
        RelayedBody::Full(b) => Body::full(b),
        RelayedBody::Stream(rx, cancel, end) => {
            let guard = StreamGuard::new(move || drop(cancel));
            Body::relayed_sse(rx, guard, Box::new(Relay::new(end, from)))
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = from_pairs(&relayed.headers);
    r
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
