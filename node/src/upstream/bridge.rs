//! Questions across eras: what an upstream asks its client (sampling, elicitation, roots)
//! during a `tools/call`, `prompts/get` or `resources/read` reaches the node's client in the
//! client's era, and the answers go back in the upstream's. `served.rs` runs a call through
//! these parts:
//!
//! | upstream asks by | legacy client (session) | 2026-07-28 client |
//! |---|---|---|
//! | a server→client request on the call's stream (legacy upstream) | [`ask_in_session`]: a server→client request on the client's stream, its answer POSTed back | the call is held ([`HeldCalls`]) and the client gets `input_required` with a state naming it and this node; its retry's answer is POSTed back and the call goes on |
//! | an `input_required` result (2026-07-28 upstream) | asked as server→client requests, then the call is sent again with `inputResponses` and the upstream's `requestState` | passed on, the node's state wrapping the upstream's; the retry is sent to the upstream with its answers |
//!
//! The node's own `requestState` (signed by `protocol/dispatch.rs`, bound to the served name)
//! holds a [`Marker`] under [`STATE_KEY`]. A held call lives while the upstream request does
//! (its `timeoutMs`, which counts the time the client takes): a retry after that, or on a
//! node that restarted, is a clear error (`reason: expired`); a retry that reaches another node
//! of the cluster is forwarded to the node the state names (`http/modern.rs`). When that node
//! is gone (killed, stopped), the node the retry reached continues the call from its state
//! ([`Marker::Held`]: the questions answered before, each as a digest with its answer): it
//! sends the call to the upstream again and answers the same questions, asked in the same
//! order, with the same answers, the last with the retry's — for a call that may run twice (a
//! read, a prompt, a tool marked `readOnlyHint` or `idempotentHint`) whose answers fit in
//! [`MAX_REPLAY_BYTES`]; anything else is an error saying so (`reason: gone`). A question the
//! upstream asks differently this time is asked of the client. With auth on, the state is
//! bound to the client's principal.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::UpstreamError;
use crate::content::context::{Era, InputRequest};
use crate::content::{CallError, ToolCx};
use crate::jsonrpc::{RpcError, code};

/// At most this many rounds of questions in one call (an upstream that keeps asking).
pub const MAX_ROUNDS: u32 = 16;
/// At most this many calls held for 2026-07-28 clients on one node.
pub const MAX_HELD: usize = 10_000;
/// Where the node's part of a bridged call's `requestState` is.
pub const STATE_KEY: &str = "upstreamInput";
/// At most this many bytes of answers (JSON) a held call's state carries for another node to
/// continue it; past them it carries none, and the call is lost with its node.
pub const MAX_REPLAY_BYTES: usize = 32 * 1024;

/// One question of a held call answered by its client: the question's [`digest`] and the
/// answer (a result object).
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub asked: String,
    pub answer: Value,
}

impl Round {
    fn to_json(&self) -> Value {
        json!({ "q": self.asked, "a": self.answer })
    }
    fn of(v: &Value) -> Option<Self> {
        Some(Self {
            asked: v.get("q")?.as_str()?.to_owned(),
            answer: v.get("a").filter(|a| a.is_object())?.clone(),
        })
    }
}

/// What identifies a question an upstream asked (its method and params) across two runs of
/// the same call: 128 bits of SHA-256, hex.
pub fn digest(method: &str, params: &Value) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(&json!([method, params])).unwrap_or_default();
    Sha256::digest(&bytes)[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the node keeps in the `requestState` of a call whose upstream asked for input.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker {
    /// A 2026-07-28 upstream's `input_required`, passed on: the keys it asked and its own
    /// `requestState`.
    Passed {
        upstream: String,
        keys: Vec<String>,
        state: Option<String>,
    },
    /// A legacy upstream's question; its call is held on node `node` (`None` outside a
    /// cluster) under `id`, waiting for the answer under `key` to the question `asked` (its
    /// [`digest`]). `before`: the questions answered before it, in order, which another node
    /// needs to continue the call when `node` is gone (`None`: they did not fit in
    /// [`MAX_REPLAY_BYTES`], or a state of an older node). `by`: the principal the client
    /// authenticated as (auth on), the only one whose retry continues it.
    Held {
        upstream: String,
        node: Option<SocketAddr>,
        id: u64,
        key: String,
        asked: Option<String>,
        before: Option<Vec<Round>>,
        by: Option<String>,
    },
}

impl Marker {
    /// The marker of a verified `requestState`, if it holds one.
    pub fn of(state: Option<&Value>) -> Option<Self> {
        let m = state?.get(STATE_KEY)?;
        let upstream = m.get("upstream")?.as_str()?.to_owned();
        if let Some(id) = m.get("held").and_then(Value::as_u64) {
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
            return Some(Self::Held {
                upstream,
                node: m
                    .get("node")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok()),
                id,
                key: text("key")?,
                asked: text("asked"),
                before: m
                    .get("before")
                    .and_then(Value::as_array)
                    .and_then(|rounds| rounds.iter().map(Round::of).collect()),
                by: text("by"),
            });
        }
        let keys = m
            .get("keys")?
            .as_array()?
            .iter()
            .map(|k| k.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        Some(Self::Passed {
            upstream,
            keys,
            state: m.get("state").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// The state to sign.
    pub fn to_state(&self) -> Value {
        let m = match self {
            Self::Passed {
                upstream,
                keys,
                state,
            } => json!({ "upstream": upstream, "keys": keys, "state": state }),
            Self::Held {
                upstream,
                node,
                id,
                key,
                asked,
                before,
                by,
            } => {
                let mut m = json!({
                    "upstream": upstream,
                    "node": node.map(|a| a.to_string()),
                    "held": id,
                    "key": key,
                });
                if let Some(asked) = asked {
                    m["asked"] = json!(asked);
                }
                if let Some(before) = before {
                    m["before"] = Value::Array(before.iter().map(Round::to_json).collect());
                }
                if let Some(by) = by {
                    m["by"] = json!(by);
                }
                m
            }
        };
        json!({ STATE_KEY: m })
    }
}

/// The node a `requestState` says holds its call, and the call's upstream, when it holds a
/// call.
pub fn held_at(state: &Value) -> Option<(SocketAddr, String)> {
    match Marker::of(Some(state))? {
        Marker::Held { node, upstream, .. } => node.map(|n| (n, upstream)),
        Marker::Passed { .. } => None,
    }
}

/// The JSON-RPC error of a bridged call that cannot go on: -32000 naming the upstream, with
/// `data.reason` (`expired`, `gone`, `unsupported`, `busy`).
pub fn refusal(upstream: &str, reason: &str, message: String) -> CallError {
    CallError::Rpc(
        RpcError::new(
            code::OVERLOADED,
            format!("upstream `{upstream}`: {message}"),
        )
        .with_data(json!({ "upstream": upstream, "reason": reason })),
    )
}

/// A retry of a call held for another principal's client (auth on): refused like a state
/// this node did not issue.
pub fn check_principal(cx: &ToolCx, by: Option<&str>) -> Result<(), CallError> {
    match by {
        Some(by) if cx.principal() != Some(by) => Err(CallError::InvalidParams(
            "`requestState` was issued to another principal".into(),
        )),
        _ => Ok(()),
    }
}

/// The held call's node `node` is gone: the answers to give the upstream when the call is
/// sent again here (the questions answered before, then the retry's answer under `key`), or
/// the error saying why it cannot be continued (`reason: gone`, naming the node). `repeatable`:
/// the call may run twice (it ran up to its question on the node that is gone).
pub fn replay_of(
    cx: &ToolCx,
    upstream: &str,
    node: Option<SocketAddr>,
    key: &str,
    asked: Option<&str>,
    before: Option<&[Round]>,
    repeatable: bool,
) -> Result<Vec<Round>, CallError> {
    let node = node.map(|a| a.to_string()).unwrap_or_default();
    let gone = |why: &str| {
        CallError::Rpc(
            RpcError::new(
                code::OVERLOADED,
                format!(
                    "upstream `{upstream}`: the node holding the call this retry continues \
                     ({node}) is gone, and {why}; call again"
                ),
            )
            .with_data(json!({ "upstream": upstream, "reason": "gone", "node": node })),
        )
    };
    if !repeatable {
        return Err(gone(
            "the call may act twice (its tool is not marked readOnlyHint or idempotentHint), \
             so it is not run again",
        ));
    }
    let (Some(asked), Some(before)) = (asked, before) else {
        return Err(gone(&format!(
            "its state does not carry the answers given before (over {MAX_REPLAY_BYTES} bytes)"
        )));
    };
    let answer = answer_to(cx, key)?;
    let mut rounds = before.to_vec();
    rounds.push(Round {
        asked: asked.to_owned(),
        answer,
    });
    Ok(rounds)
}

/// The retry's answer under `key` (a result object).
fn answer_to(cx: &ToolCx, key: &str) -> Result<Value, CallError> {
    match cx.input_responses().and_then(|m| m.get(key)) {
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(CallError::InvalidParams(format!(
            "`inputResponses.{key}` must be a result object"
        ))),
        None => Err(CallError::InvalidParams(format!(
            "missing `inputResponses.{key}` (the answer the upstream waits for)"
        ))),
    }
}

/// The JSON-RPC `error` object an upstream is answered with when its question failed.
fn error_object(e: &CallError) -> Value {
    if let CallError::Client(v) = e {
        // The client's own error, as it sent it.
        return v.clone();
    }
    let e = e.to_rpc(Era::Legacy);
    let mut o = json!({ "code": e.code, "message": e.message });
    if let Some(d) = e.data {
        o["data"] = d;
    }
    o
}

/// The answer to a question the client cannot answer (it did not declare `capability`), as
/// a client would give it.
fn not_declared(capability: &str) -> Value {
    json!({
        "code": code::METHOD_NOT_FOUND,
        "message": format!("the client did not declare the capability `{capability}`"),
    })
}

fn not_relayed(method: &str) -> Value {
    json!({
        "code": code::METHOD_NOT_FOUND,
        "message": format!("mcpcluster does not relay `{method}` to its clients"),
    })
}

/// Answers a legacy upstream's question by asking a legacy client (a server→client request
/// on its stream, bounded by `limits.clientRequestTimeoutSecs`).
pub fn ask_in_session(
    cx: &ToolCx,
) -> impl Fn(&str, Value) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync + use<> {
    let cx = cx.clone();
    move |method: &str, params: Value| {
        let cx = cx.clone();
        let method = method.to_owned();
        Box::pin(async move {
            let Some(request) = InputRequest::relayed("q", &method, params) else {
                return Err(not_relayed(&method));
            };
            if cx.client_capabilities().get(request.capability()).is_none() {
                return Err(not_declared(request.capability()));
            }
            match cx.request_all(vec![request], None).await {
                Ok(mut answers) => answers
                    .remove("q")
                    .ok_or_else(|| error_object(&CallError::Internal("answer missing".into()))),
                Err(e) => Err(error_object(&e)),
            }
        })
    }
}

/// A legacy upstream's question to a 2026-07-28 client, waiting for the client's retry.
#[derive(Debug)]
pub struct Ask {
    method: String,
    params: Value,
    answer: oneshot::Sender<Result<Value, Value>>,
}

/// Answers a legacy upstream's questions through `tx` (the call's [`Waiting`] gets them).
pub fn ask_through(
    tx: mpsc::Sender<Ask>,
) -> impl Fn(&str, Value) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync {
    move |method: &str, params: Value| {
        let tx = tx.clone();
        let method = method.to_owned();
        Box::pin(async move {
            let (answer, answered) = oneshot::channel();
            let gone = || json!({ "code": code::REQUEST_CANCELLED, "message": "the client's request ended" });
            tx.send(Ask {
                method,
                params,
                answer,
            })
            .await
            .map_err(|_| gone())?;
            answered.await.map_err(|_| gone())?
        })
    }
}

/// Where a held call's progress and log messages go: the 2026-07-28 request that waits for
/// it now (none while it waits for the client's retry).
#[derive(Debug, Clone, Default)]
pub struct Sink(Arc<Mutex<Option<ToolCx>>>);

impl Sink {
    /// A sink to `cx`.
    pub fn to(cx: &ToolCx) -> Self {
        Self(Arc::new(Mutex::new(Some(cx.clone()))))
    }
    /// The request that waits now.
    pub fn get(&self) -> Option<ToolCx> {
        self.0.lock().clone()
    }
    fn set(&self, cx: Option<ToolCx>) {
        *self.0.lock() = cx;
    }
}

/// A call to a legacy upstream for a 2026-07-28 client, which may ask the client: the call
/// (inline until it asks, then in a task of its own), its questions, where its notes go.
pub struct Waiting {
    upstream: String,
    call: Call,
    asks: mpsc::Receiver<Ask>,
    sink: Sink,
    rounds: u32,
    /// The questions answered so far, for the state (`None` once past [`MAX_REPLAY_BYTES`]).
    answered: Option<Vec<Round>>,
    answered_bytes: usize,
    /// Answers given without asking the client, while the upstream asks these questions in
    /// this order (a call continued from its state on another node than the one that held it).
    replay: VecDeque<Round>,
}

impl Waiting {
    /// Keeps `round` for the state, until the answers outgrow [`MAX_REPLAY_BYTES`].
    fn record(&mut self, round: Round) {
        let Some(list) = &mut self.answered else {
            return;
        };
        let bytes = serde_json::to_vec(&round.answer).map_or(usize::MAX, |b| b.len());
        match self.answered_bytes.checked_add(bytes) {
            Some(total) if total <= MAX_REPLAY_BYTES => {
                self.answered_bytes = total;
                list.push(round);
            }
            _ => self.answered = None,
        }
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("upstream", &self.upstream)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

type CallFuture = BoxFuture<'static, Result<Value, UpstreamError>>;

enum Call {
    /// Polled by the request that started it (`None` once moved into a task).
    Inline(Option<CallFuture>),
    /// Spawned when it first asked; aborted (and so cancelled at the upstream) when dropped.
    Spawned(JoinHandle<Result<Value, UpstreamError>>),
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Call::Spawned(task) = self {
            task.abort();
        }
    }
}

impl Call {
    async fn result(&mut self) -> Result<Value, UpstreamError> {
        match self {
            Call::Inline(Some(f)) => f.await,
            Call::Inline(None) => Err(UpstreamError::Protocol("the call moved".into())),
            Call::Spawned(task) => match task.await {
                Ok(r) => r,
                Err(e) => Err(UpstreamError::Protocol(format!(
                    "the call's task ended: {e}"
                ))),
            },
        }
    }
    fn finished(&self) -> bool {
        matches!(self, Call::Spawned(t) if t.is_finished())
    }
}

/// A held call and the question its client must answer (its [`digest`]: `asked`).
struct Held {
    waiting: Waiting,
    ask: Ask,
    key: String,
    asked: String,
}

/// The calls held on this node for 2026-07-28 clients (their upstream asked them something),
/// by id (random, so a state from before a restart never names a newer call); this node's
/// peer address, named in their states. Bounded by [`MAX_HELD`] and by each upstream's
/// `maxConcurrency` (a held call keeps its slot).
#[derive(Default)]
pub struct HeldCalls {
    calls: Mutex<HashMap<u64, Held>>,
    me: OnceLock<SocketAddr>,
}

impl std::fmt::Debug for HeldCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldCalls")
            .field("held", &self.calls.lock().len())
            .field("me", &self.me.get())
            .finish()
    }
}

impl HeldCalls {
    /// This node's address in its cluster (named in the states of the calls it holds).
    pub fn set_me(&self, addr: SocketAddr) {
        let _ = self.me.set(addr);
    }

    /// This node's address in its cluster, once set.
    pub fn me(&self) -> Option<SocketAddr> {
        self.me.get().copied()
    }

    /// How many calls are held.
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts `call` (a request to `upstream` answering its questions through `tx`'s
    /// receiver `asks`) for the 2026-07-28 request `cx`, and waits for its result or its
    /// first question; the questions of `replay` are answered without asking, as long as the
    /// upstream asks them in that order ([`replay_of`]).
    pub async fn run(
        self: &Arc<Self>,
        cx: &ToolCx,
        upstream: &str,
        call: CallFuture,
        asks: mpsc::Receiver<Ask>,
        sink: Sink,
        replay: Vec<Round>,
    ) -> Result<Value, CallError> {
        let waiting = Waiting {
            upstream: upstream.to_owned(),
            call: Call::Inline(Some(call)),
            asks,
            sink,
            rounds: 0,
            answered: Some(Vec::new()),
            answered_bytes: 0,
            replay: replay.into(),
        };
        self.wait(cx, waiting).await
    }

    /// The retry of a held call: the answer under `key` goes to the upstream, then the call
    /// goes on as [`HeldCalls::run`]'s.
    pub async fn resume(
        self: &Arc<Self>,
        cx: &ToolCx,
        upstream: &str,
        node: Option<SocketAddr>,
        id: u64,
        key: &str,
    ) -> Result<Value, CallError> {
        if node.is_some() && node != self.me() {
            // `http/modern.rs` forwards such a retry to `node`; this one was not (this node is
            // not in a cluster, or a peer relayed it here).
            return Err(refusal(
                upstream,
                "gone",
                format!(
                    "the call this retry continues was held by node {}, not this one; call again",
                    node.map(|a| a.to_string()).unwrap_or_default()
                ),
            ));
        }
        let answer = answer_to(cx, key)?;
        let held = {
            let mut calls = self.calls.lock();
            match calls.remove(&id) {
                Some(h) if h.key == key && h.waiting.upstream == upstream => Some(h),
                Some(h) => {
                    calls.insert(id, h);
                    None
                }
                None => None,
            }
        };
        let Some(held) = held else {
            return Err(refusal(
                upstream,
                "expired",
                "the call this retry continues is no longer held (it ended, passed its \
                 timeoutMs, or this node restarted); call again"
                    .into(),
            ));
        };
        let Held {
            mut waiting,
            ask,
            asked,
            ..
        } = held;
        waiting.sink.set(Some(cx.clone()));
        waiting.record(Round {
            asked,
            answer: answer.clone(),
        });
        let _ = ask.answer.send(Ok(answer));
        self.wait(cx, waiting).await
    }

    /// Waits for the call's result, answering a question no client answers at once; at the
    /// first question the client can answer, the call is held and the client gets
    /// `input_required`; one it did not declare the capability for ends the call with -32021.
    async fn wait(self: &Arc<Self>, cx: &ToolCx, mut waiting: Waiting) -> Result<Value, CallError> {
        let upstream = waiting.upstream.clone();
        let named = |e: UpstreamError| CallError::Rpc(e.to_rpc(&upstream));
        loop {
            let ask = tokio::select! {
                r = waiting.call.result() => return r.map_err(named),
                ask = waiting.asks.recv() => ask,
            };
            let Some(ask) = ask else {
                // The call ended (its answer is ready) or gave up asking.
                return waiting.call.result().await.map_err(named);
            };
            let asked = digest(&ask.method, &ask.params);
            if waiting.replay.front().is_some_and(|r| r.asked == asked)
                && waiting.rounds < MAX_ROUNDS
                && let Some(round) = waiting.replay.pop_front()
            {
                // Asked and answered before, on the node that held the call.
                waiting.rounds += 1;
                let _ = ask.answer.send(Ok(round.answer.clone()));
                waiting.record(round);
                continue;
            }
            // Asked otherwise this time (or more): the client answers from here on.
            waiting.replay.clear();
            let Some(request) = InputRequest::relayed("", &ask.method, Value::Null) else {
                let _ = ask.answer.send(Err(not_relayed(&ask.method)));
                continue;
            };
            if cx.client_capabilities().get(request.capability()).is_none() {
                // As for the node's own tools: -32021 to the client; dropping `waiting` cancels
                // the call at the upstream (which asked only because the node declared it).
                return Err(pass_on(
                    cx,
                    vec![request],
                    Marker::Passed {
                        upstream,
                        keys: Vec::new(),
                        state: None,
                    },
                ));
            }
            waiting.rounds += 1;
            if waiting.rounds > MAX_ROUNDS {
                return Err(refusal(
                    &upstream,
                    "unsupported",
                    format!("it asked more than {MAX_ROUNDS} questions in one request"),
                ));
            }
            return self.hold(cx, waiting, ask, asked);
        }
    }

    /// Holds the call (spawned if it was inline) until the client's retry answers `ask`;
    /// the client's `input_required`.
    fn hold(
        self: &Arc<Self>,
        cx: &ToolCx,
        mut waiting: Waiting,
        ask: Ask,
        asked: String,
    ) -> Result<Value, CallError> {
        let upstream = waiting.upstream.clone();
        waiting.sink.set(None);
        if let Call::Inline(f) = &mut waiting.call
            && let Some(f) = f.take()
        {
            waiting.call = Call::Spawned(tokio::spawn(f));
        }
        let key = format!("{upstream}-{}", waiting.rounds);
        let Some(request) = InputRequest::relayed(&key, &ask.method, ask.params.clone()) else {
            return Err(CallError::Internal("a question checked before".into()));
        };
        let before = waiting.answered.clone();
        let id = {
            let mut calls = self.calls.lock();
            calls.retain(|_, h| !h.waiting.call.finished());
            if calls.len() >= MAX_HELD {
                // Dropping `waiting` cancels the call at the upstream.
                return Err(refusal(
                    &upstream,
                    "busy",
                    format!(
                        "{MAX_HELD} calls already wait for their clients' answers on this node"
                    ),
                ));
            }
            let id = loop {
                let id: u64 = rand::random();
                if !calls.contains_key(&id) {
                    break id;
                }
            };
            calls.insert(
                id,
                Held {
                    waiting,
                    ask,
                    key: key.clone(),
                    asked: asked.clone(),
                },
            );
            id
        };
        let marker = Marker::Held {
            upstream,
            node: self.me(),
            id,
            key,
            asked: Some(asked),
            before,
            by: cx.principal().map(str::to_owned),
        };
        Err(CallError::InputRequired {
            requests: vec![request],
            state: Some(marker.to_state()),
        })
    }
}

/// The questions of a 2026-07-28 upstream's `input_required` as the node asks them; one no
/// client answers is an error naming the upstream.
pub fn questions(
    upstream: &str,
    asked: &[(String, String, Value)],
) -> Result<Vec<InputRequest>, CallError> {
    asked
        .iter()
        .map(|(key, method, params)| {
            InputRequest::relayed(key, method, params.clone()).ok_or_else(|| {
                refusal(
                    upstream,
                    "unsupported",
                    format!("it asked for `{method}`, which mcpcluster does not relay to clients"),
                )
            })
        })
        .collect()
}

/// A 2026-07-28 upstream's questions passed to a 2026-07-28 client: `input_required` with
/// `marker` as the state, or -32021 when the client did not declare what one needs.
pub fn pass_on(cx: &ToolCx, requests: Vec<InputRequest>, marker: Marker) -> CallError {
    let missing: Map<String, Value> = requests
        .iter()
        .filter(|r| cx.client_capabilities().get(r.capability()).is_none())
        .map(|r| (r.capability().to_owned(), json!({})))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&String> = missing.keys().collect();
        return CallError::Rpc(
            RpcError::new(
                code::MISSING_CLIENT_CAPABILITY,
                format!("this request needs the client capabilities {names:?}"),
            )
            .with_data(json!({ "requiredCapabilities": missing })),
        );
    }
    CallError::InputRequired {
        requests,
        state: Some(marker.to_state()),
    }
}

/// The `inputResponses` a retry sends a 2026-07-28 upstream: the client's answers to `keys`
/// (each must be there).
pub fn answers_for(cx: &ToolCx, keys: &[String]) -> Result<Map<String, Value>, CallError> {
    let mut out = Map::new();
    for key in keys {
        match cx.input_responses().and_then(|m| m.get(key)) {
            Some(v @ Value::Object(_)) => {
                out.insert(key.clone(), v.clone());
            }
            Some(_) => {
                return Err(CallError::InvalidParams(format!(
                    "`inputResponses.{key}` must be a result object"
                )));
            }
            None => {
                return Err(CallError::InvalidParams(format!(
                    "missing `inputResponses.{key}`"
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_name_their_node() {
        let held = Marker::Held {
            upstream: "u".into(),
            node: Some("10.0.0.1:7000".parse().unwrap_or_else(|_| unreachable!())),
            id: 7,
            key: "u-1".into(),
            asked: Some(digest("elicitation/create", &json!({"message": "?"}))),
            before: Some(vec![Round {
                asked: digest("sampling/createMessage", &json!({})),
                answer: json!({"role": "assistant"}),
            }]),
            by: Some("ab12".into()),
        };
        let state = held.to_state();
        assert_eq!(Marker::of(Some(&state)), Some(held));
        assert_eq!(
            held_at(&state).map(|(a, u)| format!("{u}@{a}")).as_deref(),
            Some("u@10.0.0.1:7000")
        );
        let passed = Marker::Passed {
            upstream: "u".into(),
            keys: vec!["a".into(), "b".into()],
            state: Some("s1".into()),
        };
        let state = passed.to_state();
        assert_eq!(Marker::of(Some(&state)), Some(passed));
        assert_eq!(held_at(&state), None);
        assert_eq!(Marker::of(Some(&json!({"stage": 1}))), None);
        assert_eq!(Marker::of(None), None);
    }

    fn waiting() -> Waiting {
        let (_tx, asks) = mpsc::channel(1);
        Waiting {
            upstream: "u".into(),
            call: Call::Inline(None),
            asks,
            sink: Sink::default(),
            rounds: 0,
            answered: Some(Vec::new()),
            answered_bytes: 0,
            replay: VecDeque::new(),
        }
    }

    #[test]
    fn the_answers_a_state_carries_are_bounded() {
        let mut w = waiting();
        let round = |text: &str| Round {
            asked: digest("sampling/createMessage", &json!({})),
            answer: json!({"content": {"type": "text", "text": text}}),
        };
        w.record(round("a"));
        assert_eq!(w.answered.as_ref().map(Vec::len), Some(1));
        // One more answer past the bound: the state carries none from then on.
        w.record(round(&"x".repeat(MAX_REPLAY_BYTES)));
        assert_eq!(w.answered, None);
        w.record(round("b"));
        assert_eq!(w.answered, None);
        let held = Marker::Held {
            upstream: "u".into(),
            node: None,
            id: 1,
            key: "u-3".into(),
            asked: Some("q".into()),
            before: None,
            by: None,
        };
        assert_eq!(Marker::of(Some(&held.to_state())), Some(held));
        // The same question gets the same digest; another, another.
        assert_eq!(
            digest("elicitation/create", &json!({"message": "a", "n": 1})),
            digest("elicitation/create", &json!({"n": 1, "message": "a"}))
        );
        assert_ne!(
            digest("elicitation/create", &json!({"message": "a"})),
            digest("elicitation/create", &json!({"message": "b"}))
        );
    }

    #[test]
    fn a_call_whose_node_is_gone_is_continued_only_when_it_can_be() {
        let node: Option<SocketAddr> = "10.0.0.1:7000".parse().ok();
        let before = vec![Round {
            asked: "q0".into(),
            answer: json!({"action": "accept"}),
        }];
        let answered = crate::content::context::ToolCxBuilder::new(Era::Modern)
            .input_responses(json!({"u-2": {"action": "decline"}}).as_object().cloned())
            .build();
        let rounds = replay_of(&answered, "u", node, "u-2", Some("q1"), Some(&before), true);
        assert!(
            matches!(&rounds, Ok(r) if r.len() == 2 && r[1].asked == "q1" && r[1].answer["action"] == "decline"),
            "{rounds:?}"
        );
        let gone = |r: Result<Vec<Round>, CallError>, says: &str| match r {
            Err(CallError::Rpc(e)) => {
                assert_eq!(e.code, code::OVERLOADED);
                let data = e.data.unwrap_or_default();
                assert_eq!(data["reason"], "gone");
                assert_eq!(data["node"], "10.0.0.1:7000");
                assert!(e.message.contains(says), "{}", e.message);
            }
            other => panic!("{other:?}"),
        };
        gone(
            replay_of(
                &answered,
                "u",
                node,
                "u-2",
                Some("q1"),
                Some(&before),
                false,
            ),
            "not run again",
        );
        gone(
            replay_of(&answered, "u", node, "u-2", Some("q1"), None, true),
            "does not carry the answers",
        );
        gone(
            replay_of(&answered, "u", node, "u-2", None, Some(&before), true),
            "does not carry the answers",
        );
        let missing = replay_of(&answered, "u", node, "u-9", Some("q1"), Some(&before), true);
        assert!(
            matches!(&missing, Err(CallError::InvalidParams(m)) if m.contains("u-9")),
            "{missing:?}"
        );
    }

    #[test]
    fn a_state_bound_to_a_principal_is_refused_to_another() {
        let cx = |p: Option<&str>| {
            crate::content::context::ToolCxBuilder::new(Era::Modern)
                .principal(p.map(str::to_owned))
                .build()
        };
        assert!(check_principal(&cx(Some("aa")), Some("aa")).is_ok());
        assert!(check_principal(&cx(None), None).is_ok());
        assert!(check_principal(&cx(Some("aa")), None).is_ok());
        for other in [cx(Some("bb")), cx(None)] {
            let r = check_principal(&other, Some("aa"));
            assert!(
                matches!(&r, Err(CallError::InvalidParams(m)) if m.contains("another principal")),
                "{r:?}"
            );
        }
    }

    #[test]
    fn questions_no_client_answers_are_refused() {
        let ok = questions("u", &[("k".into(), "elicitation/create".into(), json!({}))]);
        assert!(ok.is_ok_and(|q| q.len() == 1 && q[0].key == "k"));
        let bad = questions("u", &[("k".into(), "tools/call".into(), json!({}))]);
        assert!(matches!(bad, Err(CallError::Rpc(e)) if e.message.contains("tools/call")));
    }
}
