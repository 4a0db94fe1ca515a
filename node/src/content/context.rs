//! [`ToolCx`]: what a tool, prompt or resource handler can do besides returning its result —
//! report progress, log, and ask the client for input (sampling, elicitation, roots).
//!
//! In a 2025-11-25 session these become messages on the request's SSE stream and a
//! server→client JSON-RPC request whose answer is awaited. In a 2026-07-28 request, asking the
//! client ends the call with an `input_required` result; the client retries with
//! `inputResponses`, the handler runs again from the start, and this time the same question
//! (same key, by order of asking) finds its answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::change::{Announce, ChangeEvent};
use crate::jsonrpc::{RpcError, code};

/// The transport side of one request, implemented by the HTTP layer.
pub trait Outbound: Send + Sync {
    /// Queues a notification on the request's stream (never blocks; a slow reader loses the
    /// live stream, not the message, in a session with an event log).
    fn notify(&self, method: &str, params: Value);
    /// Sends a request to the client and waits for its answer (legacy sessions only).
    fn request(
        &self,
        method: &'static str,
        params: Value,
    ) -> BoxFuture<'_, Result<Value, CallError>>;
    /// Closes the client's connection for this request's stream (after telling it to retry
    /// in `retry_ms`) while the request goes on; the client resumes with `Last-Event-ID`
    /// (2025-11-25 polling, SEP-1699). No-op where streams are not resumable.
    fn end_stream_for_polling(&self, _retry_ms: u32) {}
}

/// Which protocol era a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and earlier: sessions, server→client requests.
    Legacy,
    /// 2026-07-28: stateless, `input_required`.
    Modern,
}

/// A question for the client: `elicitation/create`, `sampling/createMessage` or `roots/list`,
/// under a key the handler chooses (the answer comes back under the same key).
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequest {
    /// Key of the answer in `inputResponses`.
    pub key: String,
    /// Client method.
    pub method: &'static str,
    /// Its params.
    pub params: Value,
}

impl InputRequest {
    /// An `elicitation/create` request.
    pub fn elicit(key: &str, params: Value) -> Self {
        Self {
            key: key.into(),
            method: "elicitation/create",
            params,
        }
    }
    /// A `sampling/createMessage` request.
    pub fn sample(key: &str, params: Value) -> Self {
        Self {
            key: key.into(),
            method: "sampling/createMessage",
            params,
        }
    }
    /// A `roots/list` request.
    pub fn roots(key: &str) -> Self {
        Self {
            key: key.into(),
            method: "roots/list",
            params: json!({}),
        }
    }
    /// A question another server asked (an upstream's `inputRequests` entry or server→client
    /// request), when its method is one a client answers; `None` for any other method.
    pub fn relayed(key: &str, method: &str, params: Value) -> Option<Self> {
        let method = match method {
            "elicitation/create" => "elicitation/create",
            "sampling/createMessage" => "sampling/createMessage",
            "roots/list" => "roots/list",
            _ => return None,
        };
        Some(Self {
            key: key.into(),
            method,
            params,
        })
    }
    /// The client capability the request needs.
    pub fn capability(&self) -> &'static str {
        match self.method {
            "sampling/createMessage" => "sampling",
            "elicitation/create" => "elicitation",
            _ => "roots",
        }
    }
}

/// Why a handler did not produce a result.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The request itself is wrong (unknown name, bad arguments): JSON-RPC -32602.
    InvalidParams(String),
    /// The resource does not exist.
    ResourceNotFound(String),
    /// A JSON-RPC error to return as is.
    Rpc(RpcError),
    /// 2026-07-28: the handler needs input from the client first; `state` comes back
    /// (signed by the node) with the retry.
    InputRequired {
        requests: Vec<InputRequest>,
        state: Option<Value>,
    },
    /// The client answered a server→client request with an error.
    Client(Value),
    /// The client did not answer in time.
    Timeout,
    /// The request was cancelled.
    Cancelled,
    /// A fault on our side.
    Internal(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidParams(m) => write!(f, "invalid params: {m}"),
            Self::ResourceNotFound(uri) => write!(f, "resource not found: {uri}"),
            Self::Rpc(e) => write!(f, "{}", e.message),
            Self::InputRequired { requests, .. } => {
                write!(f, "input required ({} requests)", requests.len())
            }
            Self::Client(v) => write!(f, "client error: {v}"),
            Self::Timeout => write!(f, "the client did not answer in time"),
            Self::Cancelled => write!(f, "cancelled"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    /// The JSON-RPC error for this failure in the given era.
    pub fn to_rpc(&self, era: Era) -> RpcError {
        match self {
            Self::InvalidParams(m) => RpcError::invalid_params(m.clone()),
            Self::ResourceNotFound(uri) => {
                let c = if era == Era::Legacy {
                    code::RESOURCE_NOT_FOUND
                } else {
                    code::INVALID_PARAMS
                };
                RpcError::new(c, format!("resource not found: {uri}"))
                    .with_data(json!({ "uri": uri }))
            }
            Self::Rpc(e) => e.clone(),
            Self::InputRequired { .. } => {
                RpcError::internal("input required outside a retryable request")
            }
            Self::Client(v) => RpcError::internal(format!("client error: {v}")),
            Self::Timeout => RpcError::internal("the client did not answer in time"),
            Self::Cancelled => RpcError::new(code::REQUEST_CANCELLED, "request cancelled"),
            Self::Internal(m) => RpcError::internal(m.clone()),
        }
    }
}

struct CxInner {
    era: Era,
    progress_token: Option<Value>,
    send_logs: Option<u8>,
    client_capabilities: Value,
    outbound: Option<Arc<dyn Outbound>>,
    input_responses: Option<Map<String, Value>>,
    request_state: Option<Value>,
    announce: Option<Arc<dyn Announce>>,
    principal: Option<String>,
    asked: AtomicU32,
}

/// Handle given to handlers; cheap to clone.
#[derive(Clone)]
pub struct ToolCx(Arc<CxInner>);

impl std::fmt::Debug for ToolCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCx")
            .field("era", &self.0.era)
            .finish_non_exhaustive()
    }
}

/// Logging levels in increasing severity (RFC 5424 order used by MCP).
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Index of a level name in [`LOG_LEVELS`].
pub fn log_level_index(name: &str) -> Option<u8> {
    LOG_LEVELS.iter().position(|l| *l == name).map(|i| i as u8)
}

/// Builder for [`ToolCx`], used by the protocol layer.
#[derive(Default)]
pub struct ToolCxBuilder {
    era: Option<Era>,
    progress_token: Option<Value>,
    send_logs: Option<u8>,
    client_capabilities: Value,
    outbound: Option<Arc<dyn Outbound>>,
    input_responses: Option<Map<String, Value>>,
    request_state: Option<Value>,
    announce: Option<Arc<dyn Announce>>,
    principal: Option<String>,
}

impl std::fmt::Debug for ToolCxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCxBuilder").finish_non_exhaustive()
    }
}

impl ToolCxBuilder {
    /// Starts a context for `era`.
    pub fn new(era: Era) -> Self {
        Self {
            era: Some(era),
            ..Default::default()
        }
    }
    /// The request's `_meta.progressToken`.
    pub fn progress_token(mut self, token: Option<Value>) -> Self {
        self.progress_token = token;
        self
    }
    /// Minimum level of log messages to send; `None` sends none.
    pub fn send_logs(mut self, min_level: Option<u8>) -> Self {
        self.send_logs = min_level;
        self
    }
    /// What the client declared it can do.
    pub fn client_capabilities(mut self, caps: Value) -> Self {
        self.client_capabilities = caps;
        self
    }
    /// Where notifications and client requests go.
    pub fn outbound(mut self, outbound: Arc<dyn Outbound>) -> Self {
        self.outbound = Some(outbound);
        self
    }
    /// 2026-07-28 `inputResponses` of a retried request.
    pub fn input_responses(mut self, responses: Option<Map<String, Value>>) -> Self {
        self.input_responses = responses;
        self
    }
    /// 2026-07-28 `requestState` of a retried request, already verified.
    pub fn request_state(mut self, state: Option<Value>) -> Self {
        self.request_state = state;
        self
    }
    /// Where the handler's announcements go (the node, which tells its peers too).
    pub fn announce_to(mut self, to: Arc<dyn Announce>) -> Self {
        self.announce = Some(to);
        self
    }
    /// The authenticated principal making the request (auth on), as a stable text id.
    pub fn principal(mut self, principal: Option<String>) -> Self {
        self.principal = principal;
        self
    }
    /// Finishes the context.
    pub fn build(self) -> ToolCx {
        ToolCx(Arc::new(CxInner {
            era: self.era.unwrap_or(Era::Modern),
            progress_token: self.progress_token,
            send_logs: self.send_logs,
            client_capabilities: self.client_capabilities,
            outbound: self.outbound,
            input_responses: self.input_responses,
            request_state: self.request_state,
            announce: self.announce,
            principal: self.principal,
            asked: AtomicU32::new(0),
        }))
    }
}

impl ToolCx {
    /// A context that drops notifications and cannot ask the client anything (for tests and
    /// library callers invoking handlers directly).
    pub fn detached() -> Self {
        ToolCxBuilder::new(Era::Modern).build()
    }

    /// The era of the request being handled.
    pub fn era(&self) -> Era {
        self.0.era
    }

    /// What the client declared it can do (`ClientCapabilities` JSON).
    pub fn client_capabilities(&self) -> &Value {
        &self.0.client_capabilities
    }

    /// Whether the request carried a progress token and its progress can reach the client.
    pub fn wants_progress(&self) -> bool {
        self.0.progress_token.is_some() && self.0.outbound.is_some()
    }

    /// The least severe log level the client wants messages of, if it wants any.
    pub fn log_level(&self) -> Option<&'static str> {
        self.0.outbound.as_ref()?;
        self.0
            .send_logs
            .map(|i| LOG_LEVELS[usize::from(i).min(LOG_LEVELS.len() - 1)])
    }

    /// Sends `notifications/progress` if the request carried a progress token.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let (Some(token), Some(out)) = (&self.0.progress_token, &self.0.outbound) else {
            return;
        };
        let mut params = json!({ "progressToken": token, "progress": progress });
        if let Some(total) = total {
            params["total"] = json!(total);
        }
        if let Some(message) = message {
            params["message"] = json!(message);
        }
        out.notify("notifications/progress", params);
    }

    /// Sends `notifications/message` if the client wants messages of this level.
    pub fn log(&self, level: &str, logger: Option<&str>, data: Value) {
        let (Some(min), Some(out)) = (self.0.send_logs, &self.0.outbound) else {
            return;
        };
        let Some(idx) = log_level_index(level) else {
            return;
        };
        if idx < min {
            return;
        }
        let mut params = json!({ "level": level, "data": data });
        if let Some(logger) = logger {
            params["logger"] = json!(logger);
        }
        out.notify("notifications/message", params);
    }

    /// Ends the live connection of this request's stream and lets the client poll for the rest
    /// (legacy sessions; a no-op in 2026-07-28, whose streams are not resumable).
    pub fn end_stream_for_polling(&self, retry_ms: u32) {
        if let Some(out) = &self.0.outbound {
            out.end_stream_for_polling(retry_ms);
        }
    }

    /// Tells subscribed clients (on every era) that something changed.
    pub fn announce(&self, event: ChangeEvent) {
        if let Some(to) = &self.0.announce {
            to.announce(event);
        }
    }

    /// The authenticated principal making the request (auth on), as a stable text id.
    pub fn principal(&self) -> Option<&str> {
        self.0.principal.as_deref()
    }

    /// The state this handler returned with its last `input_required` result (2026-07-28
    /// retries only; verified by the node).
    pub fn request_state(&self) -> Option<&Value> {
        self.0.request_state.as_ref()
    }

    /// 2026-07-28 `inputResponses` of a retried request, as the client sent them.
    pub fn input_responses(&self) -> Option<&Map<String, Value>> {
        self.0.input_responses.as_ref()
    }

    /// [`ToolCx::request_input`] that asks all or nothing: a question needing a capability
    /// the client did not declare is an error (-32021 in 2026-07-28, -32602 in a session).
    pub async fn request_all(
        &self,
        requests: Vec<InputRequest>,
        next_state: Option<Value>,
    ) -> Result<Map<String, Value>, CallError> {
        self.request_input_strict(requests, next_state, true).await
    }

    /// Asks the client to sample an LLM (`sampling/createMessage`); returns its result.
    /// Fails with -32021 (2026-07-28) if the client did not declare `sampling`.
    pub async fn sample(&self, params: Value) -> Result<Value, CallError> {
        self.ask_one("sampling/createMessage", params).await
    }

    /// Asks the user for input (`elicitation/create`); returns the `ElicitResult`.
    pub async fn elicit(&self, params: Value) -> Result<Value, CallError> {
        self.ask_one("elicitation/create", params).await
    }

    /// Asks the client for its roots (`roots/list`).
    pub async fn list_roots(&self) -> Result<Value, CallError> {
        self.ask_one("roots/list", json!({})).await
    }

    async fn ask_one(&self, method: &'static str, params: Value) -> Result<Value, CallError> {
        let n = self.0.asked.fetch_add(1, Ordering::Relaxed);
        let request = InputRequest {
            key: format!("{}-{n}", method.replace('/', "-")),
            method,
            params,
        };
        let key = request.key.clone();
        let mut answers = self.request_input_strict(vec![request], None, true).await?;
        answers
            .remove(&key)
            .ok_or_else(|| CallError::Internal("answer missing".into()))
    }

    /// Asks the client several questions at once. Questions needing a capability the client
    /// did not declare are left out (an error only if that leaves none). In a legacy session
    /// they are sent one after the other as server→client requests; in 2026-07-28 the call
    /// ends with an `input_required` result carrying them and `next_state`, unless the retry
    /// already answers every one.
    pub async fn request_input(
        &self,
        requests: Vec<InputRequest>,
        next_state: Option<Value>,
    ) -> Result<Map<String, Value>, CallError> {
        self.request_input_strict(requests, next_state, false).await
    }

    async fn request_input_strict(
        &self,
        requests: Vec<InputRequest>,
        next_state: Option<Value>,
        strict: bool,
    ) -> Result<Map<String, Value>, CallError> {
        let caps = &self.0.client_capabilities;
        let (allowed, refused): (Vec<InputRequest>, Vec<InputRequest>) = requests
            .into_iter()
            .partition(|r| caps.get(r.capability()).is_some());
        if allowed.is_empty() || (strict && !refused.is_empty()) {
            let missing: Map<String, Value> = refused
                .iter()
                .map(|r| (r.capability().to_string(), json!({})))
                .collect();
            let names: Vec<&String> = missing.keys().collect();
            let message = format!("this request needs the client capabilities {names:?}");
            return Err(match self.0.era {
                Era::Modern => CallError::Rpc(
                    RpcError::new(code::MISSING_CLIENT_CAPABILITY, message)
                        .with_data(json!({ "requiredCapabilities": missing })),
                ),
                // No code for it in a session; the same data says what is missing (a
                // gateway in front maps it back to -32021 for a 2026-07-28 client).
                Era::Legacy => CallError::Rpc(
                    RpcError::invalid_params(message)
                        .with_data(json!({ "requiredCapabilities": missing })),
                ),
            });
        }
        let mut answers = Map::new();
        match self.0.era {
            Era::Legacy => {
                let out = self
                    .0
                    .outbound
                    .as_ref()
                    .ok_or(CallError::Internal("no client stream".into()))?;
                for r in allowed {
                    let answer = out.request(r.method, r.params).await?;
                    answers.insert(r.key, answer);
                }
                Ok(answers)
            }
            Era::Modern => {
                let responses = self.0.input_responses.as_ref();
                let mut missing = false;
                for r in &allowed {
                    match responses.and_then(|m| m.get(&r.key)) {
                        Some(v @ Value::Object(_)) => {
                            answers.insert(r.key.clone(), v.clone());
                        }
                        Some(_) => {
                            return Err(CallError::InvalidParams(format!(
                                "`inputResponses.{}` must be a result object",
                                r.key
                            )));
                        }
                        None => missing = true,
                    }
                }
                if missing {
                    Err(CallError::InputRequired {
                        requests: allowed,
                        state: next_state,
                    })
                } else {
                    Ok(answers)
                }
            }
        }
    }
}
