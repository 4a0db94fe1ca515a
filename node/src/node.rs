//! [`Node`]: the state shared by every connection of one node process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::broadcast;

use crate::content::Catalog;
use crate::metrics::Metrics;
use crate::session::Registry;
use crate::settings::Settings;

/// A change that subscribed clients hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// `notifications/resources/updated` for a URI.
    ResourceUpdated(String),
    /// `notifications/tools/list_changed`.
    ToolsListChanged,
    /// `notifications/prompts/list_changed`.
    PromptsListChanged,
    /// `notifications/resources/list_changed`.
    ResourcesListChanged,
}

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
    /// Set when shutdown starts: new sessions and connections are refused, `/readyz` fails.
    pub draining: AtomicBool,
    started: Instant,
    changes: broadcast::Sender<ChangeEvent>,
}

impl Node {
    /// Builds the node state.
    pub fn new(settings: Settings, catalog: Catalog) -> Arc<Self> {
        let sessions = Registry::new(settings.config.limits.max_sessions as usize);
        let (changes, _) = broadcast::channel(256);
        Arc::new(Self {
            settings,
            catalog,
            sessions,
            metrics: Metrics::new(),
            connections: AtomicU32::new(0),
            inflight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            state_signer: crate::request_state::StateSigner::random(),
            started: Instant::now(),
            changes,
        })
    }

    /// Milliseconds since the node started (monotonic).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Announces a change to every subscribed client of this node (legacy sessions subscribed
    /// with `resources/subscribe` or holding a GET stream, and 2026-07-28 `subscriptions/listen`
    /// streams that asked for it).
    pub fn announce(&self, event: ChangeEvent) {
        let _ = self.changes.send(event.clone());
        let log_cap = self.settings.config.limits.event_log_capacity as usize;
        let (method, params) = crate::protocol::notify::change_message(&event);
        let bytes = crate::jsonrpc::notification(method, &params);
        self.sessions.for_each(|s| {
            let mut st = s.state.lock();
            let wanted = match &event {
                ChangeEvent::ResourceUpdated(uri) => st.subscriptions.iter().any(|u| &**u == uri),
                _ => true,
            };
            if wanted {
                st.push_standalone(&bytes, log_cap);
            }
        });
    }

    /// Receives every change announced from now on.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }
}
