//! The `cluster` section's flags and `MCP_NODE_*` variables (each overrides the file).

use clap::Args;
use mcpcluster_api::{ClusterConfig, GossipTransport, MembershipThread};

use crate::config_error::ConfigError;

/// Flags of the `cluster` section; every flag is also an `MCP_NODE_*` variable.
#[derive(Debug, Default, Args)]
pub struct ClusterArgs {
    /// Join a cluster (true/false) [config: cluster.enabled] [default: false]
    #[arg(long = "cluster", env = "MCP_NODE_CLUSTER", num_args = 0..=1, default_missing_value = "true")]
    pub enabled: Option<bool>,
    /// This node's name in the cluster [config: cluster.nodeName] [default: POD_NAME, else HOSTNAME]
    #[arg(long, env = "MCP_NODE_NAME")]
    pub node_name: Option<String>,
    /// UDP address of the QUIC peer endpoint [config: cluster.peerListen] [default: 0.0.0.0:7946]
    #[arg(long, env = "MCP_NODE_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// IP:PORT peers reach this node on [config: cluster.advertise] [default: peerListen, else POD_IP]
    #[arg(long, env = "MCP_NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Comma-separated seed peers, host:port [config: cluster.seeds]
    #[arg(long, env = "MCP_NODE_SEEDS", value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// DNS name whose A/AAAA records are seeds, `name` or `name:port` [config: cluster.seedDns]
    #[arg(long, env = "MCP_NODE_SEED_DNS")]
    pub seed_dns: Option<String>,
    /// Cluster CA certificate (PEM) [config: cluster.tls.caFile]
    #[arg(long, env = "MCP_NODE_CLUSTER_CA_FILE")]
    pub cluster_ca_file: Option<String>,
    /// This node's peer certificate chain (PEM) [config: cluster.tls.certFile]
    #[arg(long, env = "MCP_NODE_CLUSTER_CERT_FILE")]
    pub cluster_cert_file: Option<String>,
    /// This node's peer private key (PEM) [config: cluster.tls.keyFile]
    #[arg(long, env = "MCP_NODE_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<String>,
    /// Name peer certificates are verified against [config: cluster.tls.serverName] [default: mcp-peer]
    #[arg(long, env = "MCP_NODE_CLUSTER_SERVER_NAME")]
    pub cluster_server_name: Option<String>,
    /// Milliseconds between load publications [config: cluster.loadPublishMs] [default: 500]
    #[arg(long, env = "MCP_NODE_CLUSTER_LOAD_PUBLISH_MS")]
    pub cluster_load_publish_ms: Option<u64>,
    /// Copies of each session, the owner's included [config: cluster.replicationFactor] [default: 2]
    #[arg(long, env = "MCP_NODE_CLUSTER_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// Wait for a forwarded request's first answer [config: cluster.forwardTimeoutMs] [default: 5000]
    #[arg(long, env = "MCP_NODE_CLUSTER_FORWARD_TIMEOUT_MS")]
    pub cluster_forward_timeout_ms: Option<u64>,
    /// Sessions per second the cluster moves to members under their share, split over the nodes that move, 0 = off [config: cluster.rebalanceRate] [default: 400]
    #[arg(long, env = "MCP_NODE_CLUSTER_REBALANCE_RATE")]
    pub cluster_rebalance_rate: Option<u32>,
    /// Show an SSE event, and answer a request that changed its session (log level, subscriptions), only once the session's replicas hold it; false = at once, faster, an event or change may be lost with its node [config: cluster.durableEvents] [default: true]
    #[arg(long, env = "MCP_NODE_CLUSTER_DURABLE_EVENTS")]
    pub cluster_durable_events: Option<bool>,
    /// [config: cluster.membership.probePeriodMs] [default: 150]
    #[arg(long, env = "MCP_NODE_CLUSTER_PROBE_PERIOD_MS")]
    pub cluster_probe_period_ms: Option<u64>,
    /// [config: cluster.membership.probeRttMs] [default: 50]
    #[arg(long, env = "MCP_NODE_CLUSTER_PROBE_RTT_MS")]
    pub cluster_probe_rtt_ms: Option<u64>,
    /// [config: cluster.membership.indirectProbes] [default: 3]
    #[arg(long, env = "MCP_NODE_CLUSTER_INDIRECT_PROBES")]
    pub cluster_indirect_probes: Option<u32>,
    /// [config: cluster.membership.suspectToDownMs] [default: 300]
    #[arg(long, env = "MCP_NODE_CLUSTER_SUSPECT_TO_DOWN_MS")]
    pub cluster_suspect_to_down_ms: Option<u64>,
    /// [config: cluster.membership.maxTransmissions] [default: 10]
    #[arg(long, env = "MCP_NODE_CLUSTER_MAX_TRANSMISSIONS")]
    pub cluster_max_transmissions: Option<u32>,
    /// [config: cluster.membership.gossipPeriodMs] [default: 50]
    #[arg(long, env = "MCP_NODE_CLUSTER_GOSSIP_PERIOD_MS")]
    pub cluster_gossip_period_ms: Option<u64>,
    /// [config: cluster.membership.gossipFanout] [default: 3]
    #[arg(long, env = "MCP_NODE_CLUSTER_GOSSIP_FANOUT")]
    pub cluster_gossip_fanout: Option<u32>,
    /// [config: cluster.membership.announcePeriodMs] [default: 2000]
    #[arg(long, env = "MCP_NODE_CLUSTER_ANNOUNCE_PERIOD_MS")]
    pub cluster_announce_period_ms: Option<u64>,
    /// [config: cluster.membership.announceDownPeriodMs] [default: 500]
    #[arg(long, env = "MCP_NODE_CLUSTER_ANNOUNCE_DOWN_PERIOD_MS")]
    pub cluster_announce_down_period_ms: Option<u64>,
    /// [config: cluster.membership.removeDownAfterSecs] [default: 900]
    #[arg(long, env = "MCP_NODE_CLUSTER_REMOVE_DOWN_AFTER_SECS")]
    pub cluster_remove_down_after_secs: Option<u64>,
    /// [config: cluster.membership.maxPacketSize] [default: 1100]
    #[arg(long, env = "MCP_NODE_CLUSTER_MAX_PACKET_SIZE")]
    pub cluster_max_packet_size: Option<u32>,
    /// [config: cluster.membership.metaRefreshMs] [default: 1000]
    #[arg(long, env = "MCP_NODE_CLUSTER_META_REFRESH_MS")]
    pub cluster_meta_refresh_ms: Option<u64>,
    /// [config: cluster.membership.maxLocalHealth] [default: 4]
    #[arg(long, env = "MCP_NODE_CLUSTER_MAX_LOCAL_HEALTH")]
    pub cluster_max_local_health: Option<u32>,
    /// Failure detector loop: dedicated or shared [config: cluster.membership.thread] [default: dedicated]
    #[arg(long, env = "MCP_NODE_CLUSTER_MEMBERSHIP_THREAD")]
    pub cluster_membership_thread: Option<String>,
    /// Gossip over udp or quic [config: cluster.membership.gossipTransport] [default: udp]
    #[arg(long, env = "MCP_NODE_CLUSTER_GOSSIP_TRANSPORT")]
    pub cluster_gossip_transport: Option<String>,
}

fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *slot = v.clone();
    }
}

impl ClusterArgs {
    /// Applies the given flags over `c`; a value that is not one of a field's choices is an
    /// error naming the field.
    pub fn apply(&self, c: &mut ClusterConfig) -> Result<(), ConfigError> {
        set(&mut c.enabled, &self.enabled);
        set(&mut c.node_name, &self.node_name);
        set(&mut c.peer_listen, &self.peer_listen);
        set(&mut c.advertise, &self.advertise);
        if let Some(v) = &self.seeds {
            c.seeds = v
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
        }
        set(&mut c.seed_dns, &self.seed_dns);
        set(&mut c.tls.ca_file, &self.cluster_ca_file);
        set(&mut c.tls.cert_file, &self.cluster_cert_file);
        set(&mut c.tls.key_file, &self.cluster_key_file);
        set(&mut c.tls.server_name, &self.cluster_server_name);
        set(&mut c.load_publish_ms, &self.cluster_load_publish_ms);
        set(&mut c.replication_factor, &self.replication_factor);
        set(&mut c.forward_timeout_ms, &self.cluster_forward_timeout_ms);
        set(&mut c.rebalance_rate, &self.cluster_rebalance_rate);
        set(&mut c.durable_events, &self.cluster_durable_events);
        let m = &mut c.membership;
        set(&mut m.probe_period_ms, &self.cluster_probe_period_ms);
        set(&mut m.probe_rtt_ms, &self.cluster_probe_rtt_ms);
        set(&mut m.indirect_probes, &self.cluster_indirect_probes);
        set(&mut m.suspect_to_down_ms, &self.cluster_suspect_to_down_ms);
        set(&mut m.max_transmissions, &self.cluster_max_transmissions);
        set(&mut m.gossip_period_ms, &self.cluster_gossip_period_ms);
        set(&mut m.gossip_fanout, &self.cluster_gossip_fanout);
        set(&mut m.announce_period_ms, &self.cluster_announce_period_ms);
        set(
            &mut m.announce_down_period_ms,
            &self.cluster_announce_down_period_ms,
        );
        set(
            &mut m.remove_down_after_secs,
            &self.cluster_remove_down_after_secs,
        );
        set(&mut m.max_packet_size, &self.cluster_max_packet_size);
        set(&mut m.meta_refresh_ms, &self.cluster_meta_refresh_ms);
        set(&mut m.max_local_health, &self.cluster_max_local_health);
        if let Some(v) = &self.cluster_membership_thread {
            m.thread = match v.as_str() {
                "dedicated" => MembershipThread::Dedicated,
                "shared" => MembershipThread::Shared,
                other => {
                    return Err(ConfigError::Field {
                        field: "cluster.membership.thread",
                        message: format!("`{other}` is not `dedicated` or `shared`"),
                    });
                }
            };
        }
        if let Some(v) = &self.cluster_gossip_transport {
            m.gossip_transport = match v.as_str() {
                "udp" => GossipTransport::Udp,
                "quic" => GossipTransport::Quic,
                other => {
                    return Err(ConfigError::Field {
                        field: "cluster.membership.gossipTransport",
                        message: format!("`{other}` is not `udp` or `quic`"),
                    });
                }
            };
        }
        Ok(())
    }
}
