//! [`ClusterSettings`]: the `cluster` section validated before any socket is bound; each
//! error names the field.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mcp_cluster::membership;
use mcp_cluster::transport::{self, PeerTls};
use mcpcluster_api::{ClusterConfig, GossipTransport, MembershipThread, MembershipTimers};

use crate::config_error::ConfigError;

/// The validated `cluster` section of an enabled node.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Where the QUIC endpoint binds.
    pub peer_listen: SocketAddr,
    /// The identity's address; `None`: the bound address (`peerListen` names an IP).
    pub advertise: Option<SocketAddr>,
    /// Static seeds, `host:port`, resolved at start.
    pub seeds: Vec<String>,
    /// A DNS name and port whose records are seeds.
    pub seed_dns: Option<(String, u16)>,
    /// This node's certificate and the CA it trusts.
    pub tls: PeerTls,
    /// True when `tls` was generated in memory (no files configured).
    pub dev_tls: bool,
    /// Name peers' certificates are verified against.
    pub server_name: String,
    /// SWIM timers.
    pub membership: membership::Config,
    /// Where the failure detector's loop runs.
    pub membership_thread: transport::DriverThread,
    /// Gossip on its own UDP socket (true) or on QUIC datagrams.
    pub gossip_udp: bool,
    /// How often this node's load is pushed into gossip.
    pub load_publish: Duration,
    /// Copies of each session, the owner's included (1..=5).
    pub replication_factor: usize,
    /// How long a forwarded request waits for the owner's first answer.
    pub forward_timeout: Duration,
    /// Sessions per second the cluster moves for balance, split over the nodes that move (0:
    /// never; `balance.rs`).
    pub rebalance_rate: f64,
    /// SSE events are shown, and answers to requests that changed their session sent, only once
    /// the session's replicas hold them (`peers.rs`).
    pub durable_events: bool,
}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        message: message.into(),
    }
}

/// `host:port` with a numeric port (the host is resolved later).
fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some(())?;
    Some((host, port.parse().ok()?))
}

impl ClusterSettings {
    /// `Ok(None)` when clustering is off. `pod_ip` is `POD_IP` from the environment.
    pub fn validate(
        c: &ClusterConfig,
        pod_ip: Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        if !c.enabled {
            return Ok(None);
        }
        let peer_listen: SocketAddr = c.peer_listen.parse().map_err(|e| {
            bad(
                "cluster.peerListen",
                format!("`{}` is not IP:PORT ({e})", c.peer_listen),
            )
        })?;
        let advertise = advertise(c, peer_listen, pod_ip)?;
        for s in &c.seeds {
            if host_port(s).is_none() {
                return Err(bad("cluster.seeds", format!("`{s}` is not host:port")));
            }
        }
        let seed_dns = match c.seed_dns.as_str() {
            "" => None,
            s if s.contains(':') => {
                let (h, p) = host_port(s).ok_or_else(|| {
                    bad("cluster.seedDns", format!("`{s}` is not name or name:port"))
                })?;
                Some((h.to_owned(), p))
            }
            s => Some((
                s.to_owned(),
                advertise.map_or(peer_listen.port(), |a| a.port()),
            )),
        };
        let (tls, dev_tls) = super::tls::load(&c.tls)?;
        if c.tls.server_name.is_empty() {
            return Err(bad("cluster.tls.serverName", "must not be empty"));
        }
        let membership = timers(&c.membership);
        membership
            .validate()
            .map_err(|e| bad(camel(e.field), e.problem))?;
        if c.load_publish_ms == 0 {
            return Err(bad("cluster.loadPublishMs", "must be at least 1"));
        }
        if !(1..=5).contains(&c.replication_factor) {
            return Err(bad(
                "cluster.replicationFactor",
                format!("{} is not in 1..=5", c.replication_factor),
            ));
        }
        if !(100..=60_000).contains(&c.forward_timeout_ms) {
            return Err(bad(
                "cluster.forwardTimeoutMs",
                format!("{} is not in 100..=60000", c.forward_timeout_ms),
            ));
        }
        if c.rebalance_rate > 100_000 {
            return Err(bad(
                "cluster.rebalanceRate",
                format!("{} is not in 0..=100000", c.rebalance_rate),
            ));
        }
        Ok(Some(Self {
            peer_listen,
            advertise,
            seeds: c.seeds.clone(),
            seed_dns,
            tls,
            dev_tls,
            server_name: c.tls.server_name.clone(),
            membership,
            membership_thread: match c.membership.thread {
                MembershipThread::Dedicated => transport::DriverThread::Dedicated,
                MembershipThread::Shared => transport::DriverThread::Shared,
            },
            gossip_udp: c.membership.gossip_transport == GossipTransport::Udp,
            load_publish: Duration::from_millis(c.load_publish_ms),
            replication_factor: c.replication_factor as usize,
            forward_timeout: Duration::from_millis(c.forward_timeout_ms),
            rebalance_rate: f64::from(c.rebalance_rate),
            durable_events: c.durable_events,
        }))
    }
}

fn advertise(
    c: &ClusterConfig,
    peer_listen: SocketAddr,
    pod_ip: Option<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    const FIELD: &str = "cluster.advertise";
    if !c.advertise.is_empty() {
        let a: SocketAddr = c
            .advertise
            .parse()
            .map_err(|e| bad(FIELD, format!("`{}` is not IP:PORT ({e})", c.advertise)))?;
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(bad(FIELD, "needs a routable IP and a port"));
        }
        return Ok(Some(a));
    }
    if !peer_listen.ip().is_unspecified() {
        return Ok(None);
    }
    let ip: IpAddr = pod_ip
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                FIELD,
                "required when peerListen is a wildcard address and POD_IP is unset",
            )
        })?
        .parse()
        .map_err(|e| bad(FIELD, format!("POD_IP is not an IP ({e})")))?;
    if peer_listen.port() == 0 {
        return Err(bad(FIELD, "required when peerListen's port is 0"));
    }
    Ok(Some(SocketAddr::new(ip, peer_listen.port())))
}

/// The cluster crate's timers from the configuration.
pub fn timers(t: &MembershipTimers) -> membership::Config {
    let ms = Duration::from_millis;
    membership::Config {
        probe_period: ms(t.probe_period_ms),
        probe_rtt: ms(t.probe_rtt_ms),
        indirect_probes: t.indirect_probes as usize,
        suspect_to_down: ms(t.suspect_to_down_ms),
        max_transmissions: u8::try_from(t.max_transmissions).unwrap_or(u8::MAX),
        gossip_period: ms(t.gossip_period_ms),
        gossip_fanout: t.gossip_fanout as usize,
        announce_period: ms(t.announce_period_ms),
        announce_down_period: ms(t.announce_down_period_ms),
        remove_down_after: Duration::from_secs(t.remove_down_after_secs),
        max_packet_size: t.max_packet_size as usize,
        meta_refresh: ms(t.meta_refresh_ms),
        max_local_health: t.max_local_health,
    }
}

/// The configuration name of a cluster crate `membership::Config` field.
fn camel(field: &str) -> &'static str {
    match field {
        "probe_period" => "cluster.membership.probePeriodMs",
        "probe_rtt" => "cluster.membership.probeRttMs",
        "indirect_probes" => "cluster.membership.indirectProbes",
        "suspect_to_down" => "cluster.membership.suspectToDownMs",
        "max_transmissions" => "cluster.membership.maxTransmissions",
        "gossip_period" => "cluster.membership.gossipPeriodMs",
        "gossip_fanout" => "cluster.membership.gossipFanout",
        "announce_period" => "cluster.membership.announcePeriodMs",
        "announce_down_period" => "cluster.membership.announceDownPeriodMs",
        "remove_down_after" => "cluster.membership.removeDownAfterSecs",
        "max_packet_size" => "cluster.membership.maxPacketSize",
        "meta_refresh" => "cluster.membership.metaRefreshMs",
        "max_local_health" => "cluster.membership.maxLocalHealth",
        _ => "cluster.membership",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ClusterConfig {
        ClusterConfig {
            enabled: true,
            peer_listen: "127.0.0.1:0".into(),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_cluster_crates() {
        let ours = timers(&MembershipTimers::default());
        let theirs = membership::Config::default();
        // Only the packet size differs: gossip rides on QUIC datagrams (~1200 bytes).
        let theirs = membership::Config {
            max_packet_size: ours.max_packet_size,
            ..theirs
        };
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    }

    #[test]
    fn disabled_is_none_and_enabled_validates() {
        assert!(
            ClusterSettings::validate(&ClusterConfig::default(), None)
                .expect("ok")
                .is_none()
        );
        let s = ClusterSettings::validate(&enabled(), None)
            .expect("ok")
            .expect("enabled");
        assert!(s.dev_tls && s.advertise.is_none());
    }

    #[test]
    fn wildcard_needs_advertise_or_pod_ip() {
        let mut c = enabled();
        c.peer_listen = "0.0.0.0:7946".into();
        let err = ClusterSettings::validate(&c, None).expect_err("no address");
        assert!(err.to_string().contains("cluster.advertise"), "{err}");
        let s = ClusterSettings::validate(&c, Some("10.1.2.3".into()))
            .expect("ok")
            .expect("enabled");
        assert_eq!(s.advertise, Some("10.1.2.3:7946".parse().expect("addr")));
        assert_eq!(s.seed_dns, None);
    }

    type Breakage = fn(&mut ClusterConfig);

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, Breakage); 7] = [
            ("cluster.peerListen", |c| c.peer_listen = "x".into()),
            ("cluster.seeds", |c| c.seeds = vec!["nope".into()]),
            ("cluster.seedDns", |c| c.seed_dns = "svc:port".into()),
            ("cluster.tls", |c| {
                c.tls.ca_file = "/nonexistent/ca.crt".into()
            }),
            ("cluster.membership.probeRttMs", |c| {
                c.membership.probe_rtt_ms = 500
            }),
            ("cluster.loadPublishMs", |c| c.load_publish_ms = 0),
            ("cluster.rebalanceRate", |c| c.rebalance_rate = 100_001),
        ];
        for (field, break_it) in cases {
            let mut c = enabled();
            break_it(&mut c);
            let err = ClusterSettings::validate(&c, None).expect_err(field);
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn durable_events_are_on_by_default_and_may_be_turned_off() {
        let s = ClusterSettings::validate(&enabled(), None)
            .expect("ok")
            .expect("on");
        assert!(s.durable_events);
        let mut c = enabled();
        c.durable_events = false;
        let s = ClusterSettings::validate(&c, None)
            .expect("ok")
            .expect("on");
        assert!(!s.durable_events);
    }

    #[test]
    fn seed_dns_takes_the_peer_port_by_default() {
        let mut c = enabled();
        c.peer_listen = "127.0.0.1:7000".into();
        c.seed_dns = "peers.default.svc".into();
        let s = ClusterSettings::validate(&c, None)
            .expect("ok")
            .expect("on");
        assert_eq!(s.seed_dns, Some(("peers.default.svc".into(), 7000)));
    }
}
