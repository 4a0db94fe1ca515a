//! The `cluster` section of [`crate::NodeConfig`]: how a node finds its peers, proves who it is
//! to them, and how fast it detects that one is gone. Off by default: a node started by hand is
//! a single node.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Clustering: SWIM membership over QUIC with mutual TLS (`docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Join a cluster. Default false: the node serves alone and `/cluster` lists only itself.
    pub enabled: bool,
    /// This node's name in the cluster (`/cluster`'s `self`; the pod name in Kubernetes).
    /// Empty (default): `POD_NAME`, else `HOSTNAME`, else `mcp-node`.
    pub node_name: String,
    /// UDP address the QUIC peer endpoint binds (gossip and peer frames share it). Default
    /// `0.0.0.0:7946`.
    pub peer_listen: String,
    /// `IP:PORT` peers reach this node on; it is the node's identity in the membership. Empty
    /// (default): `peerListen` when it names an IP, else `POD_IP` with `peerListen`'s port.
    pub advertise: String,
    /// Static seed peers, `IP:PORT` or `host:port`. A node announces itself to every seed until
    /// it is part of a cluster; listing the node itself is harmless. Default none.
    pub seeds: Vec<String>,
    /// A DNS name whose A/AAAA records are seeds (e.g. the StatefulSet's headless Service,
    /// with `publishNotReadyAddresses`), `name` or `name:port`; the port defaults to
    /// `peerListen`'s. Re-resolved while the node is alone. Default none.
    pub seed_dns: String,
    /// Peer certificates (mutual TLS from the cluster CA).
    pub tls: ClusterTlsConfig,
    /// Milliseconds between two publications of this node's load (connections, sessions,
    /// draining) into gossip; unchanged load is re-sent by the membership's own refresh.
    /// Default 500.
    pub load_publish_ms: u64,
    /// Copies of each legacy session, the owner's included: the owner replicates every change
    /// to `replicationFactor − 1` peers, so a session survives the loss of that many nodes
    /// minus one. 1 = no replication. Default 2 (at most 5).
    pub replication_factor: u32,
    /// Milliseconds a node waits for the first answer to a request it forwarded to the
    /// session's owner before answering 503 with `Retry-After`; re-routed at once if the owner
    /// is declared down meanwhile. Default 5000.
    pub forward_timeout_ms: u64,
    /// Sessions per second the whole cluster hands from nodes owning more than their share of
    /// the sessions (by more than 5 %) to members under theirs, split evenly over the nodes
    /// that move, once the members have been the same for 15 s — so after a restart or a
    /// scale-up the spread is even again within a minute and the next crash does not hit one
    /// node's surplus. A node holds off while its admission control refuses or 64 of its
    /// hand-offs wait for acknowledgements. Each move is a drain's hand-off: the session waits
    /// (never fails) while its copy is in flight and its streams end, to be resumed with
    /// `Last-Event-ID`. 0 turns rebalancing off. Default 400 (at most 100000).
    pub rebalance_rate: u32,
    /// Show a session's SSE events (notifications, progress, a response sent on a stream) to
    /// its client only once every live replica holds them, so a stream resumed with
    /// `Last-Event-ID` on the node that takes over after its owner is killed misses none the
    /// client saw. The replicas' acknowledgements ride the batched peer frames; an event
    /// waits at most 500 ms for them (then it is shown anyway and counted in
    /// `mcp_cluster_events_shown_undurable_total`). No live replica (`replicationFactor` 1,
    /// a single node): shown at once. The same holds for the answer to a request that changed
    /// the session (`logging/setLevel`, `resources/subscribe`/`unsubscribe`, the first
    /// `notifications/initialized`): it waits, as long at most, until the replicas hold the
    /// change (past the bound counted in `mcp_cluster_changes_answered_undurable_total`).
    /// false: shown and answered at once always, about one peer round trip sooner, and an
    /// event the client saw or a change it was told of may be missing after a take-over.
    /// Default true.
    pub durable_events: bool,
    /// Failure detection and dissemination timers.
    pub membership: MembershipTimers,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            node_name: String::new(),
            peer_listen: "0.0.0.0:7946".into(),
            advertise: String::new(),
            seeds: Vec::new(),
            seed_dns: String::new(),
            tls: ClusterTlsConfig::default(),
            load_publish_ms: 500,
            replication_factor: 2,
            forward_timeout_ms: 5000,
            rebalance_rate: 400,
            durable_events: true,
            membership: MembershipTimers::default(),
        }
    }
}

/// Where the peer certificates come from. In Kubernetes: a Secret in cert-manager's layout
/// (`ca.crt`, `tls.crt`, `tls.key`). With none of the three files set, the node generates a CA
/// and a certificate in memory and logs a warning; such a CA is the node's own, so peers refuse
/// it (fine for a one-node cluster). For several local nodes, `mcp-node --write-dev-certs DIR`
/// writes one CA and one certificate they can all be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterTlsConfig {
    /// PEM file of the cluster CA every peer certificate must chain to. Default none.
    pub ca_file: String,
    /// PEM file of this node's certificate chain (server and client use). Default none.
    pub cert_file: String,
    /// PEM file of this node's private key. Default none.
    pub key_file: String,
    /// Name peer certificates are verified against. Default `mcp-peer` (what generated
    /// certificates are issued for).
    pub server_name: String,
}

impl Default for ClusterTlsConfig {
    fn default() -> Self {
        Self {
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            server_name: "mcp-peer".into(),
        }
    }
}

/// SWIM timers. The defaults detect a dead node in well under a second on a LAN (about
/// `probePeriodMs` + `probeRttMs` + `suspectToDownMs`) and are those of the cluster crate's
/// `membership::Config`; a unit test in the node keeps the two equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MembershipTimers {
    /// How often one member is probed. Default 150. Lower detects sooner, costs more packets.
    pub probe_period_ms: u64,
    /// Wait for a direct ack before probing indirectly; must be below `probePeriodMs`.
    /// Default 50.
    pub probe_rtt_ms: u64,
    /// Members asked to probe indirectly after a missed ack. Default 3.
    pub indirect_probes: u32,
    /// How long a suspect has to refute before it is declared dead. Default 300. Longer means
    /// fewer false positives under loss or CPU starvation, slower detection.
    pub suspect_to_down_ms: u64,
    /// Times one update is piggybacked (enough for ~50 nodes). Default 10.
    pub max_transmissions: u32,
    /// Period of gossip outside the probe cycle. Default 50.
    pub gossip_period_ms: u64,
    /// Members each periodic gossip goes to. Default 3.
    pub gossip_fanout: u32,
    /// How often a random member is asked for its member list. Default 2000.
    pub announce_period_ms: u64,
    /// How often members believed dead are announced to (heals partitions). Default 500.
    pub announce_down_period_ms: u64,
    /// How long a dead identity is remembered. Default 900 (15 min).
    pub remove_down_after_secs: u64,
    /// Largest gossip packet; gossip rides on QUIC datagrams (~1200 bytes). Default 1100.
    pub max_packet_size: u32,
    /// How often a node re-sends its metadata unchanged, for late joiners. Default 1000.
    pub meta_refresh_ms: u64,
    /// Highest local health score: a node that sees itself slow (its own timers late, acks
    /// late, suspected by others) stretches its probe timeouts and its down verdicts up to
    /// `1 + maxLocalHealth` times, so a starved node does not declare healthy peers dead.
    /// 0 turns it off. Default 4.
    pub max_local_health: u32,
    /// Where the failure detector's loop runs: `dedicated` (default), a thread of its own
    /// that the kernel wakes on time even when the CPUs are saturated, or `shared`, a task of
    /// the node's runtime, where it waits behind the client connections (kept to compare).
    pub thread: MembershipThread,
    /// How gossip travels: `udp` (default), a UDP socket of the failure detector's own at the
    /// peer port + 1, every packet authenticated with a key derived from the peer key
    /// (`cluster.tls.keyFile`, which every node shares); or `quic`, datagrams on the peer
    /// connections, where probes wait behind the data frames (kept to compare, or where only
    /// one port is open between nodes).
    pub gossip_transport: GossipTransport,
}

/// How gossip travels (`cluster.membership.gossipTransport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GossipTransport {
    /// Its own UDP socket at the peer port + 1.
    #[default]
    Udp,
    /// Datagrams on the QUIC peer connections.
    Quic,
}

/// Where the failure detector's loop runs (`cluster.membership.thread`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MembershipThread {
    /// A thread of its own with its own timers.
    #[default]
    Dedicated,
    /// A task of the node's runtime.
    Shared,
}

impl Default for MembershipTimers {
    fn default() -> Self {
        Self {
            probe_period_ms: 150,
            probe_rtt_ms: 50,
            indirect_probes: 3,
            suspect_to_down_ms: 300,
            max_transmissions: 10,
            gossip_period_ms: 50,
            gossip_fanout: 3,
            announce_period_ms: 2000,
            announce_down_period_ms: 500,
            remove_down_after_secs: 900,
            max_packet_size: 1100,
            meta_refresh_ms: 1000,
            max_local_health: 4,
            thread: MembershipThread::Dedicated,
            gossip_transport: GossipTransport::Udp,
        }
    }
}
