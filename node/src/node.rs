//! [`Node`]: the state shared by every connection of one node process. How it drains:
//! [`drain`] (a stop's phases: [`stop`]); how a change reaches its sessions: [`announce`].

pub mod announce;
pub mod broadcasts;
pub mod drain;
pub mod stop;
pub mod upstream_hooks;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use tokio::sync::broadcast;

use crate::content::Catalog;
use crate::content::change::{Announce, ChangeEvent};
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::session::layer::SessionLayer;
use crate::settings::Settings;

/// Shared node state.
#[derive(Debug)]
pub struct Node {
    /// Validated settings.
    pub settings: Settings,
    /// What the node serves.
    pub catalog: Catalog,
    /// Legacy sessions.
    pub sessions: Registry,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Open client connections.
    pub connections: AtomicU32,
    /// Requests being handled.
    pub inflight: AtomicU32,
    /// Signs 2026-07-28 `requestState` values.
    pub state_signer: crate::request_state::StateSigner,
    /// Set when a drain starts (`drain.rs`): new sessions and connections are refused,
    /// `/readyz` fails. Change it with [`Node::set_draining`], which also tells the open
    /// connections.
    pub draining: AtomicBool,
    /// Wakes connection loops waiting between requests when a drain begins.
    drain_started: tokio::sync::Notify,
    /// Which phase of a stop (SIGTERM) the node is in (`drain.rs`).
    pub stop: stop::Stop,
    /// Bytes held by request buffers across all connections (`limits.maxBufferedRequestBytes`).
    pub body_budget: crate::http::budget::BodyBudget,
    /// This node's name in the cluster (`/cluster`'s `self`): `cluster.nodeName` (also
    /// `MCP_NODE_NAME`), else `POD_NAME`, else `HOSTNAME` (a pod's name), else `mcp-node`.
    pub name: String,
    /// The session layer between nodes (routing, replication, forwarding, hand-off), once it
    /// runs (`cluster.enabled`): installed by `cluster::start`, read through [`Node::layer`].
    layer: OnceLock<Arc<dyn SessionLayer>>,
    /// Client authentication (`auth.enabled`).
    pub auth: Option<crate::auth::Auth>,
    /// MCP servers behind this node (`upstreams`): their tools beside the catalog's.
    pub upstreams: crate::upstream::Upstreams,
    started: Instant,
    changes: broadcast::Sender<ChangeEvent>,
    /// Changes on their way to the legacy sessions ([`announce`]).
    broadcasts: broadcasts::Broadcasts,
    /// This node, for the tasks it spawns from `&self` (the paced broadcasts).
    me: Weak<Node>,
}

impl Node {
    /// A node with the default configuration and no content, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test() -> Arc<Self> {
        let settings = crate::Settings::validate(mcpcluster_api::NodeConfig::default())
            .expect("default config");
        Self::new(
            settings,
            crate::CatalogBuilder::new().build().expect("empty"),
        )
    }

    /// Builds the node state.
    pub fn new(settings: Settings, catalog: Catalog) -> Arc<Self> {
        let sessions = Registry::new(settings.config.limits.max_sessions as usize);
        let (changes, _) = broadcast::channel(256);
        let settings_key_file = settings
            .cluster
            .as_ref()
            .map(|_| settings.config.cluster.tls.key_file.clone())
            .unwrap_or_default();
        let name = match settings.config.cluster.node_name.as_str() {
            "" => node_name(|k| std::env::var(k).ok()),
            configured => configured.to_owned(),
        };
        let metrics = Metrics::new();
        let auth = settings.auth.clone().map(|a| {
            crate::auth::Auth::new(
                a,
                metrics.auth.clone(),
                settings.config.limits.retry_after_secs,
            )
        });
        let builtin = catalog
            .tools_json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(serde_json::Value::as_str))
            .map(str::to_owned)
            .collect();
        let upstreams = crate::upstream::Upstreams::new(
            &settings.config.upstreams,
            builtin,
            std::path::Path::new(&settings.config.secrets_dir),
            &metrics.upstream,
        );
        let body_budget = crate::http::budget::BodyBudget::new(
            settings.config.limits.max_buffered_request_bytes,
            metrics.buffered_request_bytes.clone(),
        );
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            broadcasts: broadcasts::Broadcasts::default(),
            auth,
            upstreams,
            settings,
            catalog,
            sessions,
            metrics,
            body_budget,
            drain_started: tokio::sync::Notify::new(),
            stop: stop::Stop::default(),
            connections: AtomicU32::new(0),
            inflight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            name,
            layer: OnceLock::new(),
            state_signer: state_signer(&settings_key_file),
            started: Instant::now(),
            changes,
        })
    }

    /// The session layer between nodes, when this node is part of a cluster.
    pub fn layer(&self) -> Option<&Arc<dyn SessionLayer>> {
        self.layer.get()
    }

    /// Installs the session layer (once, at cluster start); `false` if one was installed.
    pub fn set_layer(&self, layer: Arc<dyn SessionLayer>) -> bool {
        self.layer.set(layer).is_ok()
    }

    /// Milliseconds since the node started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Sets the draining flag and tells every connection loop; returns the previous value.
    pub fn set_draining(&self, draining: bool) -> bool {
        let was = self.draining.swap(draining, Ordering::AcqRel);
        if draining {
            self.drain_started.notify_waiters();
        }
        was
    }

    /// Resolves once a drain starts after this future was enabled or first polled (check
    /// [`Node::is_draining`] after enabling it: a drain that began before is not signalled).
    pub fn drain_started(&self) -> tokio::sync::futures::Notified<'_> {
        self.drain_started.notified()
    }

    /// This node now owns `s`, taken over or handed here: its subscriptions to upstream
    /// resources are made in this node's upstream sessions, so their updates reach it here,
    /// or, in its own upstream sessions (`sessions: perClient`), their standalone streams
    /// are opened here when it needs them.
    pub fn session_adopted(&self, s: &Arc<crate::session::Session>) {
        if self.upstreams.is_empty() {
            return;
        }
        let (uris, own) = {
            let st = s.state.lock();
            let uris: Vec<String> = st.subscriptions.iter().map(|u| u.to_string()).collect();
            (uris, st.upstreams.is_some())
        };
        if !uris.is_empty() || own {
            self.upstreams
                .adopt(s, uris, |uri| self.catalog.resource_exists(uri));
        }
    }

    /// This node no longer owns `s` (handed to a peer, or a peer owns a newer version): the
    /// standalone streams it held for the session's own upstream sessions are closed, so
    /// its new owner opens them.
    pub fn session_left(&self, s: &crate::session::Session) {
        if !self.upstreams.is_empty() {
            self.upstreams.session_left(s);
        }
    }

    /// A session's durable state or event log changed: its replicas get the change.
    pub fn session_changed(&self, s: &Arc<crate::session::Session>) {
        if let Some(layer) = self.layer() {
            layer.changed(s);
        }
    }

    /// A request changed a session's durable state and is about to be answered: resolves
    /// once the replicas hold the change (bounded; at once alone or with durability off).
    pub async fn session_changed_durably(&self, s: &Arc<crate::session::Session>) {
        if let Some(layer) = self.layer() {
            layer.changed_durably(s).await;
        }
    }

    /// Receives every change announced from now on.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }
}

impl Announce for Node {
    /// Announces a change to every subscribed client of this node (legacy sessions subscribed
    /// with `resources/subscribe` or holding a GET stream, and 2026-07-28 `subscriptions/listen`
    /// streams that asked for it). Peers announce it to their own clients.
    fn announce(&self, event: ChangeEvent) {
        if let Some(layer) = self.layer() {
            layer.announce(&event);
        }
        self.announce_local(event);
    }
}

/// The `requestState` signer: keyed from the cluster's peer key file when clustered with one
/// (every node holds the same Secret, so a state verifies on any node), else random.
fn state_signer(key_file: &str) -> crate::request_state::StateSigner {
    use crate::request_state::StateSigner;
    if key_file.is_empty() {
        return StateSigner::random();
    }
    match std::fs::read(key_file) {
        Ok(secret) => StateSigner::from_secret(&secret),
        Err(e) => {
            tracing::warn!(file = key_file, error = %e, "cannot read the peer key; requestState is signed with a key of this node only");
            StateSigner::random()
        }
    }
}

/// The node's name from the environment (`lookup` is `std::env::var` outside tests).
fn node_name(lookup: impl Fn(&str) -> Option<String>) -> String {
    ["MCP_NODE_NAME", "POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|k| lookup(k))
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "mcp-node".to_owned())
}

#[cfg(test)]
mod tests {
    use super::node_name;

    #[test]
    fn name_prefers_the_explicit_variable_then_the_pod() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            node_name(env(&[("HOSTNAME", "h"), ("MCP_NODE_NAME", "n")])),
            "n"
        );
        assert_eq!(node_name(env(&[("HOSTNAME", "h"), ("POD_NAME", "p")])), "p");
        assert_eq!(
            node_name(env(&[("MCP_NODE_NAME", ""), ("HOSTNAME", "h")])),
            "h"
        );
        assert_eq!(node_name(env(&[])), "mcp-node");
    }
}
