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
