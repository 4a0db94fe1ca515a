//! The scripted 2025-11-25 upstream the upstream tests run behind nodes (`upstream.rs`,
//! `upstream_failover.rs`): each behaviour on demand, and a record of what it was asked.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream did and how it behaves.
#[derive(Default)]
pub struct Script {
    /// Sessions issued so far (`s1`, `s2`, ...).
    pub sessions: AtomicU32,
    /// Sessions up to this number are forgotten (as a restarted server forgets them).
    pub forgotten: AtomicU32,
    /// `tools/list` requests answered.
    pub lists: AtomicU32,
    /// The `X-Key` header of each request.
    pub headers_seen: parking_lot::Mutex<Vec<(String, String)>>,
    /// Tools added by calling `grow` / `grow-quietly` (listed from then on).
    pub added: AtomicU32,
    /// Ids of the `slow` calls received, and the request ids of `notifications/cancelled`.
    pub slow_ids: parking_lot::Mutex<Vec<Value>>,
    pub cancelled: parking_lot::Mutex<Vec<Value>>,
    /// Sessions ended with DELETE.
    pub deleted: parking_lot::Mutex<Vec<String>>,
    /// Whether GET opens a standalone stream (else 405).
    pub streams: AtomicBool,
    /// Events for the open standalone streams: for one session's, or (`None`) for all.
    pub stream_events: Option<tokio::sync::broadcast::Sender<(Option<String>, String)>>,
    /// The session of each standalone stream opened, in order, and of those open now (one
    /// per session, as the TypeScript SDK allows: a second is answered 409).
    pub gets: parking_lot::Mutex<Vec<String>>,
    pub open_gets: parking_lot::Mutex<Vec<String>>,
    /// Whether `initialize` announces resources and prompts (`content`), and the content
    /// added by calling `grow-content` (a prompt and a resource each).
    pub content: AtomicBool,
    pub added_content: AtomicU32,
    /// `completion/complete`, `resources/subscribe`/`unsubscribe` and `logging/setLevel`
    /// requests: method, params, session.
    pub asked: parking_lot::Mutex<Vec<(String, Value, String)>>,
    /// POST requests received (answered or not).
    pub posts: AtomicU32,
    /// While set, every POST is answered `503 Service Unavailable`.
    pub broken: AtomicBool,
    /// Responses POSTed to the upstream's server→client requests (tool `ask`).
    pub responses: parking_lot::Mutex<Vec<Value>>,
    pub responded: tokio::sync::Notify,
    /// The `initialize` params each session was opened with.
    pub initialized: parking_lot::Mutex<Vec<Value>>,
    /// Each `tools/call` answered: the tool and the session it came in.
    pub calls: parking_lot::Mutex<Vec<(String, String)>>,
    /// Whether standalone streams can be resumed: events said by `touch` and `say` are kept
    /// (`event_log`: id, the session or all, the event) and sent with their `id`, a stream
    /// opens with a priming event (the last id so far), and a GET with `Last-Event-ID` gets
    /// the session's events after that id first.
    pub resumable: AtomicBool,
    pub event_log: parking_lot::Mutex<Vec<(u64, Option<String>, String)>>,
    /// The session and `Last-Event-ID` (`None`: without one) of each standalone stream
    /// opened while streams are resumable.
    pub resumed_from: parking_lot::Mutex<Vec<(String, Option<String>)>>,
    /// While set, every GET is answered 409 (as while another stream of the session is open).
    pub refuse_gets: AtomicBool,
}

impl Script {
    /// Says `event` on the standalone stream of session `to` (or of all), kept when streams
    /// are resumable.
    pub fn emit(&self, to: Option<String>, event: String) {
        if self.resumable.load(Ordering::SeqCst) {
            let mut log = self.event_log.lock();
            let id = log.len() as u64 + 1;
            log.push((id, to.clone(), event.clone()));
        }
        if let Some(tx) = &self.stream_events {
            let _ = tx.send((to, event));
        }
    }

    /// The events of session `session`'s stream after id `after`, with their ids.
    fn events_after(&self, session: &str, after: u64) -> Vec<(u64, String)> {
        self.event_log
            .lock()
            .iter()
            .filter(|(id, to, _)| *id > after && to.as_deref().is_none_or(|to| to == session))
            .map(|(id, _, e)| (*id, e.clone()))
            .collect()
    }
}

impl Script {
    /// The sessions subscribed to `uri` now (their last `resources/subscribe` or
    /// `unsubscribe` of it was a subscribe).
    pub fn subscribed(&self, uri: &str) -> Vec<String> {
        let mut now: Vec<String> = Vec::new();
        for (method, params, session) in self.asked.lock().iter() {
            if params["uri"] != uri {
                continue;
            }
            now.retain(|s| s != session);
            if method == "resources/subscribe" {
                now.push(session.clone());
            }
        }
        now
    }

    /// The sessions the calls of `tool` came in, in order.
    pub fn called_in(&self, tool: &str) -> Vec<String> {
        self.calls
            .lock()
            .iter()
            .filter(|(t, _)| t == tool)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The params of each `method` request asked so far, with the session it came in.
    pub fn asked(&self, method: &str) -> Vec<(Value, String)> {
        self.asked
            .lock()
            .iter()
            .filter(|(m, _, _)| m == method)
            .map(|(_, p, s)| (p.clone(), s.clone()))
            .collect()
    }
}

/// Resources on the second page of the scripted upstream's `resources/list`.
pub const BULK: usize = 300;

/// A 2025-11-25 upstream: `initialize` issues a session, other requests need one issued and
/// not forgotten (404 otherwise); `tools/list` in two pages; tools `echo` (JSON answer), `streamed` (SSE
/// answer after a notification), `slow` (answers after 2 s), `slow_safe` (the same, annotated `idempotentHint`), `fails` (JSON-RPC error), `dup`;
/// `ask` (unlisted: served by its prefix) and `ask_safe` (listed, annotated `idempotentHint`)
/// ask the client questions (see [`ask`]).
/// With `content` set: resources (`test://shared`, `test://builtin`, then a second page of
/// [`BULK`] `test://bulk/N`), the template `test://items/{id}`, the prompt `greet` (argument
/// `who`), each read or prompt naming the URL path it was asked at; completions (naming the
/// reference, argument and value they were asked for; none for prompt `broken`), resource
/// subscriptions (refused for `test://items/nosub`), logging levels, and the tool `touch`, which
/// says resource `uri` was updated on the standalone stream.
pub async fn scripted_upstream() -> (String, Arc<Script>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(Script {
        stream_events: Some(tokio::sync::broadcast::channel(16).0),
        ..Script::default()
    });
    let s = script.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, s.clone()));
        }
    });
    (format!("http://{addr}/mcp"), script)
}

pub async fn serve(mut stream: TcpStream, script: Arc<Script>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_string();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while got.len() < end + 4 + len {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let body: Vec<u8> = got[end + 4..end + 4 + len].to_vec();
        got.drain(..end + 4 + len);
        if head.starts_with("GET ") && script.streams.load(Ordering::SeqCst) {
            // A standalone stream: open until the connection closes.
            let session = header("mcp-session-id").unwrap_or_default();
            if script.refuse_gets.load(Ordering::SeqCst) {
                let _ = stream
                    .write_all(&http("409 Conflict", "", "text/plain", "not now"))
                    .await;
                continue;
            }
            let taken = {
                let mut open = script.open_gets.lock();
                let taken = open.contains(&session);
                if !taken {
                    open.push(session.clone());
                    script.gets.lock().push(session.clone());
                }
                taken
            };
            if taken {
                let _ = stream
                    .write_all(&http(
                        "409 Conflict",
                        "",
                        "text/plain",
                        "one stream per session",
                    ))
                    .await;
                continue;
            }
            let closed = |script: &Script| {
                let mut open = script.open_gets.lock();
                if let Some(i) = open.iter().position(|s| *s == session) {
                    open.remove(i);
                }
            };
            let Some(mut events) = script.stream_events.as_ref().map(|t| t.subscribe()) else {
                closed(&script);
                return;
            };
            let open = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n: open\n\n";
            if stream.write_all(open.as_bytes()).await.is_err() {
                closed(&script);
                return;
            }
            if script.resumable.load(Ordering::SeqCst) {
                let from = header("last-event-id");
                script
                    .resumed_from
                    .lock()
                    .push((session.clone(), from.clone()));
                let mut sent = match from.and_then(|f| f.parse::<u64>().ok()) {
                    Some(after) => after,
                    None => script.event_log.lock().len() as u64,
                };
                // The priming event, then what the session missed.
                let mut out = format!("id: {sent}\ndata:\n\n");
                loop {
                    for (id, event) in script.events_after(&session, sent) {
                        out.push_str(&format!("id: {id}\ndata: {event}\n\n"));
                        sent = id;
                    }
                    if stream.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                    out.clear();
                    tokio::select! {
                        e = events.recv() => {
                            if e.is_err() {
                                break;
                            }
                        }
                        n = stream.read(&mut buf) => match n {
                            Ok(0) | Err(_) => break,
                            Ok(_) => continue,
                        },
                    }
                }
                closed(&script);
                return;
            }
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    // The client closed the stream.
                    n = stream.read(&mut buf) => match n {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    },
                };
                let Ok((to, event)) = event else { break };
                if to.as_ref().is_some_and(|to| *to != session) {
                    continue;
                }
                if stream
                    .write_all(format!("data: {event}\n\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            closed(&script);
            return;
        }
        if let Some(k) = header("x-key") {
            script.headers_seen.lock().push(("x-key".into(), k));
        }
        if let Ok(msg) = serde_json::from_slice::<Value>(&body)
            && msg["method"] == "tools/call"
            && (msg["params"]["name"] == "ask" || msg["params"]["name"] == "ask_safe")
        {
            ask(&mut stream, &msg, &script).await;
            return;
        }
        let reply = answer(&head, header("mcp-session-id"), &body, &script).await;
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Tool `ask`: asks the client `times` questions (`elicitation/create`, or `method`) as
/// server→client requests on the call's SSE stream, one after the other, each answered by a
/// POSTed response (waited for ≤ 20 s); then progress under the call's token (if any), a
/// pause of `linger_ms`, and the result `answered: A,B` (`ok:<name or text>` per result,
/// `error:<code>` per error, `none` when no answer came). Its id is recorded in `slow_ids`.
async fn ask(stream: &mut TcpStream, msg: &Value, script: &Script) {
    let id = msg["id"].clone();
    script.slow_ids.lock().push(id.clone());
    let args = &msg["params"]["arguments"];
    let method = args["method"].as_str().unwrap_or("elicitation/create");
    let times = args["times"].as_u64().unwrap_or(1);
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut said = Vec::new();
    for round in 0..times {
        let qid = format!("ask-{id}-{round}");
        let params = if method == "sampling/createMessage" {
            json!({"messages": [{"role": "user", "content": {"type": "text", "text": "capital of France?"}}], "maxTokens": 10})
        } else {
            json!({"message": format!("name {round}?"), "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}})
        };
        let q = json!({"jsonrpc": "2.0", "id": qid, "method": method, "params": params});
        if stream
            .write_all(format!("data: {q}\n\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let answer = loop {
            let waiting = script.responded.notified();
            if let Some(r) = script
                .responses
                .lock()
                .iter()
                .find(|r| r["id"] == json!(qid))
            {
                break Some(r.clone());
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                break None;
            }
        };
        said.push(match answer {
            None => "none".to_string(),
            Some(r) if r.get("error").is_some() => format!("error:{}", r["error"]["code"]),
            Some(r) => {
                let c = &r["result"]["content"];
                let v = c["name"].as_str().or(c["text"].as_str()).unwrap_or("?");
                format!("ok:{v}")
            }
        });
    }
    if let Some(token) = msg["params"]["_meta"].get("progressToken") {
        let p = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 1, "message": "answered"}});
        if stream
            .write_all(format!("data: {p}\n\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
    if let Some(ms) = args["linger_ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let done = result(
        &id,
        json!({ "content": [{ "type": "text", "text": format!("answered: {}", said.join(",")) }] }),
    );
    let _ = stream
        .write_all(format!("data: {done}\n\n").as_bytes())
        .await;
}

pub fn http(status: &str, extra: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{extra}content-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn result(id: &Value, result: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "result": result }).to_string()
}

pub async fn answer(head: &str, session: Option<String>, body: &[u8], script: &Script) -> Vec<u8> {
    if head.starts_with("GET ") {
        return http("405 Method Not Allowed", "", "text/plain", "no stream");
    }
    if head.starts_with("DELETE ") {
        script.deleted.lock().push(session.unwrap_or_default());
        return http("200 OK", "", "text/plain", "");
    }
    script.posts.fetch_add(1, Ordering::SeqCst);
    if script.broken.load(Ordering::SeqCst) {
        return http("503 Service Unavailable", "", "text/plain", "broken");
    }
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return http("400 Bad Request", "", "text/plain", "not JSON");
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg["method"].as_str().unwrap_or_default();
    if method == "initialize" {
        script.initialized.lock().push(msg["params"].clone());
        let n = script.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        let mut capabilities = json!({ "tools": { "listChanged": true } });
        if script.content.load(Ordering::SeqCst) {
            capabilities["resources"] = json!({ "listChanged": true, "subscribe": true });
            capabilities["prompts"] = json!({ "listChanged": true });
            capabilities["completions"] = json!({});
            capabilities["logging"] = json!({});
        }
        let r = result(
            &id,
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities,
                "serverInfo": { "name": "scripted", "version": "1" },
            }),
        );
        return http(
            "200 OK",
            &format!("mcp-session-id: s{n}\r\n"),
            "application/json",
            &r,
        );
    }
    let known = session
        .as_deref()
        .and_then(|s| s.strip_prefix('s'))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| {
            n > script.forgotten.load(Ordering::SeqCst)
                && n <= script.sessions.load(Ordering::SeqCst)
        });
    if !known {
        return http("404 Not Found", "", "application/json", "{}");
    }
    if msg["method"] == "notifications/cancelled" {
        script
            .cancelled
            .lock()
            .push(msg["params"]["requestId"].clone());
    }
    if msg.get("id").is_some() && msg.get("method").is_none() {
        script.responses.lock().push(msg.clone());
        script.responded.notify_waiters();
        return http("202 Accepted", "", "application/json", "");
    }
    if msg.get("id").is_none() || msg.get("method").is_none() {
        return http("202 Accepted", "", "application/json", "");
    }
    let tool = |name: &str| json!({ "name": name, "description": name, "inputSchema": { "type": "object" } });
    let path = head.split_whitespace().nth(1).unwrap_or("?");
    let rpc_error = |code: i32, message: String| {
        http(
            "200 OK",
            "",
            "application/json",
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                .to_string(),
        )
    };
    let added = script.added_content.load(Ordering::SeqCst);
    if [
        "completion/complete",
        "resources/subscribe",
        "resources/unsubscribe",
        "logging/setLevel",
    ]
    .contains(&method)
    {
        script.asked.lock().push((
            method.to_owned(),
            msg["params"].clone(),
            session.clone().unwrap_or_default(),
        ));
    }
    match method {
        "completion/complete" => {
            let r = &msg["params"]["ref"];
            let target = r["name"].as_str().or(r["uri"].as_str()).unwrap_or("?");
            if target == "broken" {
                return rpc_error(-32602, "no completions for broken".into());
            }
            let a = &msg["params"]["argument"];
            let value = format!(
                "{target}|{}|{}",
                a["name"].as_str().unwrap_or("?"),
                a["value"].as_str().unwrap_or("?")
            );
            let done = json!({"completion": {"values": [value], "total": 1, "hasMore": false}});
            http("200 OK", "", "application/json", &result(&id, done))
        }
        "resources/subscribe" if msg["params"]["uri"] == "test://items/nosub" => {
            rpc_error(-32002, "cannot subscribe to test://items/nosub".into())
        }
        "resources/subscribe" | "resources/unsubscribe" | "logging/setLevel" => {
            http("200 OK", "", "application/json", &result(&id, json!({})))
        }
        "resources/list" => {
            let page = match msg["params"]["cursor"].as_str() {
                None => {
                    let mut first = vec![
                        json!({"uri": "test://shared", "name": "shared"}),
                        json!({"uri": "test://builtin", "name": "clashes with the node's"}),
                    ];
                    for n in 0..added {
                        first.push(json!({"uri": format!("test://added/{n}"), "name": "added"}));
                    }
                    json!({ "resources": first, "nextCursor": "r2" })
                }
                Some("r2") => {
                    let bulk: Vec<Value> = (0..BULK)
                        .map(|n| json!({"uri": format!("test://bulk/{n}"), "name": format!("bulk {n}")}))
                        .collect();
                    json!({ "resources": bulk })
                }
                Some(other) => return rpc_error(-32602, format!("bad cursor {other}")),
            };
            http("200 OK", "", "application/json", &result(&id, page))
        }
        "resources/templates/list" => http(
            "200 OK",
            "",
            "application/json",
            &result(
                &id,
                json!({"resourceTemplates": [{"uriTemplate": "test://items/{id}", "name": "item"}]}),
            ),
        ),
        "resources/read" => {
            let uri = msg["params"]["uri"].as_str().unwrap_or_default();
            if uri == "test://slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let known = ["test://shared", "test://builtin", "test://slow"].contains(&uri)
                || ["test://items/", "test://bulk/", "test://added/"]
                    .iter()
                    .any(|p| uri.starts_with(p));
            if !known {
                return rpc_error(-32002, format!("resource not found: {uri}"));
            }
            let contents = json!({"contents": [{"uri": uri, "mimeType": "text/plain", "text": format!("{uri} at {path}")}]});
            http("200 OK", "", "application/json", &result(&id, contents))
        }
        "prompts/list" => {
            let mut prompts =
                vec![json!({"name": "greet", "arguments": [{"name": "who", "required": true}]})];
            for n in 0..added {
                prompts.push(json!({"name": format!("added-{n}")}));
            }
            http(
                "200 OK",
                "",
                "application/json",
                &result(&id, json!({ "prompts": prompts })),
            )
        }
        "prompts/get" => {
            if msg["params"]["name"] != "greet" {
                return rpc_error(-32602, format!("unknown prompt {}", msg["params"]["name"]));
            }
            let who = msg["params"]["arguments"]["who"].as_str().unwrap_or("?");
            let got = json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("hello {who} at {path}")}}]});
            http("200 OK", "", "application/json", &result(&id, got))
        }
        "tools/list" => {
            script.lists.fetch_add(1, Ordering::SeqCst);
            let page = match msg["params"]["cursor"].as_str() {
                None => {
                    json!({ "tools": [tool("echo"), tool("streamed")], "nextCursor": "page-2" })
                }
                Some("page-2") => {
                    let mut slow_safe = tool("slow_safe");
                    slow_safe["annotations"] = json!({ "idempotentHint": true });
                    let mut ask_safe = tool("ask_safe");
                    ask_safe["annotations"] = json!({ "idempotentHint": true });
                    let mut tools = vec![
                        tool("slow"),
                        slow_safe,
                        ask_safe,
                        tool("fails"),
                        tool("dup"),
                        tool("echo"),
                    ];
                    for n in 0..script.added.load(Ordering::SeqCst) {
                        tools.push(tool(&format!("added-{n}")));
                    }
                    json!({ "tools": tools })
                }
                Some(other) => {
                    return http(
                        "200 OK",
                        "",
                        "application/json",
                        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("bad cursor {other}")}}).to_string(),
                    );
                }
            };
            http("200 OK", "", "application/json", &result(&id, page))
        }
        "tools/call" => {
            script.calls.lock().push((
                msg["params"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                session.clone().unwrap_or_default(),
            ));
            let args = &msg["params"]["arguments"];
            let text = |t: String| json!({ "content": [{ "type": "text", "text": t }] });
            match msg["params"]["name"].as_str().unwrap_or_default() {
                "echo" => http(
                    "200 OK",
                    "",
                    "application/json",
                    &result(&id, text(format!("echo: {}", args["text"].as_str().unwrap_or("?")))),
                ),
                "streamed" => {
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "logger": "up", "data": "working"}});
                    // Progress under the token the node sent, and one under another token.
                    let progress = match msg["params"]["_meta"].get("progressToken") {
                        Some(token) => {
                            let ours = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 2, "message": "half"}});
                            let other = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "not-yours", "progress": 9}});
                            format!("data: {ours}\n\ndata: {other}\n\n")
                        }
                        None => String::new(),
                    };
                    let sse = format!(
                        ": hi\n\nevent: message\ndata: {note}\n\n{progress}event: message\nid: 7\ndata: {}\n\n",
                        result(&id, text("streamed".into()))
                    );
                    http("200 OK", "", "text/event-stream", &sse)
                }
                "grow" => {
                    // The change is announced on this answer's stream, before the answer.
                    script.added.fetch_add(1, Ordering::SeqCst);
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                    let sse = format!(
                        "data: {note}\n\ndata: {}\n\n",
                        result(&id, text("grown".into()))
                    );
                    http("200 OK", "", "text/event-stream", &sse)
                }
                "grow-content" => {
                    // A prompt and a resource more, announced on this answer's stream.
                    script.added_content.fetch_add(1, Ordering::SeqCst);
                    let prompts = json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"});
                    let resources = json!({"jsonrpc": "2.0", "method": "notifications/resources/list_changed"});
                    let sse = format!(
                        "data: {prompts}\n\ndata: {resources}\n\ndata: {}\n\n",
                        result(&id, text("grown".into()))
                    );
                    http("200 OK", "", "text/event-stream", &sse)
                }
                "touch" => {
                    // Said on the standalone stream of each session subscribed to it only, as
                    // server-everything does.
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": args["uri"]}});
                    for to in script.subscribed(args["uri"].as_str().unwrap_or_default()) {
                        script.emit(Some(to), note.to_string());
                    }
                    http("200 OK", "", "application/json", &result(&id, text("touched".into())))
                }
                "say" => {
                    // A log message on the caller's standalone stream, outside any request.
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": args["level"], "data": args["text"]}});
                    if let Some(tx) = &script.stream_events {
                        let _ = tx.send((session.clone(), note.to_string()));
                    }
                    http("200 OK", "", "application/json", &result(&id, text("said".into())))
                }
                "ask-later" => {
                    // A `roots/list` request on the caller's standalone stream, outside any
                    // request; its answer lands in `responses`.
                    let q = json!({"jsonrpc": "2.0", "id": format!("later-{id}"), "method": "roots/list", "params": {}});
                    if let Some(tx) = &script.stream_events {
                        let _ = tx.send((session.clone(), q.to_string()));
                    }
                    http("200 OK", "", "application/json", &result(&id, text("asked".into())))
                }
                "grow-quietly" => {
                    // The change is announced on the standalone stream only.
                    script.added.fetch_add(1, Ordering::SeqCst);
                    let note = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                    if let Some(tx) = &script.stream_events {
                        let _ = tx.send((None, note.to_string()));
                    }
                    http("200 OK", "", "application/json", &result(&id, text("grown".into())))
                }
                "slow" | "slow_safe" => {
                    script.slow_ids.lock().push(id.clone());
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    http("200 OK", "", "application/json", &result(&id, text("slow".into())))
                }
                "fails" => http(
                    "200 OK",
                    "",
                    "application/json",
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "it broke", "data": {"why": "test"}}}).to_string(),
                ),
                other => http(
                    "200 OK",
                    "",
                    "application/json",
                    &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("unknown tool {other}")}}).to_string(),
                ),
            }
        }
        _ => http(
            "200 OK",
            "",
            "application/json",
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no"}})
                .to_string(),
        ),
    }
}

/// A clustered node (`common::cluster_config`) with the scripted upstream at `url` behind it,
/// as upstream `up`.
pub async fn clustered(
    name: &str,
    dir: &std::path::Path,
    seeds: &[std::net::SocketAddr],
    url: &str,
) -> mcp_node::Running {
    clustered_with(
        name,
        dir,
        seeds,
        mcpcluster_api::UpstreamConfig::new("up", url),
    )
    .await
}

/// [`clustered`] with the upstream entry `up` as given.
pub async fn clustered_with(
    name: &str,
    dir: &std::path::Path,
    seeds: &[std::net::SocketAddr],
    up: mcpcluster_api::UpstreamConfig,
) -> mcp_node::Running {
    let mut c = super::common::cluster_config(name, dir, seeds);
    c.shutdown_grace_secs = 1;
    c.upstreams = vec![up];
    super::common::start_config(c).await
}
