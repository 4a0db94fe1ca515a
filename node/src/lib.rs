//! `mcp-node`: an MCP server node that serves Streamable HTTP clients of both protocol eras
//! (2025-11-25 sessions and 2026-07-28 stateless requests) on one endpoint, bounded under load.
//!
//! Entry point: [`run`] (or [`start`] for tests and embedders, which returns the bound
//! addresses and a handle). Codemap: `docs/ARCHITECTURE.md`.
//!
//! - [`settings`]: configuration from file, environment and flags, validated before binding.
//! - [`node`]: the state every connection shares ([`Node`]) and how it drains ([`node::drain`]).
//! - [`http`]: accept loop, `/mcp` transport rules, the two eras, SSE streams, forwarding's
//!   HTTP side.
//! - [`protocol`]: the method table shared by both eras.
//! - [`session`]: legacy sessions as data (registry, record, event logs), and the interface
//!   of the session layer between nodes ([`session::layer::SessionLayer`]).
//! - [`content`]: tools/resources/prompts ([`content::Catalog`]) and the built-in packs.
//! - [`auth`]: OAuth 2.1 resource server (access tokens, scopes, sessions bound to principals).
//! - [`cluster`]: membership with peer nodes (QUIC, SWIM), the `/cluster` view, and the session
//!   layer between nodes (replication, failover, forwarding's peer messages, hand-off).
//!
//! Imports point one way (`make layers`; "The node's layers" in `docs/ARCHITECTURE.md`).
//! - [`upstream`]: MCP servers behind the node (their tools served as `<name>__<tool>`).
//! - [`admin`], [`metrics`]: `/metrics`, `/healthz`, `/readyz`.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config_error;
pub mod content;
pub mod fdlimit;
pub mod http;
pub mod https_connector;
pub mod jsonrpc;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod ratelimit;
pub mod request_state;
pub mod session;
pub mod settings;
pub mod spread;
pub mod stream_queue;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use content::{Catalog, CatalogBuilder};
pub use node::Node;
pub use settings::Settings;

/// A running node (see [`start`]).
#[derive(Debug)]
pub struct Running {
    /// Where MCP is served.
    pub mcp_addr: SocketAddr,
    /// Where the admin endpoint is served.
    pub admin_addr: SocketAddr,
    /// The shared state.
    pub node: Arc<Node>,
    /// The cluster layer, when `cluster.enabled`: its membership view and relays.
    pub cluster: Option<cluster::ClusterHandle>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds both listeners and starts serving with the catalog from `settings` plus whatever
/// `extend` registers (the library hook for Rust users' own tools).
pub async fn start_with(
    settings: Settings,
    extend: impl FnOnce(&mut CatalogBuilder),
) -> anyhow::Result<Running> {
    let mut builder = CatalogBuilder::new();
    content::packs::register_configured(&mut builder, &settings.config);
    extend(&mut builder);
    let catalog = builder.build()?;
    let listener = listen(settings.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (`listen`): {e}", settings.listen))?;
    let admin = TcpListener::bind(settings.admin_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} (`adminListen`): {e}",
                settings.admin_listen
            )
        })?;
    let mcp_addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let node = Node::new(settings, catalog);
    if let Some(auth) = &node.auth {
        auth.prefetch();
    }
    let cluster = match &node.settings.cluster {
        Some(c) => {
            let owner = Arc::new(http::relayed::Owner::new(node.clone()));
            Some(cluster::start(c, node.clone(), mcp_addr, owner).await?)
        }
        None => None,
    };
    let cluster_handle = cluster.as_ref().map(cluster::Cluster::handle);
    let handoff_period = node.settings.cluster.as_ref().map(|c| c.load_publish);
    let (stop, stop_rx) = watch::channel(false);
    let task_node = node.clone();
    let admin_cluster = cluster_handle.clone();
    let task = tokio::spawn(async move {
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let housekeeping = tokio::spawn(housekeeping(task_node.clone(), stop_rx.clone()));
        // Each node keeps its own upstream tool lists, so a change is told to its own clients;
        // and its own upstream subscriptions, for the sessions it owns (upstream/kept.rs).
        let weak = Arc::downgrade(&task_node);
        let to_node = move |event| {
            if let Some(node) = weak.upgrade() {
                node.announce_local(event);
            }
        };
        let to_node: upstream::AnnounceFn = Arc::new(to_node);
        // A client session's own upstream sessions are part of its replicated state.
        let weak = Arc::downgrade(&task_node);
        task_node
            .upstreams
            .on_session_changed(Arc::new(move |s: &Arc<session::Session>| {
                if let Some(node) = weak.upgrade() {
                    node.session_changed(s);
                }
            }));
        // What a client session's own upstream stream carries reaches it here.
        task_node
            .upstreams
            .on_client_hooks(task_node.client_hooks());
        let upstreams = task_node.upstreams.spawn(to_node.clone(), to_node);
        let admin_task = tokio::spawn(admin::serve(
            admin,
            task_node.clone(),
            admin_cluster,
            stopped(stop_rx.clone()),
        ));
        let hand_off = handoff_period.map(|period| {
            tokio::spawn(node::drain::hand_off_while_draining(
                task_node.clone(),
                period,
            ))
        });
        let mcp_stop = node::drain::stopping(task_node.clone(), stopped(stop_rx.clone()));
        http::serve(listener, task_node.clone(), mcp_stop).await;
        node::drain::finish(&task_node).await;
        // After the drain: peers reached this node while it drained; now they learn it left.
        task_node
            .stop
            .enter(task_node.now_ms(), node::stop::StopPhase::Leave);
        if let Some(cluster) = cluster {
            cluster.leave(&task_node).await;
        }
        if let Some(task) = hand_off {
            task.abort();
        }
        housekeeping.abort();
        task_node
            .stop
            .enter(task_node.now_ms(), node::stop::StopPhase::Upstreams);
        drop(upstreams);
        if task_node.layer().is_none() {
            // Outside a cluster nobody continues this node's sessions: their own upstream
            // sessions end with them.
            let mut owned = Vec::new();
            task_node.sessions.for_each(|s| owned.push(s.clone()));
            task_node
                .upstreams
                .sessions_ended(&owned, Duration::from_secs(1))
                .await;
        }
        task_node.upstreams.close(Duration::from_secs(1)).await;
        let _ = admin_task.await;
        task_node
            .stop
            .enter(task_node.now_ms(), node::stop::StopPhase::Exit);
    });
    tracing::info!(%mcp_addr, %admin_addr, max_connections = node.settings.max_connections, "mcp-node serving");
    Ok(Running {
        mcp_addr,
        admin_addr,
        node,
        cluster: cluster_handle,
        stop,
        task,
    })
}

/// [`start_with`] without extra content.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    start_with(settings, |_| {}).await
}

/// Runs a node until `shutdown` resolves, then drains and returns. The returned watchdog
/// ([`node::drain::StopWatch`]) bounds the whole stop, the runtime's own shutdown included:
/// keep it until the runtime is shut down (`Runtime::shutdown_timeout` with
/// [`node::drain::RUNTIME_STOP`]), then drop it. Past [`node::drain::stop_bound`] from
/// `shutdown` it ends the process.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<node::drain::StopWatch> {
    let running = start(settings).await?;
    shutdown.await;
    let bound = node::drain::stop_bound(&running.node);
    tracing::info!(bound_s = bound.as_secs_f64(), "shutting down");
    let watch = node::drain::StopWatch::start(running.node.clone(), bound);
    running.shutdown().await;
    Ok(watch)
}

/// How often sessions idle past `limits.sessionIdleTtlSecs` are looked for (one goes at most
/// this long after its time).
const EXPIRY_PERIOD: Duration = Duration::from_secs(15);

/// Periodic work: expire idle sessions (every [`EXPIRY_PERIOD`]), send SSE keep-alives on the
/// streams whose client is connected here (every `limits.sseKeepaliveSecs`, spread over the
/// period a slice of the sessions at a time: `spread.rs`; none to a stream written to in the
/// last half period).
async fn housekeeping(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut expiry = tokio::time::interval(EXPIRY_PERIOD);
    let period = Duration::from_secs(node.settings.config.limits.sse_keepalive_secs);
    let mut slices = spread::Slices::over(period);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + slices.tick(), slices.tick());
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl_ms = node.settings.config.limits.session_idle_ttl_secs * 1000;
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let now = node.now_ms();
                let expired = node.sessions.expire(now.saturating_sub(ttl_ms));
                // Their own upstream sessions end with them (`sessions: perClient`).
                for s in &expired {
                    node.upstreams.session_ended(s);
                }
                let expired = expired.len();
                if expired > 0 {
                    tracing::debug!(expired, "expired idle sessions");
                }
                node.metrics.sessions.set(node.sessions.len() as i64);
            }
            _ = keepalive.tick() => {
                let slice = slices.advance();
                node.sessions.for_each_in_slice(slice, slices.count(), |s| {
                    for stream in s.state.lock().streams.iter_mut() {
                        stream.keepalive(period / 2);
                    }
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Connections the kernel may hold for the MCP listener before `accept` takes them (capped
/// by `net.core.somaxconn`, 4096 on current kernels). A node that dies leaves thousands of
/// clients reconnecting to the others within a fraction of a second; at tokio's default of
/// 1024 the queues overflowed at 100K sessions (`TcpExtListenOverflows`), the kernel dropped
/// the SYNs, and the clients' retransmits came 1 s and 3 s later — stream reopens that took
/// longer than the clients waited.
const LISTEN_BACKLOG: u32 = 4096;

/// The MCP listener on `addr`, with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted node binds its port again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
