//! MCP servers behind the node ("upstreams", configuration section `upstreams:`): their tools,
//! resources, resource templates and prompts are served beside the node's own (tools and
//! prompts prefixed, resources by URI), and requests for them are forwarded, for clients of
//! both eras (the method table in `protocol/dispatch.rs` asks [`Upstreams`]).
//!
//! - [`client`]: the node's session with one upstream (2025-11-25 Streamable HTTP).
//! - [`kept`]: what that session keeps for the node's clients (subscriptions, logging level).
//! - [`modern`]: speaking to a 2026-07-28 upstream; detecting the era (`era: auto`).
//! - [`served`]: one upstream as served: its lists, refresh, calls, reads, prompts.
//! - [`listing`]: the four lists and fetching one page by page.
//! - [`resources`]: how upstream resource URIs are served and where a read goes.
//! - [`pages`]: the node's merged lists in pages, cursors across upstreams.
//! - [`gate`]: what a request passes first: the circuit breaker ([`breaker`]), the
//!   `maxConcurrency` slots and the `maxQueued` queue; [`client`]'s health checks probe it.
//! - [`bridge`]: questions across eras (server→client requests, `input_required`), the
//!   calls held for 2026-07-28 clients.
//! - [`headers`]: the configured headers, plain or read from Secret files (and re-read).
//! - [`hooks`]: how a client session's own upstream stream reaches that client (the node's).
//! - [`error`]: why a request failed, as the JSON-RPC error a client gets.
//! - [`sse`]: reading an upstream's event stream.
//! - [`metrics`]: the `mcp_upstream_*` metrics; [`report`]: each upstream's health for the
//!   admin API (`/cluster`'s `upstreams`).
//!
//! Passed through: `completion/complete` of an upstream's prompt or template
//! ([`Upstreams::route_reference`]), `resources/subscribe`/`unsubscribe` (and the upstream's
//! `notifications/resources/updated` back to this node's subscribed sessions; a 2026-07-28
//! `subscriptions/listen` stream's upstream URIs too, while it lasts: [`Upstreams::hold`]), and
//! `logging/setLevel` ([`Upstreams::set_level`]).
//!
//! Upstreams of either era (`era: legacy | 2026-07-28 | auto`, `modern.rs`) serve clients of
//! either era: the node is the upstream's client in the upstream's era.
//!
//! What an upstream asks its client (sampling, elicitation, roots) reaches the node's client
//! in the client's era, and the answer goes back in the upstream's: [`bridge`].
//!
//! Sessions (`sessions: perClient | shared`, `client.rs`): the node's own session with each
//! upstream (lists, pings, the standalone stream; with `shared` the subscriptions too), and
//! with `perClient` (the default) each legacy client session's own, kept in its replicated
//! record, carrying its subscriptions, its standalone stream held by the session's owner while
//! it needs one ([`Upstreams::session_ended`] / [`Upstreams::session_left`] end or close them
//! with it, [`Upstreams::adopt`] opens them on a new owner), and one per capability set
//! 2026-07-28 clients declare.

pub mod breaker;
pub mod bridge;
pub mod client;
pub mod error;
pub mod gate;
pub mod headers;
pub mod hooks;
pub mod kept;
pub mod listing;
pub mod metrics;
pub mod modern;
pub mod pages;
pub mod report;
pub mod resources;
pub mod served;
pub mod sse;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mcpcluster_api::UpstreamConfig;
use serde_json::Value;

pub use client::Client;
pub use error::UpstreamError;
pub use listing::Kind;
pub use metrics::UpstreamMetrics;
pub use served::{AnnounceFn, Upstream};

/// Every configured upstream, in configuration order.
#[derive(Debug, Default)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    /// Calls held for 2026-07-28 clients whose legacy upstream asked them something.
    held: Arc<bridge::HeldCalls>,
}

impl Upstreams {
    /// The upstreams of a validated configuration (each `url` resolved); `builtin` are the
    /// node's own tool names (they win over a prefixed upstream name); Secret-held header
    /// values are read from under `secrets_dir`. An entry whose client cannot be built is
    /// left out (logged); validation refuses those before this runs.
    pub fn new(
        configs: &[UpstreamConfig],
        builtin: HashSet<String>,
        secrets_dir: &std::path::Path,
        metrics: &UpstreamMetrics,
    ) -> Self {
        let builtin = Arc::new(builtin);
        let held = Arc::new(bridge::HeldCalls::default());
        let list = configs
            .iter()
            .filter_map(|c| match Client::new(c, secrets_dir, metrics.of(&c.name)) {
                Ok(client) => Some(Arc::new(Upstream::new(
                    client,
                    c.served_prefix(),
                    Duration::from_secs(c.tools_refresh_secs),
                    builtin.clone(),
                    held.clone(),
                ))),
                Err(e) => {
                    tracing::error!(upstream = %c.name, error = %e, "upstream left out");
                    None
                }
            })
            .collect();
        Self { list, held }
    }

    /// The calls held on this node for 2026-07-28 clients (`bridge.rs`).
    pub fn held(&self) -> &bridge::HeldCalls {
        &self.held
    }

    /// Each upstream's health on this node, in configuration order.
    pub fn report(&self) -> Vec<report::Report> {
        self.list.iter().map(|u| report::Report::of(u)).collect()
    }

    /// Whether no upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The upstreams.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.list.iter()
    }

    /// `builtin` (the node's own `tools` array) followed by every upstream's tools.
    pub fn tools_json(&self, builtin: &Value) -> Vec<Value> {
        let mut all = builtin.as_array().cloned().unwrap_or_default();
        for u in &self.list {
            all.extend(u.tools().iter().cloned());
        }
        all
    }

    /// `builtin` (the node's own `prompts` array) followed by every upstream's prompts, those
    /// named like a built-in one left out (the built-in wins).
    pub fn prompts_json(&self, builtin: &Value) -> Vec<Value> {
        let mut all = builtin.as_array().cloned().unwrap_or_default();
        let taken: HashSet<String> = all
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for u in &self.list {
            all.extend(
                u.list(Kind::Prompts)
                    .iter()
                    .filter(|p| {
                        !p.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| taken.contains(n))
                    })
                    .cloned(),
            );
        }
        all
    }

    /// The merged `resources` (`kind` [`Kind::Resources`]) or `resourceTemplates` list
    /// ([`resources::merge`]).
    pub fn resources_json(
        &self,
        kind: Kind,
        builtin: &Value,
        catalog_claims: impl Fn(&str) -> bool,
    ) -> Vec<Value> {
        resources::merge(kind, builtin, &self.list, catalog_claims)
    }

    /// Where a read of `uri` goes when the catalog does not answer for it
    /// ([`resources::route`]).
    pub fn route_resource(
        &self,
        uri: &str,
        catalog_claims: impl Fn(&str) -> bool,
    ) -> Option<resources::Route<'_>> {
        resources::route(&self.list, uri, catalog_claims)
    }

    /// The upstream a `completion/complete` reference to resource (template) `uri` goes to, and
    /// the URI as the upstream knows it, when the catalog has no such reference: `u+rest` for
    /// a configured `u` (a collided entry's served form), else the first upstream that lists
    /// `uri` as a template, else as a resource.
    pub fn route_reference<'a>(&self, uri: &'a str) -> Option<(&Arc<Upstream>, &'a str)> {
        if let Some((name, rest)) = uri.split_once(resources::URI_SEPARATOR)
            && !rest.is_empty()
            && let Some(u) = self.list.iter().find(|u| u.name() == name)
        {
            return Some((u, rest));
        }
        self.list
            .iter()
            .find(|u| u.lists_template(uri))
            .or_else(|| self.list.iter().find(|u| u.lists_uri(uri)))
            .map(|u| (u, uri))
    }

    /// Client session `session` asked for log messages from `level` on: every upstream that
    /// offers logging is told, at once — in the session's own session with it
    /// (`sessions: perClient`, once it has one: a session opened later is told then), else
    /// in the node's (see [`kept`] for which level is sent); the first failure, with the
    /// upstream's name.
    pub async fn set_level(
        &self,
        session: &Arc<crate::session::Session>,
        level: &str,
    ) -> Result<(), (String, UpstreamError)> {
        let all = futures_util::future::join_all(self.list.iter().map(|u| async move {
            let client = u.client();
            let sent = if client.per_client() {
                client.set_level_for(session, level).await
            } else {
                client.set_level(level).await
            };
            sent.map_err(|e| (u.name().to_owned(), e))
        }))
        .await;
        all.into_iter().collect()
    }

    /// Client session `session` ended (DELETE, expiry) on the node that owned it: its own
    /// sessions with upstreams are ended there too (DELETE), in a task, each within 5 s.
    pub fn session_ended(&self, session: &crate::session::Session) {
        self.session_left(session);
        let ended = self.ends(vec![session.state.lock().take_upstream_sessions()]);
        if ended.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(end_all(ended, Duration::from_secs(5)));
    }

    /// Ends the upstream sessions of client sessions that end with this node (a node outside
    /// a cluster stopping: nobody continues them), all at once, at most `within`.
    pub async fn sessions_ended(
        &self,
        sessions: &[Arc<crate::session::Session>],
        within: Duration,
    ) {
        let ended = self.ends(
            sessions
                .iter()
                .map(|s| s.state.lock().take_upstream_sessions())
                .collect(),
        );
        end_all(ended, within).await;
    }

    /// Each upstream session with its configured upstream (one no longer configured is left).
    fn ends(
        &self,
        lists: Vec<Vec<crate::session::UpstreamSession>>,
    ) -> Vec<(Arc<Upstream>, crate::session::UpstreamSession)> {
        lists
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let u = self.list.iter().find(|u| *u.name() == *e.upstream)?.clone();
                Some((u, e))
            })
            .collect()
    }

    /// How the node learns that a client session's upstream sessions changed (to replicate
    /// it); set once, when the node starts.
    pub fn on_session_changed(&self, f: client::SessionChangedFn) {
        for u in &self.list {
            u.client().on_session_changed(f.clone());
        }
    }

    /// How what arrives on client sessions' own upstream streams reaches them
    /// (`client/own.rs`); set once, when the node starts.
    pub fn on_client_hooks(&self, hooks: hooks::ClientHooks) {
        for u in &self.list {
            u.client().on_client_hooks(hooks.clone());
        }
    }

    /// Client session `session` is no longer owned here (it ended, or a peer owns it now):
    /// the standalone streams this node held for its own upstream sessions are closed.
    pub fn session_left(&self, session: &crate::session::Session) {
        if session.state.lock().upstreams.is_none() {
            return;
        }
        for u in &self.list {
            u.client().stop_own_stream(session);
        }
    }

    /// How many client sessions' standalone streams this node holds with `upstream`.
    pub fn own_streams(&self, upstream: &str) -> usize {
        self.list
            .iter()
            .find(|u| u.name() == upstream)
            .map_or(0, |u| u.client().own_streams())
    }

    /// Session `s`, which this node now owns (taken over or handed here), was subscribed to
    /// `uris`. With an upstream it holds a session of its own with (`sessions: perClient`),
    /// its subscriptions are in that session, upstream: its standalone stream is opened here
    /// when it needs one (`client/own.rs`). With the others, those of `uris` they serve are
    /// subscribed to in this node's session, so their updates reach the session here. In a
    /// task; a refusal is logged.
    pub fn adopt(
        &self,
        s: &Arc<crate::session::Session>,
        uris: Vec<String>,
        catalog_claims: impl Fn(&str) -> bool,
    ) {
        let own: Vec<Arc<Upstream>> = {
            let st = s.state.lock();
            self.list
                .iter()
                .filter(|u| st.upstream_session(u.name()).is_some())
                .cloned()
                .collect()
        };
        let routed: Vec<(Arc<Upstream>, String, String)> = uris
            .into_iter()
            .filter_map(|served| {
                let r = self.route_resource(&served, &catalog_claims)?;
                Some((r.upstream.clone(), r.uri, served))
            })
            .filter(|(u, _, _)| !own.iter().any(|o| Arc::ptr_eq(o, u)))
            .collect();
        if routed.is_empty() && own.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to subscribe upstream for a session taken over");
            return;
        };
        let s = s.clone();
        runtime.spawn(async move {
            for u in own {
                u.client().review(&s, false).await;
            }
            for (u, uri, served) in routed {
                if let Err(e) = u.client().subscribe(&uri, &served).await {
                    tracing::warn!(upstream = %u.name(), uri, error = %e, "cannot subscribe for a session taken over");
                }
            }
        });
    }

    /// Subscribes, for a 2026-07-28 `subscriptions/listen` stream, to those of `uris` served
    /// by an upstream (as `resources/subscribe` does for a legacy session); they are
    /// unsubscribed when the returned [`Held`] is dropped (the stream ended). The first
    /// refusal, with the upstream's name, after undoing the others.
    pub async fn hold(
        &self,
        uris: &[String],
        catalog_claims: impl Fn(&str) -> bool,
    ) -> Result<Held, (String, UpstreamError)> {
        let mut held = Held(Vec::new());
        for served in uris {
            let Some(r) = self.route_resource(served, &catalog_claims) else {
                continue;
            };
            if let Err(e) = r.upstream.client().subscribe(&r.uri, served).await {
                return Err((r.upstream.name().to_owned(), e));
            }
            held.0.push((r.upstream.clone(), r.uri, served.clone()));
        }
        Ok(held)
    }

    /// The upstream and its tool (or prompt) name for a served name `<upstream>__<tool>`.
    /// Prefixes may overlap (an empty one matches every name): the upstream that lists the
    /// name wins, else the one with the longest prefix.
    pub fn route<'a>(&self, served: &'a str) -> Option<(&Arc<Upstream>, &'a str)> {
        let mut matching = self
            .list
            .iter()
            .filter_map(|u| u.tool_name(served).map(|t| (u, t)));
        let first = matching.next()?;
        let Some(second) = matching.next() else {
            return Some(first);
        };
        let candidates = [first, second].into_iter().chain(matching);
        let mut longest: Option<(&Arc<Upstream>, &'a str)> = None;
        for (u, t) in candidates {
            if u.lists_name(served) {
                return Some((u, t));
            }
            if longest.is_none_or(|(l, _)| u.prefix_len() > l.prefix_len()) {
                longest = Some((u, t));
            }
        }
        longest
    }

    /// Whether the upstream tool served as `served` says it is safe to run twice
    /// (`readOnlyHint` or `idempotentHint` in its annotations, as last listed); an unknown
    /// tool is not.
    pub fn tool_may_repeat(&self, served: &str) -> bool {
        let Some((upstream, _)) = self.route(served) else {
            return false;
        };
        let says = |a: &Value, hint: &str| a.get(hint) == Some(&Value::Bool(true));
        upstream
            .tools()
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(served))
            .and_then(|t| t.get("annotations"))
            .is_some_and(|a| says(a, "readOnlyHint") || says(a, "idempotentHint"))
    }

    /// Ends every upstream session this node holds (at shutdown), at most `within` in all.
    pub async fn close(&self, within: Duration) {
        futures_util::future::join_all(self.list.iter().map(|u| u.close(within))).await;
    }

    /// Starts each upstream's refresher, stream listener and health check; they stop when the returned
    /// [`Tasks`] is dropped. List changes go to `announce` (every node refreshes its own
    /// lists); resources updated to `updated`, under the URI clients subscribed with.
    pub fn spawn(&self, announce: AnnounceFn, updated: AnnounceFn) -> Tasks {
        let mut handles = Vec::new();
        for u in &self.list {
            let to = updated.clone();
            u.client().on_resource_updated(Arc::new(move |served| {
                to(crate::content::ChangeEvent::ResourceUpdated(served));
            }));
            handles.push(tokio::spawn(u.clone().run(announce.clone())));
            handles.push(tokio::spawn(u.clone().listen()));
            if u.client().headers().has_secrets() {
                let u = u.clone();
                handles.push(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(headers::RELOAD_EVERY).await;
                        u.client().headers().reload(u.name());
                    }
                }));
            }
            if let Some(every) = u.client().health_check() {
                let u = u.clone();
                handles.push(tokio::spawn(
                    async move { u.client().check_health(every).await },
                ));
            }
        }
        Tasks(handles)
    }
}

/// Ends each upstream session (DELETE), all at once, at most `within`.
async fn end_all(ended: Vec<(Arc<Upstream>, crate::session::UpstreamSession)>, within: Duration) {
    futures_util::future::join_all(
        ended
            .iter()
            .map(|(u, e)| async move { u.client().end(e, within).await }),
    )
    .await;
}

/// Upstream subscriptions held for a `subscriptions/listen` stream ([`Upstreams::hold`]):
/// unsubscribed when dropped, in a task.
#[derive(Debug, Default)]
pub struct Held(Vec<(Arc<Upstream>, String, String)>);

impl Drop for Held {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.0);
        if held.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for (u, uri, served) in held {
                if let Err(e) = u.client().unsubscribe(&uri, &served).await {
                    tracing::debug!(upstream = %u.name(), uri, error = %e, "unsubscribing after a listen stream failed");
                }
            }
        });
    }
}

/// The upstreams' background tasks; aborted on drop.
#[derive(Debug)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
