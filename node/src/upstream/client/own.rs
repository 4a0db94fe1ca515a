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
//!   background), so an update the upstream sends right after is not missed. A task that
//!   decided to stop leaves the table only if no review found it there meanwhile (it looks
//!   again otherwise), so a subscription racing the last unsubscribe is not left without a
//!   stream.
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
//! - **Resumed** (`resumeStreams`, off by default: an upstream's event store must replay per
//!   stream, which server-everything's does not): when the upstream gives its events ids,
//!   the id of the last one delivered is
//!   kept in the client session's record of that upstream session (replicated: each event
//!   marks the session changed), and a stream opened again — by this node, or by the one the
//!   session moved to — carries it as `Last-Event-ID`, so what the upstream said while no
//!   stream was open is sent then (at least once: after a kill -9 the replicas may hold an
//!   older id). A refusal of a resumed GET drops the id (the next try opens it afresh).
//! - **A lost session**: when the upstream lost it (404 to the GET, or to a request), the new
//!   one is opened with the level and every subscription of the client session that routes
//!   here made again, then the stream is opened again in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::super::hooks::ClientHooks;
use super::messages::Messages;
use super::wire::{chain, quoted};
use super::{
    Client, ClientSession, Failure, Holder, MAX_MESSAGE, SESSION_HEADER, Session, UpstreamError,
    VERSION_HEADER, Whose, held,
};
use crate::session::UpstreamSession;

/// The header a stream is resumed with.
const LAST_EVENT_ID: &str = "last-event-id";

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
            if let Some(holder) = streams.get_mut(&s.id) {
                // Held already — or its task decided to stop before this change and has not
                // left the table yet: it looks again.
                holder.look_again = true;
                return;
            }
            let number = TASKS.fetch_add(1, Ordering::Relaxed);
            let task = runtime.spawn(hold(me, s.clone(), number, tx));
            streams.insert(
                s.id,
                Holder {
                    number,
                    task: task.abort_handle(),
                    look_again: false,
                },
            );
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
        if let Some(holder) = streams.remove(&s.id) {
            holder.task.abort();
            self.metrics.client_streams(streams.len());
        }
    }

    /// Stops every client session's standalone stream held here (the node stops).
    pub fn stop_own_streams(&self) {
        let mut streams = self.own_streams.lock();
        for (_, holder) in streams.drain() {
            holder.task.abort();
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
        // Resumed after the last event delivered, by this node or the one the session was on.
        let resumed = self
            .last_event(s, session)
            .and_then(|id| HeaderValue::from_str(&id).ok());
        if let Some(id) = &resumed {
            req = req.header(LAST_EVENT_ID, id.clone());
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
                if resumed.is_some() {
                    // Perhaps the id it no longer knows: the next try opens it afresh.
                    self.note_event(s, session, None);
                }
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
        let mut last = resumed.map(|v| v.as_bytes().to_vec());
        while let Some(message) = messages.next_event().await? {
            if let Some(message) = message {
                self.on_own_message(s, session, message).await;
            }
            // Delivered (or nothing to deliver, as a priming event): resumed after it.
            if let Some(id) = messages.last_event_id()
                && last.as_deref() != Some(id)
            {
                last = Some(id.to_vec());
                self.note_event(s, session, Some(id));
            }
        }
        Ok(Ended::Closed(true))
    }

    /// The last event id recorded for client session `s`'s standalone stream in `session`
    /// (none unless `resumeStreams`).
    fn last_event(&self, s: &ClientSession, session: &Session) -> Option<Box<str>> {
        if !self.resume_streams {
            return None;
        }
        let st = s.state.lock();
        let entry = st.upstream_session(&self.name)?;
        let same = session
            .id
            .as_ref()
            .is_some_and(|id| id.as_bytes() == entry.id.as_bytes());
        same.then(|| entry.last_event.clone()).flatten()
    }

    /// Records `id` as the last event client session `s`'s stream in `session` delivered (an
    /// id that is not a header value of at most `UpstreamSession::MAX_FIELD` bytes is not
    /// kept: the stream is not resumed), replicated with the session.
    fn note_event(&self, s: &Arc<ClientSession>, session: &Session, id: Option<&[u8]>) {
        if !self.resume_streams {
            return;
        }
        let id: Option<Box<str>> = id
            .filter(|id| id.len() <= UpstreamSession::MAX_FIELD)
            .filter(|id| HeaderValue::from_bytes(id).is_ok())
            .and_then(|id| std::str::from_utf8(id).ok())
            .map(Into::into);
        {
            let mut st = s.state.lock();
            let Some(entry) = st.upstreams.as_mut().and_then(|list| {
                list.iter_mut().find(|u| {
                    *u.upstream == *self.name
                        && session
                            .id
                            .as_ref()
                            .is_some_and(|v| v.as_bytes() == u.id.as_bytes())
                })
            }) else {
                return;
            };
            if entry.last_event == id {
                return;
            }
            entry.last_event = id;
        }
        if let Some(changed) = self.session_changed.get() {
            changed(s);
        }
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
/// upstream session when the upstream lost it. Ends by itself — leaving the table only when
/// no [`Client::review`] asked it to look again meanwhile ([`Holder::look_again`]) —, or
/// aborted ([`Client::stop_own_stream`]).
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
            if leave(&client, &s, number).await {
                break;
            }
            continue;
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
                if leave(&client, &s, number).await {
                    break;
                }
                continue;
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
}

/// Task `number`, holding client session `s`'s stream, decided to stop: it leaves the table
/// (`true`), unless a [`Client::review`] since asked it to look again (`false`: the flag is
/// cleared, and the task checks once more whether a stream is needed). Deciding and leaving
/// under one lock would hold the table's lock while reading the session's state; the flag
/// closes the same gap.
async fn leave(client: &Client, s: &ClientSession, number: u64) -> bool {
    #[cfg(test)]
    tests::pause_before_leaving().await;
    let mut streams = client.own_streams.lock();
    match streams.get_mut(&s.id) {
        Some(holder) if holder.number == number => {
            if std::mem::take(&mut holder.look_again) {
                return false;
            }
            streams.remove(&s.id);
            client.metrics.client_streams(streams.len());
            true
        }
        // Replaced or removed (stopped) meanwhile: not this task's entry any more.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use mcpcluster_api::UpstreamConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;
    use crate::session::{ProtocolEra, SessionId, UpstreamSession};
    use crate::upstream::metrics::UpstreamMetrics;

    /// Where a holding task that decided to stop waits, when a test asks for it: the test
    /// is told (first), and the task goes on when the test says (second).
    type PausePoint = (oneshot::Sender<()>, oneshot::Receiver<()>);
    static PAUSE: parking_lot::Mutex<Option<PausePoint>> = parking_lot::Mutex::new(None);

    /// The pause point between a holding task's decision to stop and its leaving the table
    /// (used once, by the test that set it).
    pub(super) async fn pause_before_leaving() {
        let point = PAUSE.lock().take();
        if let Some((reached, go)) = point {
            let _ = reached.send(());
            let _ = go.await;
        }
    }

    /// An upstream that answers every GET with an event stream that ends at once, counting
    /// them.
    async fn upstream(gets: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let gets = gets.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if head.starts_with(b"GET ") {
                        gets.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        format!("http://{addr}/mcp")
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..100 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not within 5 s: {what}");
    }

    /// The task holding a client session's stream decides to stop (its last subscription
    /// went), and before it leaves the table the client subscribes again: `review` finds the
    /// task still there and starts none, so the task must look again rather than leave the
    /// subscription without a stream.
    #[tokio::test]
    async fn a_subscription_made_while_the_stream_stops_keeps_a_stream() {
        let gets = Arc::new(AtomicUsize::new(0));
        let url = upstream(gets.clone()).await;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = UpstreamMetrics::register(&mut registry).of("u");
        let client = Client::new(
            &UpstreamConfig::new("u", &url),
            std::path::Path::new("/nonexistent"),
            metrics,
        )
        .expect("client")
        .into_arc();
        client.on_client_hooks(ClientHooks {
            owns: Arc::new(|_| true),
            notify: Arc::new(|_, _, _| {}),
            ask: Arc::new(|_, _, _| Box::pin(async { Err(Value::Null) })),
            route: Arc::new(|uri| Some(("u".to_owned(), uri.to_owned()))),
        });
        let s = Arc::new(ClientSession::new(
            SessionId::random(),
            ProtocolEra::V2025_11_25,
            &json!({}),
            10,
            0,
        ));
        {
            let mut state = s.state.lock();
            state.set_upstream_session(UpstreamSession {
                upstream: "u".into(),
                id: "up-1".into(),
                version: "2025-11-25".into(),
                level: None,
                last_event: None,
            });
            state.subscriptions.push("test://a".into());
        }
        let (reached, at_pause) = oneshot::channel();
        let (go, going) = oneshot::channel();
        *PAUSE.lock() = Some((reached, going));

        client.review(&s, true).await;
        assert_eq!(client.own_streams(), 1);
        assert_eq!(gets.load(Ordering::SeqCst), 1);

        let opened = gets.load(Ordering::SeqCst);
        // The last subscription goes, and the task (its stream ended, asked for again after
        // a pause) decides by itself to stop — as when the unsubscribe's review ran before
        // the task's last check —, then waits at the pause point, still in the table.
        s.state.lock().subscriptions.clear();
        tokio::time::timeout(Duration::from_secs(5), at_pause)
            .await
            .expect("the task decided to stop within 5 s")
            .expect("pause point");
        // A new subscription, reviewed while the task is between its decision and leaving.
        s.state.lock().subscriptions.push("test://a".into());
        client.review(&s, false).await;
        assert_eq!(client.own_streams(), 1);
        let _ = go.send(());
        // The task looks again and holds the stream: it stays in the table and asks again.
        eventually("the stream is asked for again", || {
            gets.load(Ordering::SeqCst) > opened
        })
        .await;
        assert_eq!(client.own_streams(), 1, "the subscription has its stream");
        client.stop_own_streams();
    }
}
