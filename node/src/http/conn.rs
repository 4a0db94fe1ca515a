//! One client connection: a small HTTP/1.1 server loop written for memory, not features.
//!
//! Why not hyper's server here: hyper keeps an 8 KiB read buffer and an 8 KiB header write
//! buffer per connection for its whole life, so an idle client holding a GET stream costs
//! ~17 KiB (measured, docs/BENCHMARKS.md) against our 4 KiB target. This loop holds no buffer
//! while a connection is idle or streaming: it waits for readability with nothing allocated,
//! reads a request into a buffer sized to it, drops the buffer, and writes the answer.
//!
//! Scope: HTTP/1.1 and 1.0 requests with `Content-Length` or chunked bodies, `Expect:
//! 100-continue`, keep-alive, responses with `Content-Length` or chunked (SSE). No pipelining
//! (a client sending a second request before the answer gets it handled after the first), no
//! upgrades, no trailers.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::body::Body;
use super::mcp;
use crate::metrics::Reason;
use crate::node::Node;

/// Largest request head (request line + headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Time allowed to finish sending a request once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request could not be read.
#[derive(Debug)]
enum ReadError {
    /// The client closed (or reset) the connection.
    Closed,
    /// Malformed request: answer 400 and close.
    Bad(&'static str),
    /// Body over the limit: answer 413 and close.
    TooLarge,
    /// Request not finished in time.
    Timeout,
}

/// A parsed request.
struct Request {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    keep_alive: bool,
}

/// Serves requests on `stream` until the client closes, an error, or shutdown while idle.
pub async fn serve(mut stream: TcpStream, node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let max_body = node.settings.config.limits.max_body_bytes as usize;
    loop {
        // Idle: wait for the next request without holding any buffer.
        tokio::select! {
            ready = stream.readable() => if ready.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let request = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            Box::pin(read_request(&mut stream, max_body)),
        )
        .await
        {
            Err(_) => Err(ReadError::Timeout),
            Ok(r) => r,
        };
        let request = match request {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Timeout) => {
                let _ = write_simple(
                    &mut stream,
                    StatusCode::REQUEST_TIMEOUT,
                    "request not completed in time",
                )
                .await;
                return;
            }
            Err(ReadError::TooLarge) => {
                node.metrics.reject(Reason::body_too_large);
                let msg = format!("request body exceeds {max_body} bytes");
                let _ = write_simple(&mut stream, StatusCode::PAYLOAD_TOO_LARGE, &msg).await;
                return;
            }
            Err(ReadError::Bad(why)) => {
                node.metrics.reject(Reason::bad_request);
                let _ = write_simple(&mut stream, StatusCode::BAD_REQUEST, why).await;
                return;
            }
        };
        let Request {
            method,
            path,
            headers,
            body,
            keep_alive,
        } = request;
        // Boxed futures: the handler's and the writer's state exist only while in use, so an
        // idle connection task stays small; the request is dropped before a stream starts.
        let response = Box::pin(mcp::handle(node.clone(), method, &path, &headers, body)).await;
        drop((path, headers));
        if Box::pin(write_response(&mut stream, response, keep_alive))
            .await
            .is_err()
            || !keep_alive
        {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads more bytes into `buf`; a closed or failed socket means the client is gone.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ReadError> {
    match stream.read_buf(buf).await {
        Ok(0) | Err(_) => Err(ReadError::Closed),
        Ok(_) => Ok(()),
    }
}

/// Reads one request (head and body) into buffers sized to it.
async fn read_request(stream: &mut TcpStream, max_body: usize) -> Result<Request, ReadError> {
    let mut buf = BytesMut::with_capacity(1024);
    let (head_len, method, path, headers, version_11) = loop {
        read_more(stream, &mut buf).await?;
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
                    .map_err(|_| ReadError::Bad("invalid method"))?;
                let path = req.path.unwrap_or("/").to_string();
                let mut headers = HeaderMap::with_capacity(req.headers.len());
                for h in req.headers.iter() {
                    let name = HeaderName::from_bytes(h.name.as_bytes())
                        .map_err(|_| ReadError::Bad("invalid header name"))?;
                    let value = HeaderValue::from_bytes(h.value)
                        .map_err(|_| ReadError::Bad("invalid header value"))?;
                    headers.append(name, value);
                }
                break (len, method, path, headers, req.version == Some(1));
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(ReadError::Bad("request head too large"));
            }
            Ok(httparse::Status::Partial) => {
                if buf.capacity() == buf.len() {
                    buf.reserve(buf.len());
                }
            }
            Err(_) => return Err(ReadError::Bad("malformed HTTP request")),
        }
    };
    buf.advance(head_len);
    let connection = headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let keep_alive = if version_11 {
        !connection.eq_ignore_ascii_case("close")
    } else {
        connection.eq_ignore_ascii_case("keep-alive")
    };
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let content_length = match headers.get(http::header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or(ReadError::Bad("invalid Content-Length"))?,
        ),
    };
    let expects_continue = headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if let Some(n) = content_length
        && n > max_body
    {
        return Err(ReadError::TooLarge);
    }
    if expects_continue && (chunked || content_length.unwrap_or(0) > buf.len()) {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| ReadError::Closed)?;
    }
    let body = if chunked {
        read_chunked(stream, buf, max_body).await?
    } else {
        let n = content_length.unwrap_or(0);
        while buf.len() < n {
            buf.reserve(n - buf.len());
            read_more(stream, &mut buf).await?;
        }
        buf.split_to(n).freeze()
    };
    Ok(Request {
        method,
        path,
        headers,
        body,
        keep_alive,
    })
}

/// Decodes a chunked body (extensions and trailers ignored).
async fn read_chunked(
    stream: &mut TcpStream,
    mut buf: BytesMut,
    max_body: usize,
) -> Result<Bytes, ReadError> {
    let mut body = BytesMut::new();
    loop {
        // Need a full size line.
        let line_end = loop {
            if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                break pos;
            }
            if buf.len() > 1024 {
                return Err(ReadError::Bad("invalid chunk size line"));
            }
            read_more(stream, &mut buf).await?;
        };
        let line = std::str::from_utf8(&buf[..line_end])
            .map_err(|_| ReadError::Bad("invalid chunk size"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad("invalid chunk size"))?;
        buf.advance(line_end + 2);
        if size == 0 {
            // Skip trailers up to the empty line.
            loop {
                if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = pos == 0;
                    buf.advance(pos + 2);
                    if empty {
                        return Ok(body.freeze());
                    }
                    continue;
                }
                read_more(stream, &mut buf).await?;
            }
        }
        if body.len() + size > max_body {
            return Err(ReadError::TooLarge);
        }
        while buf.len() < size + 2 {
            buf.reserve(size + 2 - buf.len());
            read_more(stream, &mut buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ReadError::Bad("chunk not terminated by CRLF"));
        }
        buf.advance(size + 2);
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

async fn write_simple(
    stream: &mut TcpStream,
    status: StatusCode,
    message: &str,
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": null,
        "error": { "code": crate::jsonrpc::code::INVALID_REQUEST, "message": message }
    })
    .to_string();
    let mut out = head(
        status,
        &HeaderMap::new(),
        &format!(
            "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        ),
    );
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out).await
}

/// Writes a response; streams an SSE body chunk by chunk until it ends or the client leaves.
async fn write_response(
    stream: &mut TcpStream,
    response: Response<Body>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let connection = if keep_alive {
        ""
    } else {
        "connection: close\r\n"
    };
    match body {
        Body::Full(bytes) => {
            let bytes = bytes.unwrap_or_default();
            let mut out = head(
                parts.status,
                &parts.headers,
                &format!("content-length: {}\r\n{connection}", bytes.len()),
            );
            out.extend_from_slice(&bytes);
            stream.write_all(&out).await
        }
        Body::Stream(mut sse) => {
            let out = head(
                parts.status,
                &parts.headers,
                &format!("transfer-encoding: chunked\r\n{connection}"),
            );
            drop(parts);
            stream.write_all(&out).await?;
            drop(out);
            loop {
                let next = tokio::select! {
                    next = sse.next_chunk() => next,
                    gone = client_gone(stream) => {
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
                        stream.write_all(&out).await?;
                    }
                    None => return stream.write_all(b"0\r\n\r\n").await,
                }
            }
        }
    }
}

/// Resolves when the socket becomes readable: `true` if the client closed it. Bytes a client
/// sends while its stream is open are discarded (no pipelining).
async fn client_gone(stream: &TcpStream) -> bool {
    if stream.readable().await.is_err() {
        return true;
    }
    let mut scratch = [0u8; 64];
    match stream.try_read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}
