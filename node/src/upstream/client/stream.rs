//! The upstream's standalone stream, held open by [`Client::listen`]: the GET stream of a
//! 2025-11-25 session, or a `subscriptions/listen` request of a 2026-07-28 upstream; what it
//! carries goes to `Client::on_message` (list changes, resources updated).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::super::modern;
use super::messages::Messages;
use super::wire::{chain, is_event_stream, quoted, request_body};
use super::{Client, Failure, MAX_MESSAGE, SESSION_HEADER, Session, UpstreamError, VERSION_HEADER};

/// How one standalone stream ended.
enum Ended {
    /// The upstream offers none.
    NoStream,
    /// It was open and ended.
    Closed,
    /// Its 2026-07-28 resource subscriptions changed: open it again at once.
    Relisten,
}

impl Client {
    /// Holds the standalone stream of the current session open (GET, or `subscriptions/listen`
    /// for a 2026-07-28 upstream) and wakes the refresher on a `list_changed` notification.
    /// Ends when the upstream has no such stream (405, or a refused listen); otherwise re-opens it after a pause (1 s, doubling to 30 s while it fails), on a new
    /// session when the upstream lost ours. Not counted in `maxConcurrency` (it is one
    /// long-lived connection, not a request).
    pub async fn listen(&self) {
        let mut pause = Duration::from_secs(1);
        loop {
            let current = self.session.lock().clone();
            let Some(session) = current else {
                tokio::select! {
                    _ = self.opened.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            };
            match self.stream_once(&session).await {
                Ok(Ended::Relisten) => {
                    pause = Duration::from_secs(1);
                    continue;
                }
                Ok(Ended::Closed) => pause = Duration::from_secs(1),
                Ok(Ended::NoStream) => {
                    tracing::debug!(upstream = %self.name, "no standalone stream (405): tool lists refresh on the interval only");
                    return;
                }
                Err(Failure::SessionGone) => {
                    if let Err(e) = self.initialize(Some(session.generation)).await {
                        tracing::debug!(upstream = %self.name, error = %e, "re-initializing for the stream failed");
                    }
                }
                Err(Failure::Error(e)) => {
                    tracing::debug!(upstream = %self.name, error = %e, "standalone stream failed");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    }

    /// One standalone stream, until it ends.
    async fn stream_once(&self, session: &Session) -> Result<Ended, Failure> {
        let relisten = self.relisten.notified();
        tokio::pin!(relisten);
        let req = if session.modern {
            // 2026-07-28: a `subscriptions/listen` request whose answer is the stream; the
            // resources clients subscribed to through this node are in it.
            let mut notifications = json!({
                "toolsListChanged": true,
                "promptsListChanged": true,
                "resourcesListChanged": true,
            });
            let uris = self.kept.lock().uris();
            if !uris.is_empty() {
                notifications["resourceSubscriptions"] = json!(uris);
            }
            let params = json!({ "notifications": notifications });
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = request_body(id, "subscriptions/listen", &modern::params(&params));
            self.post(
                session,
                body,
                &modern::headers("subscriptions/listen", &params),
            )?
        } else {
            let mut req = Request::get(self.url.clone())
                .header(ACCEPT, "text/event-stream")
                .header(VERSION_HEADER, session.version.clone());
            if let Some(id) = &session.id {
                req = req.header(SESSION_HEADER, id.clone());
            }
            for (k, v) in self.headers.current().iter() {
                req = req.header(k, v);
            }
            req.body(Full::new(Bytes::new()))
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?
        };
        let resp = tokio::time::timeout(self.timeout, self.http.request(req))
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout.as_millis() as u64))?
            .map_err(|e| UpstreamError::Unreachable(chain(&e)))?;
        let status = resp.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(Ended::NoStream);
        }
        if session.modern && !is_event_stream(&resp) {
            // No listen stream (an error answer): lists refresh on the interval only.
            tracing::debug!(upstream = %self.name, %status, "`subscriptions/listen` refused");
            return Ok(Ended::NoStream);
        }
        if session.id.is_some()
            && (status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST)
        {
            return Err(Failure::SessionGone);
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body: quoted(resp.into_body()).await,
            }
            .into());
        }
        let mut messages = Messages::new(resp.into_body(), MAX_MESSAGE);
        loop {
            let message = tokio::select! {
                message = messages.next() => message?,
                _ = &mut relisten, if session.modern => return Ok(Ended::Relisten),
            };
            let Some(message) = message else { break };
            self.on_message(session, &message).await;
        }
        Ok(Ended::Closed)
    }
}
