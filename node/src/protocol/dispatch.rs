//! The method table shared by both eras. A handler returns the `result` object; the era only
//! changes decoration (`resultType`, cache hints, `_meta.serverInfo` for 2026-07-28) and which
//! methods exist (`initialize`, `logging/setLevel` and `resources/subscribe` need a session;
//! `server/discover` is 2026-07-28 only).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::versions;
use crate::content::catalog::prompt_ref;
use crate::content::context::{Era, log_level_index};
use crate::content::{CallError, ToolCx};
use crate::jsonrpc::RpcError;
use crate::node::Node;
use crate::session::Session;
use crate::upstream::client::Whose;
use crate::upstream::{Kind, pages, resources};

/// Where a request runs.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Inside a legacy session.
    Legacy(Arc<Session>),
    /// A stateless 2026-07-28 request.
    Modern,
}

impl Scope {
    fn era(&self) -> Era {
        match self {
            Scope::Legacy(_) => Era::Legacy,
            Scope::Modern => Era::Modern,
        }
    }

    /// Whose session with an upstream the request goes in (`sessions: perClient`): a legacy
    /// session's own, or the one for what a 2026-07-28 client declared.
    fn whose(&self, cx: &ToolCx) -> Whose {
        match self {
            Scope::Legacy(s) => Whose::Client(s.clone()),
            Scope::Modern => Whose::Declared(cx.client_capabilities().clone()),
        }
    }
}

/// `serverInfo` / `Implementation` of this node.
pub fn server_info(node: &Node) -> Value {
    json!({ "name": node.settings.config.server_name, "version": env!("CARGO_PKG_VERSION") })
}

/// Server capabilities for either era.
pub fn capabilities(node: &Node, era: Era) -> Value {
    let mut caps = Map::new();
    if node.catalog.has_tools() || !node.upstreams.is_empty() {
        caps.insert("tools".into(), json!({ "listChanged": true }));
    }
    if node.catalog.has_resources() || !node.upstreams.is_empty() {
        // Upstream resources: listed, read, and subscriptions passed to the upstream.
        caps.insert(
            "resources".into(),
            json!({ "subscribe": true, "listChanged": true }),
        );
    }
    if node.catalog.has_prompts() || !node.upstreams.is_empty() {
        caps.insert("prompts".into(), json!({ "listChanged": true }));
    }
    caps.insert("completions".into(), json!({}));
    if era == Era::Legacy {
        caps.insert("logging".into(), json!({}));
    }
    Value::Object(caps)
}

fn str_param<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, CallError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(CallError::InvalidParams(format!(
            "`{name}` must be a string"
        ))),
        None => Err(CallError::InvalidParams(format!("missing `{name}`"))),
    }
}

fn object_param(
    params: &mut Map<String, Value>,
    name: &str,
) -> Result<Map<String, Value>, CallError> {
    match params.remove(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(CallError::InvalidParams(format!(
            "`{name}` must be an object"
        ))),
    }
}

/// Handles one request (everything except `initialize` and `subscriptions/listen`, which the
/// transport handles because they change connection state).
pub async fn dispatch(
    node: Arc<Node>,
    scope: Scope,
    cx: ToolCx,
    method: String,
    mut params: Map<String, Value>,
) -> Result<Value, CallError> {
    let era = scope.era();
    let result = match method.as_str() {
        "ping" if era == Era::Legacy => json!({}),
        "tools/list" if node.upstreams.is_empty() => list(era, "tools", node.catalog.tools_json()),
        "resources/list" if node.upstreams.is_empty() => {
            list(era, "resources", node.catalog.resources_json())
        }
        "resources/templates/list" if node.upstreams.is_empty() => {
            list(era, "resourceTemplates", node.catalog.templates_json())
        }
        "prompts/list" if node.upstreams.is_empty() => {
            list(era, "prompts", node.catalog.prompts_json())
        }
        // With upstreams: the merged lists, in pages (upstream/pages.rs).
        "tools/list" => paged(
            era,
            "tools",
            node.upstreams.tools_json(node.catalog.tools_json()),
            &params,
        )?,
        "resources/list" => paged(
            era,
            "resources",
            node.upstreams
                .resources_json(Kind::Resources, node.catalog.resources_json(), |uri| {
                    node.catalog.resource_exists(uri)
                }),
            &params,
        )?,
        "resources/templates/list" => paged(
            era,
            "resourceTemplates",
            node.upstreams
                .resources_json(Kind::Templates, node.catalog.templates_json(), |uri| {
                    node.catalog.resource_exists(uri)
                }),
            &params,
        )?,
        "prompts/list" => paged(
            era,
            "prompts",
            node.upstreams.prompts_json(node.catalog.prompts_json()),
            &params,
        )?,
        "tools/call" => {
            let name = str_param(&params, "name")?.to_string();
            let args = object_param(&mut params, "arguments")?;
            // Built-in names win over an upstream's prefixed ones (upstream/served.rs).
            if node.catalog.tool(&name).is_none()
                && let Some((upstream, tool)) = node.upstreams.route(&name)
            {
                return match upstream.call_tool(&cx, scope.whose(&cx), tool, args).await {
                    Ok(result) => Ok(decorate(&node, era, finish(era, result))),
                    // What the upstream asks a 2026-07-28 client (upstream/bridge.rs).
                    Err(e) => input_or_error(&node, &name, era, e).map(|v| decorate(&node, era, v)),
                };
            }
            let call = node.catalog.call_tool(cx, &name, args)?;
            match call.await {
                Ok(result) => finish(era, serde_json::to_value(result).unwrap_or_default()),
                Err(e) => {
                    return input_or_error(&node, &name, era, e).map(|v| decorate(&node, era, v));
                }
            }
        }
        "resources/read" => {
            let uri = str_param(&params, "uri")?.to_string();
            if let Some(route) = node
                .upstreams
                .route_resource(&uri, |u| node.catalog.resource_exists(u))
            {
                let result = match route
                    .upstream
                    .read_resource(&cx, scope.whose(&cx), &route.uri)
                    .await
                {
                    Ok(result) => result,
                    Err(e) => {
                        return input_or_error(&node, &uri, era, e)
                            .map(|v| decorate(&node, era, v));
                    }
                };
                let mut v = finish(era, resources::served_read(&route, result));
                if era == Era::Modern {
                    add_cache_hints(&mut v);
                }
                return Ok(decorate(&node, era, v));
            }
            let read = node.catalog.read_resource(cx, &uri)?;
            match read.await {
                Ok(result) => {
                    let mut v = finish(era, serde_json::to_value(result).unwrap_or_default());
                    if era == Era::Modern {
                        add_cache_hints(&mut v);
                    }
                    v
                }
                Err(e) => {
                    return input_or_error(&node, &uri, era, e).map(|v| decorate(&node, era, v));
                }
            }
        }
        "prompts/get" => {
            let name = str_param(&params, "name")?.to_string();
            let args = object_param(&mut params, "arguments")?;
            for (k, v) in &args {
                if !v.is_string() {
                    return Err(CallError::InvalidParams(format!(
                        "argument `{k}` must be a string"
                    )));
                }
            }
            // Built-in names win over an upstream's prefixed ones, as for tools.
            if !node.catalog.reference_exists(&prompt_ref(&name))
                && let Some((upstream, prompt)) = node.upstreams.route(&name)
            {
                return match upstream
                    .get_prompt(&cx, scope.whose(&cx), prompt, args)
                    .await
                {
                    Ok(result) => Ok(decorate(&node, era, finish(era, result))),
                    Err(e) => input_or_error(&node, &name, era, e).map(|v| decorate(&node, era, v)),
                };
            }
            let get = node.catalog.get_prompt(cx, &name, args)?;
            match get.await {
                Ok(result) => finish(era, serde_json::to_value(result).unwrap_or_default()),
                Err(e) => {
                    return input_or_error(&node, &name, era, e).map(|v| decorate(&node, era, v));
                }
            }
        }
        "completion/complete" => complete(&node, params, scope.whose(&cx)).await?,
        "resources/subscribe" | "resources/unsubscribe" => {
            let Scope::Legacy(session) = &scope else {
                return Err(CallError::Rpc(RpcError::method_not_found(&method)));
            };
            let uri = str_param(&params, "uri")?;
            subscription(&node, session, uri, method == "resources/subscribe").await?;
            json!({})
        }
        "logging/setLevel" => {
            let Scope::Legacy(session) = &scope else {
                return Err(CallError::Rpc(RpcError::method_not_found(&method)));
            };
            let level = str_param(&params, "level")?;
            let idx = log_level_index(level)
                .ok_or_else(|| CallError::InvalidParams(format!("unknown log level `{level}`")))?;
            session.state.lock().log_level = idx;
            // Upstreams are asked too; the session's own level is set either way (it filters
            // what reaches this client), and a refusal names the upstream.
            node.upstreams
                .set_level(session, level)
                .await
                .map_err(|(name, e)| CallError::Rpc(e.to_rpc(&name)))?;
            json!({})
        }
        "server/discover" if era == Era::Modern => {
            let mut v = json!({
                "supportedVersions": versions::ALL,
                "capabilities": capabilities(&node, era),
            });
            add_cache_hints(&mut v);
            v
        }
        "initialize" if era == Era::Legacy => {
            return Err(CallError::Rpc(RpcError::invalid_request(
                "`initialize` is only valid as the first request",
            )));
        }
        other => return Err(CallError::Rpc(RpcError::method_not_found(other))),
    };
    Ok(decorate(&node, era, result))
}

fn list(era: Era, key: &str, items: &Value) -> Value {
    let mut v = json!({ key: items });
    if era == Era::Modern {
        add_cache_hints(&mut v);
    }
    v
}

/// One page of a merged list (`params.cursor` names it), with `nextCursor` when more follow.
fn paged(
    era: Era,
    key: &str,
    items: Vec<Value>,
    params: &Map<String, Value>,
) -> Result<Value, CallError> {
    let cursor = match params.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(_) => {
            return Err(CallError::InvalidParams("`cursor` must be a string".into()));
        }
    };
    let (items, next) =
        pages::page(items, cursor).map_err(|e| CallError::InvalidParams(e.to_string()))?;
    let mut v = list(era, key, &Value::Array(items));
    if let Some(next) = next {
        v["nextCursor"] = json!(next);
    }
    Ok(v)
}

fn add_cache_hints(v: &mut Value) {
    if let Value::Object(m) = v {
        m.insert("ttlMs".into(), json!(0));
        m.insert("cacheScope".into(), json!("public"));
    }
}

/// Legacy results carry no `resultType` (older clients do not know it).
fn finish(era: Era, mut v: Value) -> Value {
    if era == Era::Legacy
        && let Value::Object(m) = &mut v
    {
        m.remove("resultType");
    }
    v
}

fn decorate(node: &Node, era: Era, mut v: Value) -> Value {
    if era == Era::Modern
        && let Value::Object(m) = &mut v
    {
        m.entry("resultType").or_insert_with(|| json!("complete"));
        let meta = m.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            meta.insert(
                "io.modelcontextprotocol/serverInfo".into(),
                server_info(node),
            );
        }
    }
    v
}

/// Turns a handler's request for input into the 2026-07-28 `input_required` result, signing
/// the state it wants back (bound to `name`, the tool, prompt or resource).
fn input_or_error(node: &Node, name: &str, era: Era, e: CallError) -> Result<Value, CallError> {
    match (era, e) {
        (Era::Modern, CallError::InputRequired { requests, state }) => {
            let mut input_requests = Map::new();
            for r in requests {
                input_requests.insert(r.key, json!({ "method": r.method, "params": r.params }));
            }
            let mut v = json!({ "resultType": "input_required", "inputRequests": input_requests });
            if let Some(state) = state {
                v["requestState"] = json!(node.state_signer.sign(name, &state));
            }
            Ok(v)
        }
        (_, e) => Err(e),
    }
}

/// `resources/subscribe` (`on`) or `resources/unsubscribe` of `uri` in a legacy session: a
/// URI served by an upstream is passed to it — in the session's own session with it
/// (`sessions: perClient`, `upstream/client/own.rs`), else in the node's (upstream/kept.rs:
/// counted per node, told again to a new upstream session) — before the session records it,
/// so a refusal leaves nothing.
async fn subscription(
    node: &Node,
    session: &Arc<Session>,
    uri: &str,
    on: bool,
) -> Result<(), CallError> {
    let had = {
        let st = session.state.lock();
        let had = st.subscriptions.iter().any(|u| &**u == uri);
        if on && !had && st.subscriptions.len() >= 256 {
            return Err(CallError::InvalidParams(
                "at most 256 subscriptions per session".into(),
            ));
        }
        had
    };
    let route = node
        .upstreams
        .route_resource(uri, |u| node.catalog.resource_exists(u));
    if let Some(route) = &route {
        let client = route.upstream.client();
        let asked = if on && !had {
            client.subscribe_for(session, &route.uri, uri).await
        } else if !on && had {
            client.unsubscribe_for(session, &route.uri, uri).await
        } else {
            Ok(())
        };
        asked.map_err(|e| CallError::Rpc(e.to_rpc(route.upstream.name())))?;
    }
    {
        let mut st = session.state.lock();
        st.subscriptions.retain(|u| &**u != uri);
        if on {
            st.subscriptions.push(uri.into());
        }
    }
    if let Some(route) = &route {
        // In its own upstream session (`sessions: perClient`), the updates come on that
        // session's standalone stream: opened with the first subscription (and answered once
        // open, so an update sent right after is not missed), closed after the last.
        route.upstream.client().review(session, on).await;
    }
    Ok(())
}

/// `completion/complete`: from the catalog when it has the reference, else from the upstream
/// that serves the prompt (`<upstream>__<prompt>`) or the resource template, asked with the
/// name or URI it knows.
async fn complete(
    node: &Node,
    params: Map<String, Value>,
    whose: Whose,
) -> Result<Value, CallError> {
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| CallError::InvalidParams("missing `ref`".into()))?;
    let key = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => format!(
            "ref/prompt:{}",
            reference
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| CallError::InvalidParams("missing `ref.name`".into()))?
        ),
        Some("ref/resource") => format!(
            "ref/resource:{}",
            reference
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| CallError::InvalidParams("missing `ref.uri`".into()))?
        ),
        _ => {
            return Err(CallError::InvalidParams(
                "`ref.type` must be `ref/prompt` or `ref/resource`".into(),
            ));
        }
    };
    if !node.catalog.reference_exists(&key) {
        let name = &key[4..];
        let routed = match name.split_once(':') {
            Some(("prompt", prompt)) => node
                .upstreams
                .route(prompt)
                .map(|(u, p)| (u, json!({ "type": "ref/prompt", "name": p }))),
            Some(("resource", uri)) => node
                .upstreams
                .route_reference(uri)
                .map(|(u, p)| (u, json!({ "type": "ref/resource", "uri": p }))),
            _ => None,
        };
        if let Some((upstream, reference)) = routed {
            let upstream = upstream.clone();
            return upstream
                .complete(params, reference, whose)
                .await
                .map_err(|e| CallError::Rpc(e.to_rpc(upstream.name())));
        }
        return Err(CallError::InvalidParams(format!(
            "unknown reference `{}`",
            &key[4..]
        )));
    }
    let argument = params
        .get("argument")
        .and_then(Value::as_object)
        .ok_or_else(|| CallError::InvalidParams("missing `argument`".into()))?;
    let name = argument
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CallError::InvalidParams("missing `argument.name`".into()))?;
    let value = argument.get("value").and_then(Value::as_str).unwrap_or("");
    let (values, total) = node.catalog.complete(&key, name, value).unwrap_or_default();
    let has_more = total > values.len();
    Ok(json!({ "completion": { "values": values, "total": total, "hasMore": has_more } }))
}
