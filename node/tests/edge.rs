//! The hardened HTTP edge, black-box over raw TCP (issue 12): every size from the wire checked,
//! connection slots that cannot leak (not even through a panic), framing headers that could
//! smuggle a request refused, pipelined requests answered in order, a node-wide budget for
//! buffered request bytes, idle and request-head timeouts, and drain that tells keep-alive
//! clients `Connection: close` instead of cutting them off.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use mcpcluster_api::NodeConfig;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// How soon a refused connection must be closed (the node sends its FIN right after the
/// answer; its linger afterwards only reads).
const CLOSED_WITHIN: Duration = Duration::from_secs(2);

/// Writes `bytes` on a new connection and reads until the server closes it, which every
/// exchange here expects: the test fails unless the end of the stream (FIN, or a reset) comes
/// within `within`.
async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut raw = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut raw)).await {
        Ok(_) => raw,
        Err(_) => panic!(
            "the node did not close the connection within {within:?}; it sent {:?}",
            String::from_utf8_lossy(&raw)
        ),
    }
}

async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut raw)).await;
    raw
}

/// A POST of `body` to `/mcp` with the headers both eras need plus `extra` header lines.
fn post(addr: SocketAddr, body: &str, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        addr.port(),
        body.len()
    )
}

/// Waits until the node counts no open connection (what `/status` reports as `connections`).
async fn connections_settle(node: &mcp_node::Running) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open = node.node.connections.load(Ordering::Acquire);
        if open == 0 || tokio::time::Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A metric's value from the node's OpenMetrics text (`name` with its labels, if any).
fn metric(node: &mcp_node::Running, name: &str) -> f64 {
    let text = node.node.metrics.encode();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The request from issue 12: a chunk size near `usize::MAX` after a first chunk wrapped the
/// size check, panicked the connection task and leaked its slot. Sent many times, concurrently:
/// each gets 413, nothing panics, and no connection is left counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_chunk_size_is_413_and_leaks_nothing() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let crafted = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         1\r\n{{\r\nffffffffffffffff\r\nxx\r\n",
        addr.port()
    );
    let crafted: Arc<[u8]> = crafted.into_bytes().into();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let crafted = crafted.clone();
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..250 {
                let raw = exchange(addr, &crafted, Duration::from_secs(5)).await;
                statuses.push(parse(&raw).status);
            }
            statuses
        });
    }
    let mut answered = 0;
    while let Some(statuses) = tasks.join_next().await {
        for status in statuses.expect("client task") {
            assert_eq!(status, 413, "a chunk over the body limit");
            answered += 1;
        }
    }
    assert_eq!(answered, 2000);
    assert_eq!(connections_settle(&node).await, 0, "every slot came back");
    assert_eq!(metric(&node, "mcp_connection_panics_total"), 0.0);
    let _still_serving = initialize(addr).await;
    node.shutdown().await;
}

/// A panic inside a connection task (here a tool that panics, which runs inline in the task)
/// is caught at the task's edge: counted, the slot and the in-flight count given back, and the
/// node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_connection_is_counted_and_releases_everything() {
    let config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let settings = mcp_node::Settings::validate(config).expect("valid");
    let node = mcp_node::start_with(settings, |b| {
        b.tool(
            rmcp::model::Tool::new("boom", "Panics", Arc::new(Map::new())),
            |_cx, args: Map<String, Value>| async move {
                if args.is_empty() {
                    panic!("a tool bug");
                }
                Ok(rmcp::model::CallToolResult::success(vec![]))
            },
        );
    })
    .await
    .expect("starts");
    let addr = node.mcp_addr;
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"boom","arguments":{{}},{}}}}}"#,
        modern_meta()
    );
    let request = post(
        addr,
        &call,
        "mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: boom\r\n",
    );
    for _ in 0..300 {
        let raw = exchange(addr, request.as_bytes(), CLOSED_WITHIN).await;
        assert!(raw.is_empty(), "the connection is closed without an answer");
    }
    assert_eq!(connections_settle(&node).await, 0, "every slot came back");
    assert_eq!(metric(&node, "mcp_connection_panics_total"), 300.0);
    assert_eq!(
        node.node.inflight.load(Ordering::Acquire),
        0,
        "in-flight count given back"
    );
    assert_eq!(node.node.body_budget.used(), 0, "buffered bytes given back");
    let _still_serving = initialize(addr).await;
    node.shutdown().await;
}

/// Registers the tools the panic tests use: `boom` panics at once (inline in the connection
/// task, or in the task serving a forwarded request), `boom_later` panics after sending a
/// progress notification (its answer already streams, so the rest runs in a background task).
fn panicking_tools(b: &mut mcp_node::CatalogBuilder) {
    b.tool(
        rmcp::model::Tool::new("boom", "Panics", Arc::new(Map::new())),
        |_cx, args: Map<String, Value>| async move {
            if args.is_empty() {
                panic!("a tool bug");
            }
            Ok(rmcp::model::CallToolResult::success(vec![]))
        },
    );
    b.tool(
        rmcp::model::Tool::new(
            "boom_later",
            "Panics after a notification",
            Arc::new(Map::new()),
        ),
        |cx: mcp_node::content::context::ToolCx, args: Map<String, Value>| async move {
            cx.progress(1.0, None, Some("started"));
            tokio::task::yield_now().await;
            if args.is_empty() {
                panic!("a tool bug after its first notification");
            }
            Ok(rmcp::model::CallToolResult::success(vec![]))
        },
    );
}

/// A panic in the part of a request that runs in the background (after its first
/// notification, when the answer already streams) is caught and counted like a connection
/// task's: the stream ends with a JSON-RPC internal error for the request instead of hanging,
/// and the in-flight count, the slot and the buffered bytes all come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_the_first_notification_is_counted_and_answered() {
    let config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let settings = mcp_node::Settings::validate(config).expect("valid");
    let node = mcp_node::start_with(settings, panicking_tools)
        .await
        .expect("starts");
    let addr = node.mcp_addr;
    let call = serde_json::json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "boom_later", "arguments": {}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "progressToken": "p",
        }},
    })
    .to_string();
    let request = post(
        addr,
        &call,
        "mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: boom_later\r\n\
         connection: close\r\n",
    );
    for _ in 0..50 {
        let raw = exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
        let got = responses(&raw);
        assert_eq!(got.len(), 1, "one complete answer: {raw:?}");
        assert_eq!(got[0].header("content-type"), Some("text/event-stream"));
        let events: Vec<Value> = got[0]
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| !d.is_empty())
            .map(|d| serde_json::from_str(d).expect("JSON event"))
            .collect();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["method"], "notifications/progress");
        assert_eq!(events[1]["id"], 7, "{events:?}");
        assert_eq!(events[1]["error"]["code"], -32603, "{events:?}");
        assert!(
            !events[1].to_string().contains("a tool bug"),
            "the panic message stays in the log: {events:?}"
        );
    }
    assert_eq!(metric(&node, "mcp_connection_panics_total"), 50.0);
    assert_eq!(connections_settle(&node).await, 0, "every slot came back");
    assert_eq!(node.node.inflight.load(Ordering::Acquire), 0);
    assert_eq!(node.node.body_budget.used(), 0, "buffered bytes given back");
    let _still_serving = initialize(addr).await;
    node.shutdown().await;
}

/// Two clustered nodes with the panicking tools, met; the session is opened on the first.
async fn two_nodes_with_panicking_tools(tag: &str) -> (mcp_node::Running, mcp_node::Running) {
    let dir = dev_certs(tag);
    let start = |config: NodeConfig| async move {
        let settings = mcp_node::Settings::validate(config).expect("valid");
        mcp_node::start_with(settings, panicking_tools)
            .await
            .expect("starts")
    };
    let mut config = cluster_config("owner", &dir, &[]);
    // A request left unanswered would take this long: far more than the test allows.
    config.cluster.forward_timeout_ms = 30_000;
    config.shutdown_grace_secs = 1;
    let owner = start(config).await;
    let mut config = cluster_config("edge", &dir, &[peer_addr(&owner)]);
    config.cluster.forward_timeout_ms = 30_000;
    config.shutdown_grace_secs = 1;
    let edge = start(config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let met = |n: &mcp_node::Running| common::live_members(n) == 2;
    while !(met(&owner) && met(&edge)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes never met"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (owner, edge)
}

/// A panic while the owner serves a forwarded request: counted there, and the forwarding node
/// gets a 500 JSON-RPC error at once instead of waiting out `forwardTimeoutMs`; nothing stays
/// registered on either side, and both keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_forwarded_request_answers_500_at_once() {
    let (owner, edge) = two_nodes_with_panicking_tools("edge-forward-panic").await;
    let session = initialize(owner.mcp_addr).await;
    let call =
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"boom","arguments":{}}}"#;
    for round in 0..3 {
        let started = std::time::Instant::now();
        let r = send(
            edge.mcp_addr,
            "POST",
            &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session)],
            call,
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r.status, 500, "round {round}: {r:?}");
        assert_eq!(r.json()["id"], 5, "{r:?}");
        assert_eq!(r.json()["error"]["code"], -32603, "{r:?}");
        assert!(
            took < Duration::from_secs(5),
            "answered in {took:?}, not after the 30 s forward timeout"
        );
    }
    // After its first notification the tool's panic is in the owner's background task: the
    // relayed stream ends with the request's error.
    let later = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"boom_later","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let r = send(
        edge.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session)],
        later,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let last = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|d| !d.is_empty())
        .map(|d| serde_json::from_str::<Value>(d).expect("JSON"))
        .expect("events");
    assert_eq!(last["id"], 6, "{r:?}");
    assert_eq!(last["error"]["code"], -32603, "{r:?}");

    assert_eq!(metric(&owner, "mcp_connection_panics_total"), 4.0);
    assert_eq!(metric(&edge, "mcp_connection_panics_total"), 0.0);
    let relayed = |n: &mcp_node::Running| n.cluster.as_ref().expect("clustered").relayed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while relayed(&owner) != (0, 0) || relayed(&edge) != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relays left: owner {:?}, edge {:?}",
            relayed(&owner),
            relayed(&edge)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in [&owner, &edge] {
        assert_eq!(n.node.inflight.load(Ordering::Acquire), 0);
        assert_eq!(n.node.body_budget.used(), 0);
    }
    let r = echo(edge.mcp_addr, &session, 8, "still-serving").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("still-serving"), "{r:?}");
    edge.shutdown().await;
    owner.shutdown().await;
}

/// Every response in `raw` (Content-Length or chunked bodies): (status, headers, body).
fn responses(raw: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let after = &rest[head_end + 4..];
        let lower = head.to_ascii_lowercase();
        let (body_len, consumed) = if lower.contains("transfer-encoding: chunked") {
            match after.windows(5).position(|w| w == b"0\r\n\r\n") {
                Some(end) => (end + 5, end + 5),
                None => break,
            }
        } else {
            let n = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if after.len() < n {
                break;
            }
            (n, n)
        };
        let mut one = head.into_bytes();
        one.extend_from_slice(b"\r\n\r\n");
        one.extend_from_slice(&after[..body_len]);
        out.push(parse(&one));
        rest = &after[consumed..];
    }
    out
}

/// Reads from `stream` until `n` whole responses arrived (or `wait` passed).
async fn read_responses(stream: &mut TcpStream, n: usize, wait: Duration) -> Vec<Reply> {
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    loop {
        let got = responses(&raw);
        if got.len() >= n {
            return got;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return got,
            Ok(Ok(k)) => raw.extend_from_slice(&chunk[..k]),
        }
    }
}

fn legacy_call(addr: SocketAddr, sid: &str, body: &str) -> String {
    post(addr, body, &format!("mcp-session-id: {sid}\r\n"))
}

/// Several requests in one write are all answered, in order, on the same connection — also
/// when one of them is answered with an SSE stream while the next is already buffered, and
/// when the last is split across writes.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let sid = initialize(addr).await;
    let ping = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
    let progress = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let mut pipelined = legacy_call(addr, &sid, &ping(1));
    pipelined += &legacy_call(addr, &sid, &ping(2));
    pipelined += &legacy_call(addr, &sid, progress);
    pipelined += &legacy_call(addr, &sid, &ping(4));
    let last = legacy_call(addr, &sid, &ping(5));
    let (first_half, second_half) = last.split_at(last.len() / 2);
    pipelined += first_half;

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(pipelined.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream
        .write_all(second_half.as_bytes())
        .await
        .expect("write");
    let got = read_responses(&mut stream, 5, Duration::from_secs(10)).await;
    let ids: Vec<String> = got
        .iter()
        .map(|r| {
            let last_data = r
                .body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .rfind(|d| !d.is_empty())
                .unwrap_or(&r.body)
                .to_string();
            serde_json::from_str::<Value>(&last_data).expect("JSON")["id"].to_string()
        })
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"], "{got:?}");
    assert_eq!(got[2].header("content-type"), Some("text/event-stream"));
    assert!(got.iter().all(|r| r.status == 200), "{got:?}");
    assert!(
        got.iter().all(|r| r.header("connection").is_none()),
        "kept alive"
    );
    // Still open and usable afterwards.
    stream
        .write_all(legacy_call(addr, &sid, &ping(6)).as_bytes())
        .await
        .expect("write");
    let more = read_responses(&mut stream, 1, Duration::from_secs(5)).await;
    assert_eq!(more.len(), 1, "the connection keeps serving");
    assert_eq!(more[0].json()["id"], 6);
    drop(stream);
    assert_eq!(connections_settle(&node).await, 0);
    node.shutdown().await;
}

/// Bytes a client sends while its answer streams (a pipelined request) are read ahead, up to
/// 4 KiB, and counted in the node's buffered-request budget while they wait; the request is
/// answered once the stream ends, and the budget is back to 0 after.
#[tokio::test]
async fn read_ahead_behind_a_stream_is_counted_in_the_budget() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let sid = initialize(addr).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let get = format!(
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: text/event-stream\r\n\
         mcp-session-id: {sid}\r\n\r\n",
        addr.port()
    );
    stream.write_all(get.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("the stream's head in time")
            .expect("read");
        assert_eq!(n, 1, "closed before the stream's head: {head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        node.node.body_budget.used(),
        0,
        "a stream alone holds no budget"
    );
    // Sent while the GET stream is open: read ahead and counted.
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    stream
        .write_all(legacy_call(addr, &sid, ping).as_bytes())
        .await
        .expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.node.body_budget.used() < 4096 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read-ahead not counted: {} bytes held",
            node.node.body_budget.used()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stream ends: the request read ahead is answered, then nothing is held.
    node.node.end_streams();
    let mut rest = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 4096];
    let answered = |raw: &[u8]| {
        let text = String::from_utf8_lossy(raw);
        text.find("HTTP/1.1 200 OK")
            .map(|at| responses(text[at..].as_bytes()))
            .filter(|r| !r.is_empty())
    };
    while answered(&rest).is_none() {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("the pipelined request answered after the stream")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&rest));
        rest.extend_from_slice(&chunk[..n]);
    }
    let answers = answered(&rest).expect("answered");
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].json()["id"], 2, "{answers:?}");
    assert_eq!(
        node.node.body_budget.used(),
        0,
        "nothing held between requests"
    );
    drop(stream);
    assert_eq!(connections_settle(&node).await, 0);
    node.shutdown().await;
}

/// Framing that a proxy and this node could read differently (request smuggling) is refused
/// with 400 (501 for an unknown transfer coding) and the connection closed: a request pipelined
/// behind it is never run.
#[tokio::test]
async fn ambiguous_framing_is_refused_and_closes_the_connection() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let port = addr.port();
    let ping_len = PING.len();
    let smuggled = post(addr, PING, "");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(
                "content-length: {ping_len}\r\ncontent-length: {}\r\n",
                ping_len + 5
            ),
            400,
            "more than one Content-Length",
        ),
        (
            format!("content-length: {ping_len}\r\ncontent-length: {ping_len}\r\n"),
            400,
            "more than one Content-Length",
        ),
        (
            format!("content-length: {ping_len}, {ping_len}\r\n"),
            400,
            "Content-Length is a list",
        ),
        (
            format!("content-length: +{ping_len}\r\n"),
            400,
            "invalid Content-Length",
        ),
        (
            format!("content-length: {ping_len}\r\ntransfer-encoding: chunked\r\n"),
            400,
            "both Content-Length and Transfer-Encoding",
        ),
        (
            "transfer-encoding: gzip\r\n".into(),
            400,
            "must end with chunked",
        ),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n".into(),
            400,
            "chunked applied more than once",
        ),
        (
            "transfer-encoding: gzip, chunked\r\n".into(),
            501,
            "only the chunked transfer coding",
        ),
        (
            format!("host: 127.0.0.1:{port}\r\ncontent-length: {ping_len}\r\n"),
            400,
            "more than one Host",
        ),
    ];
    for (framing, status, why) in cases {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: application/json, text/event-stream\r\n\
             content-type: application/json\r\n{framing}\r\n{PING}{smuggled}"
        );
        let raw = exchange(addr, request.as_bytes(), CLOSED_WITHIN).await;
        let got = responses(&raw);
        assert_eq!(
            got.len(),
            1,
            "{framing:?}: one answer, then closed: {got:?}"
        );
        assert_eq!(got[0].status, status, "{framing:?}: {got:?}");
        assert_eq!(got[0].header("connection"), Some("close"), "{framing:?}");
        let message = got[0].json()["error"]["message"].to_string();
        assert!(message.contains(why), "{framing:?}: {message}");
    }
    // HTTP/1.0 has no chunked coding; a missing Host in HTTP/1.1 is refused too.
    for (request, why) in [
        (
            format!(
                "POST /mcp HTTP/1.0\r\nhost: 127.0.0.1:{port}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
        ("GET /mcp HTTP/1.1\r\n\r\n".to_string(), "missing Host"),
        (
            format!(
                "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"
            ),
            "invalid chunk size line",
        ),
        (
            format!(
                "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
            ),
            "chunk data not followed by CRLF",
        ),
    ] {
        let got = responses(&exchange(addr, request.as_bytes(), CLOSED_WITHIN).await);
        assert_eq!(got.len(), 1, "{request:?}: {got:?}");
        assert_eq!(got[0].status, 400, "{request:?}");
        assert!(got[0].body.contains(why), "{request:?}: {}", got[0].body);
    }
    assert_eq!(connections_settle(&node).await, 0);
    node.shutdown().await;
}

/// A correct chunked body (sizes in mixed case, an extension, a trailer) is read and answered.
#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers_are_read() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let (a, b) = PING.split_at(10);
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {:X};note=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-trailer: yes\r\n\r\n",
        addr.port(),
        a.len(),
        b.len()
    );
    let got = responses(&exchange(addr, request.as_bytes(), Duration::from_secs(5)).await);
    assert_eq!(got.len(), 1, "{got:?}");
    // A legacy ping without a session is refused by the session layer — after the body was
    // read in full, which is what this checks.
    assert_eq!(
        got[0].json()["error"]["message"],
        "missing Mcp-Session-Id header"
    );
    node.shutdown().await;
}

/// The node-wide budget for buffered request bytes: stalled uploads hold it until a request
/// that would exceed it gets 503 + `Retry-After` at once (its body never read); when they go,
/// the bytes come back and requests are served again.
#[tokio::test]
async fn buffered_request_budget_refuses_with_503_and_comes_back() {
    let mut config = NodeConfig::default();
    config.limits.max_body_bytes = 64 * 1024;
    config.limits.max_buffered_request_bytes = 64 * 1024 + 128 * 1024;
    let node = start(config).await;
    let addr = node.mcp_addr;
    let stalled_head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        addr.port(),
        64 * 1024
    );
    // Two uploads of 64 KiB that stall after 1 KiB take 130 KiB (bodies and read buffers) of
    // the 192 KiB budget.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(stalled_head.as_bytes()).await.expect("write");
        s.write_all(&[b' '; 1024]).await.expect("write");
        stalled.push(s);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&node, "mcp_buffered_request_bytes") < 130.0 * 1024.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "uploads not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A third does not fit: refused before its body is sent (100-continue is not sent either).
    let started = tokio::time::Instant::now();
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let head = stalled_head.replace("\r\n\r\n", "\r\nexpect: 100-continue\r\n\r\n");
    third.write_all(head.as_bytes()).await.expect("write");
    let got = read_responses(&mut third, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "answered without sending the body");
    assert_eq!(got[0].status, 503, "{got:?}");
    assert_eq!(got[0].header("retry-after"), Some("1"));
    assert_eq!(got[0].header("connection"), Some("close"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    assert_eq!(
        metric(&node, "mcp_rejections_total{reason=\"body_budget\"}"),
        1.0
    );
    // Small requests still fit in what is left.
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], PING).await;
    assert_eq!(r.status, 400, "read and handled (no session): {r:?}");
    // The stalled uploads go; their bytes come back.
    drop(stalled);
    drop(third);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while node.node.body_budget.used() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bytes not given back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(60 * 1024)
    );
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], &big).await;
    assert_eq!(r.status, 400, "a large body fits again (no session): {r:?}");
    assert_eq!(metric(&node, "mcp_buffered_request_bytes"), 0.0);
    node.shutdown().await;
}

fn edge_config(idle: u64, head: u64, request: u64) -> NodeConfig {
    let mut config = NodeConfig::default();
    config.limits.idle_timeout_secs = idle;
    config.limits.request_head_timeout_secs = head;
    config.limits.request_timeout_secs = request;
    config
}

/// A keep-alive connection idle past `idleTimeoutSecs` is closed by the node (and counted);
/// one carrying an SSE stream is not idle and stays open.
#[tokio::test]
async fn idle_keep_alive_connections_close_but_streams_stay() {
    let node = start(edge_config(1, 10, 30)).await;
    let addr = node.mcp_addr;
    let sid = initialize(addr).await;
    let mut stream_conn = TcpStream::connect(addr).await.expect("connect");
    let get = format!(
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\n\r\n",
        addr.port()
    );
    stream_conn.write_all(get.as_bytes()).await.expect("write");
    let mut idle_conn = TcpStream::connect(addr).await.expect("connect");
    idle_conn
        .write_all(legacy_call(addr, &sid, PING).as_bytes())
        .await
        .expect("write");
    let answered = read_responses(&mut idle_conn, 1, Duration::from_secs(5)).await;
    assert_eq!(answered.len(), 1);
    let idle_since = tokio::time::Instant::now();
    let rest = read_until_closed(&mut idle_conn, Duration::from_secs(5)).await;
    let closed_after = idle_since.elapsed();
    assert!(rest.is_empty(), "closed without another answer");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(4),
        "closed after the 1 s idle timeout, took {closed_after:?}"
    );
    assert_eq!(
        metric(
            &node,
            "mcp_connections_closed_total{reason=\"idle_timeout\"}"
        ),
        1.0
    );
    // The GET stream outlived the idle timeout: still open, still counted.
    let mut buf = [0u8; 1024];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream_conn.read(&mut buf).await.expect("stream head");
        assert!(n > 0, "stream closed");
        head.extend_from_slice(&buf[..n]);
    }
    let more = tokio::time::timeout(Duration::from_millis(1500), stream_conn.read(&mut buf)).await;
    assert!(
        !matches!(more, Ok(Ok(0)) | Ok(Err(_))),
        "an SSE stream is not closed as idle"
    );
    assert_eq!(node.node.connections.load(Ordering::Acquire), 1);
    drop(stream_conn);
    node.shutdown().await;
}

/// Slow clients: a head not complete within `requestHeadTimeoutSecs` of its first byte, or a
/// body not complete within `requestTimeoutSecs`, gets 408 and the connection is closed.
#[tokio::test]
async fn slow_heads_and_bodies_get_408() {
    let node = start(edge_config(60, 1, 2)).await;
    let addr = node.mcp_addr;
    // Slowloris: the head a few bytes at a time, never finished.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    let started = tokio::time::Instant::now();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow.write_all(b"x-a: b\r\n").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let got = read_responses(&mut slow, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "answered");
    assert_eq!(got[0].status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A complete head, then the body stalls.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    let started = tokio::time::Instant::now();
    let head = post(addr, "", "").replace("content-length: 0", "content-length: 100");
    stalled.write_all(head.as_bytes()).await.expect("write");
    stalled.write_all(b"{\"jsonrpc\"").await.expect("write");
    let got = read_responses(&mut stalled, 1, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1, "answered");
    assert_eq!(got[0].status, 408);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "the 2 s request timeout, took {took:?}"
    );
    assert_eq!(
        metric(&node, "mcp_rejections_total{reason=\"request_timeout\"}"),
        2.0
    );
    assert_eq!(connections_settle(&node).await, 0);
    node.shutdown().await;
}

/// Drain: the next answer on a keep-alive connection says `Connection: close` and the
/// connection closes after it; a connection idle when the drain began still gets an answer to a
/// request sent right after (shutdown started), then closes; one that stays silent is closed
/// after the short grace.
#[tokio::test]
async fn drain_says_connection_close_and_answers_requests_on_the_wire() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let sid = initialize(addr).await;
    let call = |id: u32| {
        legacy_call(
            addr,
            &sid,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
        )
    };

    // POST /drain's path: keep-alive until the drain, then one last answer with close.
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    busy.write_all(call(1).as_bytes()).await.expect("write");
    let first = read_responses(&mut busy, 1, Duration::from_secs(5)).await;
    assert_eq!(
        first[0].header("connection"),
        None,
        "kept alive before the drain"
    );
    // A connection that will send nothing more.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    silent.write_all(call(2).as_bytes()).await.expect("write");
    assert_eq!(
        read_responses(&mut silent, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );

    assert!(node.node.begin_drain());
    let drained_at = tokio::time::Instant::now();
    busy.write_all(call(3).as_bytes()).await.expect("write");
    let last = read_responses(&mut busy, 1, Duration::from_secs(5)).await;
    assert_eq!(last.len(), 1, "answered during the drain");
    assert_eq!(last[0].status, 200);
    assert_eq!(last[0].json()["id"], 3);
    assert_eq!(last[0].header("connection"), Some("close"));
    assert!(
        read_until_closed(&mut busy, Duration::from_secs(5))
            .await
            .is_empty()
    );
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_empty()
    );
    let silent_closed = drained_at.elapsed();
    assert!(
        silent_closed >= Duration::from_millis(900) && silent_closed < Duration::from_secs(4),
        "an idle connection closes after the drain grace, took {silent_closed:?}"
    );
    assert!(node.node.cancel_drain());

    // SIGTERM's path: shutdown starts while the client is sending on an idle connection.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(call(4).as_bytes()).await.expect("write");
    assert_eq!(
        read_responses(&mut idle, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let node_addr = node.mcp_addr;
    let shutdown = tokio::spawn(node.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    idle.write_all(call(5).as_bytes()).await.expect("write");
    let got = read_responses(&mut idle, 1, Duration::from_secs(5)).await;
    assert_eq!(
        got.len(),
        1,
        "a request sent just after SIGTERM is answered"
    );
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].json()["id"], 5);
    assert_eq!(got[0].header("connection"), Some("close"));
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(5))
            .await
            .is_empty()
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes once the connections closed")
        .expect("shutdown task");
    assert!(
        TcpStream::connect(node_addr).await.is_err(),
        "no longer accepting"
    );
}

/// The kernel timer armed on the node's side of a connection from `client` to `server`
/// (`/proc/net/tcp`'s `tr` field: 0 none, 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 probe).
fn server_side_timer(server: SocketAddr, client: SocketAddr) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux)");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port = |f: &str| u16::from_str_radix(f.rsplit(':').next()?, 16).ok();
        (port(fields[1])? == server.port() && port(fields[2])? == client.port())
            .then(|| u8::from_str_radix(fields[5].split(':').next()?, 16).ok())
            .flatten()
    })
}

/// Accepted sockets carry TCP keepalive (`limits.tcpKeepaliveSecs`; 0 turns it off), so a
/// client that vanished without a FIN is found out even on a connection nobody writes to.
#[tokio::test]
async fn accepted_sockets_get_tcp_keepalive() {
    for (secs, timer) in [(60, 2), (0, 0)] {
        let mut config = NodeConfig::default();
        config.limits.tcp_keepalive_secs = secs;
        let node = start(config).await;
        let mut client = TcpStream::connect(node.mcp_addr).await.expect("connect");
        client
            .write_all(post(node.mcp_addr, PING, "").as_bytes())
            .await
            .expect("write");
        assert_eq!(
            read_responses(&mut client, 1, Duration::from_secs(5))
                .await
                .len(),
            1
        );
        let local = client.local_addr().expect("local address");
        assert_eq!(
            server_side_timer(node.mcp_addr, local),
            Some(timer),
            "tcpKeepaliveSecs {secs}: the node's socket has timer {timer}"
        );
        drop(client);
        node.shutdown().await;
    }
}

/// An answer to HEAD carries no body (its `content-length` still says how long the body would
/// be), so the client reads the next pipelined answer where it starts.
#[tokio::test]
async fn head_answers_have_no_body() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let head = format!(
        "HEAD /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n\r\n",
        addr.port()
    );
    let request = format!("{head}{}", post(addr, PING, "connection: close\r\n"));
    let raw = exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&raw);
    let second = text.find("\r\n\r\nHTTP/1.1 ").map(|i| i + 4);
    let (first, rest) =
        text.split_at(second.expect("two answers, the second right after the first head"));
    assert!(first.starts_with("HTTP/1.1 405"), "{first}");
    assert!(first.contains("content-length: "), "{first}");
    let rest = parse(rest.as_bytes());
    assert_eq!(
        rest.status, 400,
        "the POST after it is read and answered: {rest:?}"
    );
    node.shutdown().await;
}
