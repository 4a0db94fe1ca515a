//! Building HTTP responses: JSON-RPC answers, refusals with their status, SSE streams.

use crate::stream_queue;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{Body, StreamGuard};
use crate::jsonrpc::{self, RequestId, RpcError};

/// A JSON body with a status.
pub fn json(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A JSON-RPC error answer with an HTTP status.
pub fn rpc_error(status: StatusCode, id: Option<&RequestId>, error: &RpcError) -> Response<Body> {
    json(status, jsonrpc::error_response(id, error))
}

/// A refusal with a JSON-RPC error body (id unknown) and a status.
pub fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    let code = match status {
        StatusCode::BAD_REQUEST => jsonrpc::code::INVALID_REQUEST,
        _ => jsonrpc::code::OVERLOADED,
    };
    rpc_error(status, None, &RpcError::new(code, message))
}

/// 429 or 503 with `Retry-After`.
pub fn overloaded(
    status: StatusCode,
    id: Option<&RequestId>,
    message: &str,
    retry_after_secs: u32,
) -> Response<Body> {
    let mut r = rpc_error(
        status,
        id,
        &RpcError::new(jsonrpc::code::OVERLOADED, message),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// 202 Accepted, no body (notifications and responses).
pub fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// 405 with the methods that are allowed.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// An SSE response streaming from `rx`, with `first` sent before anything else.
pub fn sse(
    first: Option<Bytes>,
    rx: stream_queue::Receiver,
    guard: Option<StreamGuard>,
) -> Response<Body> {
    let mut r = Response::new(Body::sse(first, rx, guard));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// One SSE event without an id (2026-07-28 streams are not resumable).
pub fn sse_data(json: &[u8]) -> Bytes {
    let mut ev = Vec::with_capacity(json.len() + 8);
    ev.extend_from_slice(b"data: ");
    ev.extend_from_slice(json);
    ev.extend_from_slice(b"\n\n");
    Bytes::from(ev)
}
