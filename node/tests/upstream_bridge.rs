//! Questions across protocol eras (`upstream/bridge.rs`): what an upstream asks its client
//! during a call (elicitation, sampling) reaches the node's client in the client's era, and
//! the answers go back in the upstream's — a 2026-07-28 upstream's `input_required` (a node
//! of ours serving the conformance tools statelessly) to legacy clients as server→client
//! requests and to 2026-07-28 clients passed on; a legacy upstream's server→client requests
//! (the scripted upstream's tool `ask`) to legacy clients on their stream and to 2026-07-28
//! clients as `input_required` while the call is held, through any node of a cluster.
//! Progress and cancellation across the bridge. Against the real
//! `@modelcontextprotocol/server-everything` in `server_everything_asks_clients_of_both_eras`
//! (`make e2e-upstream`, which installs it).

mod common;
mod everything;
mod scripted;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use everything::Everything;
use mcpcluster_api::{NodeConfig, UpstreamConfig};
use scripted::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn node_with(upstreams: Vec<UpstreamConfig>) -> mcp_node::Running {
    start(NodeConfig {
        upstreams,
        ..NodeConfig::default()
    })
    .await
}

/// A legacy session whose client declared `caps`.
async fn initialize_with(addr: SocketAddr, caps: Value) -> String {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": caps,
        "clientInfo": {"name": "t", "version": "1"}}});
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], &body.to_string()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let session = r.header("mcp-session-id").expect("session id").to_string();
    let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &session)],
        note,
    )
    .await;
    assert_eq!(r.status, 202, "{r:?}");
    session
}

/// Reads an HTTP answer's JSON-RPC messages as they arrive (an SSE stream, chunked or not,
/// or one JSON body).
struct Messages {
    stream: TcpStream,
    raw: Vec<u8>,
    head: Option<(bool, bool)>,
    body: Vec<u8>,
    ready: VecDeque<Value>,
}

impl Messages {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            raw: Vec::new(),
            head: None,
            body: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next message, or `None` when the answer ended or nothing came until `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(v) = self.ready.pop_front() {
                return Some(v);
            }
            let mut buf = [0u8; 16384];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                self.parse(true);
                return self.ready.pop_front();
            }
            self.raw.extend_from_slice(&buf[..n]);
            self.parse(false);
        }
    }

    fn parse(&mut self, ended: bool) {
        if self.head.is_none() {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_lowercase();
            self.raw.drain(..end + 4);
            self.head = Some((
                head.contains("transfer-encoding: chunked"),
                head.contains("text/event-stream"),
            ));
        }
        let Some((chunked, sse)) = self.head else {
            return;
        };
        if chunked {
            while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size = String::from_utf8_lossy(&self.raw[..eol]).trim().to_owned();
                let Ok(size) = usize::from_str_radix(&size, 16) else {
                    break;
                };
                if self.raw.len() < eol + 2 + size + 2 {
                    break;
                }
                self.body
                    .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
                self.raw.drain(..eol + 2 + size + 2);
            }
        } else {
            self.body.append(&mut self.raw);
        }
        if !sse {
            if ended && let Ok(v) = serde_json::from_slice(&std::mem::take(&mut self.body)) {
                self.ready.push_back(v);
            }
            return;
        }
        while let Some(end) = self.body.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.body.drain(..end + 2).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str(data.trim())
                {
                    self.ready.push_back(v);
                }
            }
        }
    }
}

/// POSTs `body` (with `headers`) and returns its answer's messages as they come.
async fn open(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Messages {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nconnection: close\r\ncontent-length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    Messages::new(stream)
}

/// A legacy `tools/call` of `name` inside `session`; each server→client request on its stream
/// is answered with what `answer` gives for it (`{"result": ..}` or `{"error": ..}`; `None`
/// leaves it unanswered). The requests asked and the call's response.
async fn call_answering(
    addr: SocketAddr,
    session: &str,
    name: &str,
    args: Value,
    answer: impl Fn(&Value) -> Option<Value>,
) -> (Vec<Value>, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": name, "arguments": args}});
    let headers = [ACCEPT_BOTH, JSON, ("mcp-session-id", session)];
    let mut messages = open(addr, &headers, &body.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut asked = Vec::new();
    loop {
        let m = messages
            .next(deadline)
            .await
            .unwrap_or_else(|| panic!("no answer to `{name}` (asked {asked:?})"));
        if m.get("method").is_some() && m.get("id").is_some() {
            asked.push(m.clone());
            if let Some(mut reply) = answer(&m) {
                reply["jsonrpc"] = json!("2.0");
                reply["id"] = m["id"].clone();
                let r = send(addr, "POST", &headers, &reply.to_string()).await;
                assert_eq!(r.status, 202, "{r:?}");
            }
        } else if m["id"] == 5 {
            return (asked, m);
        }
    }
}

/// Answers an elicitation with `name`, a sampling request with `text`.
fn answer_with(name: &'static str, text: &'static str) -> impl Fn(&Value) -> Option<Value> {
    move |q| match q["method"].as_str() {
        Some("elicitation/create") => Some(
            json!({"result": {"action": "accept", "content": {"name": name, "color": "blue", "ok": true}}}),
        ),
        Some("sampling/createMessage") => Some(json!({"result": {"role": "assistant",
            "content": {"type": "text", "text": text}, "model": "m"}})),
        Some("roots/list") => Some(json!({"result": {"roots": []}})),
        _ => None,
    }
}

/// The 2026-07-28 `_meta` of a client that declared `caps`.
fn meta(caps: Value) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
    })
}

const BOTH: &str = r#"{"elicitation": {}, "sampling": {}}"#;

fn both() -> Value {
    serde_json::from_str(BOTH).unwrap_or_default()
}

/// The headers of a 2026-07-28 `tools/call` of `name`.
fn modern_headers(name: &str) -> Vec<(&str, &str)> {
    vec![
        ACCEPT_BOTH,
        JSON,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", name),
    ]
}

/// A 2026-07-28 `tools/call` of `name` by a client that declared `caps`, with `more` params
/// (`inputResponses`, `requestState`); the response (the last message of an SSE answer).
async fn modern_call(addr: SocketAddr, name: &str, caps: Value, more: Value) -> Value {
    let (_, last) = modern_call_all(addr, name, caps, more, Duration::from_secs(20)).await;
    last
}

/// [`modern_call`], all messages of the answer (waited for ≤ `within`) and the last.
async fn modern_call_all(
    addr: SocketAddr,
    name: &str,
    caps: Value,
    more: Value,
    within: Duration,
) -> (Vec<Value>, Value) {
    let mut params = json!({"name": name, "arguments": {}, "_meta": meta(caps)});
    if let Value::Object(m) = more {
        for (k, v) in m {
            if k == "progressToken" {
                params["_meta"]["progressToken"] = v;
            } else if k == "arguments" {
                params["arguments"] = v;
            } else {
                params[k] = v;
            }
        }
    }
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params});
    let mut messages = open(addr, &modern_headers(name), &body.to_string()).await;
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while let Some(m) = messages.next(deadline).await {
        all.push(m);
    }
    let last = all.last().cloned().unwrap_or_default();
    (all, last)
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {answer}"))
        .to_string()
}

/// Polls `tools/list` in `session` until `name` is listed (≤ 20 s).
async fn wait_for_tool(addr: SocketAddr, session: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let r = send(
            addr,
            "POST",
            &[ACCEPT_BOTH, JSON, ("mcp-session-id", session)],
            body,
        )
        .await;
        if r.body.contains(&format!("\"{name}\"")) {
            return;
        }
        assert!(Instant::now() < deadline, "`{name}` not listed: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 2026-07-28 upstream (a node of ours: the conformance tools, served statelessly) asks with
/// `input_required`: a legacy client is asked on its stream — one question, three at once,
/// two rounds with the upstream's state between them — and a 2026-07-28 client gets the
/// questions passed on, its retries carrying the upstream's state inside the node's; the
/// client's capabilities reach the upstream (one that declared none is refused by it, named).
#[tokio::test]
async fn a_2026_07_28_upstreams_questions_reach_clients_of_both_eras() {
    let upstream_node = start(NodeConfig::default()).await;
    let mut up = UpstreamConfig::new("modern", format!("http://{}/mcp", upstream_node.mcp_addr));
    up.era = "2026-07-28".into();
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize_with(
        addr,
        json!({"elicitation": {}, "sampling": {}, "roots": {}}),
    )
    .await;
    wait_for_tool(
        addr,
        &session,
        "modern__test_input_required_result_elicitation",
    )
    .await;

    // A legacy client: asked on its stream, the call retried upstream with the answers.
    let (asked, done) = call_answering(
        addr,
        &session,
        "modern__test_input_required_result_elicitation",
        json!({}),
        answer_with("Ada", "Paris"),
    )
    .await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["method"], "elicitation/create");
    assert_eq!(text_of(&done), "Hello, Ada!", "{done}");
    assert!(done["result"].get("resultType").is_none(), "{done}");
    let (asked, done) = call_answering(
        addr,
        &session,
        "modern__test_input_required_result_multiple_inputs",
        json!({}),
        answer_with("Ada", "Hi"),
    )
    .await;
    let mut methods: Vec<&str> = asked.iter().filter_map(|q| q["method"].as_str()).collect();
    methods.sort_unstable();
    assert_eq!(
        methods,
        ["elicitation/create", "roots/list", "sampling/createMessage"],
        "{asked:?}"
    );
    assert_eq!(text_of(&done), "Received 3 answers", "{done}");
    let (asked, done) = call_answering(
        addr,
        &session,
        "modern__test_input_required_result_multi_round",
        json!({}),
        answer_with("Ada", "-"),
    )
    .await;
    assert_eq!(asked.len(), 2, "two rounds: {asked:?}");
    assert_eq!(text_of(&done), "Ada likes blue", "{done}");
    // Refused by the client: the upstream hears the refusal as its answer.
    let (_, done) = call_answering(
        addr,
        &session,
        "modern__test_input_required_result_elicitation",
        json!({}),
        |_| Some(json!({"result": {"action": "decline"}})),
    )
    .await;
    assert!(
        done["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream `modern`: ")),
        "{done}"
    );

    // A 2026-07-28 client: the questions passed on under the node's state.
    let name = "modern__test_input_required_result_multi_round";
    let r = modern_call(addr, name, both(), json!({})).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    assert_eq!(
        r["result"]["inputRequests"]["step1"]["method"], "elicitation/create",
        "{r}"
    );
    let state = r["result"]["requestState"].clone();
    assert!(state.is_string(), "{r}");
    let answer = json!({"action": "accept", "content": {"name": "Bo"}});
    let r = modern_call(
        addr,
        name,
        both(),
        json!({"inputResponses": {"step1": answer}, "requestState": state}),
    )
    .await;
    assert_eq!(r["result"]["resultType"], "input_required", "round 2: {r}");
    let state = r["result"]["requestState"].clone();
    let answer = json!({"action": "accept", "content": {"color": "red"}});
    let r = modern_call(
        addr,
        name,
        both(),
        json!({"inputResponses": {"step2": answer}, "requestState": state.clone()}),
    )
    .await;
    assert_eq!(text_of(&r), "Bo likes red", "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    // A retry without the answer the upstream waits for, named.
    let r = modern_call(
        addr,
        name,
        both(),
        json!({"inputResponses": {}, "requestState": state}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("inputResponses.step2")),
        "{r}"
    );
    // The upstream's own state comes back to it unchanged inside the node's.
    let name = "modern__test_input_required_result_request_state";
    let r = modern_call(addr, name, both(), json!({})).await;
    let state = r["result"]["requestState"].clone();
    let answer = json!({"action": "accept", "content": {"ok": true}});
    let r = modern_call(
        addr,
        name,
        both(),
        json!({"inputResponses": {"confirm": answer}, "requestState": state}),
    )
    .await;
    assert_eq!(text_of(&r), "Confirmed: true; state-ok", "{r}");
    // A client that declared nothing: the upstream learns it and refuses, named.
    let r = modern_call(
        addr,
        "modern__test_input_required_result_elicitation",
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream `modern`: ")),
        "{r}"
    );
    node.shutdown().await;
    upstream_node.shutdown().await;
}

/// A legacy upstream's server→client requests during a call: to a legacy client on its stream
/// (an elicitation and a sampling request, answered; a client without the capability: the
/// upstream gets an error), to a 2026-07-28 client as `input_required` while the call is held
/// (one question, then two in a row; the retry's progress token gets the upstream's progress;
/// a retry of an ended call, or with the answer missing, is a clear error; a client without
/// the capability gets -32021 and the upstream's call is cancelled); `initialize` declared
/// what the node relays.
#[tokio::test]
async fn a_legacy_upstreams_questions_reach_clients_of_both_eras() {
    let (url, script) = scripted_upstream().await;
    let node = node_with(vec![UpstreamConfig::new("up", &url)]).await;
    let addr = node.mcp_addr;

    // A legacy client: asked on its stream, its answers POSTed back to the upstream.
    let session = initialize_with(addr, both()).await;
    let (asked, done) = call_answering(
        addr,
        &session,
        "up__ask",
        json!({}),
        answer_with("Ada", "-"),
    )
    .await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["params"]["message"], "name 0?", "{asked:?}");
    assert_eq!(text_of(&done), "answered: ok:Ada", "{done}");
    let (asked, done) = call_answering(
        addr,
        &session,
        "up__ask",
        json!({"method": "sampling/createMessage", "times": 2}),
        answer_with("-", "Paris"),
    )
    .await;
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(text_of(&done), "answered: ok:Paris,ok:Paris", "{done}");
    assert_eq!(
        script.initialized.lock()[0]["capabilities"],
        json!({"sampling": {}, "elicitation": {}, "roots": {}})
    );
    // A client that cannot answer: the upstream gets an error at once.
    let bare = initialize_with(addr, json!({})).await;
    let (asked, done) = call_answering(addr, &bare, "up__ask", json!({}), |_| None).await;
    assert!(asked.is_empty(), "{asked:?}");
    assert_eq!(text_of(&done), "answered: error:-32601", "{done}");

    // A 2026-07-28 client: `input_required`, the call held until the retry answers.
    let r = modern_call(
        addr,
        "up__ask",
        both(),
        json!({"arguments": {"times": 2}, "progressToken": "p1"}),
    )
    .await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let asked = r["result"]["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(asked.len(), 1, "{r}");
    let (key, q) = asked
        .iter()
        .next()
        .map(|(k, q)| (k.clone(), q.clone()))
        .unwrap_or_default();
    assert_eq!(q["method"], "elicitation/create", "{r}");
    assert_eq!(q["params"]["message"], "name 0?", "{r}");
    let answer = json!({"action": "accept", "content": {"name": "Bo"}});
    let state = r["result"]["requestState"].clone();
    let r = modern_call(
        addr,
        "up__ask",
        both(),
        json!({"inputResponses": {key.clone(): answer}, "requestState": state.clone()}),
    )
    .await;
    assert_eq!(r["result"]["resultType"], "input_required", "round 2: {r}");
    let asked = r["result"]["inputRequests"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let key2 = asked.keys().next().cloned().unwrap_or_default();
    assert_ne!(key2, key);
    assert_eq!(asked[&key2]["params"]["message"], "name 1?", "{r}");
    let state2 = r["result"]["requestState"].clone();
    // The answer missing: named, and the call still held.
    let r = modern_call(
        addr,
        "up__ask",
        both(),
        json!({"inputResponses": {}, "requestState": state2.clone()}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&key2)),
        "{r}"
    );
    let answer = json!({"action": "accept", "content": {"name": "Cy"}});
    let (messages, r) = modern_call_all(
        addr,
        "up__ask",
        both(),
        json!({"inputResponses": {key2.clone(): answer}, "requestState": state2,
               "progressToken": "p2"}),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(text_of(&r), "answered: ok:Bo,ok:Cy", "{r}");
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 1, "{messages:?}");
    assert_eq!(progress[0]["params"]["progressToken"], "p2", "{progress:?}");
    // The call ended: its state continues nothing any more.
    let r = modern_call(
        addr,
        "up__ask",
        both(),
        json!({"inputResponses": {key.clone(): {"action": "cancel"}}, "requestState": state}),
    )
    .await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "expired", "{r}");
    assert_eq!(r["error"]["data"]["upstream"], "up", "{r}");
    // A 2026-07-28 client without the capability: -32021 naming it, the upstream's call
    // cancelled.
    let r = modern_call(addr, "up__ask", json!({}), json!({})).await;
    assert_eq!(r["error"]["code"], -32021, "{r}");
    assert_eq!(
        r["error"]["data"]["requiredCapabilities"],
        json!({"elicitation": {}}),
        "{r}"
    );
    let calls = script.slow_ids.lock().len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while script.cancelled.lock().is_empty() {
        assert!(Instant::now() < deadline, "the call was not cancelled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        script.cancelled.lock().last(),
        script.slow_ids.lock().get(calls - 1)
    );
    node.shutdown().await;
}

/// Waits (≤ 5 s) until the upstream heard `notifications/cancelled` for `calls` calls.
async fn wait_cancelled(script: &Script, calls: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while script.cancelled.lock().len() < calls {
        assert!(
            Instant::now() < deadline,
            "cancelled: {:?} of calls {:?}",
            script.cancelled.lock(),
            script.slow_ids.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancellation across the bridge: a legacy client that cancels its call while it is asked,
/// a 2026-07-28 client that leaves its retry, and one that never retries (the held call ends
/// at `timeoutMs`) — each time the legacy upstream hears `notifications/cancelled` for the
/// call; the late retry is a clear error.
#[tokio::test]
async fn a_call_given_up_across_the_bridge_is_cancelled_at_the_upstream() {
    let (url, script) = scripted_upstream().await;
    // The same upstream twice: `short` gives up after 1.5 s.
    let mut short = UpstreamConfig::new("short", &url);
    short.timeout_ms = 1_500;
    let node = node_with(vec![UpstreamConfig::new("up", &url), short]).await;
    let addr = node.mcp_addr;

    // A legacy client cancels while it is asked.
    let session = initialize_with(addr, both()).await;
    let headers = [ACCEPT_BOTH, JSON, ("mcp-session-id", session.as_str())];
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "up__ask", "arguments": {}}});
    let mut messages = open(addr, &headers, &body.to_string()).await;
    let q = messages
        .next(Instant::now() + Duration::from_secs(10))
        .await
        .expect("the question");
    assert_eq!(q["method"], "elicitation/create", "{q}");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 5, "reason": "changed my mind"}});
    let r = send(addr, "POST", &headers, &cancel.to_string()).await;
    assert_eq!(r.status, 202, "{r:?}");
    wait_cancelled(&script, 1).await;
    assert_eq!(script.cancelled.lock()[0], script.slow_ids.lock()[0]);

    // A 2026-07-28 client leaves its retry while the upstream works on (once its answer
    // streams: the upstream's progress came).
    let r = modern_call(
        addr,
        "up__ask",
        both(),
        json!({"arguments": {"linger_ms": 3000}, "progressToken": "p1"}),
    )
    .await;
    let key = r["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_else(|| panic!("no question: {r}"));
    let answer = json!({"action": "accept", "content": {"name": "Bo"}});
    let more = json!({"arguments": {"linger_ms": 3000}, "inputResponses": {key: answer},
        "requestState": r["result"]["requestState"], "progressToken": "p2"});
    let (_, left) =
        modern_call_all(addr, "up__ask", both(), more, Duration::from_millis(500)).await;
    assert_eq!(left["method"], "notifications/progress", "{left}");
    let left_at = Instant::now();
    wait_cancelled(&script, 2).await;
    assert!(
        left_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        left_at.elapsed()
    );
    assert_eq!(script.cancelled.lock()[1], script.slow_ids.lock()[1]);

    // A 2026-07-28 client that never retries: the held call ends at `timeoutMs`.
    let r = modern_call(addr, "short__ask", both(), json!({})).await;
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    wait_cancelled(&script, 3).await;
    assert_eq!(script.cancelled.lock()[2], script.slow_ids.lock()[2]);
    let key = r["result"]["inputRequests"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    let more = json!({"inputResponses": {key: {"action": "cancel"}},
        "requestState": r["result"]["requestState"]});
    let late = modern_call(addr, "short__ask", both(), more).await;
    assert_eq!(late["error"]["data"]["upstream"], "short", "{late}");
    // Its own timeout, or `expired` once another hold swept it out.
    let reason = late["error"]["data"]["reason"].as_str().unwrap_or_default();
    assert!(["timeout", "expired"].contains(&reason), "{late}");
    node.shutdown().await;
}

/// A 2026-07-28 client's retry that reaches another node of the cluster is forwarded to the
/// node holding the call and answered from there; once that node is gone, a retry of this
/// call (`ask`, which may act twice: not run again elsewhere) is a clear error naming it, at
/// once (`upstream_failover.rs` continues one that may run twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_is_continued_through_any_node() {
    let (url, _script) = scripted_upstream().await;
    let dir = dev_certs("upstream-bridge-test");
    let a = clustered("node-a", &dir, &[], &url).await;
    let seed = peer_addr(&a);
    let b = clustered("node-b", &dir, &[seed], &url).await;
    let c = clustered("node-c", &dir, &[seed], &url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ![&a, &b, &c].iter().all(|n| live_members(n) == 3) {
        assert!(Instant::now() < deadline, "3 live members everywhere");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ask = |at: &mcp_node::Running| {
        let addr = at.mcp_addr;
        async move {
            let r = modern_call(addr, "up__ask", both(), json!({})).await;
            assert_eq!(r["result"]["resultType"], "input_required", "{r}");
            let key = r["result"]["inputRequests"]
                .as_object()
                .and_then(|m| m.keys().next().cloned())
                .unwrap_or_default();
            (key, r["result"]["requestState"].clone())
        }
    };
    let answer = |key: &str, state: &Value| {
        json!({"inputResponses": {key: {"action": "accept", "content": {"name": "Di"}}},
               "requestState": state})
    };
    // Asked through a, answered through b and through c.
    let (key, state) = ask(&a).await;
    let r = modern_call(b.mcp_addr, "up__ask", both(), answer(&key, &state)).await;
    assert_eq!(text_of(&r), "answered: ok:Di", "{r}");
    let (key, state) = ask(&c).await;
    let r = modern_call(a.mcp_addr, "up__ask", both(), answer(&key, &state)).await;
    assert_eq!(text_of(&r), "answered: ok:Di", "{r}");

    // The node holding a call leaves: a retry through a survivor is told so, at once.
    let (key, state) = ask(&a).await;
    let gone = peer_addr(&a).to_string();
    a.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while live_members(&b) != 2 {
        assert!(Instant::now() < deadline, "b sees a gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let r = modern_call(b.mcp_addr, "up__ask", both(), answer(&key, &state)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert_eq!(r["error"]["data"]["reason"], "gone", "{r}");
    assert_eq!(r["error"]["data"]["upstream"], "up", "{r}");
    assert_eq!(
        r["error"]["data"]["node"].as_str(),
        Some(gone.as_str()),
        "{r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not run again")),
        "{r}"
    );
    b.shutdown().await;
    c.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `@modelcontextprotocol/server-everything` (TypeScript SDK, 2025-11-25 sessions) asks
/// through the node: it registers its elicitation and sampling tools because the node's
/// `initialize` declared both; a legacy client answers them on its stream, a 2026-07-28 client
/// by retrying its `input_required`; a 2026-07-28 client without the capability gets the
/// upstream's failure, not a hang.
#[tokio::test]
#[ignore = "needs server-everything from npm: make e2e-upstream"]
async fn server_everything_asks_clients_of_both_eras() {
    let (port, _everything) = Everything::start_anywhere().await;
    let mut up = UpstreamConfig::new("everything", format!("http://127.0.0.1:{port}/mcp"));
    up.timeout_ms = 10_000;
    up.era = "auto".into();
    let node = node_with(vec![up]).await;
    let addr = node.mcp_addr;
    let session = initialize_with(addr, both()).await;
    let elicit = "everything__trigger-elicitation-request";
    let sample = "everything__trigger-sampling-request";
    wait_for_tool(addr, &session, elicit).await;
    wait_for_tool(addr, &session, sample).await;

    // A legacy client, asked on its stream.
    let (asked, done) =
        call_answering(addr, &session, elicit, json!({}), answer_with("Ada", "-")).await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["method"], "elicitation/create", "{asked:?}");
    assert!(done.to_string().contains("- Name: Ada"), "{done}");
    let args = json!({"prompt": "capital of France?", "maxTokens": 5});
    let (asked, done) = call_answering(
        addr,
        &session,
        sample,
        args.clone(),
        answer_with("-", "Paris"),
    )
    .await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Paris")),
        "{done}"
    );

    // A 2026-07-28 client: `input_required`, then its retry.
    for (name, args, answer, want) in [
        (
            elicit,
            json!({}),
            json!({"action": "accept", "content": {"name": "Bo"}}),
            "- Name: Bo",
        ),
        (
            sample,
            args.clone(),
            json!({"role": "assistant", "content": {"type": "text", "text": "Lyon"}, "model": "m"}),
            "Lyon",
        ),
    ] {
        let r = modern_call(addr, name, both(), json!({"arguments": args})).await;
        assert_eq!(r["result"]["resultType"], "input_required", "{r}");
        let key = r["result"]["inputRequests"]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default();
        let more = json!({"arguments": args, "inputResponses": {key: answer},
            "requestState": r["result"]["requestState"]});
        let r = modern_call(addr, name, both(), more).await;
        assert!(r.to_string().contains(want), "{r}");
        assert_eq!(r["result"]["resultType"], "complete", "{r}");
    }
    // Without the capability: the upstream is refused at once, and its failure comes back.
    let started = Instant::now();
    let r = modern_call(addr, sample, json!({}), json!({"arguments": args})).await;
    assert!(
        r.get("error").is_some() || r["result"]["isError"] == true,
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    node.shutdown().await;
}
