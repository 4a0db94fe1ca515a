//! [`ClientHooks`]: how the node lets what an upstream sends on a client session's own
//! standalone stream (`sessions: perClient`, `client/own.rs`) reach that client session; the
//! node sets them once it starts (`node/upstream_hooks.rs`).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::session::Session as ClientSession;

/// Whether this node owns a client session (its registry holds this very record).
pub type OwnsFn = Arc<dyn Fn(&Arc<ClientSession>) -> bool + Send + Sync>;
/// Delivers a notification (method, params) to a client session's standalone stream.
pub type NotifyFn = Arc<dyn Fn(&Arc<ClientSession>, &str, &Value) + Send + Sync>;
/// Asks a client session a server→client request (method, params): the result, or the
/// JSON-RPC `error` object to answer with.
pub type AskFn = Arc<
    dyn Fn(Arc<ClientSession>, String, Value) -> BoxFuture<'static, Result<Value, Value>>
        + Send
        + Sync,
>;
/// The upstream (its name) and the URI it knows for a client-facing resource URI.
pub type RouteFn = Arc<dyn Fn(&str) -> Option<(String, String)> + Send + Sync>;

/// How the node lets a client session's own upstream stream reach that client.
#[derive(Clone)]
pub struct ClientHooks {
    /// Whether this node owns the client session (its registry holds this very record).
    pub owns: OwnsFn,
    /// A notification for the client session on its standalone stream (a log message only at
    /// its level), replicated like any event.
    pub notify: NotifyFn,
    /// A server→client request asked of the client session on its standalone stream.
    pub ask: AskFn,
    /// The upstream (its name) and the URI it knows for a client-facing resource URI, when
    /// an upstream serves it.
    pub route: RouteFn,
}

impl std::fmt::Debug for ClientHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHooks").finish_non_exhaustive()
    }
}
