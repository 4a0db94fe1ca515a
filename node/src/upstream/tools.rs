//! [`Upstream`]: one upstream server as the node serves it: its client, its tools under the
//! `<name>__` prefix (fetched page by page, refreshed), and calls to them.
//!
//! Names: an upstream tool `t` of upstream `u` is served as `u__t`. Upstream names are DNS
//! labels (no `_`), so the first `__` of a served name ends the upstream's name. A built-in
//! tool (packs, configuration, library code) whose name equals a prefixed one wins: the
//! upstream's is left out of the list (warned) and calls go to the built-in. A tool name an
//! upstream lists twice is served once (the first).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use super::client::Client;
use super::error::UpstreamError;
use crate::content::{ChangeEvent, ToolCx};

/// Most pages of `tools/list` followed in one fetch.
pub const MAX_PAGES: usize = 100;
/// Most tools taken from one upstream.
pub const MAX_TOOLS: usize = 10_000;
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

/// How the node tells its clients that the served tool list changed.
pub type AnnounceFn = Arc<dyn Fn(ChangeEvent) + Send + Sync>;

/// One upstream as the node serves it.
#[derive(Debug)]
pub struct Upstream {
    client: Client,
    prefix: String,
    builtin: Arc<HashSet<String>>,
    tools: RwLock<Arc<Vec<Value>>>,
    refresh: Duration,
}

impl Upstream {
    /// An upstream whose tools are not fetched yet; `builtin` holds the names that win.
    pub fn new(client: Client, refresh: Duration, builtin: Arc<HashSet<String>>) -> Self {
        Self {
            prefix: format!("{}{}", client.name(), mcpcluster_api::UPSTREAM_SEPARATOR),
            client,
            builtin,
            tools: RwLock::new(Arc::new(Vec::new())),
            refresh,
        }
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        self.client.name()
    }

    /// The upstream tool a served name stands for, when it has this upstream's prefix.
    pub fn tool_name<'a>(&self, served: &'a str) -> Option<&'a str> {
        served
            .strip_prefix(self.prefix.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The tools as served (prefixed), as last fetched.
    pub fn tools(&self) -> Arc<Vec<Value>> {
        self.tools.read().clone()
    }

    /// Calls upstream tool `tool` (unprefixed) with `arguments`; the result as the upstream
    /// sent it. When the client asked for progress, the upstream is asked too (with a token of
    /// the node's) and its progress reaches the client under the client's token; log messages
    /// on the call's stream reach the client as its logging level allows.
    pub async fn call_tool(
        &self,
        cx: &ToolCx,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let mut params = json!({ "name": tool, "arguments": arguments });
        let token = cx.wants_progress().then(|| self.client.progress_token());
        if let Some(token) = token {
            params["_meta"] = json!({ "progressToken": token });
        }
        let relay = |method: &str, params: &Value| relay_note(cx, token, method, params);
        self.client
            .request_with("tools/call", params, Some(&relay))
            .await
    }

    /// Every page of the upstream's `tools/list` (at most [`MAX_PAGES`] pages, [`MAX_TOOLS`]
    /// tools), unprefixed.
    pub async fn fetch(&self) -> Result<Vec<Value>, UpstreamError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let mut page = self.client.request("tools/list", params).await?;
            match page.get_mut("tools").map(Value::take) {
                Some(Value::Array(items)) => tools.extend(items),
                _ => {
                    return Err(UpstreamError::Protocol(
                        "`tools/list` answered without a `tools` array".into(),
                    ));
                }
            }
            if tools.len() > MAX_TOOLS {
                return Err(UpstreamError::Protocol(format!(
                    "more than {MAX_TOOLS} tools"
                )));
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => {
                    if !seen.insert(next.to_owned()) {
                        return Err(UpstreamError::Protocol(format!(
                            "`tools/list` returned cursor `{next}` twice"
                        )));
                    }
                    cursor = Some(next.to_owned());
                }
                _ => return Ok(tools),
            }
        }
        Err(UpstreamError::Protocol(format!(
            "`tools/list` had more than {MAX_PAGES} pages"
        )))
    }

    /// The served form of an upstream's list: prefixed names, built-in names and repeats
    /// left out (warned), entries without a string `name` dropped.
    pub fn federate(&self, raw: Vec<Value>) -> Vec<Value> {
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for mut tool in raw {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                tracing::warn!(upstream = %self.name(), "a tool without a name is left out");
                continue;
            };
            let served = format!("{}{name}", self.prefix);
            if self.builtin.contains(&served) {
                tracing::warn!(upstream = %self.name(), tool = %served, "a built-in tool has this name; the upstream's is not served");
                continue;
            }
            if !names.insert(served.clone()) {
                tracing::warn!(upstream = %self.name(), tool = %served, "listed twice; served once");
                continue;
            }
            tool["name"] = Value::String(served);
            out.push(tool);
        }
        out
    }

    /// Fetches the list and keeps it; whether it changed.
    pub async fn refresh(&self) -> Result<bool, UpstreamError> {
        let tools = self.federate(self.fetch().await?);
        self.client.metrics().tools(tools.len());
        let mut current = self.tools.write();
        if **current == tools {
            return Ok(false);
        }
        *current = Arc::new(tools);
        Ok(true)
    }

    /// Keeps the tool list fresh until aborted: fetched now, then every `toolsRefreshSecs` or
    /// as soon as the upstream announces a change; while fetches fail, again after 1 s,
    /// doubling up to 30 s (never later than the interval). A change is announced to this
    /// node's clients (every node refreshes for itself, so peers are not told).
    pub async fn run(self: Arc<Self>, announce: AnnounceFn) {
        let mut retry = Duration::from_secs(1);
        loop {
            let wait = match self.refresh().await {
                Ok(changed) => {
                    retry = Duration::from_secs(1);
                    if changed {
                        tracing::info!(upstream = %self.name(), tools = self.tools().len(), "upstream tool list changed");
                        announce(ChangeEvent::ToolsListChanged);
                    }
                    self.refresh
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.name(), error = %e, "cannot list the upstream's tools");
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
        self.client.close(within).await;
    }

    /// Holds the upstream's standalone stream (its `list_changed` notifications).
    pub async fn listen(self: Arc<Self>) {
        self.client.listen().await;
    }
}
