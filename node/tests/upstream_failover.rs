//! A kill -9 mid-conversation with an upstream (issue 13): three real `mcp-node` processes with
//! the same scripted upstream behind them; a client's session, owned by node-0, calls the
//! upstream through every node and holds its GET stream at node-1 (relayed from node-0). A call
//! is in flight to the upstream (sent by node-2, run by node-0) when node-0 is SIGKILLed: it
//! gets an answer, never a hang — an unknown outcome, not a second run (`http/repeat.rs`),
//! while a call of a tool annotated `idempotentHint` is sent again and answered; the client's next calls through the survivors succeed at the
//! first try, in the same session (no 404, no re-initialize), and the new owner goes on in the
//! client session's own upstream session (the same `Mcp-Session-Id`, replicated with the
//! session: no new `initialize` upstream); and the held stream goes on with no gap and no
//! duplicate.

mod common;
mod fleet;
mod scripted;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fleet::stream::{Held, assert_consecutive, hold, trigger_list_changed};
use fleet::{converge, sse_ids, start_fleet_with, temp, write_certs};
use scripted::scripted_upstream;

/// `tools/call` of `name` in `session` through `addr`: the HTTP status and the JSON-RPC message
/// (an SSE answer's last message).
async fn call(addr: SocketAddr, session: &str, id: u32, name: &str, args: Value) -> (u16, Value) {
    rpc(
        addr,
        session,
        id,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await
}

/// Request `method` in `session` through `addr`: the HTTP status and the JSON-RPC message.
async fn rpc(
    addr: SocketAddr,
    session: &str,
    id: u32,
    method: &str,
    params: Value,
) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    let r = common::send_with(
        addr,
        "POST",
        "/mcp",
        &[
            common::ACCEPT_BOTH,
            common::JSON,
            ("mcp-session-id", session),
        ],
        &body,
        Duration::from_secs(30),
    )
    .await;
    let msg = if r.status == 200 {
        r.json()
    } else {
        Value::String(r.body.clone())
    };
    (r.status, msg)
}

/// Polls `ok` until it holds, at most `limit`.
async fn until_true(what: &str, limit: Duration, ok: impl Fn() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text_of(msg: &Value) -> &str {
    msg["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {msg}"))
}

/// Until `addr` lists `up__echo` for the session (each node fetches the upstream's list at
/// start, in the background).
async fn wait_for_upstream_tools(addr: SocketAddr, session: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = common::send(
            addr,
            "POST",
            &[
                common::ACCEPT_BOTH,
                common::JSON,
                ("mcp-session-id", session),
            ],
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )
        .await;
        if r.status == 200 && r.body.contains("up__echo") {
            return;
        }
        assert!(Instant::now() < deadline, "no up__echo at {addr}: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_talking_to_an_upstream_survives_its_owner_killed() {
    let (url, script) = scripted_upstream().await;
    // Resources (a subscription) and standalone streams (where its updates come).
    script.content.store(true, Ordering::SeqCst);
    script.streams.store(true, Ordering::SeqCst);
    let certs = write_certs("certs-upstream-kill");
    let logs = temp("logs-upstream-kill");
    let config = logs.join("node.yaml");
    std::fs::write(
        &config,
        format!(
            "upstreams:\n  - name: up\n    url: {url}\n    timeoutMs: 20000\n    sessions: perClient\n"
        ),
    )
    .expect("config file");
    let (mut fleet, ports) = start_fleet_with(&certs, &logs, Some(&config));
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;

    // Owned by node-0 (opened there); upstream calls through each node; its GET stream held
    // at node-1, relayed from node-0.
    let session = common::initialize(ports[0].mcp).await;
    for p in &ports {
        wait_for_upstream_tools(p.mcp, &session).await;
    }
    for (i, p) in ports.iter().enumerate() {
        let (status, msg) = call(
            p.mcp,
            &session,
            10 + i as u32,
            "up__echo",
            json!({"text": format!("before-{i}")}),
        )
        .await;
        assert_eq!(status, 200, "{msg}");
        assert_eq!(text_of(&msg), format!("echo: before-{i}"));
    }
    let held = hold(ports[1].mcp, &session).await;
    held.until("the priming event", Duration::from_secs(5), |h| {
        !sse_ids(&h.text()).is_empty()
    })
    .await;
    trigger_list_changed(ports[2].mcp, &session).await;
    held.until("the first list_changed", Duration::from_secs(5), |h| {
        h.list_changed() == 1
    })
    .await;
    // A subscription, made by the owner in the client's own upstream session, whose stream
    // the owner holds; an update reaches the stream held at node-1.
    let (status, msg) = rpc(
        ports[2].mcp,
        &session,
        40,
        "resources/subscribe",
        json!({"uri": "test://shared"}),
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["result"], json!({}), "{msg}");
    let updates = |h: &Held| h.text().matches("notifications/resources/updated").count();
    let (status, msg) = call(
        ports[1].mcp,
        &session,
        41,
        "up__touch",
        json!({"uri": "test://shared"}),
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    held.until("the first update", Duration::from_secs(5), |h| {
        updates(h) == 1
    })
    .await;
    // The events reach the session's replica (asynchronously) before the owner goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let upstream_sessions = script.sessions.load(Ordering::SeqCst);
    // Every call ran at the owner in the client session's own upstream session
    // (`sessions: perClient`, configured above), which its replicas hold in their copies.
    let own = script.called_in("echo");
    assert_eq!(own.len(), 3, "{own:?}");
    assert!(own.iter().all(|s| *s == own[0]), "{own:?}");
    let own = own[0].clone();

    // Two slow upstream calls in flight, sent through node-2, run by node-0 at the upstream:
    // `up__slow` (may act twice) and `up__slow_safe` (annotated `idempotentHint`).
    let in_flight = |id: u32, tool: &'static str| {
        let (addr, session) = (ports[2].mcp, session.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = call(addr, &session, id, tool, json!({})).await;
            (answer, started.elapsed())
        })
    };
    let inflight = in_flight(20, "up__slow");
    let inflight_safe = in_flight(21, "up__slow_safe");
    let deadline = Instant::now() + Duration::from_secs(5);
    while script.slow_ids.lock().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the slow calls never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut owner = fleet.0[0].take().expect("node-0");
    let killed = Instant::now();
    owner.kill().expect("SIGKILL");
    owner.wait().expect("node-0 reaped");

    // The next calls through the survivors: served at the first try, same session.
    for (n, i) in [1usize, 2].into_iter().enumerate() {
        let (status, msg) = call(
            ports[i].mcp,
            &session,
            30 + n as u32,
            "up__echo",
            json!({"text": format!("after-{i}")}),
        )
        .await;
        assert_eq!(
            status, 200,
            "the call through node-{i} after the kill: {msg}"
        );
        assert_eq!(text_of(&msg), format!("echo: after-{i}"), "{msg}");
        println!(
            "call through node-{i} served {:?} after the kill",
            killed.elapsed()
        );
    }

    // The calls in flight at the kill were answered, within their bounds. The one that may
    // act twice is not sent again: its outcome is unknown, and the client is told so. The
    // idempotent one is sent again to the new owner and answered by the upstream.
    let ((status, msg), took) = tokio::time::timeout(Duration::from_secs(25), inflight)
        .await
        .expect("the call in flight at the kill is answered, not left hanging")
        .expect("the call's task");
    println!("the call in flight at the kill: {status} after {took:?}: {msg}");
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["id"], 20, "{msg}");
    assert_eq!(msg["result"]["isError"], true, "{msg}");
    assert_eq!(
        msg["result"]["_meta"]["mcpcluster.dev/outcome"], "unknown",
        "{msg}"
    );
    assert!(text_of(&msg).contains("`up__slow`"), "{msg}");
    let ((status, msg), took) = tokio::time::timeout(Duration::from_secs(25), inflight_safe)
        .await
        .expect("the idempotent call in flight at the kill is answered, not left hanging")
        .expect("the call's task");
    println!("the idempotent call in flight at the kill: {status} after {took:?}: {msg}");
    assert_eq!(status, 200, "{msg}");
    assert_eq!(msg["id"], 21, "{msg}");
    assert_eq!(text_of(&msg), "slow", "sent again and answered: {msg}");
    assert_eq!(
        script.slow_ids.lock().len(),
        3,
        "the upstream got `slow` once and `slow_safe` twice"
    );

    // The stream: the next event on the same connection, no gap, no duplicate.
    trigger_list_changed(ports[2].mcp, &session).await;
    held.until(
        "the next list_changed on the same connection",
        Duration::from_secs(10),
        |h| h.list_changed() == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.closed.load(Ordering::Acquire),
        "the stream stays open"
    );
    assert_eq!(held.list_changed(), 2, "{}", held.text());
    assert_consecutive(&held);
    // The new owner holds the stream of the client's upstream session again (no new
    // subscription): the next update reaches the held stream.
    until_true(
        "the new owner's stream with the upstream",
        Duration::from_secs(10),
        || {
            script.gets.lock().iter().filter(|s| **s == own).count() == 2
                && script.open_gets.lock().contains(&own)
        },
    )
    .await;
    let (status, msg) = call(
        ports[2].mcp,
        &session,
        42,
        "up__touch",
        json!({"uri": "test://shared"}),
    )
    .await;
    assert_eq!(status, 200, "{msg}");
    held.until("the update after the kill", Duration::from_secs(5), |h| {
        updates(h) == 2
    })
    .await;
    assert_eq!(
        script.asked("resources/subscribe").len(),
        1,
        "not subscribed again"
    );
    // The new owner went on in the client's upstream session: the upstream saw the same
    // Mcp-Session-Id continue (the calls after the kill, the idempotent call sent again) and
    // no new `initialize` (the survivors' own sessions were opened at start, for the lists).
    let echoes = script.called_in("echo");
    assert_eq!(echoes.len(), 5, "{echoes:?}");
    assert_eq!(script.called_in("touch"), [own.clone(), own.clone()]);
    assert!(echoes.iter().all(|s| *s == own), "{echoes:?}");
    assert_eq!(script.called_in("slow_safe"), [own.clone(), own.clone()]);
    assert_eq!(
        script.sessions.load(Ordering::SeqCst),
        upstream_sessions,
        "no session opened after the kill"
    );
    assert!(!script.deleted.lock().contains(&own));
    held.task.abort();
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}

/// A 2026-07-28 request through `addr` (stateless): `method` with `params` and the
/// `_meta` of a client that declared elicitation; its JSON-RPC answer (an SSE answer's last
/// message).
async fn modern(addr: SocketAddr, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    });
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params}).to_string();
    let mut headers = vec![
        common::ACCEPT_BOTH,
        common::JSON,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if !name.is_empty() {
        headers.push(("mcp-name", &name));
    }
    let r = common::send_with(
        addr,
        "POST",
        "/mcp",
        &headers,
        &body,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let last = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .next_back();
    last.unwrap_or_else(|| r.json())
}

/// The one question of an `input_required` answer: its key and params, and the state.
fn question(r: &Value) -> (String, Value, Value) {
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let asked = r["result"]["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(asked.len(), 1, "{r}");
    let (key, q) = asked.into_iter().next().unwrap_or_default();
    (
        key,
        q["params"].clone(),
        r["result"]["requestState"].clone(),
    )
}

fn answering(tool: &str, key: &str, name: &str, state: &Value) -> Value {
    json!({"name": tool, "arguments": {"times": 3},
        "inputResponses": {key: {"action": "accept", "content": {"name": name}}},
        "requestState": state})
}

/// A call a legacy upstream asked a 2026-07-28 client about is held on the node that sent it;
/// that node is SIGKILLed between two of the client's answers. The client's next retry,
/// through a survivor, continues the call there: the upstream's call (`ask_safe`, annotated
/// `idempotentHint`) is sent again, its first two questions answered from the signed
/// `requestState` (the first) and the retry (the second), the third asked of the client, held
/// on that survivor now and answered through the third node. A held call of a tool that may
/// act twice (`ask`) is not run again: a clear error naming the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_survives_its_node_killed() {
    let (url, script) = scripted_upstream().await;
    let certs = write_certs("certs-held-kill");
    let logs = temp("logs-held-kill");
    let config = logs.join("node.yaml");
    std::fs::write(
        &config,
        format!("upstreams:\n  - name: up\n    url: {url}\n    timeoutMs: 20000\n"),
    )
    .expect("config file");
    let (mut fleet, ports) = start_fleet_with(&certs, &logs, Some(&config));
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;
    // Each node knows the tool's annotations (its lists are fetched at start).
    for p in &ports {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = modern(p.mcp, "tools/list", json!({})).await;
            if r.to_string().contains("up__ask_safe") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no up__ask_safe at {}: {r}",
                p.mcp
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Asked through node-0 (held there), the first answer through node-1 (forwarded to
    // node-0): the second question, still held at node-0.
    let r = modern(
        ports[0].mcp,
        "tools/call",
        json!({"name": "up__ask_safe", "arguments": {"times": 3}}),
    )
    .await;
    let (key1, q1, state1) = question(&r);
    assert_eq!(q1["message"], "name 0?", "{r}");
    let r = modern(
        ports[1].mcp,
        "tools/call",
        answering("up__ask_safe", &key1, "Bo", &state1),
    )
    .await;
    let (key2, q2, state2) = question(&r);
    assert_eq!(q2["message"], "name 1?", "{r}");
    // A call of a tool that may act twice, held at node-0 too.
    let r = modern(
        ports[0].mcp,
        "tools/call",
        json!({"name": "up__ask", "arguments": {"times": 3}}),
    )
    .await;
    let (key_unsafe, _, state_unsafe) = question(&r);
    let runs = script.slow_ids.lock().len();
    assert_eq!(runs, 2, "ask_safe and ask, once each");

    let mut holder = fleet.0[0].take().expect("node-0");
    let killed = Instant::now();
    holder.kill().expect("SIGKILL");
    holder.wait().expect("node-0 reaped");

    // The second answer through node-1: the call is sent again there, the first question
    // answered from the state and the second from the retry; the third is the client's.
    let r = modern(
        ports[1].mcp,
        "tools/call",
        answering("up__ask_safe", &key2, "Cy", &state2),
    )
    .await;
    println!(
        "the retry after the kill answered {:?} after it: {r}",
        killed.elapsed()
    );
    let (key3, q3, state3) = question(&r);
    assert_eq!(q3["message"], "name 2?", "{r}");
    assert_ne!(key3, key2, "{r}");
    assert_eq!(
        script.slow_ids.lock().len(),
        runs + 1,
        "the upstream got the call again"
    );
    // Held at node-1 now: answered through node-2, forwarded there.
    let r = modern(
        ports[2].mcp,
        "tools/call",
        answering("up__ask_safe", &key3, "Di", &state3),
    )
    .await;
    assert_eq!(
        r["result"]["content"][0]["text"], "answered: ok:Bo,ok:Cy,ok:Di",
        "{r}"
    );
    assert_eq!(r["result"]["resultType"], "complete", "{r}");

    // The call that may act twice is not run again: gone, naming the node.
    let r = modern(
        ports[2].mcp,
        "tools/call",
        answering("up__ask", &key_unsafe, "Ed", &state_unsafe),
    )
    .await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "gone", "{r}");
    assert_eq!(r["error"]["data"]["upstream"], "up", "{r}");
    assert_eq!(
        r["error"]["data"]["node"].as_str(),
        Some(ports[0].peer.to_string().as_str()),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not run again")),
        "{r}"
    );
    assert_eq!(
        script.slow_ids.lock().len(),
        runs + 1,
        "`ask` not sent again"
    );
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}
