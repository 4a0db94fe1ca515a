//! The JSON-RPC side of talking to an upstream: request bodies, a response's `result` or
//! error, the cancellation sent when a caller gives up, and error text.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::upstream::error::UpstreamError;

/// The HTTP client upstreams are reached with.
pub(super) type Http = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How much of an error answer's body is quoted in the error.
pub(super) const QUOTED_BODY: usize = 512;

/// Tells the upstream a request is cancelled when the future waiting for its answer is dropped
/// before the answer came: the client cancelled it (`notifications/cancelled`), a 2026-07-28
/// client closed its stream, or `timeoutMs` passed. Sent from a task of its own, given at most
/// [`CANCEL_WITHIN`]; nothing waits for it.
pub(super) struct CancelOnDrop(pub(super) Option<(Http, Request<Full<Bytes>>)>);

/// How long a cancellation may take to reach an upstream.
const CANCEL_WITHIN: Duration = Duration::from_secs(5);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((http, req)) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CANCEL_WITHIN, http.request(req)).await;
            });
        }
    }
}

pub(super) fn content_type<B>(resp: &http::Response<B>) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub(super) fn is_json<B>(resp: &http::Response<B>) -> bool {
    content_type(resp).starts_with("application/json")
}

pub(super) fn is_event_stream<B>(resp: &http::Response<B>) -> bool {
    content_type(resp).starts_with("text/event-stream")
}

pub(super) fn request_body(id: u64, method: &str, params: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
        .unwrap_or_default()
}

/// The `result` of a JSON-RPC response, or its `error` as [`UpstreamError::Rpc`].
pub(super) fn result_of(answer: Option<Value>) -> Result<Value, UpstreamError> {
    let Some(Value::Object(mut m)) = answer else {
        return Err(UpstreamError::Protocol(
            "the answer is not a JSON-RPC response object".into(),
        ));
    };
    if let Some(result) = m.remove("result") {
        return Ok(result);
    }
    match m.remove("error") {
        Some(Value::Object(mut e)) => Err(UpstreamError::Rpc {
            code: e
                .get("code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(crate::jsonrpc::code::INTERNAL_ERROR),
            message: match e.remove("message") {
                Some(Value::String(s)) => s,
                _ => "error without a message".into(),
            },
            data: e.remove("data"),
        }),
        _ => Err(UpstreamError::Protocol(
            "the response has neither `result` nor `error`".into(),
        )),
    }
}

/// The start of an error answer's body, as text.
pub(super) async fn quoted(body: hyper::body::Incoming) -> String {
    let bytes = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BODY)]);
    text.trim().to_owned()
}

/// An error and its sources, `a: b: c` (hyper's own message is only "client error (Connect)").
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
