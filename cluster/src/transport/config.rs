//! Transport settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::tls::LOCAL_SERVER_NAME;

/// QUIC transport configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to bind the UDP socket (gossip and frames share it). Peers must
    /// reach this node at the address its `NodeId` advertises (the pod IP).
    pub bind: SocketAddr,
    /// The address peers see this node at (its `NodeId::addr`), when `bind`
    /// is a wildcard (`0.0.0.0`, `::`); required then. Default: the bound
    /// address. The lower address of a pair decides which connection
    /// carries frames, so both ends must compare the same addresses.
    pub advertise: Option<SocketAddr>,
    /// The name peers' certificates are verified against (SNI). Default
    /// `mcp-peer` (what [`super::LocalCa`] issues); in Kubernetes a name the
    /// wildcard node certificate covers, e.g. `node.<peers>.<ns>.svc`.
    pub server_name: String,
    /// UDP socket send and receive buffer size asked of the kernel. Default
    /// 4 MiB: the kernel default (~200 KiB) drops bursts of full frames; the
    /// kernel caps the value at `net.core.{r,w}mem_max`.
    pub udp_buffer_bytes: usize,
    /// How long a dial may take before the peer is considered unreachable.
    /// Default 1 s (LAN; SWIM decides liveness, not this).
    pub dial_timeout: Duration,
    /// Keep-alive interval on idle connections. Default 1 s.
    pub keep_alive: Duration,
    /// Idle timeout of a connection. Default 5 s.
    pub idle_timeout: Duration,
    /// Initial RTT estimate before samples exist. Default 1 ms (LAN); quinn's
    /// default (333 ms) makes the first loss recovery slow.
    pub initial_rtt: Duration,
    /// Per-stream receive window (flow control). Default 8 MiB.
    pub stream_window: u32,
    /// Messages received but not yet taken by the application, all peers
    /// together; past it the streams stop being read (QUIC flow control
    /// pushes back on the senders). Default 65,536.
    pub incoming_capacity: usize,
    /// Gossip packets received but not yet handled; more are dropped (SWIM
    /// tolerates loss). Default 1,024.
    pub gossip_capacity: usize,
    /// Gossip packets held per peer while its connection is being set up;
    /// more are dropped. Default 32.
    pub pending_gossip: usize,
    /// Batching and compression of frames.
    pub frame: crate::frame::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            server_name: LOCAL_SERVER_NAME.to_owned(),
            udp_buffer_bytes: 4 * 1024 * 1024,
            dial_timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            initial_rtt: Duration::from_millis(1),
            stream_window: 8 * 1024 * 1024,
            incoming_capacity: 65_536,
            gossip_capacity: 1024,
            pending_gossip: 32,
            frame: crate::frame::Config::default(),
        }
    }
}
