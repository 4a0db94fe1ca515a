//! HTTP/1.1 on the wire for the cluster mode: a keep-alive connection that runs one exchange
//! at a time with a buffer it keeps (call pools), and the opening of a GET stream (held
//! streams). Requests are written into a caller's reused buffer; answers are parsed in place.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::{TcpSocket, TcpStream};

use super::sock::Sock;

/// Largest answer head or body read (a call's answer is ~100 bytes).
const MAX_ANSWER: usize = 1 << 20;

/// Why an exchange failed; `kind` is the label reports count it under.
#[derive(Debug, Clone, PartialEq)]
pub struct Fail {
    /// `connect`, `io`, `eof`, `bad_http`, `timeout`, `http_503`, `rpc_-32000`, ...
    pub kind: String,
    /// The node answered 404: it does not know the session.
    pub gone: bool,
    /// `Retry-After` seconds, when the answer had one.
    pub retry_after: Option<f64>,
}

impl Fail {
    /// A failure of `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            gone: false,
            retry_after: None,
        }
    }

    fn status(status: u16, retry_after: Option<f64>) -> Self {
        Self {
            kind: format!("http_{status}"),
            gone: status == 404,
            retry_after,
        }
    }

    fn io(e: &std::io::Error) -> Self {
        Self::new(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "eof"
        } else {
            "io"
        })
    }
}

/// A parsed answer; the body is `Conn::body`.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Retry-After` in seconds.
    pub retry_after: Option<f64>,
    /// `Connection: close`: the connection must not be reused.
    pub close: bool,
    /// `Mcp-Session-Id`.
    pub session: Option<Box<str>>,
    /// `Content-Type: text/event-stream`.
    pub sse: bool,
    body: Range<usize>,
}

impl Answer {
    /// A non-2xx status as a failure.
    pub fn check_status(&self) -> Result<(), Fail> {
        if (200..300).contains(&self.status) {
            Ok(())
        } else {
            Err(Fail::status(self.status, self.retry_after))
        }
    }
}

/// Opens a TCP connection to `addr` from `source` (if given), without Nagle.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Fail> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|_| Fail::new("socket"))?;
    if let Some(ip) = source {
        bind_source(&socket, ip)?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|_| Fail::new("connect"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The next source port to try (see [`bind_source`]); starts where the process id points, so
/// processes that share no address anyway also start apart.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);
/// Source ports are taken from this range, in turn.
const PORTS: Range<u32> = 1024..65536;
/// Ports tried (in use: skipped) before the kernel is asked to choose.
const PORT_TRIES: u32 = 256;

/// Binds `socket` to `ip` on a source port chosen here, in turn, rather than by the kernel.
/// `bind(ip, 0)` scans the port range for a free port, and with a few thousand connections
/// and TIME_WAITs on one address each call took milliseconds, blocking the shard's only
/// thread: 13.8 ms on average with 4,000 connections and 10,000 TIME_WAITs on one loopback
/// address, against 8.7 µs for a port given explicitly (one lookup; a port in use fails at
/// once and the next is tried), measured with a Python script on this machine. In a storm of
/// reconnects (a drain at 100K sessions) the shards stopped for seconds and their own
/// timeouts fired meanwhile.
fn bind_source(socket: &TcpSocket, ip: IpAddr) -> Result<(), Fail> {
    let span = PORTS.end - PORTS.start;
    let _ = NEXT_PORT.compare_exchange(
        0,
        std::process::id() % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..PORT_TRIES {
        let k = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let port = PORTS.start + k % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if socket.bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok(());
        }
    }
    socket
        .bind(SocketAddr::new(ip, 0))
        .map_err(|_| Fail::new("bind"))
}

/// Headers every request of a legacy session carries.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:` value (the node's `IP:PORT`).
    pub host: String,
    /// MCP path.
    pub path: String,
    /// Address.
    pub addr: SocketAddr,
}

/// Writes a POST of `body` (JSON) into `out`, in `session` when given.
pub fn post(out: &mut Vec<u8>, ep: &Endpoint, session: Option<&str>, body: &[u8]) {
    out.clear();
    let _ = write!(
        out,
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n",
        ep.path, ep.host
    );
    if let Some(s) = session {
        let _ = write!(
            out,
            "mcp-session-id: {s}\r\nmcp-protocol-version: {}\r\n",
            crate::client::LEGACY
        );
    }
    let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// Writes the GET of a session's stream into `out`, resuming after `last` (`<stream>-<seq>`).
pub fn get_stream(out: &mut Vec<u8>, ep: &Endpoint, session: &str, last: Option<(u32, u32)>) {
    out.clear();
    let _ = write!(
        out,
        "GET {} HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\nmcp-session-id: {session}\r\nmcp-protocol-version: {}\r\n",
        ep.path,
        ep.host,
        crate::client::LEGACY
    );
    if let Some((stream, seq)) = last {
        let _ = write!(out, "last-event-id: {stream}-{seq}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of an answer.
struct Head {
    len: usize,
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    retry_after: Option<f64>,
    session: Option<Box<str>>,
    sse: bool,
}

/// Parses a complete head at the start of `buf`; `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Fail> {
    let mut slots = [httparse::EMPTY_HEADER; 24];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Fail::new("bad_http")),
    };
    let mut head = Head {
        len,
        status: resp.code.unwrap_or(0),
        content_length: None,
        chunked: false,
        close: false,
        retry_after: None,
        session: None,
        sse: false,
    };
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(v.parse().map_err(|_| Fail::new("bad_http"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = v.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = v.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = v.parse().ok();
        } else if name.eq_ignore_ascii_case("mcp-session-id") {
            head.session = Some(v.into());
        } else if name.eq_ignore_ascii_case("content-type") {
            head.sse = v.contains("text/event-stream");
        }
    }
    Ok(Some(head))
}

/// A keep-alive connection running one exchange at a time, with the buffer it keeps.
#[derive(Debug)]
pub struct Conn {
    sock: Sock,
    /// `buf[..len]` holds the answer read so far.
    buf: Vec<u8>,
    len: usize,
}

impl Conn {
    /// Connects.
    pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, Fail> {
        let tcp = connect(addr, source).await?;
        Ok(Self {
            sock: Sock::new(tcp).map_err(|e| Fail::io(&e))?,
            buf: vec![0; 4096],
            len: 0,
        })
    }

    /// The body of `answer` (the last exchange's).
    pub fn body(&self, answer: &Answer) -> &[u8] {
        self.buf.get(answer.body.clone()).unwrap_or_default()
    }

    async fn fill(&mut self) -> Result<(), Fail> {
        if self.len >= MAX_ANSWER {
            return Err(Fail::new("too_large"));
        }
        if self.buf.len() - self.len < 1024 {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.sock.read(&mut self.buf[self.len..]).await {
            Ok(0) => Err(Fail::new("eof")),
            Ok(n) => {
                self.len += n;
                Ok(())
            }
            Err(e) => Err(Fail::io(&e)),
        }
    }

    /// Writes `request` and reads its answer (head and whole body; a chunked body is decoded
    /// in place).
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, Fail> {
        self.len = 0;
        self.sock
            .write_all(request)
            .await
            .map_err(|e| Fail::io(&e))?;
        let head = loop {
            if let Some(h) = parse_head(&self.buf[..self.len])? {
                break h;
            }
            self.fill().await?;
        };
        let start = head.len;
        let end = if head.chunked {
            loop {
                match dechunk_in_place(&mut self.buf[start..self.len]) {
                    Ok(Some(n)) => break start + n,
                    Ok(None) => self.fill().await?,
                    Err(()) => return Err(Fail::new("bad_http")),
                }
            }
        } else {
            let n = head.content_length.unwrap_or(0);
            if n > MAX_ANSWER {
                return Err(Fail::new("too_large"));
            }
            while self.len < start + n {
                self.fill().await?;
            }
            start + n
        };
        Ok(Answer {
            status: head.status,
            retry_after: head.retry_after,
            close: head.close,
            session: head.session,
            sse: head.sse,
            body: start..end,
        })
    }
}

/// Decodes a complete chunked body at the start of `buf` into its own front; the decoded
/// length, `None` if the last chunk has not arrived, `Err` on bad framing. Leaves `buf`
/// unchanged until the body is complete.
fn dechunk_in_place(buf: &mut [u8]) -> Result<Option<usize>, ()> {
    // First pass: is it complete?
    let mut i = 0;
    let mut spans = Vec::new();
    loop {
        let Some(eol) = buf[i..].windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() - i > 64 {
                Err(())
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[i..i + eol]).map_err(|_| ())?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| ())?;
        i += eol + 2;
        if size == 0 {
            // No trailers from our servers: the body ends with the blank line after it.
            if buf.len() < i + 2 {
                return Ok(None);
            }
            break;
        }
        if buf.len() < i + size + 2 {
            return Ok(None);
        }
        spans.push(i..i + size);
        i += size + 2;
    }
    let mut w = 0;
    for s in spans {
        let n = s.len();
        buf.copy_within(s, w);
        w += n;
    }
    Ok(Some(w))
}

/// A GET stream's connection once the answer's head arrived.
#[derive(Debug)]
pub struct OpenStream {
    /// The connection.
    pub sock: Sock,
    /// The body is chunked.
    pub chunked: bool,
    /// Body bytes that arrived with the head.
    pub rest: Vec<u8>,
}

/// Connects, sends `request` (a GET from [`get_stream`]) and reads the answer's head: a 200
/// event stream, else the status as a failure.
pub async fn open_stream(
    addr: SocketAddr,
    source: Option<IpAddr>,
    request: &[u8],
) -> Result<OpenStream, Fail> {
    let tcp = connect(addr, source).await?;
    let sock = Sock::new(tcp).map_err(|e| Fail::io(&e))?;
    sock.write_all(request).await.map_err(|e| Fail::io(&e))?;
    let mut buf = Vec::with_capacity(512);
    let head = loop {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await.map_err(|e| Fail::io(&e))?;
        if n == 0 {
            return Err(Fail::new("eof"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(h) = parse_head(&buf)? {
            break h;
        }
        if buf.len() > 16 * 1024 {
            return Err(Fail::new("bad_http"));
        }
    };
    if head.status != 200 {
        return Err(Fail::status(head.status, head.retry_after));
    }
    if !head.sse {
        return Err(Fail::new("not_event_stream"));
    }
    buf.drain(..head.len);
    Ok(OpenStream {
        sock,
        chunked: head.chunked,
        rest: buf,
    })
}

/// Finds `needle` in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The JSON-RPC outcome of a call's answer body: `Ok` when it carries a `result` (and, when
/// `expect` is given, that text), else the failure kind (`rpc_CODE`, `no_result`,
/// `tool_error`, `wrong_echo`).
pub fn check_result(body: &[u8], sse: bool, expect: Option<&[u8]>) -> Result<(), Fail> {
    let text: &[u8] = body;
    if sse {
        // An SSE answer: the response is the last `data:` line carrying `"result"` or
        // `"error"`; the node only streams when the tool notifies first.
        let msg = text
            .split(|&b| b == b'\n')
            .filter_map(|l| l.strip_prefix(b"data: "))
            .rfind(|l| contains(l, b"\"result\"") || contains(l, b"\"error\""));
        return match msg {
            Some(m) => check_result(m, false, expect),
            None => Err(Fail::new("no_result")),
        };
    }
    if contains(text, b"\"result\"") {
        if contains(text, b"\"isError\":true") {
            return Err(Fail::new("tool_error"));
        }
        if let Some(e) = expect
            && !contains(text, e)
        {
            return Err(Fail::new("wrong_echo"));
        }
        return Ok(());
    }
    // The rare path: find the error code.
    let code = serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64());
    Err(Fail::new(match code {
        Some(c) => format!("rpc_{c}"),
        None => "no_result".to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_only_when_complete() {
        let mut partial = b"5\r\nhello\r\n6\r\n world".to_vec();
        assert_eq!(dechunk_in_place(&mut partial), Ok(None));
        let mut full = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec();
        assert_eq!(dechunk_in_place(&mut full), Ok(Some(11)));
        assert_eq!(&full[..11], b"hello world");
        assert_eq!(dechunk_in_place(&mut b"xyz\r\n".to_vec()), Err(()));
    }

    #[test]
    fn reads_results_errors_and_echoes() {
        let ok = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"text":"c3","type":"text"}],"isError":false}}"#;
        assert_eq!(check_result(ok, false, Some(b"\"text\":\"c3\"")), Ok(()));
        assert_eq!(
            check_result(ok, false, Some(b"\"text\":\"c4\"")).map_err(|f| f.kind),
            Err("wrong_echo".into())
        );
        let err = br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"x"}}"#;
        assert_eq!(
            check_result(err, false, None).map_err(|f| f.kind),
            Err("rpc_-32602".into())
        );
        let sse = b"id: 2-0\ndata: \n\nid: 2-1\ndata: {\"method\":\"notifications/progress\"}\n\nid: 2-2\ndata: {\"id\":1,\"result\":{}}\n\n";
        assert_eq!(check_result(sse, true, None), Ok(()));
        let head = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 2\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(
            (head.status, head.retry_after, head.close),
            (503, Some(2.0), true)
        );
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .expect("valid")
                .is_none()
        );
    }

    #[tokio::test]
    async fn source_ports_are_chosen_in_turn_and_skip_ports_in_use() {
        let ip: IpAddr = "127.9.9.9".parse().expect("ip");
        let first = TcpSocket::new_v4().expect("socket");
        bind_source(&first, ip).expect("bound");
        // A port taken on that address, where the turn comes next.
        let next = NEXT_PORT.load(Ordering::Relaxed);
        let taken_port =
            u16::try_from(PORTS.start + next % (PORTS.end - PORTS.start)).expect("in range");
        let _taken = std::net::TcpListener::bind(SocketAddr::new(ip, taken_port)).expect("free");
        let mut ports = std::collections::HashSet::new();
        let mut held = Vec::new();
        for _ in 0..50 {
            let socket = TcpSocket::new_v4().expect("socket");
            bind_source(&socket, ip).expect("bound");
            let port = socket.local_addr().expect("addr").port();
            assert_ne!(port, 0);
            assert!(ports.insert(port), "port {port} given twice");
            assert_ne!(port, taken_port, "a port in use is skipped");
            held.push(socket);
        }
    }
}
