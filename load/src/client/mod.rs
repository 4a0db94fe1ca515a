//! A small MCP client over one keep-alive HTTP/1.1 connection, for both protocol eras.
//!
//! Written for load generation: one connection per client, requests one at a time, JSON or SSE
//! answers (an SSE answer is read until the JSON-RPC response for the request arrives), an
//! optional local source address so many clients can spread over 127.0.0.0/8. A connection can
//! instead be dedicated to a long-lived stream (the legacy GET stream, resumable with
//! `Last-Event-ID`, or a 2026-07-28 `subscriptions/listen`) whose events are read one by one.
//! [`resume`] adds reconnection with backoff on top.

pub mod resume;
mod sse;

pub use sse::{SseEvent, sse_messages};

use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use serde_json::{Value, json};
use sse::EventReader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";
/// The session-based revision used for legacy clients.
pub const LEGACY: &str = "2025-11-25";

/// What went wrong; the variant names are the error kinds `mcp-load` reports.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Reading or writing the socket failed, or the server closed it.
    #[error("io: {0}")]
    Io(std::io::Error),
    /// The answer is not valid HTTP.
    #[error("bad http: {0}")]
    BadHttp(String),
    /// A non-2xx status.
    #[error("http status {0}")]
    Status(u16),
    /// A JSON-RPC error answer.
    #[error("json-rpc error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// An answer that is not the expected JSON-RPC response.
    #[error("bad answer: {0}")]
    BadAnswer(String),
    /// No answer within the caller's time limit (the connection is then in an unknown state).
    #[error("timed out")]
    Timeout,
}

impl ClientError {
    /// A short label for reports.
    pub fn kind(&self) -> String {
        match self {
            Self::Connect(_) => "connect".into(),
            Self::Io(_) => "io".into(),
            Self::BadHttp(_) => "bad_http".into(),
            Self::Status(s) => format!("http_{s}"),
            Self::Rpc { code, .. } => format!("rpc_{code}"),
            Self::BadAnswer(_) => "bad_answer".into(),
            Self::Timeout => "timeout".into(),
        }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers (lowercase names).
    pub headers: Vec<(String, String)>,
    /// The JSON-RPC message answering the request (from a JSON body or an SSE stream), if any.
    pub message: Option<Value>,
}

impl Reply {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An MCP client on one connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    host: String,
    path: String,
    session: Option<String>,
    next_id: i64,
    /// Set once the connection carries a long-lived event stream.
    events: Option<EventReader>,
    last_event_id: Option<String>,
}

/// Splits `http://host:port/path` into the socket address and path.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/mcp".to_string()),
    };
    let addr = authority
        .parse::<SocketAddr>()
        .map_err(|e| format!("`{authority}` is not IP:PORT ({e})"))?;
    Ok((addr, path))
}

impl Client {
    /// Connects to `addr`, from `source` if given.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        source: Option<IpAddr>,
    ) -> Result<Self, ClientError> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ClientError::Connect)?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(ClientError::Connect)?;
        }
        let stream = socket.connect(addr).await.map_err(ClientError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            host: addr.to_string(),
            path: path.to_string(),
            session: None,
            next_id: 1,
            events: None,
            last_event_id: None,
        })
    }

    /// The session id after a legacy `initialize`.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Uses an existing session (several connections can share one).
    pub fn set_session(&mut self, session: Option<String>) {
        self.session = session;
    }

    fn next_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Legacy handshake: `initialize` then `notifications/initialized`. Returns the session id.
    pub async fn initialize(&mut self) -> Result<String, ClientError> {
        let id = self.next_id();
        let body = json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
            "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name":"mcp-load","version":env!("CARGO_PKG_VERSION")}}});
        let reply = self.post(&body, &[]).await?;
        expect_result(&reply, id)?;
        let session = reply
            .header("mcp-session-id")
            .ok_or_else(|| ClientError::BadAnswer("no Mcp-Session-Id".into()))?;
        self.session = Some(session.to_string());
        let note = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let reply = self.post(&note, &[]).await?;
        if reply.status != 202 {
            return Err(ClientError::Status(reply.status));
        }
        Ok(session.to_string())
    }

    /// `tools/call` in the legacy era (needs a session) or statelessly (2026-07-28).
    pub async fn call_tool(
        &mut self,
        modern: bool,
        name: &str,
        arguments: Value,
    ) -> Result<Value, ClientError> {
        self.call_tool_with(modern, name, arguments, false).await
    }

    /// [`Self::call_tool`]; `progress`: with a `_meta.progressToken` (the call's id).
    pub async fn call_tool_with(
        &mut self,
        modern: bool,
        name: &str,
        arguments: Value,
        progress: bool,
    ) -> Result<Value, ClientError> {
        let id = self.next_id();
        let mut params = json!({ "name": name, "arguments": arguments });
        if progress {
            params["_meta"] = json!({ "progressToken": id });
        }
        let extra: Vec<(&str, &str)>;
        if modern {
            params["_meta"] = modern_meta();
            extra = vec![("mcp-method", "tools/call"), ("mcp-name", name)];
        } else {
            extra = Vec::new();
        }
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params});
        let reply = self.post(&body, &extra).await?;
        expect_result(&reply, id)
    }

    /// The id of the last event read from this connection's stream.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Opens the session's GET stream on this connection, resuming after `last_event_id` when
    /// given; the connection is then dedicated to the stream (read it with
    /// [`Client::next_event`]).
    pub async fn open_stream(&mut self, last_event_id: Option<&str>) -> Result<(), ClientError> {
        let mut req = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\n",
            self.path, self.host
        );
        if let Some(s) = &self.session {
            req.push_str(&format!(
                "mcp-session-id: {s}\r\nmcp-protocol-version: {LEGACY}\r\n"
            ));
        }
        if let Some(id) = last_event_id {
            req.push_str(&format!("last-event-id: {id}\r\n"));
            self.last_event_id = Some(id.to_string());
        }
        req.push_str("\r\n");
        self.stream
            .write_all(req.as_bytes())
            .await
            .map_err(ClientError::Io)?;
        self.start_events().await
    }

    /// 2026-07-28: opens `subscriptions/listen` for list changes on this connection and waits
    /// for the acknowledgement; the connection is then dedicated to the stream.
    pub async fn listen(&mut self) -> Result<(), ClientError> {
        let id = self.next_id();
        let body = json!({"jsonrpc":"2.0","id":id,"method":"subscriptions/listen","params":{
            "notifications": {"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true},
            "_meta": modern_meta()}});
        let req = self.request_bytes(&body, &[("mcp-method", "subscriptions/listen")])?;
        self.stream.write_all(&req).await.map_err(ClientError::Io)?;
        self.start_events().await?;
        loop {
            let ev = self.next_event().await?;
            let ack = ev.message().is_some_and(|m| {
                m.get("method").and_then(Value::as_str)
                    == Some("notifications/subscriptions/acknowledged")
            });
            if ack {
                return Ok(());
            }
        }
    }

    async fn start_events(&mut self) -> Result<(), ClientError> {
        let (status, headers) = self.read_head().await?;
        if status != 200 {
            return Err(ClientError::Status(status));
        }
        if !headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.contains("text/event-stream"))
        {
            return Err(ClientError::BadAnswer(
                "answer is not an event stream".into(),
            ));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        self.events = Some(EventReader::new(chunked));
        Ok(())
    }

    /// The next event of the stream opened by [`Client::open_stream`] or [`Client::listen`]
    /// (comments and keep-alives skipped). Remembers its id for resumption.
    pub async fn next_event(&mut self) -> Result<SseEvent, ClientError> {
        let Some(reader) = self.events.as_mut() else {
            return Err(ClientError::BadAnswer(
                "no stream is open on this connection".into(),
            ));
        };
        loop {
            match reader.next(&mut self.buf)? {
                Some(ev) => {
                    if let Some(id) = &ev.id {
                        self.last_event_id = Some(id.clone());
                    }
                    if ev.data.is_empty() && ev.id.is_none() {
                        continue;
                    }
                    return Ok(ev);
                }
                None if reader.ended() => {
                    return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                None => {
                    if self.buf.capacity() - self.buf.len() < 1024 {
                        self.buf.reserve(4096);
                    }
                    match self.stream.read_buf(&mut self.buf).await {
                        Ok(0) => {
                            return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                        }
                        Ok(_) => {}
                        Err(e) => return Err(ClientError::Io(e)),
                    }
                }
            }
        }
    }

    fn request_bytes(&self, body: &Value, extra: &[(&str, &str)]) -> Result<Vec<u8>, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let mut req = Vec::with_capacity(body.len() + 256);
        req.extend_from_slice(
            format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
                self.path,
                self.host,
                body.len()
            )
            .as_bytes(),
        );
        let modern = extra.iter().any(|(k, _)| *k == "mcp-method");
        if modern {
            req.extend_from_slice(format!("mcp-protocol-version: {MODERN}\r\n").as_bytes());
        } else if let Some(s) = &self.session {
            req.extend_from_slice(
                format!("mcp-session-id: {s}\r\nmcp-protocol-version: {LEGACY}\r\n").as_bytes(),
            );
        }
        for (k, v) in extra {
            req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(&body);
        Ok(req)
    }

    /// Sends a JSON-RPC message and reads the answer.
    pub async fn post(
        &mut self,
        body: &Value,
        extra: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        if self.events.is_some() {
            return Err(ClientError::BadAnswer(
                "this connection carries a stream; use another one for requests".into(),
            ));
        }
        let req = self.request_bytes(body, extra)?;
        self.stream.write_all(&req).await.map_err(ClientError::Io)?;
        let (status, headers) = self.read_head().await?;
        let is_sse = headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.contains("text/event-stream"));
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let raw = if chunked {
            self.read_chunked().await?
        } else {
            self.read_exact_body(length.unwrap_or(0)).await?
        };
        let message = if raw.is_empty() {
            None
        } else if is_sse {
            sse_messages(&raw)
                .into_iter()
                .rev()
                .find(|m| m.get("id").is_some() && m.get("method").is_none())
        } else {
            Some(
                serde_json::from_slice(&raw)
                    .map_err(|e| ClientError::BadAnswer(format!("body is not JSON: {e}")))?,
            )
        };
        Ok(Reply {
            status,
            headers,
            message,
        })
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    async fn read_head(&mut self) -> Result<(u16, Vec<(String, String)>), ClientError> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut slots);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).to_string(),
                            )
                        })
                        .collect();
                    self.buf.advance(n);
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(e) => return Err(ClientError::BadHttp(e.to_string())),
            }
        }
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>, ClientError> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n).to_vec())
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        loop {
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                self.fill().await?;
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| ClientError::BadHttp(format!("bad chunk size `{size_text}`")))?;
            self.buf.advance(line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            out.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
            if size == 0 {
                return Ok(out);
            }
        }
    }
}

/// The per-request `_meta` of a 2026-07-28 request.
fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name":"mcp-load","version":env!("CARGO_PKG_VERSION")}
    })
}

fn rpc_error(err: &Value) -> ClientError {
    ClientError::Rpc {
        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

fn expect_result(reply: &Reply, id: i64) -> Result<Value, ClientError> {
    if !(200..300).contains(&reply.status) {
        if let Some(err) = reply.message.as_ref().and_then(|m| m.get("error")) {
            return Err(rpc_error(err));
        }
        return Err(ClientError::Status(reply.status));
    }
    let msg = reply
        .message
        .as_ref()
        .ok_or_else(|| ClientError::BadAnswer("no JSON-RPC response".into()))?;
    if msg.get("id") != Some(&json!(id)) {
        return Err(ClientError::BadAnswer(format!(
            "answer for another id: {msg}"
        )));
    }
    if let Some(err) = msg.get("error") {
        return Err(rpc_error(err));
    }
    msg.get("result")
        .cloned()
        .ok_or_else(|| ClientError::BadAnswer("no result".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_sse() {
        let (addr, path) = parse_url("http://127.0.0.1:8080/mcp").expect("url");
        assert_eq!(addr.port(), 8080);
        assert_eq!(path, "/mcp");
        assert!(parse_url("https://x/mcp").is_err());
        let msgs = sse_messages(b"id: 1-0\ndata: \n\nid: 1-1\ndata: {\"a\":1}\n\n");
        assert_eq!(msgs, vec![json!({"a":1})]);
    }
}
