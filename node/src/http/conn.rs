//! One client connection: a small HTTP/1.1 server loop written for memory, not features.
//!
//! Why not hyper's server here: hyper keeps an 8 KiB read buffer and an 8 KiB header write
//! buffer per connection for its whole life, so an idle client holding a GET stream costs
//! ~17 KiB (measured, docs/BENCHMARKS.md) against our 4 KiB target. This loop holds no buffer
//! while a connection is idle or streaming: it waits for readability with nothing allocated,
//! reads a request into a buffer sized to it ([`super::read`]), drops the buffer, and writes
//! the answer.
//!
//! Scope: HTTP/1.1 and 1.0 requests with `Content-Length` or chunked bodies, `Expect:
//! 100-continue`, keep-alive, pipelining (requests answered one after the other, in order),
//! responses with `Content-Length` or chunked (SSE). No upgrades; trailers are ignored.
//!
//! Connection lifetime rules (docs/ARCHITECTURE.md, "HTTP edge"):
//! - between requests a connection may stay idle `limits.idleTimeoutSecs`, then it is closed
//!   (SSE streams are not idle: they end when their stream does);
//! - a request must have its head within `requestHeadTimeoutSecs` of its first byte and be
//!   complete within `requestTimeoutSecs` (408 otherwise);
//! - an unreadable, oversized or ambiguous request is answered (400/413/431/501, or 503 when
//!   the node's buffered-request budget is spent) and the connection closed;
//! - once the node drains, every answer carries `Connection: close` and the connection closes
//!   after it; a connection idle at that moment gets [`DRAIN_IDLE_GRACE`] for a request that is
//!   already on its way, then closes.
//!
//! Generic over [`ReadyIo`] so the fuzz target drives this very loop over an in-memory stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::body::Body;
use super::budget::BudgetGuard;
use super::io::{ReadyIo, readable};
use super::mcp;
use super::read::{ReadError, ReadLimits, Request, read_request};
use crate::metrics::{CloseReason, Reason};
use crate::node::Node;

/// How long a connection that was idle when the drain began stays open for a request already
/// on the wire (a client that picked the connection from its pool just before). Short: the
/// request only has to cross the network; clients learn of the drain from the FIN after it.
pub const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);
/// After answering with `Connection: close`, unread request bytes (a body refused with 413 or
/// 503 that the client sends anyway) are read and discarded for up to this long (and
/// [`LINGER_BYTES`]) before the socket is closed, so the kernel does not answer them with a
/// reset that destroys the answer before the client reads it. Nothing is buffered meanwhile.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Bytes a client sends while its answer is still streaming (a pipelined request) are kept up
/// to this many; past them the loop stops reading until the stream ends.
const MAX_READ_AHEAD: usize = 4096;

/// How the wait between two requests ended.
enum Idle {
    /// Bytes (or the end of the stream) are there to read.
    Readable,
    /// Nothing arrived within the idle timeout.
    TimedOut,
    /// The node is draining and nothing arrived within the grace period.
    Drained,
}

/// Serves requests on `io` until the client closes, an error, the idle timeout, or a drain.
pub async fn serve<S: ReadyIo>(mut io: S, node: &Arc<Node>) {
    // Bytes of a pipelined request read along with the previous one; empty (no allocation)
    // otherwise.
    let mut leftover = BytesMut::new();
    // The server ended a stream on this connection to move its client elsewhere (the shedding
    // of `cluster/connection_balance.rs`): the connection closes, after answering what the
    // client pipelined behind the stream (that answer says `Connection: close`).
    let mut moving_client = false;
    loop {
        if leftover.is_empty() {
            // Idle: wait for the next request without holding any buffer. Boxed, like every
            // stage below: a stage's state exists only while the connection is in it.
            match Box::pin(wait_for_request(&mut io, node)).await {
                Idle::Readable => {}
                // Nothing was said on an idle connection, so there is nothing to linger for.
                Idle::TimedOut => {
                    node.metrics.closed(CloseReason::idle_timeout);
                    let _ = io.shutdown().await;
                    return;
                }
                Idle::Drained => {
                    node.metrics.closed(CloseReason::drain);
                    let _ = io.shutdown().await;
                    return;
                }
            }
        }
        let limits = read_limits(node);
        let read = Box::pin(read_request(
            &mut io,
            &mut leftover,
            &node.body_budget,
            limits,
        ))
        .await;
        let (request, mut budget) = match read {
            Ok(r) => r,
            Err(ReadError::Closed) => {
                node.metrics.closed(CloseReason::client);
                return;
            }
            Err(e) => return Box::pin(refuse(io, node, e)).await,
        };
        let (keep_alive, http10) = (request.keep_alive, request.http10);
        // An answer to HEAD has the head of the answer to GET and no body (RFC 9110 §9.3.2):
        // a body there would be read by the client as the start of the next response.
        let head_only = request.method == http::Method::HEAD;
        let response = Box::pin(answer(node, request)).await;
        // While the answer is written (or streams), the budget holds only what stays buffered:
        // the bytes of a pipelined request, and what is read ahead of it meanwhile.
        budget.shrink_to(leftover.capacity());
        // A drain that began while the request ran: this answer is the connection's last.
        let keep_alive = keep_alive && !node.is_draining() && !moving_client;
        let written = Box::pin(write_response(
            &mut io,
            response,
            Persistence::of(keep_alive, http10),
            head_only,
            &mut leftover,
            &mut budget,
        ))
        .await;
        // The next request's reading counts what is left over itself.
        drop(budget);
        if written.is_err() {
            node.metrics.closed(CloseReason::client);
            return;
        }
        moving_client |= matches!(written, Ok(false));
        if !keep_alive || (moving_client && leftover.is_empty()) {
            node.metrics.closed(if node.is_draining() {
                CloseReason::drain
            } else {
                CloseReason::finished
            });
            return close(io).await;
        }
    }
}

/// Runs one request through `/mcp` (its head and body live in this future, not the loop's).
async fn answer(node: &Arc<Node>, request: Request) -> Response<Body> {
    let Request {
        method,
        path,
        headers,
        body,
        ..
    } = request;
    mcp::handle(node.clone(), method, &path, &headers, body).await
}

fn read_limits(node: &Node) -> ReadLimits {
    let limits = &node.settings.config.limits;
    ReadLimits {
        max_body: u64::from(limits.max_body_bytes),
        head_timeout: Duration::from_secs(limits.request_head_timeout_secs),
        request_timeout: Duration::from_secs(limits.request_timeout_secs),
    }
}

/// Waits for the next request: bytes to read, the idle timeout, or the end of a drain's grace.
/// One timer serves both deadlines (this state is what an idle connection costs).
async fn wait_for_request<S: ReadyIo>(io: &mut S, node: &Node) -> Idle {
    let idle = Duration::from_secs(node.settings.config.limits.idle_timeout_secs);
    let drain = node.drain_started();
    tokio::pin!(drain);
    // Registered before the flag is read, so a drain starting in between still wakes us.
    drain.as_mut().enable();
    let mut draining = node.is_draining();
    let deadline = tokio::time::sleep(if draining { DRAIN_IDLE_GRACE } else { idle });
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            // An error means the socket is gone; reading says so.
            _ = readable(io) => return Idle::Readable,
            _ = &mut deadline => return if draining { Idle::Drained } else { Idle::TimedOut },
            _ = &mut drain, if !draining => {
                draining = true;
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRAIN_IDLE_GRACE);
            }
        }
    }
}

/// Answers a request that could not be read, then closes the connection.
async fn refuse<S: ReadyIo>(mut io: S, node: &Node, error: ReadError) {
    let limits = &node.settings.config.limits;
    let (status, reason, retry_after) = match error {
        ReadError::Closed => return,
        ReadError::Bad(_) | ReadError::Unsupported(_) | ReadError::HeadTooLarge => {
            let status = match error {
                ReadError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
                ReadError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Reason::bad_request, None)
        }
        ReadError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Reason::body_too_large, None),
        ReadError::Budget => (
            StatusCode::SERVICE_UNAVAILABLE,
            Reason::body_budget,
            Some(limits.retry_after_secs),
        ),
        ReadError::Timeout => (StatusCode::REQUEST_TIMEOUT, Reason::request_timeout, None),
    };
    node.metrics.reject(reason);
    node.metrics.closed(CloseReason::refused);
    let message = match error {
        ReadError::TooLarge => format!("request body exceeds {} bytes", limits.max_body_bytes),
        other => other.to_string(),
    };
    let _ = write_simple(&mut io, status, &message, retry_after).await;
    close(io).await;
}

/// Closes after a last answer: FIN first, then unread request bytes are discarded for a
/// moment (see [`LINGER_TIME`]) so the answer is not destroyed by a reset.
async fn close<S: ReadyIo>(mut io: S) {
    Box::pin(async move {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut discarded = 0;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            // Allocated only once the client sends something: a client that keeps the socket
            // open in silence costs no buffer while the linger lasts.
            let mut scratch = Vec::new();
            while discarded < LINGER_BYTES {
                if readable(&mut io).await.is_err() {
                    return;
                }
                if scratch.is_empty() {
                    scratch = vec![0u8; 4096];
                }
                match io.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => discarded += n,
                }
            }
        })
        .await;
    })
    .await;
}

/// Whether the connection stays open after a response, and how to say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// HTTP/1.1 default: say nothing.
    KeepAlive,
    /// HTTP/1.0 client that asked for keep-alive: confirm it.
    KeepAlive10,
    /// `Connection: close`, then close.
    Close,
}

impl Persistence {
    fn of(keep_alive: bool, http10: bool) -> Self {
        match (keep_alive, http10) {
            (false, _) => Self::Close,
            (true, false) => Self::KeepAlive,
            (true, true) => Self::KeepAlive10,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Self::KeepAlive => "",
            Self::KeepAlive10 => "connection: keep-alive\r\n",
            Self::Close => "connection: close\r\n",
        }
    }
}

fn head(status: StatusCode, headers: &HeaderMap, extra: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// A refusal with a JSON-RPC error body and `Connection: close`.
async fn write_simple<S: ReadyIo>(
    io: &mut S,
    status: StatusCode,
    message: &str,
    retry_after: Option<u32>,
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": null,
        "error": { "code": crate::jsonrpc::code::INVALID_REQUEST, "message": message }
    })
    .to_string();
    let retry = retry_after.map_or(String::new(), |s| format!("retry-after: {s}\r\n"));
    let mut out = head(
        status,
        &HeaderMap::new(),
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\n{retry}connection: close\r\n",
            body.len()
        ),
    );
    out.extend_from_slice(body.as_bytes());
    io.write_all(&out).await
}

/// Writes a response; streams an SSE body chunk by chunk until it ends or the client leaves.
/// `head_only` (a HEAD request): the head alone, the body dropped unsent. `budget` counts
/// `leftover`, including what is read ahead while the answer streams. `Ok(false)`: the
/// connection must close after it (a stream the server ended to move its client elsewhere).
async fn write_response<S: ReadyIo>(
    io: &mut S,
    response: Response<Body>,
    persistence: Persistence,
    head_only: bool,
    leftover: &mut BytesMut,
    budget: &mut BudgetGuard<'_>,
) -> std::io::Result<bool> {
    let (parts, body) = response.into_parts();
    let connection = persistence.header();
    match body {
        Body::Full(bytes) => {
            let bytes = bytes.unwrap_or_default();
            let mut out = head(
                parts.status,
                &parts.headers,
                &format!("content-length: {}\r\n{connection}", bytes.len()),
            );
            if !head_only {
                out.extend_from_slice(&bytes);
            }
            io.write_all(&out).await.map(|()| true)
        }
        Body::Stream(_) if head_only => {
            let out = head(
                parts.status,
                &parts.headers,
                &format!("transfer-encoding: chunked\r\n{connection}"),
            );
            io.write_all(&out).await.map(|()| true)
        }
        Body::Stream(mut sse) => {
            let out = head(
                parts.status,
                &parts.headers,
                &format!("transfer-encoding: chunked\r\n{connection}"),
            );
            drop(parts);
            io.write_all(&out).await?;
            drop(out);
            loop {
                let next = tokio::select! {
                    next = sse.next_chunk() => next,
                    gone = watch_client(io, leftover, budget) => {
                        if gone { return Err(std::io::ErrorKind::ConnectionReset.into()) }
                        continue;
                    }
                };
                match next {
                    Some(chunk) => {
                        let mut out = Vec::with_capacity(chunk.len() + 16);
                        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(&chunk);
                        out.extend_from_slice(b"\r\n");
                        io.write_all(&out).await?;
                    }
                    None => {
                        io.write_all(b"0\r\n\r\n").await?;
                        return Ok(!sse.closes_connection());
                    }
                }
            }
        }
    }
}

/// While an answer streams: resolves `true` when the client closed the connection. Bytes it
/// sends meanwhile (a pipelined request) are kept in `leftover` for after the stream, up to
/// [`MAX_READ_AHEAD`], counted in the node's budget by `budget` first; past that, or when the
/// budget is spent, reading waits for the stream to end (TCP pushes back).
async fn watch_client<S: ReadyIo>(
    io: &mut S,
    leftover: &mut BytesMut,
    budget: &mut BudgetGuard<'_>,
) -> bool {
    if leftover.len() >= MAX_READ_AHEAD {
        return std::future::pending().await;
    }
    if readable(io).await.is_err() {
        return true;
    }
    if leftover.capacity() == leftover.len() {
        // Counted once there is something to read: a stream whose client sends nothing holds
        // no budget.
        if budget
            .grow_to(MAX_READ_AHEAD.max(leftover.capacity()))
            .is_err()
        {
            return std::future::pending().await;
        }
        leftover.reserve(MAX_READ_AHEAD - leftover.len());
    }
    let room = (MAX_READ_AHEAD - leftover.len()) as u64;
    match (&mut *io).take(room).read_buf(leftover).await {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}
