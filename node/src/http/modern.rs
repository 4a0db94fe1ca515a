//! 2026-07-28 stateless requests: header and `_meta` validation, then dispatch with no
//! session; `subscriptions/listen` holds an SSE stream of change notifications.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::stream_queue;

use super::body::Body;
use super::exchange::{self, Inflight};
use super::forward::{self, Origin};
use super::headers::{PROTOCOL_VERSION, header};
use super::legacy::stream_guard;
use super::outbound::{DirectOut, StreamOut};
use super::reply;
use crate::content::ChangeEvent;
use crate::content::context::{Era, ToolCxBuilder, log_level_index};
use crate::jsonrpc::{self, Incoming, RequestId, RequestMsg, RpcError, code};
use crate::metrics::{MethodLabel, Outcome, Reason};
use crate::node::Node;
use crate::protocol::dispatch::{self, Scope};
use crate::protocol::notify::change_message;
use crate::protocol::versions;
use crate::session::SSE_KEEPALIVE;

/// `_meta` key of the protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the log level.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key of the subscription id on listen-stream notifications.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

fn bad(id: Option<&RequestId>, error: RpcError) -> Response<Body> {
    let status = exchange::status_for(Era::Modern, error.code);
    let status = if status == StatusCode::OK {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    reply::rpc_error(status, id, &error)
}

fn mismatch(id: Option<&RequestId>, message: String) -> Response<Body> {
    bad(id, RpcError::new(code::HEADER_MISMATCH, message))
}

/// Decodes a header value that may use the `=?base64?…?=` form.
fn decode_header_value(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            use base64_lite::decode;
            decode(b64).and_then(|bytes| String::from_utf8(bytes).ok())
        }
        None => Some(v.to_string()),
    }
}

/// POST of a 2026-07-28 message by `principal` (auth on); `origin` is the client's request as
/// it came (a retry of a call held on another node is forwarded there; `None` when a peer
/// relayed it).
pub async fn post(
    node: Arc<Node>,
    headers: &HeaderMap,
    msg: Incoming,
    principal: Option<&crate::auth::Principal>,
    origin: Option<Origin<'_>>,
) -> Response<Body> {
    let r = match msg {
        Incoming::Request(r) => r,
        Incoming::Notification { .. } => {
            node.metrics
                .observe(MethodLabel::notification, Outcome::ok, 0.0);
            return reply::accepted();
        }
        Incoming::Response { id, .. } => {
            node.metrics.reject(Reason::bad_request);
            return bad(
                Some(&id),
                RpcError::invalid_request("2026-07-28 clients send no responses"),
            );
        }
    };
    if let Err(resp) = validate(&node, headers, &r) {
        node.metrics.reject(Reason::bad_request);
        return resp;
    }
    let limits = &node.settings.config.limits;
    let Some(inflight) = Inflight::admit(&node, &r.method) else {
        node.metrics.reject(Reason::overload);
        return reply::overloaded(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&r.id),
            "server overloaded",
            limits.retry_after_secs,
        );
    };
    let mut params = r.params.unwrap_or_default();
    let meta = match params.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if r.method == "subscriptions/listen" {
        drop(inflight);
        return listen(node, r.id, &params).await;
    }
    let caps = meta
        .get(META_CLIENT_CAPABILITIES)
        .cloned()
        .unwrap_or_else(|| json!({}));
    let send_logs = meta
        .get(META_LOG_LEVEL)
        .and_then(Value::as_str)
        .and_then(log_level_index);
    let input_responses = match params.remove("inputResponses") {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    let request_state = match params.remove("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => {
            let bound_to = params
                .get("name")
                .or_else(|| params.get("uri"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match node.state_signer.verify(bound_to, &token) {
                Some(state) => {
                    // A call an upstream asked this client about is held on one node of the
                    // cluster (`upstream/bridge.rs`): a retry from a client that reached
                    // another goes on there.
                    if let Some((at, upstream)) = held_elsewhere(&node, &state)
                        && let Some(layer) = node.layer()
                        && let Some(origin) = origin
                    {
                        let held = forward::Held {
                            at,
                            upstream: &upstream,
                            id: &r.id,
                        };
                        // Answered there — or, that node being gone, continued here when the
                        // state allows it (`upstream/bridge.rs`, `Marker::Held`).
                        if let Some(answer) =
                            forward::to_held(&node, layer.as_ref(), held, headers, origin).await
                        {
                            return answer;
                        }
                    }
                    Some(state)
                }
                None => {
                    node.metrics.reject(Reason::bad_request);
                    return reply::rpc_error(
                        StatusCode::OK,
                        Some(&r.id),
                        &RpcError::invalid_params(
                            "`requestState` is not one this server issued, or was modified",
                        ),
                    );
                }
            }
        }
        Some(_) => {
            return reply::rpc_error(
                StatusCode::OK,
                Some(&r.id),
                &RpcError::invalid_params("`requestState` must be a string"),
            );
        }
    };
    let (tx, rx) = stream_queue::channel(limits.outbound_queue as usize);
    let out = Arc::new(DirectOut::new(tx));
    let cx = ToolCxBuilder::new(Era::Modern)
        .progress_token(meta.get("progressToken").cloned())
        .send_logs(send_logs)
        .client_capabilities(caps)
        .outbound(out.clone())
        .announce_to(node.clone())
        .input_responses(input_responses)
        .request_state(request_state)
        .principal(principal.map(|p| p.id.to_hex()))
        .build();
    let work = dispatch::dispatch(node.clone(), Scope::Modern, cx, r.method, params);
    exchange::drive(
        out as Arc<dyn StreamOut>,
        rx,
        Box::pin(work),
        r.id,
        Era::Modern,
        None,
        inflight,
        Vec::new(),
        Some(stream_guard(&node)),
    )
    .await
}

/// The node holding the call a `requestState` continues, when that is another node.
fn held_elsewhere(node: &Node, state: &Value) -> Option<(std::net::SocketAddr, String)> {
    let (at, upstream) = crate::upstream::bridge::held_at(state)?;
    (Some(at) != node.upstreams.held().me()).then_some((at, upstream))
}

/// Transport checks of the 2026-07-28 revision, in the order a client can fix them.
fn validate(node: &Node, headers: &HeaderMap, r: &RequestMsg) -> Result<(), Response<Body>> {
    let id = Some(&r.id);
    let meta = r
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object);
    let meta_version = meta
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    let Some(header_version) = header(headers, PROTOCOL_VERSION) else {
        return Err(mismatch(id, "missing MCP-Protocol-Version header".into()));
    };
    let Some(meta) = meta else {
        return Err(bad(
            id,
            RpcError::invalid_params("missing `params._meta` (2026-07-28 requests carry it)"),
        ));
    };
    let Some(meta_version) = meta_version else {
        return Err(bad(
            id,
            RpcError::invalid_params(format!("missing _meta key `{META_PROTOCOL_VERSION}`")),
        ));
    };
    if !meta
        .get(META_CLIENT_CAPABILITIES)
        .is_some_and(Value::is_object)
    {
        return Err(bad(
            id,
            RpcError::invalid_params(format!(
                "missing or invalid _meta key `{META_CLIENT_CAPABILITIES}`"
            )),
        ));
    }
    if header_version != meta_version {
        return Err(mismatch(
            id,
            format!(
                "Header mismatch: MCP-Protocol-Version header value '{header_version}' does not match body value '{meta_version}'"
            ),
        ));
    }
    if header_version != versions::MODERN {
        return Err(bad(
            id,
            RpcError::new(
                code::UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
            )
            .with_data(json!({ "supported": versions::ALL, "requested": header_version })),
        ));
    }
    match header(headers, "mcp-method").map(str::trim) {
        None => return Err(mismatch(id, "missing Mcp-Method header".into())),
        Some(m) if m != r.method => {
            return Err(mismatch(
                id,
                format!(
                    "Header mismatch: Mcp-Method header value '{m}' does not match body value '{}'",
                    r.method
                ),
            ));
        }
        _ => {}
    }
    let name_field = match r.method.as_str() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let body_value = r
            .params
            .as_ref()
            .and_then(|p| p.get(field))
            .and_then(Value::as_str);
        let header_value = header(headers, "mcp-name")
            .map(str::trim)
            .and_then(decode_header_value);
        match (header_value, body_value) {
            (None, _) => return Err(mismatch(id, "missing Mcp-Name header".into())),
            (Some(h), Some(b)) if h != b => {
                return Err(mismatch(
                    id,
                    format!(
                        "Header mismatch: Mcp-Name header value '{h}' does not match body value '{b}'"
                    ),
                ));
            }
            _ => {}
        }
    }
    if r.method == "tools/call" {
        check_param_headers(node, headers, r)?;
    }
    Ok(())
}

/// `Mcp-Param-*` headers for tool arguments marked `x-mcp-header`.
fn check_param_headers(
    node: &Node,
    headers: &HeaderMap,
    r: &RequestMsg,
) -> Result<(), Response<Body>> {
    let params = r.params.as_ref();
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return Ok(());
    };
    let Some(tool) = node.catalog.tool(name) else {
        return Ok(());
    };
    let Some(Value::Object(props)) = tool.input_schema.get("properties") else {
        return Ok(());
    };
    let args = params
        .and_then(|p| p.get("arguments"))
        .and_then(Value::as_object);
    for (prop, schema) in props {
        let Some(header_name) = schema.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let body_value = args.and_then(|a| a.get(prop)).filter(|v| !v.is_null());
        let header_value = header(
            headers,
            &format!("mcp-param-{}", header_name.to_ascii_lowercase()),
        )
        .and_then(decode_header_value);
        let ok = match (body_value, &header_value) {
            (None, None) => true,
            (Some(Value::String(s)), Some(h)) => s == h,
            (Some(Value::Number(n)), Some(h)) => h.parse::<f64>().ok() == n.as_f64(),
            (Some(Value::Bool(b)), Some(h)) => h == if *b { "true" } else { "false" },
            _ => false,
        };
        if !ok {
            return Err(mismatch(
                Some(&r.id),
                format!(
                    "Header mismatch: Mcp-Param-{header_name} does not match argument `{prop}`"
                ),
            ));
        }
    }
    Ok(())
}

async fn listen(node: Arc<Node>, id: RequestId, params: &Map<String, Value>) -> Response<Body> {
    let filter = params
        .get("notifications")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let flag = |k: &str| filter.get(k).and_then(Value::as_bool) == Some(true);
    let mut honored = Map::new();
    for k in [
        "toolsListChanged",
        "promptsListChanged",
        "resourcesListChanged",
    ] {
        if flag(k) {
            honored.insert(k.into(), json!(true));
        }
    }
    let uris: Vec<String> = filter
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if !uris.is_empty() {
        honored.insert("resourceSubscriptions".into(), json!(uris));
    }
    // Upstream resources are subscribed to upstream while the stream lasts (`held` lives in
    // the stream's task); a refusal is the answer, naming the upstream.
    let held = match node
        .upstreams
        .hold(&uris, |u| node.catalog.resource_exists(u))
        .await
    {
        Ok(held) => held,
        Err((name, e)) => {
            return reply::rpc_error(StatusCode::OK, Some(&id), &e.to_rpc(&name));
        }
    };
    let sub_id = id.to_value();
    let (tx, rx) = stream_queue::channel(node.settings.config.limits.outbound_queue as usize);
    let ack = jsonrpc::notification(
        "notifications/subscriptions/acknowledged",
        &json!({ "_meta": { META_SUBSCRIPTION_ID: sub_id }, "notifications": honored }),
    );
    let _ = tx.try_send(reply::sse_data(&ack));
    let mut changes = node.subscribe_changes();
    let (tools, prompts, resources) = (
        flag("toolsListChanged"),
        flag("promptsListChanged"),
        flag("resourcesListChanged"),
    );
    let wants = move |ev: &ChangeEvent| match ev {
        ChangeEvent::ToolsListChanged => tools,
        ChangeEvent::PromptsListChanged => prompts,
        ChangeEvent::ResourcesListChanged => resources,
        ChangeEvent::ResourceUpdated(uri) => uris.iter().any(|u| u == uri),
    };
    let task_node = node.clone();
    let catch_node = node.clone();
    // A panic ends the stream (its sender drops) and is counted like any request's.
    let period = std::time::Duration::from_secs(node.settings.config.limits.sse_keepalive_secs);
    let listen = async move {
        let _held = held;
        // A drain completes the subscription at once (the client listens again elsewhere),
        // not at the next keep-alive.
        let complete = || {
            let done = jsonrpc::response(
                &id,
                &json!({
                    "resultType": "complete",
                    "_meta": { META_SUBSCRIPTION_ID: id.to_value() },
                }),
            );
            let _ = tx.try_send(reply::sse_data(&done));
        };
        let drained = task_node.drain_started();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if task_node.is_draining() {
            complete();
            return;
        }
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tx.closed() => break,
                _ = &mut drained => {
                    complete();
                    break;
                }
                _ = keepalive.tick() => {
                    let _ = tx.try_send(Bytes::from_static(SSE_KEEPALIVE));
                }
                ev = changes.recv() => match ev {
                    Ok(ev) if wants(&ev) => {
                        let (method, mut params) = change_message(&ev);
                        params["_meta"] = json!({ META_SUBSCRIPTION_ID: id.to_value() });
                        if tx.try_send(reply::sse_data(&jsonrpc::notification(method, &params))).is_err() {
                            break; // reader too slow or gone: end the stream, the client re-listens
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    };
    tokio::spawn(async move {
        let _ = super::panics::catch(&catch_node, super::panics::Origin::Listen, listen).await;
    });
    node.metrics
        .observe(MethodLabel::subscriptions_listen, Outcome::ok, 0.0);
    reply::sse(None, rx, Some(stream_guard(&node)))
}

/// A minimal standard base64 decoder for `=?base64?…?=` header values (no dependency needed
/// for a dozen lines).
mod base64_lite {
    pub(super) fn decode(input: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 3 / 4);
        let mut buf = 0u32;
        let mut bits = 0;
        for c in input.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => break,
                _ => return None,
            };
            buf = (buf << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
            }
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn decodes() {
            assert_eq!(super::decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
            assert_eq!(
                super::decode("4pyTIMOgIGxhIG1vZGU=").map(|v| String::from_utf8(v).is_ok()),
                Some(true)
            );
            assert!(super::decode("***").is_none());
        }
    }
}
