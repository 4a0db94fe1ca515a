//! Reading one request off a connection: the head (bounded in size and time), its framing
//! checked ([`super::framing`]), then the body (`Content-Length` or chunked) into a buffer
//! sized to it. Every size that comes from the wire is checked before it is used, and every
//! buffer is counted in the node's budget ([`super::budget`]) before it grows.
//!
//! Bytes past the end of the request (the start of a pipelined one) stay in the caller's
//! buffer, copied into one sized to them; an empty buffer holds no allocation.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::budget::{BodyBudget, BudgetGuard};
use super::framing::{self, Framing, FramingError};
use super::io::ReadyIo;

/// Largest request head (request line and headers), and largest trailer section.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a request.
const MAX_HEADERS: usize = 64;
/// The first read of a request goes into a buffer of this size (most requests fit).
const FIRST_READ: usize = 1024;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// What a connection's requests may cost (from `limits`).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest body (`maxBodyBytes`).
    pub max_body: u64,
    /// From a request's first byte until its head is complete (`requestHeadTimeoutSecs`).
    pub head_timeout: Duration,
    /// From a request's first byte until its body is complete (`requestTimeoutSecs`).
    pub request_timeout: Duration,
}

/// A request read in full.
#[derive(Debug)]
pub struct Request {
    /// Method.
    pub method: Method,
    /// Request target as sent.
    pub path: String,
    /// Header fields.
    pub headers: HeaderMap,
    /// The body, de-chunked.
    pub body: Bytes,
    /// Whether the client wants the connection kept open after the answer.
    pub keep_alive: bool,
    /// The request line said HTTP/1.0 (a kept-alive answer must say so).
    pub http10: bool,
}

/// Why a request could not be read; all but `Closed` are answered, then the connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The client closed (or reset) the connection.
    #[error("connection closed")]
    Closed,
    /// Malformed request or framing: 400.
    #[error("{0}")]
    Bad(&'static str),
    /// A transfer coding we do not implement: 501.
    #[error("{0}")]
    Unsupported(&'static str),
    /// Request head (or trailers) over [`MAX_HEAD`] or `MAX_HEADERS`: 431.
    #[error("request head too large")]
    HeadTooLarge,
    /// Body over `maxBodyBytes`: 413.
    #[error("request body too large")]
    TooLarge,
    /// The node's budget for buffered request bytes is spent: 503 + `Retry-After`.
    #[error("too many request bytes buffered on this node")]
    Budget,
    /// Head or whole request not received in time: 408.
    #[error("request not completed in time")]
    Timeout,
}

impl From<FramingError> for ReadError {
    fn from(e: FramingError) -> Self {
        match e {
            FramingError::Bad(why) => Self::Bad(why),
            FramingError::Unsupported(why) => Self::Unsupported(why),
        }
    }
}

impl From<super::budget::Exhausted> for ReadError {
    fn from(_: super::budget::Exhausted) -> Self {
        Self::Budget
    }
}

/// The parsed head of a request.
struct Head {
    method: Method,
    path: String,
    headers: HeaderMap,
    http11: bool,
}

/// One request's reading state: the stream, the read buffer, and the budget it holds.
struct Reader<'a, 'b, S> {
    io: &'a mut S,
    buf: &'a mut BytesMut,
    guard: BudgetGuard<'b>,
    /// The largest the read buffer grew to for this request (counted in the budget).
    buf_bytes: usize,
    /// What the body buffer holds or is about to (counted in the budget); 0 for a body read
    /// into the read buffer itself.
    body_bytes: usize,
}

/// Reads one request; `buf` holds bytes already read (a pipelined request) and keeps what
/// follows this request. The budget guard holds the request's buffers until the caller drops
/// it (after the request is handled).
pub async fn read_request<'b, S: ReadyIo>(
    io: &mut S,
    buf: &mut BytesMut,
    budget: &'b BodyBudget,
    limits: ReadLimits,
) -> Result<(Request, BudgetGuard<'b>), ReadError> {
    let started = Instant::now();
    let buf_bytes = buf.capacity();
    let mut guard = budget.guard();
    guard.grow_to(buf_bytes)?;
    let mut r = Reader {
        io,
        buf,
        guard,
        buf_bytes,
        body_bytes: 0,
    };
    let head = timeout_at(started + limits.head_timeout, r.head())
        .await
        .map_err(|_| ReadError::Timeout)??;
    let framing = framing::of(&head.headers, head.http11)?;
    let keep_alive = keep_alive(&head.headers, head.http11);
    let expects_continue = head.http11
        && head
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = timeout_at(
        started + limits.request_timeout,
        r.body(framing, limits.max_body, expects_continue),
    )
    .await
    .map_err(|_| ReadError::Timeout)??;
    r.keep_only_leftover();
    let Reader { guard, .. } = r;
    Ok((
        Request {
            method: head.method,
            path: head.path,
            headers: head.headers,
            body,
            keep_alive,
            http10: !head.http11,
        },
        guard,
    ))
}

impl<S: ReadyIo> Reader<'_, '_, S> {
    /// Reads more bytes into the buffer, growing it (counted) up to `limit` bytes when full.
    async fn fill(&mut self, limit: usize) -> Result<(), ReadError> {
        if self.buf.len() == self.buf.capacity() {
            let target = (self.buf.capacity() * 2).clamp(FIRST_READ, limit.max(FIRST_READ));
            if target <= self.buf.len() {
                return Err(ReadError::HeadTooLarge);
            }
            self.guard.grow_to(self.counted(target))?;
            self.buf.reserve(target - self.buf.len());
            self.buf_bytes = self.buf_bytes.max(self.buf.capacity());
        }
        match self.io.read_buf(self.buf).await {
            Ok(0) | Err(_) => Err(ReadError::Closed),
            Ok(_) => Ok(()),
        }
    }

    /// What the budget must hold once the read buffer has `buf_capacity` bytes.
    fn counted(&self, buf_capacity: usize) -> usize {
        self.buf_bytes
            .max(buf_capacity)
            .saturating_add(self.body_bytes)
    }

    /// Reads until a whole head is buffered, parses it and consumes it from the buffer.
    async fn head(&mut self) -> Result<Head, ReadError> {
        // Where to resume looking for the blank line that ends the head, so a head sent a
        // byte at a time is scanned once, not once per byte.
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(self.buf, scanned) {
                if let Some((head, len)) = parse_head(self.buf)? {
                    self.buf.advance(len);
                    return Ok(head);
                }
                // Empty lines before the request line: look past this blank line.
                scanned = end;
            } else {
                scanned = self.buf.len().saturating_sub(2);
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
            self.fill(MAX_HEAD).await?;
        }
    }

    /// Reads the body `framing` announces.
    async fn body(
        &mut self,
        framing: Framing,
        max_body: u64,
        expects_continue: bool,
    ) -> Result<Bytes, ReadError> {
        let n = match framing {
            Framing::Empty => return Ok(Bytes::new()),
            Framing::Length(n) if n > max_body => return Err(ReadError::TooLarge),
            Framing::Length(n) => usize::try_from(n).map_err(|_| ReadError::TooLarge)?,
            Framing::Chunked => {
                if expects_continue {
                    self.send_continue().await?;
                }
                return self.chunked(max_body).await;
            }
        };
        if self.buf.len() < n {
            // Counted before it is allocated: over the budget, the body is never read.
            // The body grows the read buffer: counted on top of what it held for the head.
            let needed = self.counted(0).checked_add(n).ok_or(ReadError::TooLarge)?;
            self.guard.grow_to(needed)?;
            if expects_continue {
                self.send_continue().await?;
            }
            self.buf.reserve(n - self.buf.len());
            while self.buf.len() < n {
                let missing = (n - self.buf.len()) as u64;
                match (&mut *self.io).take(missing).read_buf(self.buf).await {
                    Ok(0) | Err(_) => return Err(ReadError::Closed),
                    Ok(_) => {}
                }
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    async fn send_continue(&mut self) -> Result<(), ReadError> {
        self.io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Closed)
    }

    /// Decodes a chunked body (extensions and trailers are read and ignored).
    async fn chunked(&mut self, max_body: u64) -> Result<Bytes, ReadError> {
        let max_body = usize::try_from(max_body).unwrap_or(usize::MAX);
        let mut body = BytesMut::new();
        loop {
            let line_end = self
                .line(MAX_CHUNK_LINE, "chunk size line too long")
                .await?;
            let size = framing::chunk_size(&self.buf[..line_end])?;
            self.buf.advance(line_end + 2);
            if size == 0 {
                self.trailers().await?;
                return Ok(body.freeze());
            }
            // `body.len() <= max_body` holds, so the subtraction cannot wrap.
            let room = (max_body - body.len()) as u64;
            if size > room {
                return Err(ReadError::TooLarge);
            }
            let size = size as usize;
            let needed = body.len() + size;
            if body.capacity() < needed {
                let planned = needed.max(body.capacity().saturating_mul(2)).min(max_body);
                // Counted on top of the read buffer, which keeps growing for the chunk-size
                // lines and trailers still to come ([`Self::counted`]).
                self.body_bytes = planned;
                self.guard.grow_to(self.counted(0))?;
                body.reserve(planned - body.len());
            }
            let buffered = self.buf.len().min(size);
            body.extend_from_slice(&self.buf[..buffered]);
            self.buf.advance(buffered);
            let mut missing = size - buffered;
            while missing > 0 {
                match (&mut *self.io)
                    .take(missing as u64)
                    .read_buf(&mut body)
                    .await
                {
                    Ok(0) | Err(_) => return Err(ReadError::Closed),
                    Ok(n) => missing -= n,
                }
            }
            while self.buf.len() < 2 {
                self.fill(MAX_CHUNK_LINE).await?;
            }
            if &self.buf[..2] != b"\r\n" {
                return Err(ReadError::Bad("chunk data not followed by CRLF"));
            }
            self.buf.advance(2);
        }
    }

    /// Reads until the buffer holds a CRLF-terminated line of at most `max` bytes; returns
    /// where the CRLF starts.
    async fn line(&mut self, max: usize, too_long: &'static str) -> Result<usize, ReadError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = find_crlf(&self.buf[scanned..]) {
                return Ok(scanned + pos);
            }
            scanned = self.buf.len().saturating_sub(1);
            if self.buf.len() > max {
                return Err(ReadError::Bad(too_long));
            }
            self.fill(max + 2).await?;
        }
    }

    /// Skips the trailer section up to its blank line, at most [`MAX_HEAD`] bytes.
    async fn trailers(&mut self) -> Result<(), ReadError> {
        let mut total = 0usize;
        loop {
            let end = self.line(MAX_HEAD, "trailer section too large").await?;
            self.buf.advance(end + 2);
            if end == 0 {
                return Ok(());
            }
            total += end + 2;
            if total > MAX_HEAD {
                return Err(ReadError::HeadTooLarge);
            }
        }
    }

    /// Leaves in the buffer only the bytes after this request, in an allocation sized to them
    /// (none when there are none), so an idle connection holds no buffer.
    fn keep_only_leftover(&mut self) {
        *self.buf = if self.buf.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&self.buf[..])
        };
    }
}

/// Where the blank line ending a head is, searching from `from`: the index after it.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(pos) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let at = i + pos;
        match buf.get(at + 1..at + 3) {
            Some([b'\n', _]) => return Some(at + 2),
            Some([b'\r', b'\n']) => return Some(at + 3),
            None if buf.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            _ => i = at + 1,
        }
    }
    None
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Parses a complete head at the start of `buf`; `None` when it is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ReadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(_) => return Err(ReadError::Bad("malformed HTTP request head")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| ReadError::Bad("invalid method"))?;
    let path = req.path.unwrap_or("/").to_owned();
    let http11 = req.version == Some(1);
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| ReadError::Bad("invalid header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| ReadError::Bad("invalid header value"))?;
        headers.append(name, value);
    }
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
    let hosts = headers.get_all(http::header::HOST).iter().count();
    if hosts > 1 {
        return Err(ReadError::Bad("more than one Host header"));
    }
    if hosts == 0 && http11 {
        return Err(ReadError::Bad("missing Host header"));
    }
    Ok(Some((
        Head {
            method,
            path,
            headers,
            http11,
        },
        len,
    )))
}

/// Whether the connection stays open after the answer (the `Connection` tokens, by version).
fn keep_alive(headers: &HeaderMap, http11: bool) -> bool {
    let has = |token: &str| {
        headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if http11 {
        !has("close")
    } else {
        has("keep-alive") && !has("close")
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use prometheus_client::metrics::gauge::Gauge;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::*;

    /// A client that has sent `input` (then closes); what the node writes is discarded.
    struct Sent {
        input: Vec<u8>,
        pos: usize,
    }

    impl AsyncRead for Sent {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = (self.input.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.input[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Sent {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl ReadyIo for Sent {
        fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The read buffer grows for the trailers after a chunked body was reserved: both count,
    /// the body's reservation is not a credit the read buffer may grow into.
    #[tokio::test]
    async fn trailers_after_a_chunked_body_are_counted_on_top_of_it() {
        const CHUNK: usize = 64 * 1024;
        const TRAILER: usize = 60 * 1024;
        let mut input =
            b"POST /mcp HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        input.extend_from_slice(format!("{CHUNK:x}\r\n").as_bytes());
        input.extend(std::iter::repeat_n(b'x', CHUNK));
        input.extend_from_slice(b"\r\n0\r\nx-pad: ");
        input.extend(std::iter::repeat_n(b'y', TRAILER));
        input.extend_from_slice(b"\r\n\r\n");
        let mut io = Sent { input, pos: 0 };
        let budget = BodyBudget::new(16 << 20, Gauge::default());
        let limits = ReadLimits {
            max_body: 1 << 20,
            head_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        };
        let mut buf = BytesMut::new();
        let (request, guard) = read_request(&mut io, &mut buf, &budget, limits)
            .await
            .expect("a valid request");
        assert_eq!(request.body.len(), CHUNK);
        assert!(
            guard.held() >= (CHUNK + TRAILER) as u64,
            "held {} for a {CHUNK}-byte body and a {TRAILER}-byte trailer",
            guard.held()
        );
        assert_eq!(budget.used(), guard.held());
        drop(guard);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn head_end_finds_crlf_and_bare_lf_blank_lines() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        assert_eq!(head_end(b"\n\n", 0), Some(2));
        assert_eq!(head_end(b"a\r\n\r\nb", 2), Some(5));
        assert_eq!(
            head_end(b"\n\nab\r\n\r\n", 2),
            Some(8),
            "resumes where asked"
        );
    }

    #[test]
    fn keep_alive_by_version_and_tokens() {
        let mut h = HeaderMap::new();
        assert!(keep_alive(&h, true));
        assert!(!keep_alive(&h, false));
        h.insert("connection", HeaderValue::from_static("Keep-Alive"));
        assert!(keep_alive(&h, false));
        h.insert("connection", HeaderValue::from_static("te, close"));
        assert!(!keep_alive(&h, true));
    }
}
