//! The `/mcp` endpoint: transport-level checks shared by both eras, then the era decision.
//!
//! Era rule: `initialize` starts a 2025-11-25-or-earlier session; a request whose
//! `params._meta` carries `io.modelcontextprotocol/protocolVersion`, or whose
//! `MCP-Protocol-Version` header names a version that is not a legacy one, is a stateless
//! 2026-07-28 request; everything else belongs to a legacy session.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};
use serde_json::value::RawValue;

use super::body::Body;
use super::forward::Origin;
use super::guard::{self, Refusal};
use super::headers::{PROTOCOL_VERSION, SESSION_ID, accepts, header};
use super::{forward, legacy, modern, reattach, reply};
use crate::auth::principal::FORWARDED_HEADER;
use crate::auth::{AuthOutcome, Principal};
use crate::jsonrpc::{self, Incoming, RpcError};
use crate::metrics::Reason;
use crate::node::Node;
use crate::protocol::versions;
use crate::session::layer::Hops;

/// Where a request on `/mcp` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A client connected to this node.
    Client,
    /// A peer relayed it (`http/forward.rs`), after the nodes it passed (`hops`, which only the
    /// session layer reads). Its principal was verified by the node the client reached.
    Peer(Hops),
}

impl Via {
    fn hops(self) -> Hops {
        match self {
            Self::Client => Hops::CLIENT,
            Self::Peer(h) => h,
        }
    }
}

/// Handles one HTTP request on the MCP listener (the body was read, within
/// `limits.maxBodyBytes`, by the connection loop).
pub async fn handle(
    node: Arc<Node>,
    method: Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    handle_via(node, method, target, headers, body, Via::Client).await
}

/// [`handle`] for a request that came `via` a client or a peer. A request naming a session
/// held on another node is forwarded there ([`forward::intercept`]).
pub async fn handle_via(
    node: Arc<Node>,
    method: Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
    via: Via,
) -> Response<Body> {
    serve(node, method, target, headers, body, via, None).await
}

/// [`handle_via`] for a request a peer relayed here, after `hops` nodes, whose body (one
/// JSON-RPC message) the holder read already (`parsed`, `repeat.rs`): served here, it is not
/// read again; forwarded on, its bytes go as they came.
pub async fn handle_relayed(
    node: Arc<Node>,
    method: Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
    hops: Hops,
    parsed: Option<Incoming>,
) -> Response<Body> {
    serve(node, method, target, headers, body, Via::Peer(hops), parsed).await
}

async fn serve(
    node: Arc<Node>,
    method: Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
    via: Via,
    parsed: Option<Incoming>,
) -> Response<Body> {
    let path = target.split('?').next().unwrap_or(target);
    if let Some(auth) = &node.auth
        && auth.is_metadata_path(path)
    {
        return match method {
            Method::GET => crate::auth::challenge::metadata(&auth.settings),
            _ => reply::method_not_allowed("GET"),
        };
    }
    if path != node.settings.config.mcp_path {
        let mut r = Response::new(Body::full("not found\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    if let Err(refusal) = guard::check(&node, headers) {
        let (reason, what) = match refusal {
            Refusal::Host => (Reason::bad_host, "Host"),
            Refusal::Origin => (Reason::bad_origin, "Origin"),
        };
        node.metrics.reject(reason);
        return reply::refuse(StatusCode::FORBIDDEN, &format!("{what} header not allowed"));
    }
    let principal = match &node.auth {
        Some(auth) => match auth.authenticate(headers, via != Via::Client).await {
            Ok(p) => Some(p),
            Err(refusal) => return refusal,
        },
        None => None,
    };
    // A client must not pass a principal off as verified by a peer.
    let cleaned;
    let headers =
        if via == Via::Client && principal.is_none() && headers.contains_key(FORWARDED_HEADER) {
            let mut h = headers.clone();
            h.remove(FORWARDED_HEADER);
            cleaned = h;
            &cleaned
        } else {
            headers
        };
    // A stream opened on a draining node would hold its shutdown open: refused, and the
    // client's retry reaches another node (the Service stopped routing here: /readyz is
    // false). A stream a peer relays here holds nothing here; it is refused only if it would
    // be served here (below) — one for a session already handed off is forwarded to its new
    // owner. Refusing those too sent every stream of a draining node's handed-off sessions
    // back with 503 until the node exited (seconds, at 100K sessions).
    let draining_get = method == Method::GET && node.is_draining();
    if draining_get && via == Via::Client {
        return refuse_draining_stream(&node, Reason::draining);
    }
    if let Some(layer) = node.layer()
        && headers.contains_key(SESSION_ID)
    {
        // The token stays here; the owner gets the principal verified here.
        let relayed;
        let relay_headers = match &principal {
            Some(p) if via == Via::Client => {
                relayed = crate::auth::forwarded_headers(headers, p);
                &relayed
            }
            _ => headers,
        };
        if let Some(forwarded) = forward::intercept(
            &node,
            layer.as_ref(),
            &method,
            target,
            relay_headers,
            &body,
            via.hops(),
        )
        .await
        {
            // Where the client is, a relayed GET stream re-attaches itself when its session
            // moves (`reattach.rs`).
            if via == Via::Client && method == Method::GET {
                return reattach::arm(forwarded, &node, target, headers, reopen);
            }
            return forwarded;
        }
    }
    // Served here: the session (if any) is held here now, a take-over included. A stream a
    // peer relays for a session still owned here, not handed off yet, is served: it ends when
    // the session's hand-off copy is taken, like every stream of the sessions owned here, and
    // its client resumes at the successor. Refused, its client could only retry until the
    // hand-off: with a drain's hand-offs paced (a window per successor), seconds.
    if draining_get && !(via != Via::Client && owned_until_handed_off(&node, headers)) {
        return refuse_draining_stream(&node, Reason::draining_owner);
    }
    if let Some(p) = &principal
        && let Err(refusal) = check_session_principal(&node, headers, p)
    {
        return refusal;
    }
    match method {
        Method::POST => {
            // A peer relayed it: it goes no further (`forward::to_held`).
            let origin = (via == Via::Client).then_some(Origin {
                target,
                body: &body,
                principal: principal.as_ref(),
            });
            post(
                node,
                headers,
                body.clone(),
                principal.as_ref(),
                origin,
                parsed,
            )
            .await
        }
        Method::GET => legacy::get(node, headers, via != Via::Client),
        Method::DELETE => legacy::delete(node, headers),
        _ => {
            node.metrics.reject(Reason::method_not_allowed);
            reply::method_not_allowed("GET, POST, DELETE")
        }
    }
}

/// A client's GET stream opened again (`reattach.rs`: its session moved), as if the client
/// had sent it here.
fn reopen(
    node: Arc<Node>,
    target: String,
    headers: HeaderMap,
) -> futures_util::future::BoxFuture<'static, Response<Body>> {
    Box::pin(async move {
        handle_via(
            node,
            Method::GET,
            &target,
            &headers,
            Bytes::new(),
            Via::Client,
        )
        .await
    })
}

/// Whether the request names a session owned here that a peer can take over by hand-off (a
/// draining node serves its relayed streams until then).
fn owned_until_handed_off(node: &Node, headers: &HeaderMap) -> bool {
    node.layer().is_some_and(|l| l.has_successor())
        && header(headers, SESSION_ID)
            .and_then(crate::session::SessionId::parse)
            .is_some_and(|id| node.sessions.get(&id).is_some())
}

/// 503 for a stream that a draining node would serve itself.
fn refuse_draining_stream(node: &Node, reason: Reason) -> Response<Body> {
    node.metrics.reject(reason);
    reply::overloaded(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "node is draining; open the stream on another node",
        node.settings.config.limits.retry_after_secs,
    )
}

/// With auth on, a request naming a session held here must come from the session's
/// principal. Another principal gets the 404 of an unknown session: whether the id exists is
/// none of its business, and an SDK client re-initializes (under its own principal) on 404.
/// Counted as `mcp_auth_requests{outcome="session_principal_mismatch"}`.
fn check_session_principal(
    node: &Node,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<(), Response<Body>> {
    let Some(session) = header(headers, SESSION_ID)
        .and_then(crate::session::SessionId::parse)
        .and_then(|id| node.sessions.get(&id))
    else {
        return Ok(());
    };
    let bound = session.state.lock().principal.as_deref().copied();
    if bound == Some(principal.id) {
        return Ok(());
    }
    if let Some(auth) = &node.auth {
        auth.count(AuthOutcome::session_principal_mismatch);
    }
    tracing::warn!(session = %session.id, subject = %principal.subject, "session used with another principal's token");
    node.metrics.reject(Reason::unknown_session);
    Err(reply::rpc_error(
        StatusCode::NOT_FOUND,
        None,
        &RpcError::new(jsonrpc::code::OVERLOADED, "unknown or expired session"),
    ))
}

/// With auth on, every request in a message (one, or each of a batch) must have the scopes
/// it needs; else 403 `insufficient_scope` naming all of them.
fn check_scopes(
    node: &Node,
    principal: Option<&Principal>,
    msgs: &[&Incoming],
) -> Result<(), Response<Body>> {
    let Some(auth) = &node.auth else {
        return Ok(());
    };
    let Some(principal) = principal else {
        // Only the fuzzing entry point gets here without one.
        auth.count(AuthOutcome::missing_token);
        return Err(crate::auth::challenge::missing_token(&auth.settings));
    };
    let config = &auth.settings.config;
    let mut needed: Vec<&str> = Vec::new();
    for msg in msgs {
        if let Incoming::Request(r) = msg {
            for s in crate::auth::scopes::needed(config, &r.method, r.params.as_ref()) {
                if !needed.contains(&s) {
                    needed.push(s);
                }
            }
        }
    }
    if crate::auth::scopes::satisfied(principal, &needed) {
        return Ok(());
    }
    auth.count(AuthOutcome::insufficient_scope);
    Err(crate::auth::challenge::insufficient_scope(
        &auth.settings,
        &needed,
    ))
}

async fn post(
    node: Arc<Node>,
    headers: &HeaderMap,
    body: Bytes,
    principal: Option<&Principal>,
    origin: Option<Origin<'_>>,
    parsed: Option<Incoming>,
) -> Response<Body> {
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        node.metrics.reject(Reason::not_acceptable);
        return reply::refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must list both application/json and text/event-stream",
        );
    }
    let json_content = header(headers, header::CONTENT_TYPE.as_str())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json_content {
        node.metrics.reject(Reason::unsupported_media_type);
        return reply::refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    match parsed {
        // Read already from these very bytes (a relayed `tools/call`: `repeat.rs`).
        Some(msg) => handle_message(node, headers, msg, principal, origin).await,
        None => handle_body_from(node, headers, body, principal, origin).await,
    }
}

/// Handles a POST body whose transport checks already passed (the fuzzing entry point). No
/// principal: with auth on, every request is refused with 401.
pub async fn handle_body(node: Arc<Node>, headers: &HeaderMap, body: Bytes) -> Response<Body> {
    handle_body_as(node, headers, body, None).await
}

/// [`handle_body`] for an authenticated `principal` (`None` with auth off).
pub async fn handle_body_as(
    node: Arc<Node>,
    headers: &HeaderMap,
    body: Bytes,
    principal: Option<&Principal>,
) -> Response<Body> {
    handle_body_from(node, headers, body, principal, None).await
}

/// [`handle_body_as`] with the client's request as it came (`None`: relayed by a peer, or the
/// fuzzing entry point — a 2026-07-28 retry of a call held on another node is then answered
/// here, with an error saying where it is held).
async fn handle_body_from(
    node: Arc<Node>,
    headers: &HeaderMap,
    body: Bytes,
    principal: Option<&Principal>,
    origin: Option<Origin<'_>>,
) -> Response<Body> {
    let raw: Box<RawValue> = match serde_json::from_slice(&body) {
        Ok(raw) => raw,
        Err(e) => {
            node.metrics.reject(Reason::bad_request);
            return reply::rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                &RpcError::parse(format!("invalid JSON: {e}")),
            );
        }
    };
    if raw.get().trim_start().starts_with('[') {
        if node.auth.is_some() {
            let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get()).unwrap_or_default();
            let msgs: Vec<Incoming> = items
                .iter()
                .filter_map(|i| jsonrpc::parse_message(i).ok())
                .collect();
            if let Err(refusal) = check_scopes(&node, principal, &msgs.iter().collect::<Vec<_>>()) {
                return refusal;
            }
        }
        return legacy::post_batch(node, headers, &raw).await;
    }
    let msg = match jsonrpc::parse_message(&raw) {
        Ok(msg) => msg,
        Err(e) => {
            node.metrics.reject(Reason::bad_request);
            return reply::rpc_error(StatusCode::BAD_REQUEST, e.id.as_ref(), &e.error);
        }
    };
    handle_message(node, headers, msg, principal, origin).await
}

/// One JSON-RPC message (not a batch), read from a POST body: scopes, then the era decision.
async fn handle_message(
    node: Arc<Node>,
    headers: &HeaderMap,
    msg: Incoming,
    principal: Option<&Principal>,
    origin: Option<Origin<'_>>,
) -> Response<Body> {
    if let Err(refusal) = check_scopes(&node, principal, &[&msg]) {
        return refusal;
    }
    let header_version = header(headers, PROTOCOL_VERSION);
    let is_initialize = matches!(&msg, Incoming::Request(r) if r.method == "initialize");
    let meta_version = match &msg {
        Incoming::Request(r) => r
            .params
            .as_ref()
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(modern::META_PROTOCOL_VERSION))
            .is_some(),
        _ => false,
    };
    let header_is_modern = header_version.is_some_and(|v| !versions::LEGACY.contains(&v));
    if header_is_modern || (!is_initialize && meta_version) {
        modern::post(node, headers, msg, principal, origin).await
    } else {
        legacy::post(node, headers, msg, principal).await
    }
}
