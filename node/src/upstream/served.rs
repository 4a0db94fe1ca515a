//! [`Upstream`]: one upstream server as the node serves it: its client, its four lists
//! (fetched page by page, refreshed, see `listing.rs`), and the requests sent to it (tool calls,
//! resource reads, prompts).
//!
//! Names: an upstream tool or prompt `t` of upstream `u` is served as `u__t` (or under the
//! upstream's configured `prefix`, which may be empty; where prefixes overlap, `mod.rs`'s
//! `route` sends a name to the upstream that lists it, else to the longest prefix). A
//! built-in tool whose name equals a prefixed one wins: the upstream's is left out of the list
//! (warned) and calls go to the built-in (prompts: the same, decided in `mod.rs` when lists are
//! merged). A name an upstream lists twice is served once (the first). Resources and templates
//! are kept as the upstream wrote them; how their URIs are served is `resources.rs`'s.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use super::bridge::{self, HeldCalls, Marker, Sink};
use super::client::{Client, Extra, Whose};
use super::error::{ErrorKind, UpstreamError};
use super::listing::{self, Kind};
use super::modern;
use crate::content::context::Era;
use crate::content::{CallError, ChangeEvent, ToolCx};

/// Longest pause between fetches while they fail.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// An upstream's notification on a call's stream, passed to the client: progress for the
/// node's token `token`, and log messages.
fn relay_note(cx: &ToolCx, token: Option<u64>, method: &str, params: &Value) {
    match method {
        "notifications/progress" => {
            if token.is_none() || params.get("progressToken") != Some(&json!(token)) {
                return;
            }
            let Some(progress) = params.get("progress").and_then(Value::as_f64) else {
                return;
            };
            cx.progress(
                progress,
                params.get("total").and_then(Value::as_f64),
                params.get("message").and_then(Value::as_str),
            );
        }
        "notifications/message" => {
            let Some(level) = params.get("level").and_then(Value::as_str) else {
                return;
            };
            cx.log(
                level,
                params.get("logger").and_then(Value::as_str),
                params.get("data").cloned().unwrap_or(Value::Null),
            );
        }
        _ => {}
    }
}

/// A legacy upstream's refusal for want of a client capability — -32602 whose `data` names
/// `requiredCapabilities` (a legacy session has no code for it; mcpcluster's own nodes say
/// so) — is, for a 2026-07-28 client, the -32021 it would get from a 2026-07-28 server.
fn missing_capability(e: CallError) -> CallError {
    match e {
        CallError::Rpc(mut e)
            if e.code == crate::jsonrpc::code::INVALID_PARAMS
                && e.data.as_ref().is_some_and(|d| {
                    d.get("requiredCapabilities").is_some_and(Value::is_object)
                }) =>
        {
            e.code = crate::jsonrpc::code::MISSING_CLIENT_CAPABILITY;
            CallError::Rpc(e)
        }
        e => e,
    }
}

/// How the node tells its clients that a served list changed.
pub type AnnounceFn = Arc<dyn Fn(ChangeEvent) + Send + Sync>;

/// One upstream as the node serves it.
#[derive(Debug)]
pub struct Upstream {
    client: Arc<Client>,
    prefix: String,
    builtin: Arc<HashSet<String>>,
    /// Per [`Kind`]: tools and prompts as served (prefixed), resources and templates as the
    /// upstream wrote them; as last fetched.
    lists: [RwLock<Arc<Vec<Value>>>; 4],
    /// The `uri` of every resource in `lists[Resources]`.
    uris: RwLock<Arc<HashSet<String>>>,
    refresh: Duration,
    /// Calls held for 2026-07-28 clients (the node's, shared by its upstreams).
    held: Arc<HeldCalls>,
}

impl Upstream {
    /// An upstream whose lists are not fetched yet, its tools and prompts served under
    /// `prefix`; `builtin` holds the tool names that win, `held` the calls held for 2026-07-28
    /// clients.
    pub fn new(
        client: Client,
        prefix: String,
        refresh: Duration,
        builtin: Arc<HashSet<String>>,
        held: Arc<HeldCalls>,
    ) -> Self {
        Self {
            held,
            prefix,
            client: client.into_arc(),
            builtin,
            lists: Default::default(),
            uris: Default::default(),
            refresh,
        }
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        self.client.name()
    }

    /// This node's client of the upstream.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether the upstream lists template `uri_template` exactly (as it wrote it).
    pub fn lists_template(&self, uri_template: &str) -> bool {
        self.list(Kind::Templates)
            .iter()
            .any(|t| t.get("uriTemplate").and_then(Value::as_str) == Some(uri_template))
    }

    /// `completion/complete` with `params` as the client sent them but `reference` (the
    /// prompt's or resource's `ref`, as the upstream knows it); the result as the upstream
    /// sent it.
    pub async fn complete(
        &self,
        mut params: Map<String, Value>,
        reference: Value,
        whose: Whose,
    ) -> Result<Value, UpstreamError> {
        params.remove("_meta");
        params.insert("ref".into(), reference);
        self.client
            .request_full(
                "completion/complete",
                Value::Object(params),
                None,
                None,
                Vec::new(),
                whose,
            )
            .await
    }

    /// The upstream's tool or prompt a served name stands for, when it has this upstream's
    /// prefix.
    pub fn tool_name<'a>(&self, served: &'a str) -> Option<&'a str> {
        served
            .strip_prefix(self.prefix.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The length of the prefix its tool and prompt names are served under.
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    /// Whether it lists a tool or prompt served as `served` (as last fetched).
    pub fn lists_name(&self, served: &str) -> bool {
        [Kind::Tools, Kind::Prompts].into_iter().any(|kind| {
            self.list(kind)
                .iter()
                .any(|e| e.get("name").and_then(Value::as_str) == Some(served))
        })
    }

    /// The tools as served (prefixed), as last fetched.
    pub fn tools(&self) -> Arc<Vec<Value>> {
        self.list(Kind::Tools)
    }

    /// A list as kept (see `Upstream::lists`), as last fetched.
    pub fn list(&self, kind: Kind) -> Arc<Vec<Value>> {
        self.lists[kind.index()].read().clone()
    }

    /// Whether the upstream listed a resource with exactly this URI.
    pub fn lists_uri(&self, uri: &str) -> bool {
        self.uris.read().contains(uri)
    }

    /// Calls upstream tool `tool` (unprefixed) with `arguments`; the result as the upstream
    /// sent it. When the client asked for progress, the upstream is asked too (with a token of
    /// the node's) and its progress reaches the client under the client's token; log messages
    /// on the call's stream reach the client as its logging level allows; what the upstream
    /// asks the client reaches it in its era (`bridge.rs`). Errors name the upstream. Sent in
    /// `whose` session with the upstream.
    pub async fn call_tool(
        self: &Arc<Self>,
        cx: &ToolCx,
        whose: Whose,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, CallError> {
        // A 2026-07-28 upstream wants `Mcp-Param-*` for arguments its schema marks.
        let served = format!("{}{tool}", self.prefix);
        let extra = self
            .tools()
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(served.as_str()))
            .map(|t| modern::param_headers(t.get("inputSchema"), &arguments))
            .unwrap_or_default();
        self.relayed_with(
            cx,
            whose,
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
            extra,
        )
        .await
    }

    /// Reads resource `uri` (as the upstream knows it); the result as the upstream sent it.
    pub async fn read_resource(
        self: &Arc<Self>,
        cx: &ToolCx,
        whose: Whose,
        uri: &str,
    ) -> Result<Value, CallError> {
        self.relayed_with(
            cx,
            whose,
            "resources/read",
            json!({ "uri": uri }),
            Vec::new(),
        )
        .await
    }

    /// Gets prompt `prompt` (unprefixed) with `arguments`; the result as the upstream sent it.
    pub async fn get_prompt(
        self: &Arc<Self>,
        cx: &ToolCx,
        whose: Whose,
        prompt: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, CallError> {
        self.relayed_with(
            cx,
            whose,
            "prompts/get",
            json!({ "name": prompt, "arguments": arguments }),
            Vec::new(),
        )
        .await
    }

    /// Sends a request whose progress and log messages reach the client (see
    /// [`Upstream::call_tool`]) in `whose` session, with `extra` headers. The client's log level and the client
    /// capabilities the node relays go in `_meta` (a 2026-07-28 upstream reads them there;
    /// the client drops them for a legacy one, which is told the level with
    /// `logging/setLevel`).
    ///
    /// Questions (`bridge.rs`): a legacy client is asked on its stream, and a 2026-07-28
    /// upstream's `input_required` is answered that way and sent again, at most
    /// [`bridge::MAX_ROUNDS`] times; a 2026-07-28 client gets `input_required` (an upstream's
    /// passed on, or a legacy upstream's question while its call is held), and its retry —
    /// whose verified `requestState` holds the node's [`Marker`] — continues the call.
    async fn relayed_with(
        self: &Arc<Self>,
        cx: &ToolCx,
        whose: Whose,
        method: &str,
        mut params: Value,
        extra: Extra,
    ) -> Result<Value, CallError> {
        let named = |e: UpstreamError| CallError::Rpc(e.to_rpc(self.name()));
        // A retry continuing a call held on a node that is gone: sent again here, the
        // questions answered before answered from its state (`bridge::replay_of`).
        let mut replay = Vec::new();
        match Marker::of(cx.request_state()) {
            Some(Marker::Held {
                upstream,
                node,
                id,
                key,
                asked,
                before,
                by,
            }) if upstream == self.name() => {
                bridge::check_principal(cx, by.as_deref())?;
                if node.is_none() || node == self.held.me() {
                    return self.held.resume(cx, &upstream, node, id, &key).await;
                }
                // `http/modern.rs` forwards a retry to the node holding its call, and lets it
                // through only when that node is gone.
                replay = bridge::replay_of(
                    cx,
                    &upstream,
                    node,
                    &key,
                    asked.as_deref(),
                    before.as_deref(),
                    self.may_repeat(method, &params),
                )?;
                tracing::info!(upstream = %upstream, node = ?node, rounds = replay.len(), "continuing a call held on a node that is gone");
            }
            Some(Marker::Passed {
                upstream,
                keys,
                state,
            }) if upstream == self.name() => {
                params["inputResponses"] = Value::Object(bridge::answers_for(cx, &keys)?);
                if let Some(state) = state {
                    params["requestState"] = json!(state);
                }
            }
            _ => {}
        }
        let token = cx.wants_progress().then(|| self.client.progress_token());
        let mut meta = serde_json::Map::new();
        if let Some(token) = token {
            meta.insert("progressToken".into(), json!(token));
        }
        if let Some(level) = cx.log_level() {
            meta.insert(modern::META_LOG_LEVEL.into(), json!(level));
        }
        meta.insert(
            modern::META_CLIENT_CAPABILITIES.into(),
            modern::relayed_capabilities(cx.client_capabilities()),
        );
        params["_meta"] = Value::Object(meta);
        for _ in 0..=bridge::MAX_ROUNDS {
            let result = match cx.era() {
                Era::Legacy => {
                    let relay =
                        |method: &str, params: &Value| relay_note(cx, token, method, params);
                    let asks = bridge::ask_in_session(cx);
                    self.client
                        .request_full(
                            method,
                            params.clone(),
                            Some(&relay),
                            Some(&asks),
                            extra.clone(),
                            whose.clone(),
                        )
                        .await
                        .map_err(named)?
                }
                Era::Modern => self
                    .for_modern(
                        cx,
                        whose.clone(),
                        token,
                        method,
                        params.clone(),
                        extra.clone(),
                        std::mem::take(&mut replay),
                    )
                    .await
                    .map_err(missing_capability)?,
            };
            let Some(input) = modern::input_required(&result).map_err(named)? else {
                return Ok(result);
            };
            let requests = bridge::questions(self.name(), &input.requests)?;
            if cx.era() == Era::Modern {
                let marker = Marker::Passed {
                    upstream: self.name().to_owned(),
                    keys: requests.iter().map(|r| r.key.clone()).collect(),
                    state: input.state,
                };
                return Err(bridge::pass_on(cx, requests, marker));
            }
            let answers = cx.request_all(requests, None).await?;
            params["inputResponses"] = Value::Object(answers);
            match input.state {
                Some(state) => params["requestState"] = json!(state),
                None => {
                    if let Value::Object(p) = &mut params {
                        p.remove("requestState");
                    }
                }
            }
        }
        Err(bridge::refusal(
            self.name(),
            "unsupported",
            format!(
                "it asked for input more than {} times in one request",
                bridge::MAX_ROUNDS
            ),
        ))
    }

    /// Whether request `method` with `params` (as sent to the upstream) may run twice: a read,
    /// a prompt, or a call of a tool the upstream lists as `readOnlyHint` or `idempotentHint`
    /// (as `http/repeat.rs` decides for a relayed call).
    fn may_repeat(&self, method: &str, params: &Value) -> bool {
        if method != "tools/call" {
            return true;
        }
        let Some(tool) = params.get("name").and_then(Value::as_str) else {
            return false;
        };
        let served = format!("{}{tool}", self.prefix);
        let says = |a: &Value, hint: &str| a.get(hint) == Some(&Value::Bool(true));
        self.tools()
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(served.as_str()))
            .and_then(|t| t.get("annotations"))
            .is_some_and(|a| says(a, "readOnlyHint") || says(a, "idempotentHint"))
    }

    /// A request for a 2026-07-28 client: in a future of its own, so that when a legacy
    /// upstream asks the client something the call can be held (`bridge::HeldCalls`) while
    /// the client answers with a retry; its notes go to whichever request waits for it.
    #[allow(clippy::too_many_arguments)]
    async fn for_modern(
        self: &Arc<Self>,
        cx: &ToolCx,
        whose: Whose,
        token: Option<u64>,
        method: &str,
        params: Value,
        extra: Extra,
        replay: Vec<bridge::Round>,
    ) -> Result<Value, CallError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let sink = Sink::to(cx);
        let notes = sink.clone();
        let me = self.clone();
        let method = method.to_owned();
        let call = Box::pin(async move {
            let relay = move |method: &str, params: &Value| {
                if let Some(cx) = notes.get() {
                    relay_note(&cx, token, method, params);
                }
            };
            let asks = bridge::ask_through(tx);
            me.client
                .request_full(&method, params, Some(&relay), Some(&asks), extra, whose)
                .await
        });
        self.held.run(cx, self.name(), call, rx, sink, replay).await
    }

    /// The served form of an upstream's tool or prompt list: prefixed names, built-in tool
    /// names and repeats left out (warned), entries without a string `name` dropped.
    fn prefixed(&self, kind: Kind, raw: Vec<Value>) -> Vec<Value> {
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for mut entry in raw {
            let Some(name) = entry.get("name").and_then(Value::as_str) else {
                tracing::warn!(upstream = %self.name(), list = kind.key(), "an entry without a name is left out");
                continue;
            };
            let served = format!("{}{name}", self.prefix);
            if kind == Kind::Tools && self.builtin.contains(&served) {
                tracing::warn!(upstream = %self.name(), tool = %served, "a built-in tool has this name; the upstream's is not served");
                continue;
            }
            if !names.insert(served.clone()) {
                tracing::warn!(upstream = %self.name(), list = kind.key(), name = %served, "listed twice; served once");
                continue;
            }
            entry["name"] = Value::String(served);
            out.push(entry);
        }
        out
    }

    /// Resources or templates as kept: entries without a string `uri` (`uriTemplate`) and
    /// repeats left out.
    fn by_uri(&self, kind: Kind, raw: Vec<Value>) -> Vec<Value> {
        let field = if kind == Kind::Templates {
            "uriTemplate"
        } else {
            "uri"
        };
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for entry in raw {
            let Some(uri) = entry.get(field).and_then(Value::as_str) else {
                tracing::warn!(upstream = %self.name(), list = kind.key(), "an entry without `{field}` is left out");
                continue;
            };
            if !seen.insert(uri.to_owned()) {
                tracing::warn!(upstream = %self.name(), list = kind.key(), uri, "listed twice; served once");
                continue;
            }
            out.push(entry);
        }
        out
    }

    /// Fetches one list and keeps it; whether it changed. A list whose capability the
    /// upstream did not announce is empty without asking (tools are always asked for).
    async fn refresh_one(&self, kind: Kind) -> Result<bool, UpstreamError> {
        let kept = if kind != Kind::Tools && !self.client.offers(kind.capability()) {
            Vec::new()
        } else {
            let raw = listing::fetch(&self.client, kind).await?;
            match kind {
                Kind::Tools | Kind::Prompts => self.prefixed(kind, raw),
                Kind::Resources | Kind::Templates => self.by_uri(kind, raw),
            }
        };
        if kind == Kind::Tools {
            self.client.metrics().tools(kept.len());
        }
        let mut current = self.lists[kind.index()].write();
        if **current == kept {
            return Ok(false);
        }
        if kind == Kind::Resources {
            let uris = kept
                .iter()
                .filter_map(|r| r.get("uri").and_then(Value::as_str).map(str::to_owned))
                .collect();
            *self.uris.write() = Arc::new(uris);
        }
        *current = Arc::new(kept);
        Ok(true)
    }

    /// Fetches every list and keeps those fetched; the kinds that changed, and the first
    /// error (the lists that failed keep their last contents).
    pub async fn refresh(&self) -> (Vec<Kind>, Option<UpstreamError>) {
        let mut changed = Vec::new();
        let mut error = None;
        for kind in Kind::ALL {
            match self.refresh_one(kind).await {
                Ok(true) => changed.push(kind),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(upstream = %self.name(), list = kind.key(), error = %e, "cannot list the upstream's {}", kind.key());
                    // Unreachable, slow or marked down: the other lists would fail the same way.
                    let gone = matches!(
                        e.kind(),
                        ErrorKind::unreachable | ErrorKind::timeout | ErrorKind::down
                    );
                    error.get_or_insert(e);
                    if gone {
                        break;
                    }
                }
            }
        }
        (changed, error)
    }

    /// Keeps the lists fresh until aborted: fetched now, then every `toolsRefreshSecs` or as
    /// soon as the upstream announces a change; while fetches fail, again after 1 s, doubling
    /// up to 30 s (never later than the interval). A change is announced to this node's
    /// clients (every node refreshes for itself, so peers are not told).
    pub async fn run(self: Arc<Self>, announce: AnnounceFn) {
        let mut retry = Duration::from_secs(1);
        loop {
            let (changed, error) = self.refresh().await;
            let mut told = Vec::new();
            for kind in changed {
                tracing::info!(upstream = %self.name(), list = kind.key(), entries = self.list(kind).len(), "upstream list changed");
                let event = kind.change();
                if !told.contains(&event) {
                    told.push(event.clone());
                    announce(event);
                }
            }
            let wait = match error {
                None => {
                    retry = Duration::from_secs(1);
                    self.refresh
                }
                Some(_) => {
                    let wait = retry.min(self.refresh);
                    retry = (retry * 2).min(MAX_RETRY);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.client.list_changed() => {}
            }
        }
    }

    /// Ends this node's session with the upstream.
    pub async fn close(&self, within: Duration) {
        self.client.stop_own_streams();
        self.client.close(within).await;
    }

    /// Holds the upstream's standalone stream (its `list_changed` notifications).
    pub async fn listen(self: Arc<Self>) {
        self.client.listen().await;
    }
}
