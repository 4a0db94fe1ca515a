//! A client session's own upstream session (`sessions: perClient`) as the client would hold
//! it itself: its resource subscriptions are made in it, and its standalone GET stream is
//! held open — by the node that owns the client session — while the client session has
//! something that needs one, so what the upstream sends outside any request reaches that
//! client, and only it.
//!
//! - **When a stream is held** ([`Client::review`]): while the client session has a
//!   subscription to a resource of this upstream, or set a logging level itself
//!   (`logging/setLevel`: it asked for log messages, which an upstream may send outside
//!   requests). Otherwise none: an idle client, or one that only calls tools, costs no
//!   connection and no task. A subscription is answered once its stream is open (bounded by
//!   `timeoutMs`; a first try that fails answers it, the stream is asked for again in the
//!   background), so an update the upstream sends right after is not missed.
//! - **Where it is held**: on the node that owns the client session. A node that takes the
//!   session over (kill -9, drain, rebalancing: `Node::session_adopted`) opens it again in
//!   the same upstream session (the subscriptions are still there, upstream); the node the
//!   session left stops its own (`Node::session_left`), and one that no longer owns it
//!   stops before it opens it again. An upstream that allows one stream per session (the
//!   TypeScript SDK answers 409 to a second) is asked again after 200 ms, doubling.
//! - **What it carries**: `notifications/resources/updated` of an upstream URI goes to the
//!   client session under each URI it subscribed with that routes there;
//!   `notifications/message` to it at its own level; a `list_changed` wakes the list
//!   refresher (the node's own lists); a server→client request (`roots/list`, sampling,
//!   elicitation) is asked of the client on its own standalone stream and the answer POSTed
//!   back (the stream is read on once it is answered or `limits.clientRequestTimeoutSecs`
//!   passed; a client without a GET stream gets the upstream an error at once); the rest is
//!   dropped.
//! - **A lost session**: when the upstream lost it (404 to the GET, or to a request), the new
//!   one is opened with the level and every subscription of the client session that routes
//!   here made again, then the stream is opened again in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::super::hooks::ClientHooks;
use super::messages::Messages;
use super::wire::{chain, quoted};
use super::{
    Client, ClientSession, Failure, MAX_MESSAGE, SESSION_HEADER, Session, UpstreamError,
    VERSION_HEADER, Whose, held,
};

/// Numbers the tasks holding streams, so a task that ends removes only its own entry.
static TASKS: AtomicU64 = AtomicU64::new(1);

/// Pause before a standalone stream is asked for again after it could not be opened (then
/// doubling to [`LONGEST_PAUSE`]), and after one that was open ended.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const AFTER_OPEN: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

/// How one of a client session's standalone streams ended.
enum Ended {
    /// The upstream offers none (405).
    NoStream,
    /// It ended: after it was open (`true`), or at once (another stream of the session is
    /// open: 409).
    Closed(bool),
}

impl Client {
    /// How the node delivers to client sessions what their own upstream streams carry (the
    /// first call wins).
    pub fn on_client_hooks(&self, hooks: ClientHooks) {
        let _ = self.hooks.set(hooks);
    }

    /// Whether client sessions get sessions of their own with this upstream: `perClient`
    /// and a session-based upstream that issues session ids (opening the node's own session
    /// to learn the era, bounded by `timeoutMs`).
    pub async fn per_client_applies(&self) -> Result<bool, UpstreamError> {
        if !self.per_client {
            return Ok(false);
        }
        let session = match tokio::time::timeout(self.timeout, self.session()).await {
            Ok(s) => s?,
            Err(_) => return Err(UpstreamError::Timeout(self.timeout.as_millis() as u64)),
        };
        Ok(!session.modern && session.id.is_some())
    }

    /// Client session `s` subscribes to upstream resource `uri` (`served` to it): in its own
    /// session with the upstream when it gets one ([`Client::per_client_applies`]), else in
    /// the node's ([`Client::subscribe`], counted).
    pub async fn subscribe_for(
        &self,
        s: &Arc<ClientSession>,
        uri: &str,
        served: &str,
    ) -> Result<(), UpstreamError> {
        if !self.per_client_applies().await? {
            return self.subscribe(uri, served).await;
        }
        self.request_full(
            "resources/subscribe",
            json!({ "uri": uri }),
            None,
            None,
            Vec::new(),
            Whose::Client(s.clone()),
        )
        .await
        .map(drop)
    }

    /// [`Client::subscribe_for`]'s undoing: `resources/unsubscribe` in the client session's
    /// own session (when it has one), else counted in the node's.
    pub async fn unsubscribe_for(
        &self,
        s: &Arc<ClientSession>,
        uri: &str,
        served: &str,
    ) -> Result<(), UpstreamError> {
        if !self.per_client_applies().await? {
            return self.unsubscribe(uri, served).await;
        }
        if s.state.lock().upstream_session(&self.name).is_none() {
            // Subscribed before this node used client sessions' own (an older node): in the
            // node's session.
            return self.unsubscribe(uri, served).await;
        }
        self.request_full(
            "resources/unsubscribe",
            json!({ "uri": uri }),
            None,
            None,
            Vec::new(),
            Whose::Client(s.clone()),
        )
        .await
        .map(drop)
    }

    /// The client session's subscriptions to this upstream's resources: (upstream URI, the
    /// URI the client subscribed with).
    fn client_uris(&self, s: &ClientSession) -> Vec<(String, String)> {
        let Some(hooks) = self.hooks.get() else {
            return Vec::new();
        };
        let served: Vec<String> = s
            .state
            .lock()
            .subscriptions
            .iter()
            .map(|u| u.to_string())
            .collect();
        served
            .into_iter()
            .filter_map(|served| {
                let (name, uri) = (hooks.route)(&served)?;
                (name == self.name).then_some((uri, served))
            })
            .collect()
    }

    /// Whether client session `s` needs its standalone stream with this upstream: it has its
    /// own session with it, and a subscription to one of its resources or a level it set.
    fn needs_own_stream(&self, s: &ClientSession) -> bool {
        let level_set = match s.state.lock().upstream_session(&self.name) {
            None => return false,
            Some(e) => e.level.is_some(),
        };
        level_set || !self.client_uris(s).is_empty()
    }

    /// Starts or stops client session `s`'s standalone stream with this upstream as it needs
    /// one (module docs) and this node owns it. With `wait`, a stream started now is waited
    /// for until it is open (or failed to open), at most `timeoutMs`.
    pub async fn review(&self, s: &Arc<ClientSession>, wait: bool) {
        let Some(hooks) = self.hooks.get() else {
            return;
        };
        if !self.needs_own_stream(s) || !(hooks.owns)(s) {
            self.stop_own_stream(s);
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut streams = self.own_streams.lock();
            if streams.contains_key(&s.id) {
                return;
            }
            let number = TASKS.fetch_add(1, Ordering::Relaxed);
            let task = runtime.spawn(hold(me, s.clone(), number, tx));
            streams.insert(s.id, (number, task.abort_handle()));
            self.metrics.client_streams(streams.len());
        }
        if wait {
            let _ = tokio::time::timeout(self.timeout, rx).await;
        }
    }

    /// Stops client session `s`'s standalone stream with this upstream, if held here (it
    /// ended, left this node, or needs none any more).
    pub fn stop_own_stream(&self, s: &ClientSession) {
        let mut streams = self.own_streams.lock();
        if let Some((_, task)) = streams.remove(&s.id) {
            task.abort();
            self.metrics.client_streams(streams.len());
        }
    }

    /// Stops every client session's standalone stream held here (the node stops).
    pub fn stop_own_streams(&self) {
        let mut streams = self.own_streams.lock();
        for (_, (_, task)) in streams.drain() {
            task.abort();
        }
        self.metrics.client_streams(0);
    }

    /// How many client sessions' standalone streams this node holds with the upstream.
    pub fn own_streams(&self) -> usize {
        self.own_streams.lock().len()
    }

    /// Sends the client session's level and subscriptions to this upstream again in
    /// `fresh`, its new session (the upstream lost the last one); refusals are logged.
    pub(super) async fn restore_own(&self, s: &Arc<ClientSession>, fresh: &Session) {
        for (uri, _) in self.client_uris(s) {
            let params = json!({ "uri": uri });
            if let Err(Failure::Error(e)) = self
                .call(fresh, "resources/subscribe", &params, None, None, &[])
                .await
            {
                tracing::warn!(upstream = %self.name, uri, error = %e, "subscription not made again in a client's new upstream session");
            }
        }
    }

    /// One standalone stream of client session `s`'s own session, until it ends; `opened`
    /// is told once it is open.
    async fn own_stream_once(
        &self,
        s: &Arc<ClientSession>,
        session: &Session,
        opened: &mut Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Ended, Failure> {
        let mut req = Request::get(self.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(VERSION_HEADER, session.version.clone());
        if let Some(id) = &session.id {
            req = req.header(SESSION_HEADER, id.clone());
        }
        for (k, v) in self.headers.current().iter() {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout.as_millis() as u64))?
            .map_err(|e| UpstreamError::Unreachable(chain(&e)))?;
        let status = resp.status();
        match status {
            StatusCode::METHOD_NOT_ALLOWED => return Ok(Ended::NoStream),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => return Err(Failure::SessionGone),
            // Another stream of this session is open (the node the session left has not
            // closed its own yet): asked again after a pause.
            StatusCode::CONFLICT => return Ok(Ended::Closed(false)),
            _ if !status.is_success() => {
                return Err(UpstreamError::Status {
                    status: status.as_u16(),
                    body: quoted(resp.into_body()).await,
                }
                .into());
            }
            _ => {}
        }
        if let Some(tx) = opened.take() {
            let _ = tx.send(());
        }
        let mut messages = Messages::new(resp.into_body(), MAX_MESSAGE);
        while let Some(message) = messages.next().await? {
            self.on_own_message(s, session, message).await;
        }
        Ok(Ended::Closed(true))
    }

    /// A notification or a server→client request on client session `s`'s own stream.
    async fn on_own_message(&self, s: &Arc<ClientSession>, session: &Session, message: Value) {
        let Some(hooks) = self.hooks.get() else {
            return;
        };
        let Some(method) = message.get("method").and_then(Value::as_str) else {
            return;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        let Some(id) = message.get("id") else {
            match method {
                "notifications/resources/updated" => {
                    let Some(uri) = params.get("uri").and_then(Value::as_str) else {
                        return;
                    };
                    for (_, served) in self.client_uris(s).into_iter().filter(|(u, _)| u == uri) {
                        (hooks.notify)(s, method, &json!({ "uri": served }));
                    }
                }
                "notifications/message" => (hooks.notify)(s, method, &params),
                "notifications/tools/list_changed"
                | "notifications/resources/list_changed"
                | "notifications/prompts/list_changed" => self.list_changed.notify_one(),
                _ => {}
            }
            return;
        };
        let answer = match (hooks.ask)(s.clone(), method.to_owned(), params).await {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        };
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        if let Err(Failure::Error(e)) = self.deliver(session, body).await {
            tracing::debug!(upstream = %self.name, method, error = %e, "could not answer an upstream's request on a client's stream");
        }
    }
}

/// Holds client session `s`'s standalone stream with `client`'s upstream while it needs one
/// and this node owns it (checked before each opening), re-opening it after a pause, and its
/// upstream session when the upstream lost it. Ends by itself, or aborted
/// ([`Client::stop_own_stream`]).
async fn hold(
    client: Arc<Client>,
    s: Arc<ClientSession>,
    number: u64,
    opened: tokio::sync::oneshot::Sender<()>,
) {
    let mut opened = Some(opened);
    let mut pause = FIRST_PAUSE;
    loop {
        let owned = client.hooks.get().is_some_and(|h| (h.owns)(&s));
        let current = s.state.lock().upstream_session(&client.name).and_then(held);
        let Some(session) = current.filter(|_| owned && client.needs_own_stream(&s)) else {
            break;
        };
        let outcome = client.own_stream_once(&s, &session, &mut opened).await;
        // Whoever waits for the stream waits for the first try only (a subscription is
        // answered either way; the stream is asked for again in the background).
        drop(opened.take());
        match outcome {
            Ok(Ended::Closed(was_open)) => {
                if was_open {
                    pause = AFTER_OPEN;
                }
            }
            Ok(Ended::NoStream) => {
                tracing::debug!(upstream = %client.name, "no standalone stream (405) for a client's session");
                break;
            }
            Err(Failure::SessionGone) => {
                tracing::info!(upstream = %client.name, "the upstream lost a client's session; initializing again");
                match client
                    .reopen_own(&super::Own::Client(s.clone()), &session)
                    .await
                {
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(upstream = %client.name, error = %e, "re-opening a client's upstream session failed");
                    }
                }
            }
            Err(Failure::Error(e)) => {
                tracing::debug!(upstream = %client.name, error = %e, "a client's standalone stream failed");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
    let mut streams = client.own_streams.lock();
    if streams.get(&s.id).is_some_and(|(n, _)| *n == number) {
        streams.remove(&s.id);
        client.metrics.client_streams(streams.len());
    }
}
