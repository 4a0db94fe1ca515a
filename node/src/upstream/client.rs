//! [`Client`]: this node's sessions with one upstream MCP server over Streamable HTTP, in the
//! 2025-11-25 era (`initialize` + `notifications/initialized`, the `Mcp-Session-Id` it gets
//! back sent with every later request) or the 2026-07-28 one (no session: `server/discover`
//! for the capabilities, each request stateless, see `modern.rs`), as configured (`era`) or
//! detected (`era: auto`, `modern.rs`); answers as JSON or as an SSE stream.
//!
//! - **Bounded**: each request passes the [`Gate`] first (the circuit breaker: refused at once
//!   while the upstream is marked down; at most `maxConcurrency` in flight, at most `maxQueued`
//!   waiting for a slot, one more refused at once with [`UpstreamError::Busy`]), each bounded
//!   by `timeoutMs` end to end (queueing and re-initialization included), each message by
//!   [`MAX_MESSAGE`].
//! - **Health**: every `healthCheckMs` a `ping` ([`Client::check_health`]) through the same
//!   gate, so an idle upstream is found down, and one marked down is probed back up.
//! - **Lost sessions**: an answer of 404 to a request that carried a session id means the
//!   upstream lost it (restart, expiry): the client initializes again, once, and resends. The
//!   TypeScript SDK's example servers (server-everything among them) answer 400 "No valid session
//!   ID" instead, so a 400 to a request that carried a session id is treated the same way.
//!   Concurrent requests that hit the same lost session share one re-initialization.
//! - **Cancellation**: a request whose caller stops waiting (the client cancelled or left,
//!   `timeoutMs` passed) is cancelled at the upstream with `notifications/cancelled`.
//! - **Notifications** the upstream sends on a request's stream or on the standalone GET stream
//!   ([`Client::listen`]): `notifications/tools/list_changed`, `resources/list_changed` and
//!   `prompts/list_changed` wake the list refresher;
//!   those on a request's stream also go to the caller ([`Client::request_with`]);
//!   `notifications/resources/updated` goes to [`Client::on_resource_updated`]'s function under
//!   each client-facing URI subscribed ([`Kept`]); others are dropped (a log message on the
//!   standalone stream belongs to no client request: the session is shared by all of them).
//! - **Kept state**: resource subscriptions and the logging level clients asked for
//!   ([`Client::subscribe`], [`Client::unsubscribe`], [`Client::set_level`]) are sent again
//!   to a new session when the upstream lost ours.
//! - **Server→client requests** (sampling, elicitation, roots) on a request's stream go to
//!   the caller's [`Asks`] (the client's answer is POSTed back to the upstream; the time the
//!   client takes counts in `timeoutMs`); without one (lists, pings, the standalone stream)
//!   they are answered with a JSON-RPC error at once, so the upstream does not wait for an
//!   answer that will not come. `initialize` declares `sampling` and `elicitation`, so an
//!   upstream asks at all; a client that cannot answer gets the upstream an error.
//!
//! - **Whose session** ([`Whose`]): the node's own (lists, pings, the standalone stream; every
//!   request and the subscriptions with `sessions: shared`), or with `sessions: perClient` (the
//!   default) a legacy client session's own — opened at its first request that needs one,
//!   declaring what that client declared of `sampling`, `elicitation`, `roots` and set to its
//!   logging level, carrying its resource subscriptions, kept in the client session's record
//!   (replicated: the node that takes the session over goes on with the same
//!   `Mcp-Session-Id`), opened again with its level and subscriptions when the upstream lost
//!   it, ended ([`Client::end`]) when the client session ends, its standalone stream held while
//!   the client needs one (`client/own.rs`) — or, for a 2026-07-28 client, the one for the
//!   capabilities it declared (at most `MAX_DECLARED` sets). A 2026-07-28 upstream, or one
//!   that issues no session id, has no sessions to keep.
//!
//! Here the sessions and their requests; `client/stream.rs` the node's standalone stream,
//! `client/own.rs` a client session's own session's subscriptions and stream,
//! `client/wire.rs` the JSON-RPC bodies, cancellation and error text.
//!
//! HTTP: hyper's pooling client over `hyper-rustls` (http and https, native roots), as the
//! JWKS fetcher (`auth/jwks.rs`) builds it. `http/outbound.rs` is not an HTTP client (it routes
//! a request's notifications to its stream), and `content/http_tool.rs` speaks plain HTTP only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use mcpcluster_api::UpstreamConfig;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::error::UpstreamError;
use super::gate::Gate;
use super::headers::Headers;
use super::kept::Kept;
use super::metrics::Handle;
use super::modern;
use crate::content::context::LOG_LEVELS;
use crate::session::{Session as ClientSession, SessionId, UpstreamSession};

mod messages;
mod own;
mod stream;
mod wire;

use messages::Messages;
use wire::{CancelOnDrop, Http, QUOTED_BODY, chain, is_json, quoted, request_body, result_of};

/// Gets the notifications (method, params) an upstream sends on one request's stream.
pub type Notes<'a> = &'a (dyn Fn(&str, &Value) + Send + Sync);

/// Answers a server→client request (method, params) the upstream sent on one request's stream:
/// the result, or the JSON-RPC `error` object to answer with.
pub type Asks<'a> =
    &'a (dyn Fn(&str, Value) -> BoxFuture<'static, Result<Value, Value>> + Send + Sync);

/// The client capabilities the node declares to a legacy upstream in `initialize`: what it can
/// relay to its clients during a request. Roots belong to each client, not to the session all
/// of them share: an upstream that asks for them outside a request (at `initialized`, say) is
/// answered with an error, and no `notifications/roots/list_changed` is ever sent.
pub const DECLARED_CAPABILITIES: &str = r#"{"sampling":{},"elicitation":{},"roots":{}}"#;

/// Gets the client-facing URI of each subscribed resource the upstream said was updated.
pub type UpdatedFn = Arc<dyn Fn(String) + Send + Sync>;

/// The protocol version the client asks for in `initialize`.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Versions an upstream may answer `initialize` with (the session-based ones).
const ACCEPTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// Largest JSON answer or SSE event accepted from an upstream (8 MiB).
pub const MAX_MESSAGE: usize = 8 * 1024 * 1024;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Headers sent with one request beyond the configured ones.
pub type Extra = Vec<(HeaderName, HeaderValue)>;

/// The era the upstream is configured to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    Legacy,
    Modern,
    Auto,
}

/// The session the client holds with the upstream.
#[derive(Debug, Clone)]
struct Session {
    /// A 2026-07-28 upstream: no session, stateless requests.
    modern: bool,
    /// `Mcp-Session-Id` (a stateless upstream may issue none).
    id: Option<HeaderValue>,
    /// The negotiated protocol version (sent as `MCP-Protocol-Version`).
    version: HeaderValue,
    /// Counts initializations, so concurrent requests that lost the same session initialize
    /// once.
    generation: u64,
}

/// How one HTTP exchange failed.
enum Failure {
    /// The upstream no longer knows the session we sent.
    SessionGone,
    Error(UpstreamError),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Error(e)
    }
}

/// One upstream's client (shared by every request of the node).
pub struct Client {
    name: String,
    era: Era,
    url: Uri,
    headers: Headers,
    timeout: Duration,
    gate: Gate,
    /// `healthCheckMs`, if on.
    health_check: Option<Duration>,
    http: Http,
    session: Mutex<Option<Session>>,
    generations: AtomicU64,
    initializing: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
    list_changed: Notify,
    /// The `capabilities` of the upstream's last `initialize` answer.
    capabilities: Mutex<Value>,
    /// Wakes the stream listener when a session opens.
    opened: Notify,
    /// Subscriptions and logging level to keep in the upstream session.
    kept: Mutex<Kept>,
    /// Where resource updates go (set once the node's tasks start).
    updated: OnceLock<UpdatedFn>,
    /// Re-opens a 2026-07-28 upstream's listen stream (its resource subscriptions changed).
    relisten: Notify,
    metrics: Handle,
    /// `sessions: perClient`: a legacy upstream gets a session per client session, and one
    /// per set of capabilities 2026-07-28 clients declared.
    per_client: bool,
    /// `resumeStreams`: client sessions' own streams are resumed with `Last-Event-ID`.
    resume_streams: bool,
    /// The sessions for 2026-07-28 clients, by the capabilities declared (compact JSON).
    declared: Mutex<HashMap<String, Session>>,
    /// Tells the node a client session's durable state changed (an upstream session was
    /// opened or replaced in it), so its replicas get it.
    session_changed: OnceLock<SessionChangedFn>,
    /// How what arrives on a client session's own standalone stream reaches that client
    /// (set once, when the node starts).
    hooks: OnceLock<super::hooks::ClientHooks>,
    /// The standalone streams held for client sessions' own upstream sessions (`own.rs`),
    /// by client session: the task holding it.
    own_streams: Mutex<HashMap<SessionId, Holder>>,
    /// This client, for the tasks that hold those streams (set by [`Client::into_arc`]).
    me: std::sync::Weak<Client>,
}

/// The task holding one client session's standalone stream (`own.rs`), in
/// [`Client`]'s table.
#[derive(Debug)]
struct Holder {
    /// Its number, so a task that ends removes only its own entry.
    number: u64,
    task: tokio::task::AbortHandle,
    /// `Client::review` found the task running after the client session's needs changed: a
    /// task that decided to stop looks again before it leaves the table (both under the
    /// table's lock), so a subscription made while it stops is not left without a stream.
    look_again: bool,
}

/// Whose session with the upstream a request goes in.
#[derive(Debug, Clone, Default)]
pub enum Whose {
    /// The node's own session (lists, pings, subscriptions, every request with
    /// `sessions: shared`).
    #[default]
    Node,
    /// A legacy client session's own (`sessions: perClient`).
    Client(Arc<ClientSession>),
    /// A 2026-07-28 client, which declared these capabilities (`sessions: perClient`): the
    /// session the node holds for clients declaring the same.
    Declared(Value),
}

/// Tells the node that a client session's durable state changed.
pub type SessionChangedFn = Arc<dyn Fn(&Arc<ClientSession>) + Send + Sync>;

/// Most sessions held for distinct sets of capabilities 2026-07-28 clients declared; a client
/// declaring yet another set uses the node's own session.
const MAX_DECLARED: usize = 32;

/// How long ending a client session's upstream session may take.
const END_WITHIN: Duration = Duration::from_secs(5);

/// A session held for one client: the replicated record, and the session to use from it.
enum Own {
    Client(Arc<ClientSession>),
    Declared(String),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for a validated upstream entry (`url` resolved: see [`UpstreamConfig::endpoint`]),
    /// Secret-held header values read from under `secrets_dir`; no connection is made yet.
    pub fn new(
        config: &UpstreamConfig,
        secrets_dir: &std::path::Path,
        metrics: Handle,
    ) -> Result<Self, String> {
        let url: Uri = config
            .url
            .parse()
            .map_err(|e| format!("`url` is not a URL: {e}"))?;
        let headers = Headers::new(config, secrets_dir).map_err(|(f, m)| format!("`{f}`: {m}"))?;
        let era = match config.era.as_str() {
            "legacy" => Era::Legacy,
            modern::VERSION => Era::Modern,
            "auto" => Era::Auto,
            other => {
                return Err(format!(
                    "`era`: `{other}` is not legacy, 2026-07-28 or auto"
                ));
            }
        };
        Ok(Self {
            name: config.name.clone(),
            era,
            url,
            headers,
            timeout: Duration::from_millis(config.timeout_ms),
            gate: Gate::new(config, metrics.clone()),
            health_check: (config.health_check_ms > 0)
                .then(|| Duration::from_millis(config.health_check_ms)),
            http: HyperClient::builder(TokioExecutor::new())
                .build(crate::https_connector::https_or_http("upstream")),
            session: Mutex::new(None),
            generations: AtomicU64::new(0),
            initializing: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
            list_changed: Notify::new(),
            capabilities: Mutex::new(Value::Null),
            opened: Notify::new(),
            kept: Mutex::new(Kept::default()),
            updated: OnceLock::new(),
            relisten: Notify::new(),
            metrics,
            per_client: config.sessions == UpstreamConfig::PER_CLIENT,
            resume_streams: config.resume_streams,
            declared: Mutex::new(HashMap::new()),
            session_changed: OnceLock::new(),
            hooks: OnceLock::new(),
            own_streams: Mutex::new(HashMap::new()),
            me: std::sync::Weak::new(),
        })
    }

    /// The client, shared, knowing itself (the tasks holding client sessions' standalone
    /// streams need it).
    pub fn into_arc(self) -> Arc<Client> {
        Arc::new_cyclic(|me| Client {
            me: me.clone(),
            ..self
        })
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The era it is spoken to in: that of the session held with it, else the configured one
    /// (`None` for `era: auto` before a session told).
    pub fn era(&self) -> Option<&'static str> {
        if let Some(s) = self.session.lock().as_ref() {
            return Some(if s.modern { modern::VERSION } else { "legacy" });
        }
        match self.era {
            Era::Legacy => Some("legacy"),
            Era::Modern => Some(modern::VERSION),
            Era::Auto => None,
        }
    }

    /// What its requests pass first (its breaker's state, the last outcome).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Its configured headers (values from Secrets read again by [`Headers::reload`]).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The metrics of this upstream.
    pub fn metrics(&self) -> &Handle {
        &self.metrics
    }

    /// A fresh progress token for a request to this upstream.
    pub fn progress_token(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the upstream announced server capability `name` (`resources`, `prompts`, ...)
    /// when the session was last opened; false before any.
    pub fn offers(&self, name: &str) -> bool {
        self.capabilities.lock().get(name).is_some()
    }

    /// How the node learns that a client session's upstream sessions changed (the first call
    /// wins).
    pub fn on_session_changed(&self, f: SessionChangedFn) {
        let _ = self.session_changed.set(f);
    }

    /// Whether a legacy upstream gets a session per client (`sessions: perClient`).
    pub fn per_client(&self) -> bool {
        self.per_client
    }

    /// Where `notifications/resources/updated` goes from now on (the first call wins).
    pub fn on_resource_updated(&self, f: UpdatedFn) {
        let _ = self.updated.set(f);
    }

    /// Subscribes to upstream resource `uri` for a client session that subscribed to `served`
    /// (the URI it knows): the upstream is asked every time, and the subscription is counted
    /// only once it agreed.
    ///
    /// A 2026-07-28 upstream has no `resources/subscribe`: its subscriptions are the
    /// `resourceSubscriptions` of the listen stream, which is re-opened with the new URI (an
    /// update sent before it is open is missed).
    pub async fn subscribe(&self, uri: &str, served: &str) -> Result<(), UpstreamError> {
        if self.modern_session().await? {
            if !self.offers_subscribe() {
                return Err(UpstreamError::Unsupported(
                    "resource subscriptions (it does not announce `resources.subscribe`)".into(),
                ));
            }
            let new = {
                let mut kept = self.kept.lock();
                let new = kept.served(uri).is_empty();
                kept.subscribed(uri, served);
                new
            };
            if new {
                self.relisten.notify_one();
            }
            return Ok(());
        }
        self.request("resources/subscribe", json!({ "uri": uri }))
            .await?;
        self.kept.lock().subscribed(uri, served);
        Ok(())
    }

    /// Whether the session is (or, opened now, would be) with a 2026-07-28 upstream; opening
    /// it is bounded by `timeoutMs`.
    async fn modern_session(&self) -> Result<bool, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.session()).await {
            Ok(session) => Ok(session?.modern),
            Err(_) => Err(UpstreamError::Timeout(self.timeout.as_millis() as u64)),
        }
    }

    fn offers_subscribe(&self) -> bool {
        self.capabilities.lock()["resources"]["subscribe"] == json!(true)
    }

    /// A client session unsubscribed from `served` (`uri` at the upstream): the upstream is
    /// told when it was the last on this node.
    pub async fn unsubscribe(&self, uri: &str, served: &str) -> Result<(), UpstreamError> {
        let last = self.kept.lock().unsubscribed(uri, served);
        if last {
            if self.modern_session().await? {
                self.relisten.notify_one();
                return Ok(());
            }
            self.request("resources/unsubscribe", json!({ "uri": uri }))
                .await?;
        }
        Ok(())
    }

    /// A client asked for log messages from `level` on: sent when the upstream offers
    /// `logging` and `level` is more verbose than the one set ([`Kept`]).
    pub async fn set_level(&self, level: &str) -> Result<(), UpstreamError> {
        if !self.offers("logging") {
            return Ok(());
        }
        let Some(level) = self.kept.lock().level_to_send(level) else {
            return Ok(());
        };
        self.request("logging/setLevel", json!({ "level": level }))
            .await?;
        self.kept.lock().level_set(level);
        Ok(())
    }

    /// `healthCheckMs`, if health checks are on.
    pub fn health_check(&self) -> Option<Duration> {
        self.health_check
    }

    /// Sends a `ping` every `every` (any JSON-RPC answer is healthy), through the gate like
    /// any request: it counts toward marking the upstream down, and is the probe that brings
    /// it back up. While marked down it waits for the probe time instead; runs until aborted.
    pub async fn check_health(&self, every: Duration) {
        loop {
            let wait = self.gate.down_for().map_or(every, |d| d.min(every));
            tokio::time::sleep(wait).await;
            if self.gate.down_for().is_some() {
                continue;
            }
            if let Err(e) = self.request("ping", json!({})).await {
                tracing::debug!(upstream = %self.name, error = %e, "health check failed");
            }
        }
    }

    /// Resolves when the upstream said one of its lists changed (once per announcement).
    pub async fn list_changed(&self) {
        self.list_changed.notified().await;
    }

    /// Sends one request and returns its `result`: refused at once when `maxConcurrency`
    /// requests are in flight, bounded by `timeoutMs` (opening or re-opening the session
    /// included).
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, UpstreamError> {
        self.request_with(method, params, None).await
    }

    /// [`Client::request`], handing the notifications the upstream sends on the request's
    /// stream (progress, log messages) to `notes`.
    pub async fn request_with(
        &self,
        method: &str,
        params: Value,
        notes: Option<Notes<'_>>,
    ) -> Result<Value, UpstreamError> {
        self.request_full(method, params, notes, None, Vec::new(), Whose::Node)
            .await
    }

    /// [`Client::request_with`], its server→client requests answered by `asks`, sending
    /// `extra` headers too (a 2026-07-28 tool call's `Mcp-Param-*`), in `whose` session.
    pub async fn request_full(
        &self,
        method: &str,
        params: Value,
        notes: Option<Notes<'_>>,
        asks: Option<Asks<'_>>,
        extra: Extra,
        whose: Whose,
    ) -> Result<Value, UpstreamError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome = match self.gate.enter(deadline).await {
            Err(e) => Err(e),
            Ok(pass) => {
                let r = match tokio::time::timeout_at(
                    deadline,
                    self.exchange(method, &params, notes, asks, &extra, whose),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(UpstreamError::Timeout(self.timeout.as_millis() as u64)),
                };
                pass.finish(&r);
                r
            }
        };
        self.metrics.request(
            started.elapsed().as_secs_f64(),
            outcome.as_ref().err().map(UpstreamError::kind),
        );
        outcome
    }

    async fn exchange(
        &self,
        method: &str,
        params: &Value,
        notes: Option<Notes<'_>>,
        asks: Option<Asks<'_>>,
        extra: &[(HeaderName, HeaderValue)],
        whose: Whose,
    ) -> Result<Value, UpstreamError> {
        let session = self.session().await?;
        let own = match whose {
            // A 2026-07-28 upstream has no sessions, nor one that issues no session id;
            // `shared` has the node's only.
            _ if session.modern || session.id.is_none() || !self.per_client => None,
            Whose::Node => None,
            Whose::Client(s) => Some(Own::Client(s)),
            Whose::Declared(caps) => Some(Own::Declared(
                modern::relayed_capabilities(&caps).to_string(),
            )),
        };
        if let Some(own) = own
            && let Some(session) = self.own_session(&own).await?
        {
            return match self
                .call(&session, method, params, notes, asks, extra)
                .await
            {
                Ok(v) => Ok(v),
                Err(Failure::Error(e)) => Err(e),
                Err(Failure::SessionGone) => {
                    tracing::info!(upstream = %self.name, "the upstream lost a client's session; initializing again");
                    let fresh = self.reopen_own(&own, &session).await?;
                    match self.call(&fresh, method, params, notes, asks, extra).await {
                        Ok(v) => Ok(v),
                        Err(Failure::Error(e)) => Err(e),
                        Err(Failure::SessionGone) => Err(UpstreamError::Protocol(
                            "the session was refused again right after initializing".into(),
                        )),
                    }
                }
            };
        }
        match self
            .call(&session, method, params, notes, asks, extra)
            .await
        {
            Ok(v) => Ok(v),
            Err(Failure::Error(e)) => Err(e),
            Err(Failure::SessionGone) => {
                tracing::info!(upstream = %self.name, "the upstream lost our session; initializing again");
                let fresh = self.initialize(Some(session.generation)).await?;
                match self.call(&fresh, method, params, notes, asks, extra).await {
                    Ok(v) => Ok(v),
                    Err(Failure::Error(e)) => Err(e),
                    Err(Failure::SessionGone) => Err(UpstreamError::Protocol(
                        "the session was refused again right after initializing".into(),
                    )),
                }
            }
        }
    }

    /// The session held for `own`, opened now if it has none (`None`: none can be held for
    /// it — too many distinct capability sets — and the node's own is used).
    ///
    /// A client session's is in its replicated record: whichever node owns the session
    /// continues it with the same `Mcp-Session-Id`. Two requests that open one at once both
    /// open one; the first kept wins and the other is ended.
    async fn own_session(&self, own: &Own) -> Result<Option<Session>, UpstreamError> {
        match own {
            Own::Client(s) => {
                let (kept, caps, level) = {
                    let st = s.state.lock();
                    let kept = st.upstream_session(&self.name).and_then(held);
                    (kept, st.client_capabilities(), st.log_level)
                };
                if let Some(kept) = kept {
                    return Ok(Some(kept));
                }
                // The client's level goes to its new session unless it is the default (all).
                let level = (level > 0).then_some(level);
                let (fresh, level) = self.open_own(&caps, level).await?;
                let kept = self.keep_for_client(s, fresh, level, None);
                if level.is_some() {
                    // It asked for log messages: its standalone stream carries those the
                    // upstream sends outside requests (`own.rs`).
                    self.review(s, false).await;
                }
                Ok(Some(kept))
            }
            Own::Declared(key) => {
                if let Some(kept) = self.declared.lock().get(key).cloned() {
                    return Ok(Some(kept));
                }
                if self.declared.lock().len() >= MAX_DECLARED {
                    return Ok(None);
                }
                let caps: Value = serde_json::from_str(key).unwrap_or_default();
                let (fresh, _) = self.open_own(&caps, None).await?;
                Ok(Some(self.keep_declared(key, fresh, None)))
            }
        }
    }

    /// `own`'s session after the upstream lost `stale`: a new one, told the logging level
    /// the lost one had, unless another request already replaced it.
    async fn reopen_own(&self, own: &Own, stale: &Session) -> Result<Session, UpstreamError> {
        match own {
            Own::Client(s) => {
                let (caps, level) = {
                    let st = s.state.lock();
                    let level = st.upstream_session(&self.name).and_then(|u| u.level);
                    (st.client_capabilities(), level)
                };
                let (fresh, level) = self.open_own(&caps, level).await?;
                let kept = self.keep_for_client(s, fresh.clone(), level, Some(stale));
                if kept.id == fresh.id {
                    // Its subscriptions to this upstream are made again in the new session.
                    self.restore_own(s, &kept).await;
                }
                Ok(kept)
            }
            Own::Declared(key) => {
                let caps: Value = serde_json::from_str(key).unwrap_or_default();
                let (fresh, _) = self.open_own(&caps, None).await?;
                Ok(self.keep_declared(key, fresh, Some(stale)))
            }
        }
    }

    /// Opens a legacy session declaring what the client declared of what the node relays,
    /// and sets `level` in it when the upstream offers logging; the session, and the level
    /// set (`None` when none was, or it was refused: logged).
    async fn open_own(
        &self,
        client_caps: &Value,
        level: Option<u8>,
    ) -> Result<(Session, Option<u8>), UpstreamError> {
        let declared = modern::relayed_capabilities(client_caps);
        let session = self.open_legacy(0, &declared).await?;
        self.metrics.initialized();
        let Some(level) = level.filter(|_| self.offers("logging")) else {
            return Ok((session, None));
        };
        let name = LOG_LEVELS[usize::from(level).min(LOG_LEVELS.len() - 1)];
        match self
            .call(
                &session,
                "logging/setLevel",
                &json!({ "level": name }),
                None,
                None,
                &[],
            )
            .await
        {
            Ok(_) => Ok((session, Some(level))),
            Err(Failure::Error(e)) => {
                tracing::warn!(upstream = %self.name, level = name, error = %e, "logging level not set in a client's upstream session");
                Ok((session, None))
            }
            Err(Failure::SessionGone) => Err(UpstreamError::Protocol(
                "the session was refused right after `initialize`".into(),
            )),
        }
    }

    /// Keeps `fresh` in client session `s` unless it holds another than `stale` (another
    /// request opened or replaced it meanwhile: that one is used, `fresh` ended); the session
    /// to use. The change is replicated.
    fn keep_for_client(
        &self,
        s: &Arc<ClientSession>,
        fresh: Session,
        level: Option<u8>,
        stale: Option<&Session>,
    ) -> Session {
        let Some(id) = fresh.id.as_ref().and_then(|v| v.to_str().ok()) else {
            // No `Mcp-Session-Id`: a stateless legacy upstream; nothing to keep.
            return fresh;
        };
        let entry = UpstreamSession {
            upstream: self.name.as_str().into(),
            id: id.into(),
            version: fresh.version.to_str().unwrap_or(PROTOCOL_VERSION).into(),
            level,
            // A new session: its stream starts afresh.
            last_event: None,
        };
        let winner = {
            let mut st = s.state.lock();
            let current = st.upstream_session(&self.name).and_then(held);
            match current {
                Some(c) if stale.is_none_or(|old| old.id != c.id) => Some(c),
                _ => {
                    st.set_upstream_session(entry);
                    None
                }
            }
        };
        match winner {
            Some(c) => {
                self.end_in_background(fresh);
                c
            }
            None => {
                if let Some(f) = self.session_changed.get() {
                    f(s);
                }
                fresh
            }
        }
    }

    /// [`Client::keep_for_client`] for the sessions of 2026-07-28 clients.
    fn keep_declared(&self, key: &str, fresh: Session, stale: Option<&Session>) -> Session {
        let winner = {
            let mut map = self.declared.lock();
            match map.get(key) {
                Some(c) if stale.is_none_or(|old| old.id != c.id) => Some(c.clone()),
                _ => {
                    map.insert(key.to_owned(), fresh.clone());
                    None
                }
            }
        };
        match winner {
            Some(c) => {
                self.end_in_background(fresh);
                c
            }
            None => fresh,
        }
    }

    fn end_in_background(&self, session: Session) {
        let Some(req) = self.delete_request(&session) else {
            return;
        };
        let http = self.http.clone();
        let metrics = self.metrics.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(Ok(_)) = tokio::time::timeout(END_WITHIN, http.request(req)).await {
                    metrics.ended();
                }
            });
        }
    }

    /// A client session that used this upstream sets logging `level`: sent in its own
    /// session with the upstream, when it has one (else it goes with the session when one is
    /// opened) and the upstream offers `logging`.
    pub async fn set_level_for(
        &self,
        s: &Arc<ClientSession>,
        level: &str,
    ) -> Result<(), UpstreamError> {
        if !self.offers("logging") || s.state.lock().upstream_session(&self.name).is_none() {
            return Ok(());
        }
        self.request_full(
            "logging/setLevel",
            json!({ "level": level }),
            None,
            None,
            Vec::new(),
            Whose::Client(s.clone()),
        )
        .await?;
        let changed = {
            let mut st = s.state.lock();
            match st.upstream_session(&self.name).cloned() {
                Some(mut e) => {
                    e.level = crate::content::context::log_level_index(level);
                    st.set_upstream_session(e);
                    true
                }
                None => false,
            }
        };
        if changed && let Some(f) = self.session_changed.get() {
            f(s);
        }
        self.review(s, false).await;
        Ok(())
    }

    /// Ends a client session's session with this upstream (the client session ended: DELETE,
    /// expiry), at most `within`; a failure is only logged.
    pub async fn end(&self, entry: &UpstreamSession, within: Duration) {
        let Some(session) = held(entry) else { return };
        let Some(req) = self.delete_request(&session) else {
            return;
        };
        match tokio::time::timeout(within, self.http.request(req)).await {
            Ok(Ok(resp)) => {
                self.metrics.ended();
                tracing::debug!(upstream = %self.name, status = %resp.status(), "a client's upstream session ended");
            }
            Ok(Err(e)) => {
                tracing::debug!(upstream = %self.name, error = %chain(&e), "ending a client's upstream session failed");
            }
            Err(_) => {
                tracing::debug!(upstream = %self.name, "ending a client's upstream session timed out");
            }
        }
    }

    /// The DELETE that ends `session` upstream (none for a session without an id).
    fn delete_request(&self, session: &Session) -> Option<Request<Full<Bytes>>> {
        let id = session.id.clone()?;
        let mut req = Request::delete(self.url.clone())
            .header(SESSION_HEADER, id)
            .header(VERSION_HEADER, session.version.clone());
        for (k, v) in self.headers.current().iter() {
            req = req.header(k, v);
        }
        req.body(Full::new(Bytes::new())).ok()
    }

    /// The current session, initializing one if there is none.
    async fn session(&self) -> Result<Session, UpstreamError> {
        if let Some(s) = self.session.lock().clone() {
            return Ok(s);
        }
        self.initialize(None).await
    }

    /// Opens a session unless another task already replaced `stale` (or, with `None`,
    /// opened one) while this one waited.
    async fn initialize(&self, stale: Option<u64>) -> Result<Session, UpstreamError> {
        let _one = self.initializing.lock().await;
        if let Some(s) = self.session.lock().clone()
            && Some(s.generation) != stale
        {
            return Ok(s);
        }
        *self.session.lock() = None;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let discovered = match self.era {
            Era::Legacy => None,
            Era::Modern => Some(self.discover(generation).await?.ok_or_else(|| {
                UpstreamError::Protocol(format!(
                    "`server/discover` does not list {} (`era: {}`)",
                    modern::VERSION,
                    modern::VERSION
                ))
            })?),
            Era::Auto => self.discover(generation).await?,
        };
        let session = match discovered {
            Some(s) => s,
            None => {
                let declared: Value =
                    serde_json::from_str(DECLARED_CAPABILITIES).unwrap_or_default();
                self.open_legacy(generation, &declared).await?
            }
        };
        self.restore(&session).await;
        self.metrics.initialized();
        tracing::debug!(upstream = %self.name, version = ?session.version, modern = session.modern, session = session.id.is_some(), "upstream session open");
        *self.session.lock() = Some(session.clone());
        self.opened.notify_waiters();
        Ok(session)
    }

    /// Asks `server/discover` as a 2026-07-28 request (the detection rule is `modern.rs`'s):
    /// the session when the upstream speaks 2026-07-28 (its capabilities kept), `None` when
    /// it answered otherwise; an error only when it did not answer.
    async fn discover(&self, generation: u64) -> Result<Option<Session>, UpstreamError> {
        let session = Session {
            modern: true,
            id: None,
            version: HeaderValue::from_static(modern::VERSION),
            generation,
        };
        let result = match self
            .call(&session, "server/discover", &json!({}), None, None, &[])
            .await
        {
            Ok(result) => result,
            Err(Failure::Error(
                e @ (UpstreamError::Unreachable(_) | UpstreamError::Timeout(_)),
            )) => return Err(e),
            Err(Failure::Error(e)) => {
                tracing::debug!(upstream = %self.name, error = %e, "`server/discover` refused: a legacy upstream");
                return Ok(None);
            }
            Err(Failure::SessionGone) => return Ok(None),
        };
        if !modern::discovered(&result) {
            return Ok(None);
        }
        *self.capabilities.lock() = result.get("capabilities").cloned().unwrap_or_default();
        Ok(Some(session))
    }

    /// Opens a 2025-11-25 session declaring `declared` client capabilities: `initialize`, then
    /// `notifications/initialized`.
    async fn open_legacy(
        &self,
        generation: u64,
        declared: &Value,
    ) -> Result<Session, UpstreamError> {
        let bare = Session {
            modern: false,
            id: None,
            version: HeaderValue::from_static(PROTOCOL_VERSION),
            generation,
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": declared,
            "clientInfo": { "name": "mcpcluster", "version": env!("CARGO_PKG_VERSION") },
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = request_body(id, "initialize", &params);
        let (answer, session_id) = match self.send(&bare, body, &[], id, None, None).await {
            Ok(ok) => ok,
            Err(Failure::Error(e)) => return Err(e),
            // Only a request that carried a session id can lose it; `initialize` carries none.
            Err(Failure::SessionGone) => {
                return Err(UpstreamError::Protocol("`initialize` was refused".into()));
            }
        };
        let result = result_of(answer)?;
        let version = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !ACCEPTED_VERSIONS.contains(&version) {
            return Err(UpstreamError::Protocol(format!(
                "`initialize` chose protocol version `{version}` (supported: {})",
                ACCEPTED_VERSIONS.join(", ")
            )));
        }
        let session = Session {
            modern: false,
            id: session_id,
            version: HeaderValue::from_str(version).map_err(|e| {
                UpstreamError::Protocol(format!("protocol version `{version}`: {e}"))
            })?,
            generation,
        };
        let note =
            serde_json::to_vec(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
                .unwrap_or_default();
        match self.deliver(&session, note).await {
            Ok(()) => {}
            Err(Failure::Error(e)) => return Err(e),
            Err(Failure::SessionGone) => {
                return Err(UpstreamError::Protocol(
                    "the session was refused right after `initialize`".into(),
                ));
            }
        }
        *self.capabilities.lock() = result.get("capabilities").cloned().unwrap_or_default();
        Ok(session)
    }

    /// Tells a new session what the last one was asked to keep (subscriptions, logging
    /// level); a refusal is logged, not fatal (the request that opened the session goes on).
    async fn restore(&self, session: &Session) {
        if session.modern {
            // Nothing is kept in a 2026-07-28 upstream: the level goes with each request, the
            // subscriptions with the listen stream.
            return;
        }
        let (level, uris) = {
            let kept = self.kept.lock();
            (kept.level(), kept.uris())
        };
        let mut asks: Vec<(&str, Value)> = Vec::new();
        if let Some(level) = level {
            asks.push(("logging/setLevel", json!({ "level": level })));
        }
        for uri in uris {
            asks.push(("resources/subscribe", json!({ "uri": uri })));
        }
        for (method, params) in asks {
            if let Err(Failure::Error(e)) =
                self.call(session, method, &params, None, None, &[]).await
            {
                tracing::warn!(upstream = %self.name, method, %params, error = %e, "not kept in the new upstream session");
            }
        }
    }

    async fn call(
        &self,
        session: &Session,
        method: &str,
        params: &Value,
        notes: Option<Notes<'_>>,
        asks: Option<Asks<'_>>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Value, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (body, mut headers) = if session.modern {
            (
                request_body(id, method, &modern::params(params)),
                modern::headers(method, params),
            )
        } else {
            (
                request_body(id, method, &modern::legacy_params(params)),
                Vec::new(),
            )
        };
        headers.extend(extra.iter().cloned());
        // A 2026-07-28 request is cancelled by closing its stream (dropping it does).
        let mut cancel = CancelOnDrop(if session.modern {
            None
        } else {
            self.cancellation(session, id)
        });
        let sent = self.send(session, body, &headers, id, notes, asks).await;
        cancel.0 = None;
        let (answer, _) = sent?;
        let result = result_of(answer)?;
        if session.modern {
            return Ok(modern::result(result, modern::retryable(method))?);
        }
        Ok(result)
    }

    /// The `notifications/cancelled` for request `id`, ready to send.
    fn cancellation(&self, session: &Session, id: u64) -> Option<(Http, Request<Full<Bytes>>)> {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": "the client cancelled or gave up waiting" },
        });
        let body = serde_json::to_vec(&note).ok()?;
        Some((self.http.clone(), self.post(session, body, &[]).ok()?))
    }

    fn post(
        &self,
        session: &Session,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let mut req = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .header(VERSION_HEADER, session.version.clone());
        if let Some(id) = &session.id {
            req = req.header(SESSION_HEADER, id.clone());
        }
        for (k, v) in self.headers.current().iter().chain(extra) {
            req = req.header(k, v);
        }
        req.body(Full::new(Bytes::from(body)))
            .map_err(|e| UpstreamError::Protocol(format!("cannot build the request: {e}")))
    }

    /// POSTs `body` in `session`; the session is gone when the upstream answers 404 (or 400,
    /// server-everything's answer) to a request that named it.
    async fn round_trip(
        &self,
        session: &Session,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        let req = self.post(session, body, extra)?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| UpstreamError::Unreachable(chain(&e)))?;
        let status = resp.status();
        if session.id.is_some()
            && (status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST)
        {
            return Err(Failure::SessionGone);
        }
        Ok(resp)
    }

    /// POSTs a notification or a response: only the status matters.
    async fn deliver(&self, session: &Session, body: Vec<u8>) -> Result<(), Failure> {
        let resp = self.round_trip(session, body, &[]).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body: quoted(resp.into_body()).await,
            }
            .into());
        }
        Ok(())
    }

    /// POSTs the request with id `want` and returns the response to it, from a JSON body or
    /// from the SSE stream, with the `Mcp-Session-Id` the upstream answered with; the stream's
    /// notifications go to `notes`, its requests to `asks` (the answer POSTed back).
    async fn send(
        &self,
        session: &Session,
        body: Vec<u8>,
        extra: &[(HeaderName, HeaderValue)],
        want: u64,
        notes: Option<Notes<'_>>,
        asks: Option<Asks<'_>>,
    ) -> Result<(Option<Value>, Option<HeaderValue>), Failure> {
        let resp = self.round_trip(session, body, extra).await?;
        let status = resp.status();
        let session_id = resp.headers().get(SESSION_HEADER).cloned();
        if session.modern && status.is_client_error() && is_json(&resp) {
            // A 2026-07-28 server answers a refused request with an HTTP status and the
            // JSON-RPC error in the body (unsupported version, header mismatch, ...).
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_MESSAGE)
                .collect()
                .await
                .map_err(|e| UpstreamError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            if let Ok(message) = serde_json::from_slice::<Value>(&bytes)
                && message.get("error").is_some()
            {
                return Ok((Some(message), session_id));
            }
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTED_BODY)])
                    .trim()
                    .to_owned(),
            }
            .into());
        }
        if !status.is_success() {
            let body = quoted(resp.into_body()).await;
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body,
            }
            .into());
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = resp.into_body();
        if content_type.starts_with("text/event-stream") {
            let mut messages = Messages::new(body, MAX_MESSAGE);
            while let Some(message) = messages.next().await? {
                if message.get("id") == Some(&json!(want)) && message.get("method").is_none() {
                    return Ok((Some(message), session_id));
                }
                if let (Some(notes), Some(method), None) = (
                    notes,
                    message.get("method").and_then(Value::as_str),
                    message.get("id"),
                ) {
                    notes(method, message.get("params").unwrap_or(&Value::Null));
                }
                if let (Some(asks), Some(method), Some(id)) = (
                    asks,
                    message.get("method").and_then(Value::as_str),
                    message.get("id"),
                ) {
                    let params = message.get("params").cloned().unwrap_or(Value::Null);
                    let answer = match asks(method, params).await {
                        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
                        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
                    };
                    let body = serde_json::to_vec(&answer).unwrap_or_default();
                    match self.deliver(session, body).await {
                        Ok(()) => {}
                        Err(Failure::Error(e)) => return Err(e.into()),
                        // Sending the request again would ask the client again.
                        Err(Failure::SessionGone) => {
                            return Err(UpstreamError::Protocol(
                                "the upstream lost the session while its request asked the client"
                                    .into(),
                            )
                            .into());
                        }
                    }
                    continue;
                }
                self.on_message(session, &message).await;
            }
            return Err(UpstreamError::Protocol(
                "the event stream ended before the response".into(),
            )
            .into());
        }
        if content_type.starts_with("application/json") {
            let bytes = http_body_util::Limited::new(body, MAX_MESSAGE)
                .collect()
                .await
                .map_err(|e| UpstreamError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            let message: Value = serde_json::from_slice(&bytes)
                .map_err(|e| UpstreamError::Protocol(format!("the answer is not JSON: {e}")))?;
            return Ok((Some(message), session_id));
        }
        Err(UpstreamError::Protocol(format!(
            "HTTP {status} with Content-Type `{content_type}` (want JSON or an event stream)"
        ))
        .into())
    }

    /// A notification or a server→client request from the upstream.
    async fn on_message(&self, session: &Session, message: &Value) {
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return;
        };
        match message.get("id") {
            None if method == "notifications/resources/updated" => {
                let Some(uri) = message
                    .get("params")
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                else {
                    return;
                };
                let served = self.kept.lock().served(uri);
                if let Some(updated) = self.updated.get() {
                    for s in served {
                        updated(s);
                    }
                }
            }
            None => {
                if matches!(
                    method,
                    "notifications/tools/list_changed"
                        | "notifications/resources/list_changed"
                        | "notifications/prompts/list_changed"
                ) {
                    self.list_changed.notify_one();
                }
            }
            Some(id) => {
                let refusal = json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": crate::jsonrpc::code::METHOD_NOT_FOUND,
                        "message": format!("mcpcluster does not relay `{method}` from upstreams yet"),
                    },
                });
                let body = serde_json::to_vec(&refusal).unwrap_or_default();
                if let Err(Failure::Error(e)) = self.deliver(session, body).await {
                    tracing::debug!(upstream = %self.name, method, error = %e, "could not refuse a server request");
                }
            }
        }
    }

    /// Ends the node's sessions with the upstream (DELETE with its `Mcp-Session-Id`: its own
    /// and those held for 2026-07-28 clients), so the upstream does not keep them after this
    /// node is gone; client sessions' own stay (the client sessions live on at other nodes).
    /// Bounded by `within`; a failure is only logged (the upstream may be gone too). The
    /// sessions are forgotten: a later request would open a new one.
    pub async fn close(&self, within: Duration) {
        let mut all: Vec<Session> = self.session.lock().take().into_iter().collect();
        all.extend(self.declared.lock().drain().map(|(_, s)| s));
        let requests: Vec<_> = all.iter().filter_map(|s| self.delete_request(s)).collect();
        let ends = requests.into_iter().map(|req| {
            let http = self.http.clone();
            async move { tokio::time::timeout(within, http.request(req)).await }
        });
        for outcome in futures_util::future::join_all(ends).await {
            match outcome {
                Ok(Ok(resp)) => {
                    self.metrics.ended();
                    tracing::debug!(upstream = %self.name, status = %resp.status(), "upstream session ended");
                }
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %self.name, error = %chain(&e), "ending the upstream session failed");
                }
                Err(_) => {
                    tracing::debug!(upstream = %self.name, "ending the upstream session timed out");
                }
            }
        }
    }
}

/// The session a client session's record names (`None` when a peer sent values that are not
/// header values).
fn held(entry: &UpstreamSession) -> Option<Session> {
    Some(Session {
        modern: false,
        id: Some(HeaderValue::from_str(&entry.id).ok()?),
        version: HeaderValue::from_str(&entry.version).ok()?,
        generation: 0,
    })
}
