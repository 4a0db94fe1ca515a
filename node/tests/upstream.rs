//! Upstream MCP servers behind a node: their tools listed under `<name>__<tool>` for both
//! eras, calls forwarded, their prompts, resources and templates served (pages, URIs,
//! collisions, list changes, errors), the upstream's session re-opened when it lost it, the concurrency
//! limit and the timeout. Against the scripted upstream (`scripted/`: each behaviour on demand); against
//! the real `@modelcontextprotocol/server-everything` in `server_everything` and a Python
//! FastMCP server in `fastmcp_server` (`make e2e-upstream`, which installs them).

mod common;
mod everything;
mod scripted;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use everything::Everything;
use mcp_node::content::ToolCx;
use mcpcluster_api::{NodeConfig, UpstreamConfig};
use rmcp::model::{
    CallToolResult, ContentBlock, ReadResourceResult, Resource, ResourceContents, Tool,
};
use scripted::*;
use serde_json::{Map, Value, json};

fn upstream(name: &str, url: &str) -> UpstreamConfig {
    UpstreamConfig::new(name, url)
}

/// [`upstream`] with `sessions: shared` (one upstream session per node for every client).
fn shared(name: &str, url: &str) -> UpstreamConfig {
    let mut up = upstream(name, url);
    up.sessions = UpstreamConfig::SHARED.into();
    up
}

async fn node_with(upstreams: Vec<UpstreamConfig>) -> mcp_node::Running {
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        upstreams,
        ..NodeConfig::default()
    };
    config.log.level = "warn".into();
    let settings = mcp_node::Settings::validate(config).expect("valid test config");
    // A built-in tool named like an upstream's, and a resource with a URI the scripted
    // upstream also lists: the built-ins win.
    mcp_node::start_with(settings, |b| {
        b.tool(
            Tool::new("up__dup", "built in", Arc::new(Map::new())),
            |_cx, _args| async {
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    "built-in",
                )]))
            },
        );
        b.resource(
            Resource::new("test://builtin", "builtin"),
            |_cx: ToolCx, uri: String, _v: Vec<(String, String)>| async move {
                Ok(ReadResourceResult::new(vec![ResourceContents::text(
                    "built-in", uri,
                )]))
            },
        );
    })
    .await
    .expect("node starts")
}

/// The JSON-RPC request `id` of `method` with `params`.
fn rpc(id: u32, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// POSTs `body` inside `session`, waiting at most `within` for the whole answer.
async fn post(addr: SocketAddr, session: &str, body: &str, within: Duration) -> Reply {
    send_with(
        addr,
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", session)],
        body,
        within,
    )
    .await
}

/// POSTs `body` inside `session` until it is served (200): 503 + Retry-After while the
/// cluster's members change is the documented answer, retried every 100 ms for `within`.
async fn post_until_served(addr: SocketAddr, session: &str, body: &str, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let r = post(addr, session, body, Duration::from_secs(10)).await;
        if r.status == 200 {
            return r;
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "no answer: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A legacy request inside `session`; the JSON-RPC message answered (the last one of an SSE
/// answer).
async fn legacy(addr: SocketAddr, session: &str, method: &str, params: Value) -> Value {
    let r = post(
        addr,
        session,
        &rpc(5, method, params),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    if r.header("content-type") == Some("text/event-stream") {
        return sse_messages(&r.body).pop().unwrap_or_default();
    }
    r.json()
}

/// `tools/call` of `name` inside `session`, with `args` as its `arguments` (none when null);
/// the JSON-RPC message answered.
async fn call(addr: SocketAddr, session: &str, name: &str, args: Value) -> Value {
    let params = if args.is_null() {
        json!({ "name": name })
    } else {
        json!({ "name": name, "arguments": args })
    };
    legacy(addr, session, "tools/call", params).await
}

/// A 2026-07-28 `tools/call` of `name` with `args` as its `arguments`; the JSON-RPC
/// message answered.
async fn modern_call(addr: SocketAddr, name: &str, args: Value) -> Value {
    let params = json!({ "name": name, "arguments": args });
    modern(addr, "tools/call", Some(name), params).await
}

/// A 2026-07-28 request; the JSON-RPC message answered.
async fn modern(addr: SocketAddr, method: &str, name: Option<&str>, params: Value) -> Value {
    let r = modern_post(addr, 9, method, name, params, Duration::from_secs(20)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// POSTs a 2026-07-28 request (`_meta` added to `params`, the headers it needs), waiting at
/// most `within` for the whole answer.
async fn modern_post(
    addr: SocketAddr,
    id: u32,
    method: &str,
    name: Option<&str>,
    params: Value,
    within: Duration,
) -> Reply {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let body = rpc(id, method, params);
    let mut headers = vec![
        ACCEPT_BOTH,
        JSON,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name", n));
    }
    send_with(addr, "POST", "/mcp", &headers, &body, within).await
}

/// The node's `/metrics` text.
async fn metrics_text(admin: SocketAddr) -> String {
    let r = send_with(admin, "GET", "/metrics", &[], "", Duration::from_secs(5)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body
}

/// [`until`] with a condition that awaits (a node's metrics, say).
async fn until_async(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `ok` every 20 ms until it holds; fails naming `what` after `within`.
async fn until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls `tools/list` (legacy) until `name` is listed; bounded.
async fn wait_for_tool(addr: SocketAddr, session: &str, name: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let list = legacy(addr, session, "tools/list", json!({})).await;
        if names(&list).iter().any(|n| n == name) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "`{name}` not listed within {within:?}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {answer}"))
        .to_string()
}

#[tokio::test]
async fn tools_are_federated_with_a_prefix_for_both_eras() {
    let (url, script) = scripted_upstream().await;
    let mut up = upstream("up", &url);
    up.headers.insert("X-Key".into(), "k1".into());
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    let list = wait_for_tool(addr, &session, "up__fails", Duration::from_secs(10)).await;
    let listed = names(&list);
    // Both pages, prefixed, each once; the built-in `up__dup` once (the upstream's left out);
    // the node's own tools still there.
    for n in ["up__echo", "up__streamed", "up__slow", "up__fails", "echo"] {
        assert_eq!(
            listed.iter().filter(|l| *l == n).count(),
            1,
            "{n}: {listed:?}"
        );
    }
    assert_eq!(
        listed.iter().filter(|l| *l == "up__dup").count(),
        1,
        "{listed:?}"
    );
    let dup = list["result"]["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "up__dup"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(dup["description"], "built in", "{dup}");
    let echo = list["result"]["tools"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "up__echo"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        echo["inputSchema"],
        json!({"type": "object"}),
        "schema passed through"
    );

    // Calls, legacy: a JSON answer and an SSE answer (after a notification).
    let r = call(addr, &session, "up__echo", json!({"text": "hi"})).await;
    assert_eq!(text_of(&r), "echo: hi");
    assert!(
        r["result"].get("resultType").is_none(),
        "legacy results carry no resultType: {r}"
    );
    let r = call(addr, &session, "up__streamed", Value::Null).await;
    assert_eq!(text_of(&r), "streamed");
    let r = call(addr, &session, "up__dup", Value::Null).await;
    assert_eq!(text_of(&r), "built-in", "the built-in wins");

    // The upstream's JSON-RPC error keeps its code and data and names the upstream.
    let r = call(addr, &session, "up__fails", Value::Null).await;
    assert_eq!(r["error"]["code"], -32603, "{r}");
    assert_eq!(r["error"]["message"], "upstream `up`: it broke", "{r}");
    assert_eq!(r["error"]["data"], json!({"why": "test"}), "{r}");

    // 2026-07-28 clients see and call the same tools.
    let list = modern(addr, "tools/list", None, json!({})).await;
    assert!(names(&list).contains(&"up__streamed".to_string()), "{list}");
    let r = modern_call(addr, "up__echo", json!({"text": "new"})).await;
    assert_eq!(text_of(&r), "echo: new");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");

    // Three upstream sessions served all of this (`sessions: perClient`, the default): the
    // node's own (its lists), the legacy client's, and the one for 2026-07-28 clients
    // declaring nothing; the configured header on every request.
    assert_eq!(script.sessions.load(Ordering::SeqCst), 3);
    let seen = script.headers_seen.lock().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, v)| v == "k1"),
        "{seen:?}"
    );
    // At shutdown the node (alone: nobody continues its clients) ends its upstream sessions.
    node.shutdown().await;
    let mut deleted = script.deleted.lock().clone();
    deleted.sort();
    assert_eq!(deleted, ["s1", "s2", "s3"]);
}

#[tokio::test]
async fn an_empty_prefix_serves_the_upstreams_own_names_and_overlaps_go_where_listed() {
    let (whole_url, _whole) = scripted_upstream().await;
    let (other_url, _other) = scripted_upstream().await;
    let mut whole = upstream("whole", &whole_url);
    whole.prefix = Some(String::new());
    let node = node_with(vec![whole, upstream("other", &other_url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "fails", Duration::from_secs(10)).await;
    let list = wait_for_tool(addr, &session, "other__fails", Duration::from_secs(10)).await;
    let listed = names(&list);
    for n in [
        "streamed",
        "slow",
        "fails",
        "other__echo",
        "other__streamed",
    ] {
        assert_eq!(
            listed.iter().filter(|l| *l == n).count(),
            1,
            "{n}: {listed:?}"
        );
    }
    // The built-in `echo` wins over the unprefixed upstream's.
    let r = call(addr, &session, "echo", json!({"text": "hi"})).await;
    assert_eq!(text_of(&r), "hi", "{r}");
    // Unprefixed: the upstream's own name; its errors still name it.
    let r = call(addr, &session, "streamed", Value::Null).await;
    assert_eq!(text_of(&r), "streamed");
    let r = call(addr, &session, "fails", Value::Null).await;
    assert_eq!(r["error"]["message"], "upstream `whole`: it broke", "{r}");
    // `other__echo` matches both prefixes (`` and `other__`): it goes to the one listing it
    // (`whole` would answer that it has no tool `other__echo`).
    let r = call(addr, &session, "other__echo", json!({"text": "there"})).await;
    assert_eq!(text_of(&r), "echo: there", "{r}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_lost_upstream_session_is_opened_again_once() {
    let (url, script) = scripted_upstream().await;
    let node = node_with(vec![upstream("up", &url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__echo", Duration::from_secs(10)).await;
    assert_eq!(script.sessions.load(Ordering::SeqCst), 1);
    // The upstream restarts: it answers 404 to our session.
    script
        .forgotten
        .store(script.sessions.load(Ordering::SeqCst), Ordering::SeqCst);
    let r = call(addr, &session, "up__echo", json!({"text": "again"})).await;
    assert_eq!(text_of(&r), "echo: again", "{r}");
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        2,
        "one re-initialization"
    );
    let metrics = metrics_text(node.admin_addr).await;
    assert!(
        metrics.contains("mcp_upstream_initializations_total{upstream=\"up\"} 2"),
        "{metrics}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_full_upstream_refuses_at_once_and_a_slow_one_times_out() {
    let (url, script) = scripted_upstream().await;
    let mut busy = upstream("up", &url);
    busy.max_concurrency = 1;
    let mut short = upstream("short", &url);
    short.timeout_ms = 300;
    let node = node_with(vec![busy, short]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "short__slow", Duration::from_secs(10)).await;
    wait_for_tool(addr, &session, "up__slow", Duration::from_secs(10)).await;

    // One slow call holds `up`'s only slot; the next is refused without waiting for it.
    let holder = {
        let session = session.clone();
        tokio::spawn(async move { call(addr, &session, "up__slow", Value::Null).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = call(addr, &session, "up__echo", json!({"text": "x"})).await;
    let waited = started.elapsed();
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(
        r["error"]["data"],
        json!({"upstream": "up", "reason": "busy"}),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream `up`"),
        "{r}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "refused after {waited:?}"
    );
    let held = holder.await.expect("holder");
    assert_eq!(text_of(&held), "slow");

    // `timeoutMs` bounds the exchange.
    let started = Instant::now();
    let r = call(addr, &session, "short__slow", Value::Null).await;
    let waited = started.elapsed();
    assert_eq!(
        r["error"]["data"],
        json!({"upstream": "short", "reason": "timeout"}),
        "{r}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "timed out after {waited:?}"
    );
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        4,
        "per upstream entry, the node's own and the client's"
    );
    node.shutdown().await;
}

/// `name` (a gauge or counter) on the node's `/metrics`; `None` when absent.
async fn metric(node: &mcp_node::Running, name: &str) -> Option<f64> {
    metrics_text(node.admin_addr)
        .await
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// Until the metric `name` is `value` (at most `within`).
async fn wait_metric(node: &mcp_node::Running, name: &str, value: f64, within: Duration) {
    let what = format!("{name} at {value}");
    until_async(&what, within, async || {
        metric(node, name).await == Some(value)
    })
    .await;
}

/// The circuit breaker: an upstream failing `breakerFailures` times in a row is marked down
/// (by the health checks alone for `up`, by clients' calls for `quiet`, which has none); its
/// calls are then refused at once without reaching it, naming it with `reason: down` and
/// `retryAfterMs`; once it answers again, the health check's probe brings `up` back without
/// any client call, and `quiet`'s next call after `breakerOpenMs` is the probe that does.
#[tokio::test]
async fn a_failing_upstream_is_marked_down_and_probed_back_up() {
    let (url, script) = scripted_upstream().await;
    let mut up = upstream("up", &url);
    up.breaker_failures = 3;
    up.breaker_open_ms = 1500;
    up.health_check_ms = 100;
    let mut quiet = upstream("quiet", &url);
    quiet.breaker_failures = 2;
    quiet.breaker_open_ms = 1500;
    quiet.health_check_ms = 0;
    let node = node_with(vec![up, quiet]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__echo", Duration::from_secs(10)).await;
    wait_for_tool(addr, &session, "quiet__echo", Duration::from_secs(10)).await;
    let up_state = "mcp_upstream_state{upstream=\"up\"}";
    let quiet_state = "mcp_upstream_state{upstream=\"quiet\"}";

    script.broken.store(true, Ordering::SeqCst);
    // `up`: its health checks find it failing and mark it down with no client call.
    wait_metric(&node, up_state, 2.0, Duration::from_secs(5)).await;
    // `quiet`: two calls reach it and fail as its HTTP status; the third is refused unsent.
    for _ in 0..2 {
        let sent = script.posts.load(Ordering::SeqCst);
        let r = call(addr, &session, "quiet__echo", json!({"text": "x"})).await;
        assert_eq!(r["error"]["data"]["reason"], "http_status", "{r}");
        assert!(
            script.posts.load(Ordering::SeqCst) > sent,
            "it reached the upstream"
        );
    }
    for name in ["quiet__echo", "up__echo"] {
        let upstream_name = name.split("__").next().unwrap_or_default();
        let sent = script.posts.load(Ordering::SeqCst);
        let started = Instant::now();
        let r = call(addr, &session, name, json!({"text": "x"})).await;
        let took = started.elapsed();
        assert_eq!(r["error"]["code"], -32000, "{r}");
        assert_eq!(r["error"]["data"]["upstream"], upstream_name, "{r}");
        assert_eq!(r["error"]["data"]["reason"], "down", "{r}");
        let retry = r["error"]["data"]["retryAfterMs"].as_u64().unwrap_or(0);
        assert!((1..=1500).contains(&retry), "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("upstream `{upstream_name}` down")),
            "{r}"
        );
        assert!(took < Duration::from_millis(500), "refused after {took:?}");
        assert_eq!(
            script.posts.load(Ordering::SeqCst),
            sent,
            "a call to a down upstream does not reach it"
        );
    }
    assert_eq!(metric(&node, quiet_state).await, Some(2.0));
    assert!(
        metric(
            &node,
            "mcp_upstream_errors_total{upstream=\"quiet\",kind=\"down\"}"
        )
        .await
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        metric(&node, "mcp_upstream_breaker_opened_total{upstream=\"up\"}")
            .await
            .is_some_and(|n| n >= 1.0)
    );

    // It answers again: `up` is probed back up by its health check, with no client call.
    script.broken.store(false, Ordering::SeqCst);
    wait_metric(&node, up_state, 0.0, Duration::from_secs(10)).await;
    assert_eq!(
        metric(&node, quiet_state).await,
        Some(2.0),
        "no probe without a call"
    );
    let r = call(addr, &session, "up__echo", json!({"text": "x"})).await;
    assert_eq!(text_of(&r), "echo: x", "{r}");
    // `quiet`: the first call after `breakerOpenMs` probes it and is served.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = call(addr, &session, "quiet__echo", json!({"text": "x"})).await;
    assert_eq!(text_of(&r), "echo: x", "{r}");
    assert_eq!(metric(&node, quiet_state).await, Some(0.0));
    assert_eq!(
        metric(&node, "mcp_upstream_in_flight{upstream=\"up\"}").await,
        Some(0.0)
    );
    node.shutdown().await;
}

/// `maxQueued`: with the only slot taken, one call waits for it (and is served), the next is
/// refused at once (`busy`); the waiting call shows in `mcp_upstream_queued`.
#[tokio::test]
async fn a_bounded_queue_waits_for_a_slot_then_refuses() {
    let (url, _script) = scripted_upstream().await;
    let mut up = upstream("up", &url);
    up.max_concurrency = 1;
    up.max_queued = 1;
    up.timeout_ms = 10_000;
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__slow", Duration::from_secs(10)).await;
    let call_timed = |name: &'static str| {
        let session = session.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = call(addr, &session, name, Value::Null).await;
            (r, started.elapsed())
        })
    };
    let holder = call_timed("up__slow");
    wait_metric(
        &node,
        "mcp_upstream_in_flight{upstream=\"up\"}",
        1.0,
        Duration::from_secs(2),
    )
    .await;
    let queued = call_timed("up__slow");
    wait_metric(
        &node,
        "mcp_upstream_queued{upstream=\"up\"}",
        1.0,
        Duration::from_secs(2),
    )
    .await;
    let (r, took) = call_timed("up__echo").await.expect("refused call");
    assert_eq!(
        r["error"]["data"],
        json!({"upstream": "up", "reason": "busy"}),
        "{r}"
    );
    assert!(took < Duration::from_millis(1000), "refused after {took:?}");
    let (r, _) = holder.await.expect("holder");
    assert_eq!(text_of(&r), "slow");
    let (r, took) = queued.await.expect("queued call");
    assert_eq!(text_of(&r), "slow", "the queued call is served");
    assert!(
        took > Duration::from_millis(3000),
        "it waited for the slot: {took:?}"
    );
    assert_eq!(
        metric(&node, "mcp_upstream_queued{upstream=\"up\"}").await,
        Some(0.0)
    );
    node.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_clear_error() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let node = node_with(vec![upstream(
        "gone",
        &format!("http://127.0.0.1:{port}/mcp"),
    )])
    .await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    let r = call(addr, &session, "gone__anything", Value::Null).await;
    assert_eq!(
        r["error"]["data"],
        json!({"upstream": "gone", "reason": "unreachable"}),
        "{r}"
    );
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("upstream `gone` unreachable"), "{r}");
    // The node still serves its own tools.
    let r = call(addr, &session, "echo", json!({"text": "x"})).await;
    assert!(r.get("result").is_some(), "{r}");
    node.shutdown().await;
}

/// `@modelcontextprotocol/server-everything` (TypeScript SDK, 2025-11-25 sessions) behind a
/// node: its tools listed as `everything__*` to both eras and called (its answers are SSE
/// streams); killed, a call is a clear error naming it; back
/// on the same port, the next call works (the node opens a new upstream session).
#[tokio::test]
#[ignore = "needs server-everything from npm: make e2e-upstream"]
async fn server_everything() {
    let (port, mut everything) = Everything::start_anywhere().await;
    let mut up = upstream("everything", &format!("http://127.0.0.1:{port}/mcp"));
    up.timeout_ms = 10_000;
    // Detected: the TypeScript SDK v1 refuses a 2026-07-28 `server/discover` (no session).
    up.era = "auto".into();
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    let started = Instant::now();
    let list = wait_for_tool(addr, &session, "everything__echo", Duration::from_secs(20)).await;
    let listed = names(&list);
    println!("listed after {:?}: {listed:?}", started.elapsed());
    for n in [
        "everything__echo",
        "everything__get-sum",
        "everything__trigger-long-running-operation",
        "echo",
    ] {
        assert!(listed.contains(&n.to_string()), "{n}: {listed:?}");
    }

    let r = call(
        addr,
        &session,
        "everything__echo",
        json!({"message": "through the cluster"}),
    )
    .await;
    assert_eq!(text_of(&r), "Echo: through the cluster", "{r}");
    let r = modern_call(addr, "everything__get-sum", json!({"a": 2, "b": 40})).await;
    assert_eq!(text_of(&r), "The sum of 2 and 40 is 42.", "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let list = modern(addr, "tools/list", None, json!({})).await;
    assert!(
        names(&list).contains(&"everything__echo".to_string()),
        "{list}"
    );
    // Its prompts, prefixed; its resources and templates under their own URIs (nothing of the
    // node's collides), read through the node in both eras.
    wait_for_prompts(
        addr,
        &session,
        &["everything__simple-prompt", "everything__args-prompt"],
        Duration::from_secs(20),
    )
    .await;
    let r = legacy(
        addr,
        &session,
        "prompts/get",
        json!({"name": "everything__args-prompt", "arguments": {"city": "Paris"}}),
    )
    .await;
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "What's weather in Paris?",
        "{r}"
    );
    let (uris, _) = all_pages(addr, &session, "resources/list", "resources", "uri").await;
    println!("resources: {uris:?}");
    let document = "demo://resource/static/document/instructions.md";
    assert!(uris.iter().any(|u| u == document), "{uris:?}");
    let (templates, _) = all_pages(
        addr,
        &session,
        "resources/templates/list",
        "resourceTemplates",
        "uriTemplate",
    )
    .await;
    println!("templates: {templates:?}");
    assert!(
        templates
            .iter()
            .any(|t| t == "demo://resource/dynamic/text/{resourceId}"),
        "{templates:?}"
    );
    let r = legacy(addr, &session, "resources/read", json!({ "uri": document })).await;
    let (text, uri) = read_of(&r);
    assert_eq!(uri, document, "{r}");
    assert!(!text.is_empty(), "{r}");
    let dynamic = "demo://resource/dynamic/text/3";
    let r = modern(
        addr,
        "resources/read",
        Some(dynamic),
        json!({ "uri": dynamic }),
    )
    .await;
    let (text, uri) = read_of(&r);
    assert_eq!(uri, dynamic, "{r}");
    assert!(text.starts_with("Resource 3:"), "{r}");
    // The TypeScript SDK answers every request as an SSE stream; this one runs for a second
    // and reports its progress, which reaches the client under the client's token.
    let body = rpc(
        5,
        "tools/call",
        json!({"name": "everything__trigger-long-running-operation",
            "arguments": {"duration": 1, "steps": 2},
            "_meta": {"progressToken": "mine"}}),
    );
    let r = post(addr, &session, &body, Duration::from_secs(20)).await;
    let messages = sse_messages(&r.body);
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    println!("long-running operation: {messages:?}");
    assert_eq!(progress.len(), 2, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine" && p["params"]["total"] == 2.0),
        "{progress:?}"
    );
    let last = messages.last().cloned().unwrap_or_default();
    assert!(
        text_of(&last).starts_with("Long running operation completed"),
        "{last}"
    );
    // Completion of its prompt and template arguments, in both eras.
    let r = legacy(
        addr,
        &session,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "everything__completable-prompt"},
            "argument": {"name": "department", "value": "En"}}),
    )
    .await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["Engineering"]),
        "{r}"
    );
    let r = modern(
        addr,
        "completion/complete",
        None,
        json!({"ref": {"type": "ref/resource", "uri": "demo://resource/dynamic/text/{resourceId}"},
            "argument": {"name": "resourceId", "value": "7"}}),
    )
    .await;
    assert_eq!(r["result"]["completion"]["values"], json!(["7"]), "{r}");
    // Logging level passed on; a subscription passed on and its updates (which the server
    // sends at once and every 5 s once toggled on) reach the session's stream.
    let r = legacy(
        addr,
        &session,
        "logging/setLevel",
        json!({"level": "debug"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = legacy(
        addr,
        &session,
        "resources/subscribe",
        json!({ "uri": document }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let stream = get_stream(addr, &session, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call(
        addr,
        &session,
        "everything__toggle-subscriber-updates",
        Value::Null,
    )
    .await;
    assert!(text_of(&r).starts_with("Started"), "{r}");
    let heard = stream.await.expect("GET stream");
    println!("resource updates: {:?}", updated_uris(&heard));
    assert!(
        updated_uris(&heard).iter().any(|u| u == document),
        "{}",
        heard.body
    );
    let r = call(
        addr,
        &session,
        "everything__toggle-subscriber-updates",
        Value::Null,
    )
    .await;
    assert!(text_of(&r).starts_with("Stopped"), "{r}");
    let r = legacy(
        addr,
        &session,
        "resources/unsubscribe",
        json!({ "uri": document }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");

    // The upstream's own refusal reaches the client naming it.
    let r = call(addr, &session, "everything__no-such-tool", Value::Null).await;
    let message = r["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            // SDK servers may answer an unknown tool with an `isError` result instead.
            (r["result"]["isError"] == true).then(|| text_of(&r))
        });
    println!("unknown upstream tool: {r}");
    assert!(message.is_some_and(|m| m.contains("no-such-tool")), "{r}");

    // Killed mid-run: a clear JSON-RPC error naming the upstream, in well under timeoutMs.
    everything.kill();
    let t = Instant::now();
    let r = call(addr, &session, "everything__echo", json!({"message": "x"})).await;
    println!("upstream down, after {:?}: {r}", t.elapsed());
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(
        r["error"]["data"],
        json!({"upstream": "everything", "reason": "unreachable"}),
        "{r}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Back on the same port (a new process: our upstream session is unknown to it).
    let _everything = Everything::start(port).await;
    let t = Instant::now();
    let r = call(
        addr,
        &session,
        "everything__echo",
        json!({"message": "back"}),
    )
    .await;
    println!("upstream back, first call after {:?}: {r}", t.elapsed());
    assert_eq!(text_of(&r), "Echo: back", "{r}");
    let metrics = metrics_text(node.admin_addr).await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_upstream_") && !l.contains("_bucket"))
        .collect();
    println!("{}", lines.join("\n"));
    node.shutdown().await;
}

#[tokio::test]
async fn the_upstreams_list_changed_refreshes_the_served_list_at_once() {
    let (url, script) = scripted_upstream().await;
    script.streams.store(true, Ordering::SeqCst);
    // The interval alone would take an hour: only the notifications can explain a refresh.
    let mut up = upstream("up", &url);
    up.tools_refresh_secs = 3600;
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__echo", Duration::from_secs(10)).await;

    // The client's own GET stream, open while the list changes, hears about it.
    let client_stream = get_stream(addr, &session, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Announced on the answer's own stream.
    let r = call(addr, &session, "up__grow", Value::Null).await;
    assert_eq!(text_of(&r), "grown");
    wait_for_tool(addr, &session, "up__added-0", Duration::from_secs(5)).await;
    let heard = client_stream.await.expect("GET stream");
    assert_eq!(heard.status, 200, "{heard:?}");
    assert!(
        heard.body.contains("notifications/tools/list_changed"),
        "the client was told: {}",
        heard.body
    );

    // Announced on the standalone GET stream the node holds open with the upstream.
    until(
        "the node opens a standalone stream",
        Duration::from_secs(5),
        || {
            script
                .stream_events
                .as_ref()
                .is_some_and(|t| t.receiver_count() > 0)
        },
    )
    .await;
    let t = Instant::now();
    let r = call(addr, &session, "up__grow-quietly", Value::Null).await;
    assert_eq!(text_of(&r), "grown");
    wait_for_tool(addr, &session, "up__added-1", Duration::from_secs(5)).await;
    println!("listed {:?} after the call", t.elapsed());
    // The node's own, whose stream said it, and the client's, which called.
    assert_eq!(script.sessions.load(Ordering::SeqCst), 2);
    node.shutdown().await;
}

/// The JSON messages of an SSE answer.
fn sse_messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[tokio::test]
async fn an_upstreams_progress_and_log_messages_reach_the_client() {
    let (url, _script) = scripted_upstream().await;
    let node = node_with(vec![upstream("up", &url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__streamed", Duration::from_secs(10)).await;
    let r = legacy(
        addr,
        &session,
        "logging/setLevel",
        json!({"level": "debug"}),
    )
    .await;
    assert!(r.get("result").is_some(), "{r}");

    let body = rpc(
        5,
        "tools/call",
        json!({"name": "up__streamed", "_meta": {"progressToken": "client-token"}}),
    );
    let r = post(addr, &session, &body, Duration::from_secs(10)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("text/event-stream"), "{r:?}");
    let messages = sse_messages(&r.body);
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(
        progress.len(),
        1,
        "only the node's token is relayed: {messages:?}"
    );
    assert_eq!(
        progress[0]["params"],
        json!({"progressToken": "client-token", "progress": 1.0, "total": 2.0, "message": "half"}),
        "under the client's token"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["method"] == "notifications/message"
                && m["params"]["data"] == "working"
                && m["params"]["logger"] == "up"),
        "{messages:?}"
    );
    let last = messages.last().cloned().unwrap_or_default();
    assert_eq!(text_of(&last), "streamed", "{messages:?}");

    // Without a progress token the upstream is asked for none (and the answer is JSON).
    let r = call(addr, &session, "up__echo", json!({"text": "x"})).await;
    assert_eq!(text_of(&r), "echo: x");
    node.shutdown().await;
}

/// Three nodes with the same upstream: a session's upstream calls are served through any node
/// (forwarded to the session's owner, which calls the upstream), and after the owner leaves
/// (drain, hand-off) the next owner serves them with its own upstream session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_calls_follow_the_session_across_nodes() {
    let (url, script) = scripted_upstream().await;
    let dir = dev_certs("upstream-test");
    let a = clustered("node-a", &dir, &[], &url).await;
    let seed = peer_addr(&a);
    let b = clustered("node-b", &dir, &[seed], &url).await;
    let c = clustered("node-c", &dir, &[seed], &url).await;
    until("3 live members everywhere", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|n| live_members(n) == 3)
    })
    .await;
    let session = initialize(a.mcp_addr).await;
    wait_for_tool(b.mcp_addr, &session, "up__echo", Duration::from_secs(10)).await;
    for (i, n) in [&a, &b, &c].iter().enumerate() {
        let r = call(
            n.mcp_addr,
            &session,
            "up__echo",
            json!({"text": format!("via-{i}")}),
        )
        .await;
        assert_eq!(text_of(&r), format!("echo: via-{i}"), "{r}");
    }

    // The owner leaves; a survivor takes the session and its upstream calls.
    a.shutdown().await;
    let body = rpc(
        5,
        "tools/call",
        json!({"name": "up__echo", "arguments": {"text": "after"}}),
    );
    let r = post_until_served(b.mcp_addr, &session, &body, Duration::from_secs(10)).await;
    assert_eq!(text_of(&r.json()), "echo: after", "{r:?}");
    // Each node had its own upstream session, and the client session its own, which its
    // successor continued; the node that left ended its own only.
    assert_eq!(script.sessions.load(Ordering::SeqCst), 4);
    assert_eq!(
        script.deleted.lock().len(),
        1,
        "{:?}",
        script.deleted.lock()
    );
    b.shutdown().await;
    c.shutdown().await;
    assert_eq!(script.deleted.lock().len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits (≤ 3 s) until the upstream heard `notifications/cancelled` for every `slow` call.
async fn wait_cancelled(script: &Script, calls: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let slow = script.slow_ids.lock().clone();
        let cancelled = script.cancelled.lock().clone();
        if slow.len() == calls && slow.iter().all(|id| cancelled.contains(id)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slow calls {slow:?}, cancelled {cancelled:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_call_given_up_is_cancelled_at_the_upstream() {
    let (url, script) = scripted_upstream().await;
    let mut short = upstream("up", &url);
    short.timeout_ms = 300;
    let node = node_with(vec![short, upstream("patient", &url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "patient__slow", Duration::from_secs(10)).await;

    // timeoutMs passed.
    let r = call(addr, &session, "up__slow", Value::Null).await;
    assert_eq!(r["error"]["data"]["reason"], "timeout", "{r}");
    wait_cancelled(&script, 1).await;

    // The client cancelled.
    let cancelled_call = {
        let session = session.clone();
        tokio::spawn(async move {
            let body = rpc(77, "tools/call", json!({"name": "patient__slow"}));
            post(addr, &session, &body, Duration::from_secs(10)).await
        })
    };
    until(
        "the call reaches the upstream",
        Duration::from_secs(3),
        || script.slow_ids.lock().len() >= 2,
    )
    .await;
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session)],
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":77}}"#,
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    let answered = cancelled_call.await.expect("call");
    assert_eq!(answered.json()["error"]["code"], -32800, "{answered:?}");
    wait_cancelled(&script, 2).await;

    // A call answered in time is not cancelled.
    let r = call(addr, &session, "patient__echo", json!({"text": "x"})).await;
    assert_eq!(text_of(&r), "echo: x");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        script.cancelled.lock().len(),
        2,
        "{:?}",
        script.cancelled.lock()
    );
    node.shutdown().await;
}

/// Every page of a list (legacy): the entries' `field` values, and the pages' sizes.
async fn all_pages(
    addr: SocketAddr,
    session: &str,
    method: &str,
    key: &str,
    field: &str,
) -> (Vec<String>, Vec<usize>) {
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut params = json!({});
    loop {
        let r = legacy(addr, session, method, params.clone()).await;
        let page = r["result"][key]
            .as_array()
            .unwrap_or_else(|| panic!("no `{key}`: {r}"));
        sizes.push(page.len());
        got.extend(
            page.iter()
                .map(|e| e[field].as_str().unwrap_or_default().to_string()),
        );
        match r["result"]["nextCursor"].as_str() {
            Some(next) => params = json!({ "cursor": next }),
            None => return (got, sizes),
        }
        assert!(sizes.len() < 20, "pages never end: {sizes:?}");
    }
}

/// Polls `prompts/list` (all pages) until every name in `want` is listed; bounded.
async fn wait_for_prompts(addr: SocketAddr, session: &str, want: &[&str], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (names, _) = all_pages(addr, session, "prompts/list", "prompts", "name").await;
        if want.iter().all(|w| names.iter().any(|n| n == w)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{want:?} not listed within {within:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first text of a `resources/read` answer and its URI.
fn read_of(answer: &Value) -> (String, String) {
    let c = &answer["result"]["contents"][0];
    match (c["text"].as_str(), c["uri"].as_str()) {
        (Some(t), Some(u)) => (t.to_string(), u.to_string()),
        _ => panic!("no text contents: {answer}"),
    }
}

#[tokio::test]
async fn resources_templates_and_prompts_are_federated_for_both_eras() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    // Two entries of the same server (told apart by the path each answer names): everything
    // the second serves collides with the first's.
    let second_url = url.replace("/mcp", "/second");
    let node = node_with(vec![upstream("up", &url), upstream("second", &second_url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_prompts(
        addr,
        &session,
        &["up__greet", "second__greet"],
        Duration::from_secs(10),
    )
    .await;

    // Prompts: prefixed like tools, each once; got from the right upstream in both eras.
    let (prompts, _) = all_pages(addr, &session, "prompts/list", "prompts", "name").await;
    for p in ["up__greet", "second__greet"] {
        assert_eq!(prompts.iter().filter(|n| *n == p).count(), 1, "{prompts:?}");
    }
    let r = legacy(
        addr,
        &session,
        "prompts/get",
        json!({"name": "second__greet", "arguments": {"who": "ann"}}),
    )
    .await;
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "hello ann at /second",
        "{r}"
    );
    let r = modern(
        addr,
        "prompts/get",
        Some("up__greet"),
        json!({"name": "up__greet", "arguments": {"who": "bo"}}),
    )
    .await;
    assert_eq!(
        r["result"]["messages"][0]["content"]["text"], "hello bo at /mcp",
        "{r}"
    );
    assert_eq!(r["result"]["resultType"], "complete", "{r}");

    // Resources: the first holder of a URI serves it as it is, a later one as `<name>+<uri>`;
    // the node's own `test://builtin` wins over both. Pages of 500 cross the upstreams.
    let (uris, sizes) = all_pages(addr, &session, "resources/list", "resources", "uri").await;
    // The node's own (the conformance pack's and `test://builtin`), then each upstream's.
    for prefix in ["test://bulk/", "second+test://bulk/"] {
        assert_eq!(
            uris.iter().filter(|u| u.starts_with(prefix)).count(),
            BULK,
            "{prefix}"
        );
    }
    assert!(uris.len() > 2 * (2 + BULK), "{}", uris.len());
    assert_eq!(sizes[0], 500, "{sizes:?}");
    assert!(sizes.len() >= 2, "{sizes:?}");
    let unique: std::collections::HashSet<&String> = uris.iter().collect();
    assert_eq!(unique.len(), uris.len(), "an entry listed twice");
    for u in [
        "test://builtin",
        "up+test://builtin",
        "second+test://builtin",
        "test://shared",
        "second+test://shared",
        "test://bulk/0",
        "second+test://bulk/299",
    ] {
        assert!(uris.iter().any(|x| x == u), "{u} missing");
    }
    let (templates, _) = all_pages(
        addr,
        &session,
        "resources/templates/list",
        "resourceTemplates",
        "uriTemplate",
    )
    .await;
    for t in ["test://items/{id}", "second+test://items/{id}"] {
        assert!(templates.iter().any(|x| x == t), "{t}: {templates:?}");
    }
    let r = legacy(
        addr,
        &session,
        "resources/list",
        json!({"cursor": "nonsense"}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");

    // Reads go where the URI was listed; the prefixed form comes back prefixed.
    for (uri, text, back) in [
        ("test://shared", "test://shared at /mcp", "test://shared"),
        (
            "second+test://shared",
            "test://shared at /second",
            "second+test://shared",
        ),
        ("test://builtin", "built-in", "test://builtin"),
        (
            "up+test://builtin",
            "test://builtin at /mcp",
            "up+test://builtin",
        ),
        ("test://bulk/7", "test://bulk/7 at /mcp", "test://bulk/7"),
        ("test://items/7", "test://items/7 at /mcp", "test://items/7"),
        (
            "second+test://items/8",
            "test://items/8 at /second",
            "second+test://items/8",
        ),
    ] {
        let r = legacy(addr, &session, "resources/read", json!({ "uri": uri })).await;
        assert_eq!(read_of(&r), (text.to_string(), back.to_string()), "{r}");
    }
    let r = modern(
        addr,
        "resources/read",
        Some("second+test://bulk/3"),
        json!({"uri": "second+test://bulk/3"}),
    )
    .await;
    assert_eq!(
        read_of(&r),
        (
            "test://bulk/3 at /second".to_string(),
            "second+test://bulk/3".to_string()
        ),
        "{r}"
    );
    // An upstream's own error keeps its code and names the upstream.
    let r = legacy(
        addr,
        &session,
        "resources/read",
        json!({"uri": "up+test://nothing"}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32002, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("upstream `up`: resource not found"),
        "{r}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn an_upstreams_resource_and_prompt_list_changes_reach_the_client() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    // The interval alone would take an hour: only the notifications can explain a refresh.
    let mut up = upstream("up", &url);
    up.tools_refresh_secs = 3600;
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_prompts(addr, &session, &["up__greet"], Duration::from_secs(10)).await;
    let client_stream = get_stream(addr, &session, Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call(addr, &session, "up__grow-content", Value::Null).await;
    assert_eq!(text_of(&r), "grown");
    wait_for_prompts(addr, &session, &["up__added-0"], Duration::from_secs(5)).await;
    let (uris, _) = all_pages(addr, &session, "resources/list", "resources", "uri").await;
    assert!(uris.iter().any(|u| u == "test://added/0"), "{uris:?}");
    let heard = client_stream.await.expect("GET stream");
    assert_eq!(heard.status, 200, "{heard:?}");
    for note in [
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    ] {
        assert!(heard.body.contains(note), "{note}: {}", heard.body);
    }
    // The node's own and the client's.
    assert_eq!(script.sessions.load(Ordering::SeqCst), 2);
    node.shutdown().await;
}

#[tokio::test]
async fn reads_and_prompts_of_a_down_busy_or_slow_upstream_are_clear_errors() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut busy = upstream("busy", &url);
    busy.max_concurrency = 1;
    let mut short = upstream("short", &url);
    short.timeout_ms = 300;
    let node = node_with(vec![
        upstream("gone", &format!("http://127.0.0.1:{port}/mcp")),
        busy,
        short,
    ])
    .await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_prompts(
        addr,
        &session,
        &["busy__greet", "short__greet"],
        Duration::from_secs(10),
    )
    .await;
    let reason = |r: &Value, upstream: &str, reason: &str| {
        assert_eq!(
            r["error"]["data"],
            json!({"upstream": upstream, "reason": reason}),
            "{r}"
        );
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("upstream `{upstream}`")),
            "{r}"
        );
    };

    let started = Instant::now();
    let r = legacy(
        addr,
        &session,
        "prompts/get",
        json!({"name": "gone__greet", "arguments": {"who": "x"}}),
    )
    .await;
    reason(&r, "gone", "unreachable");
    let r = legacy(
        addr,
        &session,
        "resources/read",
        json!({"uri": "gone+test://shared"}),
    )
    .await;
    reason(&r, "gone", "unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A slow read holds `busy`'s only slot: a prompt is refused without waiting.
    let holder = {
        let session = session.clone();
        tokio::spawn(async move {
            legacy(
                addr,
                &session,
                "resources/read",
                json!({"uri": "busy+test://slow"}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = legacy(
        addr,
        &session,
        "prompts/get",
        json!({"name": "busy__greet", "arguments": {"who": "x"}}),
    )
    .await;
    reason(&r, "busy", "busy");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let held = holder.await.expect("holder");
    assert_eq!(read_of(&held).0, "test://slow at /mcp", "{held}");

    // `timeoutMs` bounds a read.
    let started = Instant::now();
    let r = legacy(
        addr,
        &session,
        "resources/read",
        json!({"uri": "short+test://slow"}),
    )
    .await;
    reason(&r, "short", "timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    node.shutdown().await;
}

/// The session's GET stream for `for_` (the standalone messages sent meanwhile), opened in a
/// task; give it a moment to attach before something is announced.
fn get_stream(addr: SocketAddr, session: &str, for_: Duration) -> tokio::task::JoinHandle<Reply> {
    let session = session.to_owned();
    tokio::spawn(async move {
        send_with(
            addr,
            "GET",
            "/mcp",
            &[
                ("accept", "text/event-stream"),
                ("mcp-session-id", &session),
            ],
            "",
            for_,
        )
        .await
    })
}

/// The `uri` of each `notifications/resources/updated` on a GET stream.
fn updated_uris(stream: &Reply) -> Vec<String> {
    sse_messages(&stream.body)
        .iter()
        .filter(|m| m["method"] == "notifications/resources/updated")
        .map(|m| m["params"]["uri"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits (≤ 5 s) until the node holds a standalone stream with the scripted upstream.
async fn wait_for_upstream_stream(script: &Script, streams: usize) {
    let what = format!("{streams} standalone streams with the upstream");
    until(&what, Duration::from_secs(5), || {
        script
            .stream_events
            .as_ref()
            .map_or(0, |t| t.receiver_count())
            >= streams
    })
    .await;
}

/// `completion/complete` of an upstream's prompt and template is answered by the upstream
/// (asked with the name or URI it knows, in both eras); `resources/subscribe` of its resources
/// is passed to it, its `notifications/resources/updated` reaches the subscribed session
/// under the URI the client used (a collided one too) and no other session, and the last
/// unsubscribe is passed on; `logging/setLevel` is passed on (only when more verbose than
/// what the upstream already sends) and the upstream's log messages reach the client at its
/// own level. Refusals name the upstream. With `sessions: shared`, where subscriptions and
/// levels are the node's session's, counted for all its clients (`upstream/kept.rs`); with
/// `perClient` (the default) they are each client's own: see
/// `a_clients_own_upstream_session_carries_its_subscriptions_and_their_updates` and
/// `client_sessions_have_their_own_upstream_sessions`.
#[tokio::test]
async fn completion_subscriptions_and_logging_pass_through() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    let node = node_with(vec![shared("up", &url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    let other = initialize(addr).await;
    wait_for_prompts(addr, &session, &["up__greet"], Duration::from_secs(10)).await;

    // Completion, both eras.
    let args = |r: Value| json!({"ref": r, "argument": {"name": "who", "value": "A"}});
    let r = legacy(
        addr,
        &session,
        "completion/complete",
        args(json!({"type": "ref/prompt", "name": "up__greet"})),
    )
    .await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["greet|who|A"]),
        "{r}"
    );
    let r = modern(
        addr,
        "completion/complete",
        None,
        args(json!({"type": "ref/resource", "uri": "test://items/{id}"})),
    )
    .await;
    assert_eq!(
        r["result"]["completion"]["values"],
        json!(["test://items/{id}|who|A"]),
        "{r}"
    );
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let asked = script.asked("completion/complete");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(
        asked[0].0["ref"],
        json!({"type": "ref/prompt", "name": "greet"})
    );
    assert!(asked[1].0.get("_meta").is_none(), "{asked:?}");
    let r = legacy(
        addr,
        &session,
        "completion/complete",
        args(json!({"type": "ref/prompt", "name": "up__broken"})),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert_eq!(
        r["error"]["message"], "upstream `up`: no completions for broken",
        "{r}"
    );
    // Nobody serves it: the node's own answer.
    let r = legacy(
        addr,
        &session,
        "completion/complete",
        args(json!({"type": "ref/prompt", "name": "nobody"})),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert_eq!(script.asked("completion/complete").len(), 3);

    // Subscriptions: a listed resource, and the upstream's `test://builtin`, which the node's
    // own resource of that URI pushes to `up+test://builtin`.
    wait_for_upstream_stream(&script, 1).await;
    for uri in ["test://shared", "up+test://builtin", "test://builtin"] {
        let r = legacy(addr, &session, "resources/subscribe", json!({ "uri": uri })).await;
        assert_eq!(r["result"], json!({}), "{uri}: {r}");
    }
    let r = legacy(
        addr,
        &session,
        "resources/subscribe",
        json!({ "uri": "test://items/nosub" }),
    )
    .await;
    assert_eq!(r["error"]["code"], -32002, "{r}");
    assert_eq!(
        r["error"]["message"], "upstream `up`: cannot subscribe to test://items/nosub",
        "{r}"
    );
    let subscribed: Vec<Value> = script
        .asked("resources/subscribe")
        .into_iter()
        .map(|(p, _)| p["uri"].clone())
        .collect();
    // The node's own `test://builtin` is not the upstream's business.
    assert_eq!(
        subscribed,
        [
            json!("test://shared"),
            json!("test://builtin"),
            json!("test://items/nosub")
        ]
    );
    let stream = get_stream(addr, &session, Duration::from_secs(2));
    let other_stream = get_stream(addr, &other, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for uri in ["test://shared", "test://builtin", "test://bulk/1"] {
        let r = call(addr, &session, "up__touch", json!({"uri": uri})).await;
        assert_eq!(text_of(&r), "touched", "{r}");
    }
    let stream = stream.await.expect("GET stream");
    assert_eq!(
        updated_uris(&stream),
        ["test://shared", "up+test://builtin"],
        "{}",
        stream.body
    );
    let other_stream = other_stream.await.expect("GET stream");
    assert!(
        updated_uris(&other_stream).is_empty(),
        "{}",
        other_stream.body
    );

    // Two sessions subscribed: the upstream is told when the last one leaves.
    let r = legacy(
        addr,
        &other,
        "resources/subscribe",
        json!({ "uri": "test://shared" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    for s in [&session, &other] {
        let r = legacy(
            addr,
            s,
            "resources/unsubscribe",
            json!({ "uri": "test://shared" }),
        )
        .await;
        assert_eq!(r["result"], json!({}), "{r}");
        let told = script.asked("resources/unsubscribe").len();
        assert_eq!(told, usize::from(s == &other), "after {s}");
    }

    // Logging: the upstream's info message reaches a client at `warning` no more.
    let streamed = |level: Option<&'static str>| {
        let session = session.clone();
        async move {
            if let Some(level) = level {
                let r = legacy(
                    addr,
                    &session,
                    "logging/setLevel",
                    json!({ "level": level }),
                )
                .await;
                assert_eq!(r["result"], json!({}), "{level}: {r}");
            }
            let body = rpc(5, "tools/call", json!({"name": "up__streamed"}));
            let r = post(addr, &session, &body, Duration::from_secs(10)).await;
            sse_messages(&r.body)
                .into_iter()
                .filter(|m| m["method"] == "notifications/message")
                .count()
        }
    };
    assert_eq!(streamed(None).await, 1);
    assert_eq!(streamed(Some("warning")).await, 0);
    assert_eq!(streamed(Some("info")).await, 1);
    assert_eq!(streamed(Some("error")).await, 0);
    let levels: Vec<Value> = script
        .asked("logging/setLevel")
        .into_iter()
        .map(|(p, _)| p["level"].clone())
        .collect();
    assert_eq!(levels, [json!("warning"), json!("info")]);

    // The upstream lost our session: the new one is told the level and the subscriptions.
    script
        .forgotten
        .store(script.sessions.load(Ordering::SeqCst), Ordering::SeqCst);
    let r = call(addr, &session, "up__echo", json!({"text": "again"})).await;
    assert_eq!(text_of(&r), "echo: again", "{r}");
    let fresh = format!("s{}", script.sessions.load(Ordering::SeqCst));
    let levels = script.asked("logging/setLevel");
    assert_eq!(
        levels.last(),
        Some(&(json!({"level": "info"}), fresh.clone()))
    );
    let mut again: Vec<Value> = script
        .asked("resources/subscribe")
        .into_iter()
        .filter(|(_, s)| s == &fresh)
        .map(|(p, _)| p["uri"].clone())
        .collect();
    again.sort_by_key(|v| v.to_string());
    assert_eq!(
        again,
        [json!("test://builtin")],
        "test://shared was unsubscribed"
    );
    node.shutdown().await;
}

/// `initialize` of a legacy session declaring `capabilities`; its id.
async fn initialize_declaring(addr: SocketAddr, capabilities: Value) -> String {
    let body = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"}}),
    );
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], &body).await;
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.header("mcp-session-id").expect("session id").to_string();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &id)],
        note,
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    id
}

/// The scripted upstream as `up` with `sessions: perClient`.
fn per_client(url: &str) -> UpstreamConfig {
    let mut up = upstream("up", url);
    up.sessions = UpstreamConfig::PER_CLIENT.into();
    up
}

/// `sessions: perClient`: each legacy client session gets its own upstream session when it
/// first uses the upstream, declaring that client's capabilities (what the node relays of
/// them) and its logging level; `logging/setLevel` goes to the client's own session only; a
/// session the upstream lost is opened again with the level set again, and the call is
/// served; 2026-07-28 clients declaring the same share one; the client's DELETE and its
/// expiry end its upstream session. A key a client declares under the copies' own key is
/// dropped at `initialize`.
#[tokio::test]
async fn client_sessions_have_their_own_upstream_sessions() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        upstreams: vec![per_client(&url)],
        ..NodeConfig::default()
    };
    config.log.level = "warn".into();
    config.limits.session_idle_ttl_secs = 1;
    let node = start_config(config).await;
    let addr = node.mcp_addr;
    let asks = initialize_declaring(
        addr,
        json!({"elicitation": {}, "experimental": {"x": {}},
            "mcpcluster.dev/upstreamSessions": [{"upstream": "up", "id": "s1", "version": "2025-11-25"}]}),
    )
    .await;
    let quiet = initialize(addr).await;
    wait_for_tool(addr, &asks, "up__echo", Duration::from_secs(10)).await;
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        1,
        "the node's own session (its lists)"
    );

    // A level set before the first use goes with the session when it opens.
    let r = legacy(addr, &asks, "logging/setLevel", json!({"level": "warning"})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert!(
        script.asked("logging/setLevel").is_empty(),
        "no session of its own yet"
    );
    let r = call(addr, &asks, "up__echo", json!({"text": "a"})).await;
    assert_eq!(text_of(&r), "echo: a");
    let r = call(addr, &quiet, "up__echo", json!({"text": "b"})).await;
    assert_eq!(text_of(&r), "echo: b");
    let r = call(addr, &asks, "up__echo", json!({"text": "c"})).await;
    assert_eq!(text_of(&r), "echo: c");
    // 2026-07-28 clients declaring nothing: one session for both calls.
    for text in ["d", "e"] {
        let r = modern_call(addr, "up__echo", json!({ "text": text })).await;
        assert_eq!(text_of(&r), format!("echo: {text}"));
    }
    assert_eq!(script.called_in("echo"), ["s2", "s3", "s2", "s4", "s4"]);
    // Each declared what its client declared of what the node relays (not the node's all;
    // the forged copy key dropped: s1 is the node's, never the client's).
    let declared: Vec<Value> = script
        .initialized
        .lock()
        .iter()
        .map(|p| p["capabilities"].clone())
        .collect();
    assert_eq!(
        declared,
        [
            json!({"sampling": {}, "elicitation": {}, "roots": {}}),
            json!({"elicitation": {}}),
            json!({}),
            json!({}),
        ]
    );
    assert_eq!(
        script.asked("logging/setLevel"),
        [(json!({"level": "warning"}), "s2".to_string())]
    );

    // A level goes to the client's own session only, a less verbose one too.
    let r = legacy(addr, &asks, "logging/setLevel", json!({"level": "error"})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(
        script.asked("logging/setLevel").last(),
        Some(&(json!({"level": "error"}), "s2".to_string()))
    );

    // The upstream lost every session: the client's next call opens a new one, with its
    // level set again, and is served.
    script
        .forgotten
        .store(script.sessions.load(Ordering::SeqCst), Ordering::SeqCst);
    let r = call(addr, &asks, "up__echo", json!({"text": "f"})).await;
    assert_eq!(text_of(&r), "echo: f", "{r}");
    let fresh = format!("s{}", script.sessions.load(Ordering::SeqCst));
    assert_eq!(script.called_in("echo").last(), Some(&fresh));
    assert_eq!(
        script.asked("logging/setLevel").last(),
        Some(&(json!({"level": "error"}), fresh.clone()))
    );
    assert_eq!(
        script
            .initialized
            .lock()
            .last()
            .map(|p| p["capabilities"].clone()),
        Some(json!({"elicitation": {}}))
    );

    // DELETE ends the client's upstream session; expiry the other's.
    let r = send(addr, "DELETE", &[("mcp-session-id", &asks)], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    until(
        "the client's upstream session is ended",
        Duration::from_secs(5),
        || script.deleted.lock().contains(&fresh),
    )
    .await;
    until(
        "the idle client's upstream session is ended",
        Duration::from_secs(25),
        || script.deleted.lock().contains(&"s3".to_string()),
    )
    .await;
    assert!(!script.deleted.lock().contains(&"s1".to_string()));
    let metrics = metrics_text(node.admin_addr).await;
    assert!(
        metrics.contains("mcp_upstream_sessions_ended_total{upstream=\"up\"} 2"),
        "{metrics}"
    );
    // At shutdown the node ends its own sessions (s1 forgotten upstream: its DELETE is
    // sent all the same) and the one for 2026-07-28 clients.
    node.shutdown().await;
    let deleted = script.deleted.lock().clone();
    assert!(deleted.contains(&"s4".to_string()), "{deleted:?}");
}

/// `sessions: perClient`: a client session's subscriptions are made in its own upstream
/// session, whose standalone stream the node opens with the first (before answering it) and
/// closes after the last, so the upstream's updates — which it sends to the subscribed
/// session only, as server-everything does — reach that client and no other; log messages the
/// upstream sends there outside any request reach the client at its level; a request the
/// upstream sends there to a client holding no stream is answered with an error at once; a
/// client that neither subscribes nor sets a level costs no stream; the upstream losing the
/// session gets the subscriptions made again in the new one; DELETE closes the stream.
#[tokio::test]
async fn a_clients_own_upstream_session_carries_its_subscriptions_and_their_updates() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    let node = node_with(vec![per_client(&url)]).await;
    let addr = node.mcp_addr;
    let a = initialize(addr).await;
    let b = initialize(addr).await;
    let idle = initialize(addr).await;
    wait_for_tool(addr, &a, "up__echo", Duration::from_secs(10)).await;
    wait_for_upstream_stream(&script, 1).await;
    let node_session = script.gets.lock()[0].clone();
    for s in [&a, &b, &idle] {
        let r = call(addr, s, "up__echo", json!({"text": "x"})).await;
        assert_eq!(text_of(&r), "echo: x", "{r}");
    }
    let own = script.called_in("echo");
    let (sa, sb) = (own[0].clone(), own[1].clone());
    assert_eq!(
        *script.gets.lock(),
        std::slice::from_ref(&node_session),
        "calls alone open no stream"
    );

    // Subscriptions go in the client's own session; its stream is open once answered.
    for uri in ["test://shared", "up+test://builtin"] {
        let r = legacy(addr, &a, "resources/subscribe", json!({ "uri": uri })).await;
        assert_eq!(r["result"], json!({}), "{uri}: {r}");
    }
    let r = legacy(
        addr,
        &b,
        "resources/subscribe",
        json!({"uri": "test://shared"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let asked: Vec<(Value, String)> = script.asked("resources/subscribe");
    assert_eq!(
        asked,
        [
            (json!({"uri": "test://shared"}), sa.clone()),
            (json!({"uri": "test://builtin"}), sa.clone()),
            (json!({"uri": "test://shared"}), sb.clone()),
        ]
    );
    let mut open = script.open_gets.lock().clone();
    open.sort();
    let mut want = vec![node_session.clone(), sa.clone(), sb.clone()];
    want.sort();
    assert_eq!(open, want, "one stream per subscribed client session");
    assert_eq!(node.node.upstreams.own_streams("up"), 2);
    let metrics = metrics_text(node.admin_addr).await;
    assert!(
        metrics.contains("mcp_upstream_client_streams{upstream=\"up\"} 2"),
        "{metrics}"
    );

    // Updates: each to the sessions subscribed, under the URI each used.
    let stream_a = get_stream(addr, &a, Duration::from_secs(2));
    let stream_b = get_stream(addr, &b, Duration::from_secs(2));
    let stream_idle = get_stream(addr, &idle, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for uri in ["test://shared", "test://builtin"] {
        let r = call(addr, &idle, "up__touch", json!({ "uri": uri })).await;
        assert_eq!(text_of(&r), "touched", "{r}");
    }
    // A log message outside any request, to `a` only.
    let r = call(
        addr,
        &a,
        "up__say",
        json!({"level": "info", "text": "hello a"}),
    )
    .await;
    assert_eq!(text_of(&r), "said", "{r}");
    let heard_a = stream_a.await.expect("GET stream");
    assert_eq!(
        updated_uris(&heard_a),
        ["test://shared", "up+test://builtin"],
        "{}",
        heard_a.body
    );
    let said: Vec<Value> = sse_messages(&heard_a.body)
        .into_iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].clone())
        .collect();
    assert_eq!(said, [json!("hello a")], "{}", heard_a.body);
    let heard_b = stream_b.await.expect("GET stream");
    assert_eq!(
        updated_uris(&heard_b),
        ["test://shared"],
        "{}",
        heard_b.body
    );
    let heard_idle = stream_idle.await.expect("GET stream");
    assert!(
        sse_messages(&heard_idle.body).is_empty(),
        "{}",
        heard_idle.body
    );

    // A level below the message's: not relayed; at or above: relayed.
    let r = legacy(addr, &a, "logging/setLevel", json!({"level": "warning"})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    let stream_a = get_stream(addr, &a, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (level, text) in [("info", "quiet"), ("error", "loud")] {
        let r = call(addr, &a, "up__say", json!({"level": level, "text": text})).await;
        assert_eq!(text_of(&r), "said", "{r}");
    }
    let heard_a = stream_a.await.expect("GET stream");
    let said: Vec<Value> = sse_messages(&heard_a.body)
        .into_iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].clone())
        .collect();
    assert_eq!(said, [json!("loud")], "{}", heard_a.body);

    // A client that never opened a GET stream holds an upstream stream of its own once it
    // set a level, and is asked `roots/list` on it: the upstream gets an error at once.
    let c = initialize(addr).await;
    let r = legacy(addr, &c, "logging/setLevel", json!({"level": "info"})).await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = call(addr, &c, "up__echo", json!({"text": "c"})).await;
    assert_eq!(text_of(&r), "echo: c", "{r}");
    let sc = script.called_in("echo").last().cloned().unwrap_or_default();
    until("c's own stream", Duration::from_secs(5), || {
        script.open_gets.lock().contains(&sc)
    })
    .await;
    let r = call(addr, &c, "up__ask-later", json!({})).await;
    assert_eq!(text_of(&r), "asked", "{r}");
    until(
        "the upstream's request answered",
        Duration::from_secs(5),
        || !script.responses.lock().is_empty(),
    )
    .await;
    let answer = script.responses.lock()[0].clone();
    assert!(
        answer["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("later-")),
        "{answer}"
    );
    assert_eq!(answer["error"]["code"], -32603, "{answer}");

    // The last unsubscribe closes `b`'s stream (it set no level).
    let r = legacy(
        addr,
        &b,
        "resources/unsubscribe",
        json!({"uri": "test://shared"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    assert_eq!(
        script.asked("resources/unsubscribe"),
        [(json!({"uri": "test://shared"}), sb.clone())]
    );
    until("b's stream closed", Duration::from_secs(5), || {
        !script.open_gets.lock().contains(&sb)
    })
    .await;
    // `a`'s and `c`'s are held.
    assert_eq!(node.node.upstreams.own_streams("up"), 2);

    // The upstream lost every session: `a`'s new one gets its subscriptions again.
    script
        .forgotten
        .store(script.sessions.load(Ordering::SeqCst), Ordering::SeqCst);
    let r = call(addr, &a, "up__echo", json!({"text": "again"})).await;
    assert_eq!(text_of(&r), "echo: again", "{r}");
    let fresh = script.called_in("echo").last().cloned().unwrap_or_default();
    assert_ne!(fresh, sa);
    let mut again: Vec<Value> = script
        .asked("resources/subscribe")
        .into_iter()
        .filter(|(_, s)| *s == fresh)
        .map(|(p, _)| p["uri"].clone())
        .collect();
    again.sort_by_key(|v| v.to_string());
    assert_eq!(again, [json!("test://builtin"), json!("test://shared")]);

    // DELETE ends `a`'s upstream session and closes its stream.
    let r = send(addr, "DELETE", &[("mcp-session-id", &a)], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    until("a's streams closed", Duration::from_secs(5), || {
        let open = script.open_gets.lock();
        !open.contains(&sa) && !open.contains(&fresh)
    })
    .await;
    node.shutdown().await;
}

/// `sessions: perClient` in a cluster: a client session's calls through any node run at its
/// owner in its own upstream session; when the owner leaves, the successor goes on in that
/// same upstream session (it is in the replicated session state: no new `initialize`), and
/// the node that left ends only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_upstream_session_follows_it_across_nodes() {
    let (url, script) = scripted_upstream().await;
    let dir = dev_certs("upstream-per-client");
    let a = clustered_with("node-a", &dir, &[], per_client(&url)).await;
    let seed = peer_addr(&a);
    let b = clustered_with("node-b", &dir, &[seed], per_client(&url)).await;
    let c = clustered_with("node-c", &dir, &[seed], per_client(&url)).await;
    until("3 live members everywhere", Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|n| live_members(n) == 3)
    })
    .await;
    let session = initialize(a.mcp_addr).await;
    for n in [&a, &b, &c] {
        wait_for_tool(n.mcp_addr, &session, "up__echo", Duration::from_secs(10)).await;
    }
    for (i, n) in [&a, &b, &c].iter().enumerate() {
        let r = call(
            n.mcp_addr,
            &session,
            "up__echo",
            json!({"text": format!("via-{i}")}),
        )
        .await;
        assert_eq!(text_of(&r), format!("echo: via-{i}"), "{r}");
    }
    let before = script.called_in("echo");
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|s| *s == before[0]), "{before:?}");
    // Each node's own, and the client's.
    assert_eq!(script.sessions.load(Ordering::SeqCst), 4);
    // The copy carrying it reaches the replicas (asynchronously) before the owner goes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.shutdown().await;
    let body = rpc(
        5,
        "tools/call",
        json!({"name": "up__echo", "arguments": {"text": "after"}}),
    );
    let r = post_until_served(b.mcp_addr, &session, &body, Duration::from_secs(10)).await;
    assert_eq!(text_of(&r.json()), "echo: after", "{r:?}");
    assert_eq!(script.called_in("echo").last(), Some(&before[0]));
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        4,
        "no new initialize"
    );
    assert_eq!(
        script.deleted.lock().len(),
        1,
        "{:?}",
        script.deleted.lock()
    );
    assert!(!script.deleted.lock().contains(&before[0]));
    b.shutdown().await;
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A session owned by one node and used through another: its subscription to an upstream
/// resource is made by the owner, and the upstream's update reaches the client on the other
/// node's stream. When the owner leaves (hand-off), the successor subscribes in its own
/// upstream session and the updates keep coming (`sessions: shared`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_follow_the_session_across_nodes() {
    updates_follow_the_session(false).await;
}

/// [`resource_updates_follow_the_session_across_nodes`] with `sessions: perClient`: the
/// subscription is in the client session's own upstream session, whose standalone stream
/// its owner holds; the successor opens that stream again in the same upstream session (no
/// new subscription, no new `initialize`) once the node it left closed its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_updates_follow_a_per_client_session_across_nodes() {
    updates_follow_the_session(true).await;
}

async fn updates_follow_the_session(per_client_sessions: bool) {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    let dir = dev_certs(if per_client_sessions {
        "upstream-updates-own-test"
    } else {
        "upstream-updates-test"
    });
    let up = || {
        if per_client_sessions {
            per_client(&url)
        } else {
            shared("up", &url)
        }
    };
    let a = clustered_with("node-a", &dir, &[], up()).await;
    let b = clustered_with("node-b", &dir, &[peer_addr(&a)], up()).await;
    until("2 live members everywhere", Duration::from_secs(10), || {
        [&a, &b].iter().all(|n| live_members(n) == 2)
    })
    .await;
    let session = initialize(a.mcp_addr).await;
    wait_for_tool(b.mcp_addr, &session, "up__echo", Duration::from_secs(10)).await;
    wait_for_upstream_stream(&script, 2).await;
    let r = legacy(
        b.mcp_addr,
        &session,
        "resources/subscribe",
        json!({ "uri": "test://shared" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let first = script.asked("resources/subscribe");
    assert_eq!(first.len(), 1, "{first:?}");
    let touch = |addr: SocketAddr| {
        let session = session.clone();
        async move {
            let body = rpc(
                5,
                "tools/call",
                json!({"name": "up__touch", "arguments": {"uri": "test://shared"}}),
            );
            let r = post_until_served(addr, &session, &body, Duration::from_secs(10)).await;
            assert_eq!(text_of(&r.json()), "touched", "{r:?}");
        }
    };
    let stream = get_stream(b.mcp_addr, &session, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    touch(b.mcp_addr).await;
    let heard = stream.await.expect("GET stream");
    assert_eq!(updated_uris(&heard), ["test://shared"], "{heard:?}");
    let initialized = script.sessions.load(Ordering::SeqCst);

    // The owner leaves; a call (no update: one sent now may land in the stream opened
    // below, or not) is served by the successor.
    a.shutdown().await;
    let body = rpc(
        6,
        "tools/call",
        json!({"name": "up__echo", "arguments": {"text": "after"}}),
    );
    let r = post_until_served(b.mcp_addr, &session, &body, Duration::from_secs(10)).await;
    assert_eq!(text_of(&r.json()), "echo: after", "{r:?}");
    if per_client_sessions {
        // The successor holds the stream of the client's own upstream session again.
        let own = first[0].1.clone();
        until("the successor's stream", Duration::from_secs(5), || {
            script.gets.lock().iter().filter(|s| **s == own).count() == 2
                && script.open_gets.lock().contains(&own)
        })
        .await;
        assert_eq!(
            script.asked("resources/subscribe").len(),
            1,
            "no new subscription"
        );
        assert_eq!(
            script.sessions.load(Ordering::SeqCst),
            initialized,
            "no new initialize"
        );
    } else {
        // The successor subscribes in its own upstream session.
        until("the successor subscribes", Duration::from_secs(5), || {
            script.asked("resources/subscribe").len() >= 2
        })
        .await;
        let asked = script.asked("resources/subscribe");
        assert_ne!(
            asked[1].1, first[0].1,
            "in another upstream session: {asked:?}"
        );
        assert_eq!(asked[1].0["uri"], "test://shared", "{asked:?}");
    }
    let stream = get_stream(b.mcp_addr, &session, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    touch(b.mcp_addr).await;
    let heard = stream.await.expect("GET stream");
    assert_eq!(updated_uris(&heard), ["test://shared"], "{heard:?}");
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `sessions: perClient` and `resumeStreams` with an upstream that can resume its standalone
/// streams (event ids, `Last-Event-ID`): the owner records the id of the last event the client's own stream
/// delivered in the client session's replicated state; the owner leaves, and while no stream
/// of that upstream session is open (the successor's GET refused meanwhile) the upstream says
/// an update; once the successor's stream opens it resumes after that id, and the update
/// reaches the client.
#[tokio::test]
async fn a_clients_own_stream_resumes_after_its_session_moved() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    script.resumable.store(true, Ordering::SeqCst);
    let dir = dev_certs("upstream-resume-test");
    let up = || {
        let mut up = per_client(&url);
        up.resume_streams = true;
        up
    };
    let a = clustered_with("node-a", &dir, &[], up()).await;
    let b = clustered_with("node-b", &dir, &[peer_addr(&a)], up()).await;
    until("2 live members everywhere", Duration::from_secs(10), || {
        [&a, &b].iter().all(|n| live_members(n) == 2)
    })
    .await;
    let session = initialize(a.mcp_addr).await;
    wait_for_tool(b.mcp_addr, &session, "up__echo", Duration::from_secs(10)).await;
    wait_for_upstream_stream(&script, 2).await;
    let r = legacy(
        b.mcp_addr,
        &session,
        "resources/subscribe",
        json!({ "uri": "test://shared" }),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let own = script.asked("resources/subscribe")[0].1.clone();
    let touch = |addr: SocketAddr| {
        let session = session.clone();
        async move {
            let body = rpc(
                5,
                "tools/call",
                json!({"name": "up__touch", "arguments": {"uri": "test://shared"}}),
            );
            let r = post_until_served(addr, &session, &body, Duration::from_secs(10)).await;
            assert_eq!(text_of(&r.json()), "touched", "{r:?}");
        }
    };
    let stream = get_stream(b.mcp_addr, &session, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    touch(b.mcp_addr).await;
    let heard = stream.await.expect("GET stream");
    assert_eq!(updated_uris(&heard), ["test://shared"], "{heard:?}");
    let opened = |script: &Script| -> Vec<Option<String>> {
        script
            .resumed_from
            .lock()
            .iter()
            .filter(|(s, _)| *s == own)
            .map(|(_, from)| from.clone())
            .collect()
    };
    assert_eq!(opened(&script), [None], "opened afresh");

    // The owner leaves; the successor's GETs are refused for now, and the upstream says an
    // update meanwhile.
    script.refuse_gets.store(true, Ordering::SeqCst);
    a.shutdown().await;
    touch(b.mcp_addr).await;
    let stream = get_stream(b.mcp_addr, &session, Duration::from_secs(4));
    tokio::time::sleep(Duration::from_millis(300)).await;
    script.refuse_gets.store(false, Ordering::SeqCst);
    let heard = stream.await.expect("GET stream");
    assert_eq!(
        updated_uris(&heard),
        ["test://shared"],
        "the update said while no stream was open: {heard:?}"
    );
    // Resumed after the first update's id (1: the upstream's events are numbered from 1).
    assert_eq!(opened(&script), [None, Some("1".to_owned())]);
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A node of ours serving the 2026-07-28 era (statelessly), with a tool `touch` that says
/// resource `uri` was updated.
async fn stateless_upstream() -> mcp_node::Running {
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..NodeConfig::default()
    };
    config.log.level = "warn".into();
    let settings = mcp_node::Settings::validate(config).expect("valid test config");
    mcp_node::start_with(settings, |b| {
        let mut schema = Map::new();
        schema.insert("type".into(), json!("object"));
        b.tool(
            Tool::new("touch", "says `uri` was updated", Arc::new(schema)),
            |cx: ToolCx, args: Map<String, Value>| async move {
                let uri = args.get("uri").and_then(Value::as_str).unwrap_or_default();
                cx.announce(mcp_node::content::ChangeEvent::ResourceUpdated(uri.into()));
                Ok(CallToolResult::success(vec![ContentBlock::text("touched")]))
            },
        );
    })
    .await
    .expect("node starts")
}

/// A 2026-07-28 upstream (a node of ours: it serves that era statelessly) behind a node, once
/// configured `era: 2026-07-28` and once `era: auto`, beside the scripted legacy upstream
/// also on `auto`: its tools, resources and prompts served to clients of both eras, progress
/// and (at the level the client asked) log messages relayed, a list change and a subscribed
/// resource's update on its listen stream, a request that would need the client's
/// capabilities a clear error; the legacy upstream detected as legacy (one session opened).
#[tokio::test]
async fn a_2026_07_28_upstream_serves_clients_of_both_eras() {
    let stateless = stateless_upstream().await;
    let modern_url = format!("http://{}/mcp", stateless.mcp_addr);
    let (url, script) = scripted_upstream().await;
    // Lists refresh only when the upstream says they changed (on its listen stream).
    let mut pinned = upstream("modern", &modern_url);
    pinned.era = "2026-07-28".into();
    pinned.tools_refresh_secs = 3600;
    let mut detected = upstream("detected", &modern_url);
    detected.era = "auto".into();
    detected.tools_refresh_secs = 3600;
    let mut legacy_up = upstream("legacy", &url);
    legacy_up.era = "auto".into();
    let node = node_with(vec![pinned, detected, legacy_up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    for tool in ["modern__echo", "detected__echo", "legacy__echo"] {
        wait_for_tool(addr, &session, tool, Duration::from_secs(10)).await;
    }
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        1,
        "detected as legacy"
    );

    // Calls from both eras.
    let r = call(
        addr,
        &session,
        "modern__echo",
        json!({"text": "from legacy"}),
    )
    .await;
    assert_eq!(text_of(&r), "from legacy", "{r}");
    assert!(r["result"].get("resultType").is_none(), "{r}");
    assert!(r["result"].get("_meta").is_none(), "{r}");
    let r = modern_call(addr, "detected__echo", json!({"text": "from modern"})).await;
    assert_eq!(text_of(&r), "from modern", "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let r = call(addr, &session, "legacy__echo", json!({"text": "x"})).await;
    assert_eq!(text_of(&r), "echo: x", "{r}");

    // Its resource (the node's own of that URI wins: served prefixed) and its prompt.
    let r = legacy(
        addr,
        &session,
        "resources/read",
        json!({"uri": "modern+test://static-text"}),
    )
    .await;
    let (text, uri) = read_of(&r);
    assert_eq!(uri, "modern+test://static-text", "{r}");
    assert!(!text.is_empty(), "{r}");
    let r = modern(
        addr,
        "prompts/get",
        Some("modern__test_simple_prompt"),
        json!({"name": "modern__test_simple_prompt"}),
    )
    .await;
    assert!(r["result"]["messages"].is_array(), "{r}");

    // Progress under the client's token; log messages only because the level was passed on
    // (the tool logs only when the request names one).
    let body = rpc(
        5,
        "tools/call",
        json!({"name": "modern__test_tool_with_progress", "_meta": {"progressToken": "mine"}}),
    );
    let r = post(addr, &session, &body, Duration::from_secs(10)).await;
    let messages = sse_messages(&r.body);
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine"),
        "{progress:?}"
    );
    let logged = |level: Option<&'static str>| {
        let session = session.clone();
        async move {
            if let Some(level) = level {
                legacy(
                    addr,
                    &session,
                    "logging/setLevel",
                    json!({ "level": level }),
                )
                .await;
            }
            let body = rpc(
                5,
                "tools/call",
                json!({"name": "modern__test_logging_tool"}),
            );
            let r = post(addr, &session, &body, Duration::from_secs(10)).await;
            sse_messages(&r.body)
                .into_iter()
                .filter(|m| m["method"] == "notifications/message")
                .count()
        }
    };
    assert_eq!(logged(None).await, 1);
    assert_eq!(logged(Some("error")).await, 0);

    // The node passes the client's capabilities on; this client declared none, so the
    // upstream refuses what would need them (-32021), and the client learns it, named (the
    // bridged questions: `upstream_bridge.rs`).
    let r = call(
        addr,
        &session,
        "modern__test_input_required_result_elicitation",
        Value::Null,
    )
    .await;
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream `modern`: ")),
        "{r}"
    );
    // Its list change, told on the `subscriptions/listen` stream each upstream entry holds,
    // makes both fetch their lists again.
    let count = |method: &'static str| {
        let admin = stateless.admin_addr;
        async move {
            metrics_text(admin)
                .await
                .lines()
                .filter(|l| {
                    l.starts_with("mcp_requests_total{")
                        && l.contains(&format!("method=\"{method}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    until_async("two listen streams", Duration::from_secs(5), async || {
        count("subscriptions_listen").await >= 2.0
    })
    .await;
    let lists = count("tools_list").await;
    let r = call(
        addr,
        &session,
        "modern__test_trigger_tool_change",
        Value::Null,
    )
    .await;
    assert_eq!(text_of(&r), "tools/list_changed announced", "{r}");
    until_async(
        "both lists fetched again",
        Duration::from_secs(5),
        async || count("tools_list").await >= lists + 2.0,
    )
    .await;

    // A subscription to its resource: the listen stream of that entry opens again with the
    // URI, and the upstream's update reaches the subscribed session under its served URI
    // (once: the other entry's stream does not carry it).
    let listens = count("subscriptions_listen").await;
    let r = legacy(
        addr,
        &session,
        "resources/subscribe",
        json!({"uri": "modern+test://static-text"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    until_async(
        "the listen stream opened again",
        Duration::from_secs(5),
        async || count("subscriptions_listen").await >= listens + 1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stream = get_stream(addr, &session, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call(
        addr,
        &session,
        "modern__touch",
        json!({"uri": "test://static-text"}),
    )
    .await;
    assert_eq!(text_of(&r), "touched", "{r}");
    let heard = stream.await.expect("GET stream");
    assert_eq!(
        updated_uris(&heard),
        ["modern+test://static-text"],
        "{}",
        heard.body
    );
    // Unsubscribed: the stream opens again without it.
    let r = legacy(
        addr,
        &session,
        "resources/unsubscribe",
        json!({"uri": "modern+test://static-text"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    until_async(
        "the listen stream opened again",
        Duration::from_secs(5),
        async || count("subscriptions_listen").await >= listens + 2.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stream = get_stream(addr, &session, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    call(
        addr,
        &session,
        "modern__touch",
        json!({"uri": "test://static-text"}),
    )
    .await;
    let heard = stream.await.expect("GET stream");
    assert!(updated_uris(&heard).is_empty(), "{}", heard.body);
    node.shutdown().await;
    stateless.shutdown().await;
}

/// A 2026-07-28 client's `subscriptions/listen` with `resourceSubscriptions` naming an
/// upstream's resource: the node subscribes upstream while the stream lasts, the upstream's
/// update reaches the stream, and the upstream is unsubscribed when the client leaves; an
/// upstream's refusal is the answer, naming it.
#[tokio::test]
async fn a_listen_stream_subscribes_to_upstream_resources_while_it_lasts() {
    let (url, script) = scripted_upstream().await;
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    let node = node_with(vec![upstream("up", &url)]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_prompts(addr, &session, &["up__greet"], Duration::from_secs(10)).await;
    wait_for_upstream_stream(&script, 1).await;
    let listen = |uri: &'static str, for_: Duration| {
        let params = json!({"notifications": {"resourceSubscriptions": [uri]}});
        tokio::spawn(async move {
            modern_post(addr, 7, "subscriptions/listen", None, params, for_).await
        })
    };
    let stream = listen("test://shared", Duration::from_secs(2));
    until("subscribed upstream", Duration::from_secs(5), || {
        !script.asked("resources/subscribe").is_empty()
    })
    .await;
    let r = call(addr, &session, "up__touch", json!({"uri": "test://shared"})).await;
    assert_eq!(text_of(&r), "touched", "{r}");
    let heard = stream.await.expect("listen stream");
    assert_eq!(heard.status, 200, "{heard:?}");
    assert_eq!(updated_uris(&heard), ["test://shared"], "{}", heard.body);
    // The client left: the node lets go of the upstream subscription.
    until("unsubscribed upstream", Duration::from_secs(5), || {
        !script.asked("resources/unsubscribe").is_empty()
    })
    .await;
    assert_eq!(
        script.asked("resources/unsubscribe")[0].0["uri"],
        "test://shared"
    );

    let refused = listen("test://items/nosub", Duration::from_secs(5))
        .await
        .expect("listen answer");
    let r = refused.json();
    assert_eq!(r["error"]["code"], -32002, "{r}");
    assert_eq!(
        r["error"]["message"], "upstream `up`: cannot subscribe to test://items/nosub",
        "{r}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn secret_headers_reach_the_upstream_and_each_upstream_is_reported() {
    let (url, script) = scripted_upstream().await;
    let dir = std::env::temp_dir().join(format!("mcp-upstream-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("creds")).expect("mkdir");
    // As `kubectl create secret --from-file` writes it: with the file's final newline.
    std::fs::write(dir.join("creds/key"), "from-secret\n").expect("write");
    let mut up = upstream("up", &url);
    up.headers.insert(
        "X-Key".into(),
        mcpcluster_api::HeaderValue::Secret(mcpcluster_api::SecretKeyRef {
            name: "creds".into(),
            key: "key".into(),
        }),
    );
    let mut gone = upstream("gone", "http://127.0.0.1:1/mcp");
    gone.breaker_failures = 1;
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        upstreams: vec![up, gone],
        secrets_dir: dir.display().to_string(),
        ..NodeConfig::default()
    };
    config.log.level = "warn".into();
    let settings = mcp_node::Settings::validate(config).expect("valid test config");
    let node = mcp_node::start_with(settings, |_| {})
        .await
        .expect("node starts");
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    wait_for_tool(addr, &session, "up__echo", Duration::from_secs(10)).await;
    let r = call(addr, &session, "up__echo", json!({"text": "hi"})).await;
    assert_eq!(text_of(&r), "echo: hi");
    let seen = script.headers_seen.lock().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, v)| v == "from-secret"),
        "the Secret's value, without its newline, on every request: {seen:?}"
    );

    // What `/cluster` reports for the operator: one up and answering, one unreachable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let report = node.node.upstreams.report();
        if report[1].reachable == Some(false) || tokio::time::Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = serde_json::to_value(&report).expect("serializes");
    assert_eq!(v[0]["name"], "up");
    assert_eq!(v[0]["state"], "up");
    assert_eq!(v[0]["reachable"], true);
    assert_eq!(v[0]["era"], "legacy");
    assert!(v[0]["tools"].as_u64().unwrap_or(0) >= 4, "{v}");
    assert_eq!(v[0]["lastError"], Value::Null);
    assert_eq!(v[1]["name"], "gone");
    assert_eq!(v[1]["reachable"], false, "{v}");
    assert_eq!(v[1]["state"], "down", "one failure marks it down: {v}");
    assert!(
        v[1]["lastError"]
            .as_str()
            .unwrap_or_default()
            .starts_with("unreachable"),
        "{v}"
    );
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Python FastMCP server (`e2e/upstream/fastmcp_server.py`) started by the test.
struct FastMcp {
    child: std::process::Child,
}

impl FastMcp {
    /// Starts it on a free port and waits (≤ 60 s: Python imports are slow on a busy machine)
    /// until it accepts connections.
    async fn start() -> (u16, Self) {
        let python = std::env::var("MCPCLUSTER_FASTMCP_PYTHON").expect(
            "MCPCLUSTER_FASTMCP_PYTHON unset: run `make e2e-upstream` (e2e/upstream/install.sh)",
        );
        let server = std::env::var("MCPCLUSTER_FASTMCP_SERVER").expect(
            "MCPCLUSTER_FASTMCP_SERVER unset: run `make e2e-upstream` (e2e/upstream/install.sh)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::env::temp_dir().join(format!(
            "mcp-node-fastmcp-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut child = std::process::Command::new(python)
            .arg(server)
            .arg(port.to_string())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the FastMCP server starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("FastMCP did not listen on {port} within 60 s ({exited:?}): {output}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(&log);
        (port, Self { child })
    }
}

impl Drop for FastMcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python FastMCP server (PyPI `fastmcp`) behind a node twice: as a 2025-11-25 session
/// server (`era: legacy`) and detected (`era: auto`: 2026-07-28, stateless); its tools and
/// prompt listed with both prefixes and called by clients of both eras.
#[tokio::test]
#[ignore = "needs FastMCP from PyPI: make e2e-upstream"]
async fn fastmcp_server() {
    let (port, _fastmcp) = FastMcp::start().await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut legacy_up = upstream("py", &url);
    legacy_up.timeout_ms = 10_000;
    let mut auto_up = upstream("pyauto", &url);
    auto_up.timeout_ms = 10_000;
    auto_up.era = "auto".into();
    let node = node_with(vec![legacy_up, auto_up]).await;
    let addr = node.mcp_addr;
    let session = initialize(addr).await;
    let started = Instant::now();
    wait_for_tool(addr, &session, "py__add", Duration::from_secs(20)).await;
    let list = wait_for_tool(addr, &session, "pyauto__greet", Duration::from_secs(20)).await;
    let listed = names(&list);
    println!("listed after {:?}: {listed:?}", started.elapsed());
    for n in [
        "py__add",
        "py__greet",
        "pyauto__add",
        "pyauto__greet",
        "echo",
    ] {
        assert!(listed.contains(&n.to_string()), "{n}: {listed:?}");
    }
    let report = node.node.upstreams.report();
    println!(
        "eras: py {:?}, pyauto {:?} (detected)",
        report[0].era, report[1].era
    );
    assert_eq!(report[0].era, Some("legacy"));
    // FastMCP 4 answers a 2026-07-28 `server/discover`: detected as stateless.
    assert_eq!(report[1].era, Some("2026-07-28"), "{report:?}");

    for up in ["py", "pyauto"] {
        let r = call(
            addr,
            &session,
            &format!("{up}__add"),
            json!({"a": 2, "b": 40}),
        )
        .await;
        assert_eq!(text_of(&r), "42", "{up}: {r}");
        let r = modern_call(addr, &format!("{up}__greet"), json!({"name": "cluster"})).await;
        assert_eq!(text_of(&r), "Hello, cluster!", "{up}: {r}");
        assert_eq!(r["result"]["resultType"], "complete", "{r}");
    }
    wait_for_prompts(addr, &session, &["py__review"], Duration::from_secs(20)).await;
    let r = legacy(
        addr,
        &session,
        "prompts/get",
        json!({"name": "py__review", "arguments": {"code": "fn main() {}"}}),
    )
    .await;
    let text = r["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("fn main() {}"), "{r}");
    // A wrong argument: FastMCP's error comes back named.
    let r = call(addr, &session, "py__add", json!({"a": "two", "b": 40})).await;
    let failed = r["result"]["isError"] == true || r.get("error").is_some();
    assert!(failed, "{r}");
    node.shutdown().await;
}
