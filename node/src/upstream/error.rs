//! [`UpstreamError`]: why a request to an upstream failed, and the JSON-RPC error a client gets
//! for it (always naming the upstream). Its kinds are the metric labels.

use serde_json::{Value, json};

use crate::jsonrpc::{RpcError, code};

/// Why a request to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// `maxConcurrency` requests were already in flight; refused without waiting.
    #[error("busy: {0} requests already in flight (maxConcurrency)")]
    Busy(u32),
    /// Marked down by its circuit breaker (`breakerFailures` failures in a row): refused
    /// without reaching it until the next probe.
    #[error(
        "down: marked down after failures in a row (breakerFailures); next probe in {retry_after_ms} ms"
    )]
    Down { retry_after_ms: u64 },
    /// The exchange took longer than `timeoutMs`.
    #[error("no answer within {0} ms (timeoutMs)")]
    Timeout(u64),
    /// No connection, or it broke before the answer was complete.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// An HTTP status other than success (after at most one re-initialization).
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The answer was not a JSON-RPC response we can use.
    #[error("invalid answer: {0}")]
    Protocol(String),
    /// The upstream needs something the node does not relay yet.
    #[error("needs what is not relayed yet: {0}")]
    Unsupported(String),
    /// The upstream answered with a JSON-RPC error.
    #[error("{message}")]
    Rpc {
        code: i32,
        message: String,
        data: Option<Value>,
    },
}

impl UpstreamError {
    /// Short name of the kind (metric label, `data.reason`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Busy(_) => ErrorKind::busy,
            Self::Down { .. } => ErrorKind::down,
            Self::Timeout(_) => ErrorKind::timeout,
            Self::Unreachable(_) => ErrorKind::unreachable,
            Self::Status { .. } => ErrorKind::http_status,
            Self::Protocol(_) => ErrorKind::protocol,
            Self::Unsupported(_) => ErrorKind::unsupported,
            Self::Rpc { .. } => ErrorKind::rpc_error,
        }
    }

    /// The JSON-RPC error a client gets. An upstream's own JSON-RPC error keeps its code and
    /// data, its message prefixed with the upstream's name; everything else is -32000 with
    /// `data: {"upstream": NAME, "reason": KIND}` (and `retryAfterMs` when it is down).
    pub fn to_rpc(&self, upstream: &str) -> RpcError {
        match self {
            Self::Rpc {
                code,
                message,
                data,
            } => {
                let e = RpcError::new(*code, format!("upstream `{upstream}`: {message}"));
                match data {
                    Some(d) => e.with_data(d.clone()),
                    None => e,
                }
            }
            Self::Down { retry_after_ms } => {
                RpcError::new(code::OVERLOADED, format!("upstream `{upstream}` {self}")).with_data(
                    json!({
                        "upstream": upstream,
                        "reason": ErrorKind::down.as_str(),
                        "retryAfterMs": retry_after_ms,
                    }),
                )
            }
            other => RpcError::new(code::OVERLOADED, format!("upstream `{upstream}` {other}"))
                .with_data(json!({ "upstream": upstream, "reason": other.kind().as_str() })),
        }
    }
}

/// [`UpstreamError`]'s kinds, as metric label values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types, missing_docs)]
pub enum ErrorKind {
    busy,
    down,
    timeout,
    unreachable,
    http_status,
    protocol,
    unsupported,
    rpc_error,
}

impl ErrorKind {
    /// The label's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::busy => "busy",
            Self::down => "down",
            Self::timeout => "timeout",
            Self::unreachable => "unreachable",
            Self::http_status => "http_status",
            Self::protocol => "protocol",
            Self::unsupported => "unsupported",
            Self::rpc_error => "rpc_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_upstream() {
        let e = UpstreamError::Unreachable("connection refused".into()).to_rpc("fs");
        assert_eq!(e.code, code::OVERLOADED);
        assert_eq!(e.message, "upstream `fs` unreachable: connection refused");
        assert_eq!(
            e.data,
            Some(json!({"upstream": "fs", "reason": "unreachable"}))
        );
        let e = UpstreamError::Rpc {
            code: -32602,
            message: "unknown tool".into(),
            data: Some(json!(1)),
        }
        .to_rpc("fs");
        assert_eq!(
            (e.code, e.message.as_str()),
            (-32602, "upstream `fs`: unknown tool")
        );
        assert_eq!(e.data, Some(json!(1)));
    }
}
