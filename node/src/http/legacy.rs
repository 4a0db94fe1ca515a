//! 2025-11-25 (and 2025-06-18, 2025-03-26) sessions over Streamable HTTP: `initialize`,
//! requests within a session, the GET stream with `Last-Event-ID` resumption, and DELETE.

use std::sync::Arc;
use std::time::Duration;

use crate::stream_queue;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::body::{Body, StreamGuard};
use super::durable;
use super::exchange::{self, Inflight};
use super::headers::{PROTOCOL_VERSION, SESSION_ID, accepts, header};
use super::outbound::{SessionOut, StreamOut};
use super::reply;
use crate::content::context::{Era, ToolCxBuilder};
use crate::jsonrpc::{self, Incoming, RequestId, RequestMsg, RpcError};
use crate::metrics::{MethodLabel, Outcome, Reason};
use crate::node::Node;
use crate::protocol::dispatch::{self, Scope};
use crate::protocol::versions;
use crate::session::layer::Admission;
use crate::session::{EventId, ProtocolEra, Session, SessionId, StreamKind};

/// Finds the session named by the request: 400 without the header, 404 if unknown.
fn find_session(node: &Node, headers: &HeaderMap) -> Result<Arc<Session>, Response<Body>> {
    let Some(raw) = header(headers, SESSION_ID) else {
        node.metrics.reject(Reason::bad_request);
        return Err(reply::refuse(
            StatusCode::BAD_REQUEST,
            "missing Mcp-Session-Id header",
        ));
    };
    let id = SessionId::parse(raw);
    match id.and_then(|id| node.sessions.get(&id)) {
        Some(s) => Ok(s),
        // Routed here, and gone to another node since: the retry is routed there.
        None if id.is_some_and(|id| node.layer().is_some_and(|l| l.is_leaving(id))) => {
            node.metrics.reject(Reason::session_moved);
            Err(reply::overloaded(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the session has just moved to another node; retry",
                node.settings.config.limits.retry_after_secs,
            ))
        }
        None => {
            node.metrics.reject(Reason::unknown_session);
            let mut r = reply::refuse(StatusCode::NOT_FOUND, "unknown or expired session");
            *r.status_mut() = StatusCode::NOT_FOUND;
            Err(r)
        }
    }
}

/// Checks `MCP-Protocol-Version` on a request inside a session.
fn check_version_header(node: &Node, headers: &HeaderMap) -> Result<(), Response<Body>> {
    match header(headers, PROTOCOL_VERSION) {
        None => Ok(()),
        Some(v) if versions::LEGACY.contains(&v) => Ok(()),
        Some(v) => {
            node.metrics.reject(Reason::bad_request);
            Err(reply::refuse(
                StatusCode::BAD_REQUEST,
                &format!("unsupported MCP-Protocol-Version `{v}`"),
            ))
        }
    }
}

/// POST in the legacy era; `principal` (auth on) is who an `initialize` binds the session to.
pub async fn post(
    node: Arc<Node>,
    headers: &HeaderMap,
    msg: Incoming,
    principal: Option<&crate::auth::Principal>,
) -> Response<Body> {
    if let Incoming::Request(r) = &msg
        && r.method == "initialize"
    {
        return initialize(&node, r, principal).await;
    }
    if let Err(r) = check_version_header(&node, headers) {
        return r;
    }
    let session = match find_session(&node, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = node.now_ms();
    match msg {
        Incoming::Notification { method, params } => {
            let waits = {
                let mut st = session.state.lock();
                st.last_seen_ms = now;
                let waits = durable::notification_waits(&method, st.initialized);
                match method.as_str() {
                    "notifications/initialized" => st.initialized = true,
                    "notifications/cancelled" => {
                        let id = params
                            .as_ref()
                            .and_then(|p| p.get("requestId"))
                            .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
                        if let Some(id) = id {
                            st.cancel_inflight(&id);
                        }
                    }
                    _ => {}
                }
                waits
            };
            if waits {
                node.session_changed_durably(&session).await;
            } else {
                node.session_changed(&session);
            }
            node.metrics
                .observe(MethodLabel::notification, Outcome::ok, 0.0);
            reply::accepted()
        }
        Incoming::Response { id, outcome } => {
            let mut st = session.state.lock();
            st.last_seen_ms = now;
            st.complete_client_request(&id, outcome);
            node.metrics
                .observe(MethodLabel::response, Outcome::ok, 0.0);
            reply::accepted()
        }
        Incoming::Request(r) => request(node, session, r, now).await,
    }
}

async fn request(
    node: Arc<Node>,
    session: Arc<Session>,
    r: RequestMsg,
    now: u64,
) -> Response<Body> {
    let limits = &node.settings.config.limits;
    let (caps, log_level, cancel) = {
        let mut st = session.state.lock();
        st.last_seen_ms = now;
        if !st
            .bucket
            .try_take(limits.session_rate_per_sec, limits.session_burst, now)
        {
            drop(st);
            node.metrics.reject(Reason::rate_limited);
            return reply::overloaded(
                StatusCode::TOO_MANY_REQUESTS,
                Some(&r.id),
                "rate limit exceeded for this session",
                limits.retry_after_secs,
            );
        }
        let cancel = (r.method == "tools/call").then(|| st.track_inflight(r.id.clone()));
        (st.client_capabilities(), st.log_level, cancel)
    };
    let Some(mut inflight) = Inflight::admit(&node, &r.method) else {
        session.state.lock().untrack_inflight(&r.id);
        node.metrics.reject(Reason::overload);
        return reply::overloaded(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&r.id),
            "server overloaded",
            limits.retry_after_secs,
        );
    };
    let (tx, rx) = stream_queue::channel(limits.outbound_queue as usize);
    let out = Arc::new(SessionOut::new(
        session.clone(),
        tx,
        limits.event_log_capacity as usize,
        Duration::from_secs(limits.client_request_timeout_secs),
        node.layer().cloned(),
    ));
    let mut params = r.params.unwrap_or_default();
    let progress_token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .cloned();
    params.remove("_meta");
    let cx = ToolCxBuilder::new(Era::Legacy)
        .progress_token(progress_token)
        .send_logs(Some(log_level))
        .client_capabilities(caps)
        .outbound(out.clone())
        .announce_to(node.clone())
        .build();
    // Requests that change the session's durable state (the others only add events, which
    // the stream output replicates as they happen).
    let mutates = durable::changes_state(&r.method);
    let method = if mutates {
        r.method.clone()
    } else {
        String::new()
    };
    let work = dispatch::dispatch(
        node.clone(),
        Scope::Legacy(session.clone()),
        cx,
        r.method,
        params,
    );
    let id = r.id.clone();
    let untrack_session = session.clone();
    inflight.on_finish(move || untrack_session.state.lock().untrack_inflight(&id));
    let guard = stream_guard(&node);
    let response = exchange::drive(
        out as Arc<dyn StreamOut>,
        rx,
        Box::pin(work),
        r.id,
        Era::Legacy,
        cancel,
        inflight,
        Vec::new(),
        Some(guard),
    )
    .await;
    if mutates {
        let streamed = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if durable::request_waits(&method, streamed) {
            // The answer tells the client the change happened: the replicas hold it first.
            node.session_changed_durably(&session).await;
        } else {
            node.session_changed(&session);
        }
    }
    response
}

/// A JSON-RPC batch: part of 2025-03-26 only, so it needs a session that negotiated it. Each
/// request is answered in the JSON array (no streaming inside a batch: its notifications are
/// dropped and it cannot ask the client anything); notifications and responses are applied.
pub async fn post_batch(
    node: Arc<Node>,
    headers: &HeaderMap,
    raw: &serde_json::value::RawValue,
) -> Response<Body> {
    let refuse_batch = |node: &Node, message: &str| {
        node.metrics.reject(Reason::bad_request);
        reply::rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            &RpcError::invalid_request(message),
        )
    };
    let items: Vec<Box<serde_json::value::RawValue>> = match serde_json::from_str(raw.get()) {
        Ok(items) => items,
        Err(_) => return refuse_batch(&node, "invalid batch"),
    };
    if items.is_empty() {
        return refuse_batch(&node, "empty batch");
    }
    let session = match find_session(&node, headers) {
        Ok(s) => s,
        Err(_) => {
            return refuse_batch(
                &node,
                "JSON-RPC batches exist only in 2025-03-26 and need an Mcp-Session-Id",
            );
        }
    };
    if session.state.lock().version != ProtocolEra::V2025_03_26 {
        return refuse_batch(
            &node,
            "JSON-RPC batches exist only in protocol 2025-03-26; send one message per request",
        );
    }
    let limits = &node.settings.config.limits;
    let mut answers: Vec<Vec<u8>> = Vec::new();
    // Whether an item changed the replicated state: the answer (JSON) waits for the replicas.
    let mut waits = false;
    for item in items {
        let msg = match jsonrpc::parse_message(&item) {
            Ok(msg) => msg,
            Err(e) => {
                answers.push(jsonrpc::error_response(e.id.as_ref(), &e.error));
                continue;
            }
        };
        let now = node.now_ms();
        match msg {
            Incoming::Request(r) if r.method == "initialize" => {
                answers.push(jsonrpc::error_response(
                    Some(&r.id),
                    &RpcError::invalid_request("initialize must not be part of a batch"),
                ));
            }
            Incoming::Request(r) => {
                let (allowed, caps) = {
                    let mut st = session.state.lock();
                    st.last_seen_ms = now;
                    let allowed =
                        st.bucket
                            .try_take(limits.session_rate_per_sec, limits.session_burst, now);
                    (allowed, st.client_capabilities())
                };
                if !allowed {
                    node.metrics.reject(Reason::rate_limited);
                    let err = RpcError::new(
                        jsonrpc::code::OVERLOADED,
                        "rate limit exceeded for this session",
                    );
                    answers.push(jsonrpc::error_response(Some(&r.id), &err));
                    continue;
                }
                let Some(inflight) = Inflight::admit(&node, &r.method) else {
                    node.metrics.reject(Reason::overload);
                    let err = RpcError::new(jsonrpc::code::OVERLOADED, "server overloaded");
                    answers.push(jsonrpc::error_response(Some(&r.id), &err));
                    continue;
                };
                waits |= durable::request_waits(&r.method, false);
                let mut params = r.params.unwrap_or_default();
                params.remove("_meta");
                let cx = ToolCxBuilder::new(Era::Legacy)
                    .client_capabilities(caps)
                    .announce_to(node.clone())
                    .build();
                let result = Box::pin(dispatch::dispatch(
                    node.clone(),
                    Scope::Legacy(session.clone()),
                    cx,
                    r.method,
                    params,
                ))
                .await;
                drop(inflight);
                answers.push(match result {
                    Ok(v) => jsonrpc::response(&r.id, &v),
                    Err(e) => jsonrpc::error_response(Some(&r.id), &e.to_rpc(Era::Legacy)),
                });
            }
            Incoming::Notification { method, .. } => {
                let mut st = session.state.lock();
                st.last_seen_ms = now;
                waits |= durable::notification_waits(&method, st.initialized);
                if method == "notifications/initialized" {
                    st.initialized = true;
                }
            }
            Incoming::Response { id, outcome } => {
                session.state.lock().complete_client_request(&id, outcome);
            }
        }
    }
    if waits {
        node.session_changed_durably(&session).await;
    } else {
        node.session_changed(&session);
    }
    if answers.is_empty() {
        return reply::accepted();
    }
    let mut body =
        Vec::with_capacity(answers.iter().map(Vec::len).sum::<usize>() + answers.len() + 2);
    body.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(a);
    }
    body.push(b']');
    reply::json(StatusCode::OK, body)
}

/// Counts an open stream until the returned guard is dropped.
pub fn stream_guard(node: &Arc<Node>) -> StreamGuard {
    node.metrics.streams.inc();
    let n = node.clone();
    StreamGuard::new(move || {
        n.metrics.streams.dec();
    })
}

async fn initialize(
    node: &Arc<Node>,
    r: &RequestMsg,
    principal: Option<&crate::auth::Principal>,
) -> Response<Body> {
    let limits = &node.settings.config.limits;
    if node.is_draining() {
        node.metrics.reject(Reason::draining);
        return reply::overloaded(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&r.id),
            "node is shutting down",
            limits.retry_after_secs,
        );
    }
    if let Some(layer) = node.layer()
        && !layer.has_quorum()
    {
        // A session opened here could not be replicated, and would be a second owner's.
        node.metrics.cluster.no_quorum();
        return super::forward::no_quorum(node);
    }
    if let Some(layer) = node.layer() {
        let admission = layer.admission();
        if admission != Admission::Open {
            // Replication lags: refuse quickly rather than make every session slow.
            node.metrics.reject(Reason::overload);
            node.metrics.cluster.admission_refused(admission);
            return reply::overloaded(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&r.id),
                "replication is behind; retry shortly",
                limits.retry_after_secs,
            );
        }
    }
    let empty = Map::new();
    let params = r.params.as_ref().unwrap_or(&empty);
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    if requested.is_none() {
        let err = RpcError::invalid_params("initialize: missing `protocolVersion`");
        return reply::rpc_error(StatusCode::OK, Some(&r.id), &err);
    }
    let mut caps = params
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let Some(declared) = caps.as_object_mut() else {
        let err = RpcError::invalid_params("initialize: `capabilities` must be an object");
        return reply::rpc_error(StatusCode::OK, Some(&r.id), &err);
    };
    // Copies carry the session's upstream sessions under this key: no client may set it.
    declared.remove(crate::session::UPSTREAM_SESSIONS_KEY);
    let version = versions::negotiate(requested);
    let layer = node.layer();
    let id = layer.map_or_else(SessionId::random, |l| l.new_session_id());
    let session = Arc::new(Session::new(
        id,
        version,
        &caps,
        limits.session_burst,
        node.now_ms(),
    ));
    // Bound before anyone (a replica included) sees the session.
    session.state.lock().principal = principal.map(|p| Box::new(p.id));
    if node.sessions.insert(session.clone()).is_err() {
        node.metrics.reject(Reason::session_cap);
        return reply::overloaded(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&r.id),
            "session limit reached",
            limits.retry_after_secs,
        );
    }
    node.metrics.sessions.set(node.sessions.len() as i64);
    if let Some(layer) = layer {
        // The client learns the session only once a replica holds it too.
        layer.created(&session).await;
    }
    let result = json!({
        "protocolVersion": version.as_str(),
        "capabilities": dispatch::capabilities(node, Era::Legacy),
        "serverInfo": dispatch::server_info(node),
        "instructions": "mcpcluster node: call tools/list to see what it serves.",
    });
    node.metrics
        .observe(MethodLabel::initialize, Outcome::ok, 0.0);
    let mut response = reply::json(StatusCode::OK, jsonrpc::response(&r.id, &result));
    if let Ok(v) = http::HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(SESSION_ID, v);
    }
    response
}

/// GET: the session's standalone SSE stream, or the resumption of any of its streams.
/// `relayed`: a peer relays the stream to its client (and keeps that connection alive).
pub fn get(node: Arc<Node>, headers: &HeaderMap, relayed: bool) -> Response<Body> {
    if header(headers, PROTOCOL_VERSION).is_some_and(|v| !versions::LEGACY.contains(&v)) {
        node.metrics.reject(Reason::method_not_allowed);
        return reply::method_not_allowed("POST");
    }
    if !accepts(headers, "text/event-stream") {
        node.metrics.reject(Reason::not_acceptable);
        return reply::refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Accept must list text/event-stream",
        );
    }
    let session = match find_session(&node, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let limits = &node.settings.config.limits;
    let (tx, rx) = stream_queue::channel(limits.outbound_queue as usize);
    let mut st = session.state.lock();
    // Routed here just before its hand-off copy was taken (the copy is taken under this lock,
    // after the session is marked as handing off): a stream attached now would get events the
    // successor's copy lacks. The retry is routed to the successor.
    if node.layer().is_some_and(|l| l.is_handing_off(session.id)) {
        drop(st);
        node.metrics.reject(Reason::session_moved);
        return reply::overloaded(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the session is moving to another node; retry",
            node.settings.config.limits.retry_after_secs,
        );
    }
    st.last_seen_ms = node.now_ms();
    let resume = header(headers, "last-event-id").and_then(EventId::parse);
    let resumed = match resume {
        Some(ev) => match st.stream_mut(ev.stream) {
            Some(stream) => {
                stream.resume(ev.seq, tx.clone());
                stream.set_reader_remote(relayed);
                true
            }
            None => false,
        },
        None => false,
    };
    if !resumed {
        let id = st.open_stream(StreamKind::Standalone, Some(tx.clone()));
        if let Some(stream) = st.stream_mut(id) {
            stream.set_reader_remote(relayed);
        }
        if st.version >= ProtocolEra::V2025_11_25 {
            let priming = format!("id: {}\ndata: \n\n", EventId { stream: id, seq: 0 });
            let _ = tx.try_send(Bytes::from(priming));
        }
    }
    drop(st);
    drop(tx);
    if !resumed {
        node.session_changed(&session);
    }
    reply::sse(None, rx, Some(stream_guard(&node)))
}

/// DELETE: ends the session.
pub fn delete(node: Arc<Node>, headers: &HeaderMap) -> Response<Body> {
    if header(headers, PROTOCOL_VERSION).is_some_and(|v| !versions::LEGACY.contains(&v)) {
        node.metrics.reject(Reason::method_not_allowed);
        return reply::method_not_allowed("POST");
    }
    let session = match find_session(&node, headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(s) = node.sessions.remove(&session.id) {
        for stream in s.state.lock().streams.iter_mut() {
            // Held events too: nothing will resume a deleted session.
            stream.close();
        }
        // Its own upstream sessions end with it (`sessions: perClient`).
        node.upstreams.session_ended(&s);
        if let Some(layer) = node.layer() {
            layer.deleted(&s);
        }
    }
    node.metrics.sessions.set(node.sessions.len() as i64);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::OK;
    r
}
