//! How what an upstream sends on a client session's own standalone stream
//! (`sessions: perClient`, `upstream/client/own.rs`) reaches that client session here: its
//! notifications and requests on the session's GET stream (logged and replicated like any
//! event, so a client connected to another node gets them through its relayed stream), and
//! whether this node owns the session at all.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::Node;
use crate::content::context::log_level_index;
use crate::jsonrpc::{self, RequestId};
use crate::session::Session;
use crate::upstream::hooks::ClientHooks;

impl Node {
    /// The hooks the upstream clients deliver to client sessions through.
    pub fn client_hooks(self: &Arc<Self>) -> ClientHooks {
        let me = Arc::downgrade(self);
        let owns = {
            let me = me.clone();
            move |s: &Arc<Session>| {
                me.upgrade().is_some_and(|n| {
                    n.sessions
                        .get(&s.id)
                        .is_some_and(|here| Arc::ptr_eq(&here, s))
                })
            }
        };
        let notify = {
            let me = me.clone();
            move |s: &Arc<Session>, method: &str, params: &Value| {
                if let Some(n) = me.upgrade() {
                    n.notify_session(s, method, params);
                }
            }
        };
        let ask = {
            let me = me.clone();
            move |s: Arc<Session>, method: String, params: Value| {
                let me = me.clone();
                let asked: futures_util::future::BoxFuture<'static, Result<Value, Value>> =
                    Box::pin(async move { ask(me, s, method, params).await });
                asked
            }
        };
        let route = move |uri: &str| {
            let n = me.upgrade()?;
            let r = n
                .upstreams
                .route_resource(uri, |u| n.catalog.resource_exists(u))?;
            Some((r.upstream.name().to_owned(), r.uri))
        };
        ClientHooks {
            owns: Arc::new(owns),
            notify: Arc::new(notify),
            ask: Arc::new(ask),
            route: Arc::new(route),
        }
    }

    /// A notification on session `s`'s standalone stream (a log message only at the
    /// session's level or above), replicated; dropped when the client never opened one.
    fn notify_session(&self, s: &Arc<Session>, method: &str, params: &Value) {
        let log_cap = self.settings.config.limits.event_log_capacity as usize;
        let json = jsonrpc::notification(method, params);
        let pushed = {
            let mut st = s.state.lock();
            if method == "notifications/message" {
                let level = params
                    .get("level")
                    .and_then(Value::as_str)
                    .and_then(log_level_index);
                if level.is_none_or(|l| l < st.log_level) {
                    return;
                }
            }
            st.push_standalone(&json, log_cap)
        };
        if pushed {
            self.session_changed(s);
        }
    }
}

/// A server→client request asked of session `s` on its standalone stream: the client's
/// result or error, an error at once when it has no stream to be asked on, or after
/// `limits.clientRequestTimeoutSecs`.
async fn ask(
    node: Weak<Node>,
    s: Arc<Session>,
    method: String,
    params: Value,
) -> Result<Value, Value> {
    let refuse =
        |message: &str| json!({ "code": jsonrpc::code::INTERNAL_ERROR, "message": message });
    let Some(n) = node.upgrade() else {
        return Err(refuse("the node is stopping"));
    };
    let log_cap = n.settings.config.limits.event_log_capacity as usize;
    let within = Duration::from_secs(n.settings.config.limits.client_request_timeout_secs);
    let (pushed, rx) = {
        let mut st = s.state.lock();
        let (id, rx) = st.new_client_request();
        let json = jsonrpc::request(&RequestId::Number(id), &method, &params);
        (st.push_standalone(&json, log_cap), rx)
    };
    if !pushed {
        return Err(refuse("the client holds no stream to be asked on"));
    }
    n.session_changed(&s);
    drop(n);
    match tokio::time::timeout(within, rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(refuse("the client session ended")),
        Err(_) => Err(refuse("the client did not answer in time")),
    }
}
