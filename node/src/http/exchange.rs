//! Runs one JSON-RPC request and shapes its HTTP answer: plain JSON when the handler finished
//! without sending anything first (the fast path: no task, no stream), or an SSE stream as
//! soon as it sends a notification or a request to the client — the handler then finishes in
//! the background while the client reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::stream_queue;

use super::body::{Body, StreamGuard};
use super::outbound::StreamOut;
use super::panics;
use super::reply;
use crate::content::CallError;
use crate::content::context::Era;
use crate::jsonrpc::{self, RequestId, code};
use crate::metrics::{MethodLabel, Outcome};
use crate::node::Node;

/// Counts a request as in flight until dropped, then records its latency and outcome.
pub struct Inflight {
    node: Arc<Node>,
    method: MethodLabel,
    started: Instant,
    outcome: Outcome,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Inflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflight")
            .field("method", &self.method)
            .finish()
    }
}

impl Inflight {
    /// Admits a request unless `limits.maxInflightRequests` are already running.
    pub fn admit(node: &Arc<Node>, method: &str) -> Option<Self> {
        let max = node.settings.config.limits.max_inflight_requests;
        if node.inflight.fetch_add(1, Ordering::AcqRel) >= max {
            node.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        node.metrics.inflight.inc();
        Some(Self {
            node: node.clone(),
            method: MethodLabel::of(method),
            started: Instant::now(),
            outcome: Outcome::ok,
            cleanup: None,
        })
    }

    /// Runs `f` when the request is finished (answered, cancelled or abandoned).
    pub fn on_finish(&mut self, f: impl FnOnce() + Send + 'static) {
        self.cleanup = Some(Box::new(f));
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
        self.node.inflight.fetch_sub(1, Ordering::AcqRel);
        self.node.metrics.inflight.dec();
        self.node.metrics.observe(
            self.method,
            self.outcome,
            self.started.elapsed().as_secs_f64(),
        );
    }
}

/// What the client is told when the work behind its streaming answer panicked (the panic
/// itself is logged, not sent: it may name internals).
const PANICKED: &str = "the server failed while handling this request";

/// HTTP status for a JSON-RPC error in the given era (2026-07-28 maps some codes to 4xx;
/// legacy answers every JSON-RPC error with 200).
pub fn status_for(era: Era, error_code: i32) -> StatusCode {
    match (era, error_code) {
        (Era::Legacy, _) => StatusCode::OK,
        (Era::Modern, code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        (
            Era::Modern,
            code::HEADER_MISMATCH
            | code::MISSING_CLIENT_CAPABILITY
            | code::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        (Era::Modern, _) => StatusCode::OK,
    }
}

fn encode(
    id: &RequestId,
    era: Era,
    result: Result<Value, CallError>,
    inflight: &mut Inflight,
) -> (StatusCode, Vec<u8>) {
    match result {
        Ok(v) => {
            inflight.outcome = match v.get("resultType").and_then(Value::as_str) {
                Some("input_required") => Outcome::input_required,
                _ if v.get("isError").and_then(Value::as_bool) == Some(true) => Outcome::tool_error,
                _ => Outcome::ok,
            };
            (StatusCode::OK, jsonrpc::response(id, &v))
        }
        Err(e) => {
            inflight.outcome = Outcome::error;
            let err = e.to_rpc(era);
            (
                status_for(era, err.code),
                jsonrpc::error_response(Some(id), &err),
            )
        }
    }
}

/// Drives `work` for request `id` and answers with JSON or SSE.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    out: Arc<dyn StreamOut>,
    mut rx: stream_queue::Receiver,
    mut work: BoxFuture<'static, Result<Value, CallError>>,
    id: RequestId,
    era: Era,
    cancel: Option<oneshot::Receiver<()>>,
    mut inflight: Inflight,
    extra_headers: Vec<(&'static str, String)>,
    on_end: Option<StreamGuard>,
) -> Response<Body> {
    let mut cancel: BoxFuture<'static, ()> = match cancel {
        // Only an explicit cancel counts; a dropped sender (request finished) does not.
        Some(rx) => Box::pin(async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }),
        None => Box::pin(std::future::pending()),
    };
    let with_headers = |mut r: Response<Body>| {
        for (k, v) in &extra_headers {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                r.headers_mut().insert(*k, v);
            }
        }
        r
    };
    tokio::select! {
        biased;
        result = &mut work => {
            let (status, bytes) = encode(&id, era, result, &mut inflight);
            drop(inflight);
            if out.opened() {
                out.finish(Some(bytes));
                drop(out);
                with_headers(reply::sse(None, rx, on_end))
            } else {
                with_headers(reply::json(status, bytes))
            }
        }
        _ = &mut cancel => {
            inflight.outcome = Outcome::error;
            drop(inflight);
            if out.opened() {
                out.finish(None);
                drop(out);
                with_headers(reply::sse(None, rx, on_end))
            } else {
                let err = jsonrpc::RpcError::new(code::REQUEST_CANCELLED, "request cancelled");
                with_headers(reply::rpc_error(StatusCode::OK, Some(&id), &err))
            }
        }
        Some(first) = rx.recv() => {
            let background = out.clone();
            tokio::spawn(async move {
                let node = inflight.node.clone();
                let gone = background.gone();
                // The work alone runs inside the catch: a panic in it still gets the request
                // its final answer, and the in-flight count its outcome.
                let ended = panics::catch(&node, panics::Origin::Request, async move {
                    tokio::select! {
                        biased;
                        result = work => Some(result),
                        _ = cancel => None,
                        _ = gone => None,
                    }
                })
                .await;
                match ended {
                    Ok(Some(result)) => {
                        let (_, bytes) = encode(&id, era, result, &mut inflight);
                        background.finish(Some(bytes));
                    }
                    Ok(None) => {
                        inflight.outcome = Outcome::error;
                        background.finish(None);
                    }
                    Err(_) => {
                        let failed = Err(CallError::Internal(PANICKED.into()));
                        let (_, bytes) = encode(&id, era, failed, &mut inflight);
                        background.finish(Some(bytes));
                    }
                }
                drop(inflight);
            });
            drop(out);
            with_headers(reply::sse(Some(first), rx, on_end))
        }
    }
}
