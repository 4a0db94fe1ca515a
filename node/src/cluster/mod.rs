//! The node's cluster layer, a thin tokio shell over `mcp-cluster`: the QUIC transport (mutual
//! TLS), SWIM membership with this node's load gossiped, and the view `GET /cluster` returns.
//!
//! Entry point: [`start`], called by [`crate::start_with`] when `cluster.enabled`; the returned
//! [`Cluster`] leaves gracefully in [`Cluster::leave`] at shutdown (after the drain: peers keep
//! reaching a draining node, which gossips `draining: true`, until it goes).
//!
//! - [`config`]: the validated `cluster` section; [`args`]: its flags and variables.
//! - [`tls`]: peer certificates from files, generated in memory, or written for local runs.
//! - [`shell`]: load publication, membership events → logs and metrics.
//! - [`view`]: the `/cluster` answer; [`metrics`]: `mcp_cluster_*`.
//! - [`peers`]: sessions across nodes (routing, replication, failover, hand-off, fan-out),
//!   installed in the node as its session layer by [`layer`] (the node's HTTP side sees only
//!   `session::layer::SessionLayer`); [`relay`]: the peer messages of requests relayed to
//!   the node holding their session (the HTTP side is `http/forward.rs`, whose owner-side
//!   handler [`start`] is given); [`inbound`]: the peer messages received; [`wire`]: their
//!   binary form; [`digest`]: anti-entropy between owners and replicas that costs nothing
//!   per idle session; [`rebalance`]: moves sessions from a node owning more than its share
//!   to members under theirs, as [`balance`] decides.
//! - [`custody`]: the driver of `mcp-custody`, the session layer that is to replace
//!   [`peers`] (docs/ARCHITECTURE.md "Custody into the node: the plan"); not started yet.

pub mod args;
pub mod balance;
pub mod config;
pub mod connection_balance;
pub mod custody;
pub mod detector;
pub mod digest;
pub mod handoff_stats;
pub mod inbound;
pub mod layer;
pub mod metrics;
pub mod peers;
pub mod rebalance;
pub mod relay;
pub mod routing;
pub mod shell;
pub mod tls;
pub mod view;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_cluster::membership::{Membership, NodeId};
use mcp_cluster::transport::{
    self, DriverOptions, GossipLink, MembershipHandle, Seeds, Transport, spawn_membership,
};
use tokio::task::JoinHandle;

pub use args::ClusterArgs;
pub use config::ClusterSettings;
pub use metrics::ClusterMetrics;
pub use view::{ClusterHandle, ClusterView};

use crate::node::Node;

/// How long a leave waits for the membership driver to send its last gossip.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// The running cluster layer of one node.
#[derive(Debug)]
pub struct Cluster {
    id: NodeId,
    transport: Transport,
    membership: Arc<MembershipHandle>,
    shell: JoinHandle<()>,
    leaving: Arc<AtomicBool>,
    peers: Arc<peers::Peers>,
    tasks: Vec<JoinHandle<()>>,
    mcp_addr: SocketAddr,
}

/// Binds the peer endpoint, joins the seeds, starts publishing this node's load, and installs
/// the session layer in `node`; requests peers relay here go to `handler` (the HTTP layer's).
pub async fn start(
    s: &ClusterSettings,
    node: Arc<Node>,
    mcp_addr: SocketAddr,
    handler: Arc<dyn relay::Handler>,
) -> anyhow::Result<Cluster> {
    if s.dev_tls {
        tracing::warn!(
            "cluster.tls: no certificate files configured; using a CA generated in memory, \
             which no other node trusts (set cluster.tls.caFile/certFile/keyFile, or run \
             `mcp-node --write-dev-certs DIR` once for local nodes)"
        );
    }
    let config = transport::Config {
        bind: s.peer_listen,
        advertise: s.advertise,
        server_name: s.server_name.clone(),
        ..transport::Config::default()
    };
    let bound = if s.gossip_udp {
        transport::bind_with_gossip(config, &s.tls, s.tls.gossip_key())
            .map(|(t, rx, g)| (t, rx, Some(g)))
    } else {
        Transport::bind(config, &s.tls).map(|(t, rx)| (t, rx, None))
    };
    let (transport, rx, gossip) = bound.map_err(|e| {
        anyhow::anyhow!(
            "cannot start the peer endpoint on {} and its gossip socket on the next port \
             (`cluster.peerListen`): {e}",
            s.peer_listen
        )
    })?;
    let addr = s.advertise.unwrap_or_else(|| transport.local_addr());
    // A restarted process must win over its old identity at once: start time in ms.
    let generation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let id = NodeId::new(addr, generation);
    let membership = Membership::new(
        id,
        shell::node_meta(&node, mcp_addr),
        s.membership.clone(),
        rand::random(),
        Instant::now(),
    )?;
    // Names (the headless Service) are resolved again at every join attempt, so a node that
    // started first finds the pods that start after it.
    let mut entries = s.seeds.clone();
    if let Some((name, port)) = &s.seed_dns {
        entries.push(format!("{name}:{port}"));
    }
    let seeds = Seeds::new(entries);
    tracing::info!(
        %id,
        peer_listen = %transport.local_addr(),
        gossip = ?gossip.as_ref().map(transport::GossipSocket::local_addr),
        ?seeds,
        "cluster starting"
    );
    let link = match gossip {
        Some(g) => GossipLink::udp(g),
        None => GossipLink::quic(transport.clone(), rx.gossip),
    };
    let metrics = node.clone();
    let options = DriverOptions {
        thread: s.membership_thread,
        observe: Some(Arc::new(move |o| {
            metrics.metrics.cluster.detector.observe(o)
        })),
    };
    let membership = Arc::new(spawn_membership(membership, link, seeds, options));
    let (peers, dirty) = peers::Peers::new(
        id,
        transport.clone(),
        membership.view.clone(),
        s,
        node.settings.config.limits.max_sessions as usize,
    );
    node.set_layer(Arc::new(layer::Layer::new(peers.clone(), &node)));
    // Calls held for 2026-07-28 clients name this address, so a retry through a peer finds
    // them (`http/modern.rs`, `upstream/bridge.rs`).
    node.upstreams.held().set_me(addr);
    let mut tasks = vec![
        tokio::spawn(inbound::run(
            node.clone(),
            peers.clone(),
            handler,
            rx.messages,
        )),
        tokio::spawn(peers::replicator(node.clone(), peers.clone(), dirty)),
        tokio::spawn(peers::expire_acks(node.clone(), peers.clone())),
        tokio::spawn(refresh(node.clone(), peers.clone())),
        tokio::spawn(balance_connections(node.clone(), peers.clone())),
    ];
    if s.rebalance_rate > 0.0 {
        tasks.push(tokio::spawn(rebalance::run(
            node.clone(),
            peers.clone(),
            s.rebalance_rate,
        )));
    }
    let leaving = Arc::new(AtomicBool::new(false));
    let shell = tokio::spawn(shell::run(
        node,
        peers.clone(),
        transport.clone(),
        membership.clone(),
        s.load_publish,
        leaving.clone(),
        mcp_addr,
    ));
    Ok(Cluster {
        id,
        transport,
        membership,
        shell,
        leaving,
        peers,
        tasks,
        mcp_addr,
    })
}

impl Cluster {
    /// This node's identity at start.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// What the admin endpoint (and tests) read of the running cluster layer.
    pub fn handle(&self) -> ClusterHandle {
        ClusterHandle {
            view: self.membership.view.clone(),
            mcp_addr: self.mcp_addr,
            peers: self.peers.clone(),
        }
    }

    /// Leaves gracefully (peers mark this node dead at once instead of detecting a failure),
    /// then closes the peer endpoint. Called after the drain (`node/drain.rs`), which handed
    /// the sessions off.
    pub async fn leave(self, node: &Arc<Node>) {
        // Peers must know this node drained before they see it go: a member that leaves
        // without having said so counts as failed (quorum, `routing::has_quorum`).
        self.membership
            .set_meta(shell::node_meta(node, self.mcp_addr))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut view = self.membership.view.clone();
        self.leaving.store(true, Ordering::Release);
        self.membership.leave().await;
        // The driver drops its side of the view once the leave is sent.
        let _ =
            tokio::time::timeout(LEAVE_WAIT, async { while view.changed().await.is_ok() {} }).await;
        // Let the last datagrams leave before the connections close.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.shell.abort();
        for t in &self.tasks {
            t.abort();
        }
        self.transport.close();
        tracing::info!(id = %self.id, "left the cluster");
    }

    /// Stops without a leave, as a crash would (tests).
    pub fn abort(self) {
        self.membership.abort();
        self.shell.abort();
        for t in &self.tasks {
            t.abort();
        }
        self.transport.close();
    }
}

/// How often owners send their digests and orphaned copies are checked for expiry.
const REFRESH_PERIOD: Duration = Duration::from_secs(15);

/// Owners tell each peer what it should hold (`digest.rs`): a copy whose `Forget` was lost
/// goes at the next mismatch, without re-sending idle sessions. Copies of an owner that is
/// gone and whose sessions nobody asked for go after the session idle time. Keep-alives start
/// where the client's connection is: streams relayed from a peer get theirs here, every
/// `limits.sseKeepaliveSecs` as the node's own streams (`lib.rs`'s housekeeping: spread over
/// the period, a slice at a time), and the owner sends none over the peer link.
async fn refresh(node: Arc<Node>, peers: Arc<peers::Peers>) {
    let mut tick = tokio::time::interval(REFRESH_PERIOD);
    let period = Duration::from_secs(node.settings.config.limits.sse_keepalive_secs);
    let mut slices = crate::spread::Slices::over(period);
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + slices.tick(), slices.tick());
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl_ms = node.settings.config.limits.session_idle_ttl_secs * 1000;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = node.now_ms();
                peers.send_digests(&node);
                peers.expire_orphans(now.saturating_sub(ttl_ms));
                node.metrics.cluster.set_replicas(peers.replicas.len());
            }
            _ = keepalive.tick() => peers.keepalive_relayed(slices.advance(), slices.count(), period / 2),
        }
    }
}

/// Ends some of the streams held here while this node has far more client connections than
/// the mean of its live, non-draining peers (`connection_balance.rs`): relayed ones first,
/// then those of sessions owned here. Once a second; nothing while this node drains or the
/// cluster is not calm (`Peers::calm_for_balance`: a member joined, left or drains, or is
/// suspect).
async fn balance_connections(node: Arc<Node>, peers: Arc<peers::Peers>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shedder = connection_balance::Shedder::default();
    let mut shed_since_start = 0usize;
    loop {
        tick.tick().await;
        let others = if node.is_draining() || !peers.calm_for_balance() {
            Vec::new()
        } else {
            peers.peer_connections()
        };
        let mine = u64::from(node.connections.load(std::sync::atomic::Ordering::Relaxed));
        // Nothing while this node refuses new sessions (docs/PROTOCOL.md, "Connections
        // spread out after churn").
        let busy = peers.admission() != crate::session::layer::Admission::Open;
        let was = shedder.shedding();
        let want = shedder.decide(mine, &others, busy);
        // Logged on the change of state: a busy node above the bound keeps its state and
        // ends nothing meanwhile.
        if !was && shedder.shedding() {
            tracing::info!(connections = mine, peers = ?others, busy, "connections far above the cluster's mean: ending some streams so their clients reconnect elsewhere");
        }
        if want > 0 {
            let mut ended = peers.end_some_relayed_streams(want);
            if ended < want {
                node.sessions.for_each(|s| {
                    if ended >= want {
                        return;
                    }
                    for stream in s.state.lock().streams.iter_mut() {
                        if ended < want && stream.has_local_reader() {
                            stream.detach_to_move();
                            ended += 1;
                        }
                    }
                });
            }
            node.metrics.cluster.streams_rebalanced(ended as u64);
            shed_since_start += ended;
        } else if was && !shedder.shedding() {
            tracing::info!(
                connections = mine,
                ended = shed_since_start,
                "connections back near the cluster's mean"
            );
            shed_since_start = 0;
        }
    }
}
