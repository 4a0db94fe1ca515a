//! Membership timers, tuned for a LAN cluster that must detect a dead node in < 1 s.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Membership configuration. The defaults target failure detection and
/// convergence under one second for ~10 nodes on a LAN (measured by the
/// simulator tests in `tests/sim_membership.rs`); foca's own `new_lan`
/// defaults (1 s probes, several seconds of suspicion) detect in 4-25 s.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often this node probes one member (round-robin over a shuffled
    /// list). Default 150 ms. Lower detects sooner and costs more packets
    /// (one ping/ack per node per period).
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe
    /// indirectly. Default 50 ms: far above a LAN RTT, so a busy peer is not
    /// suspected at once. Must be below `probe_period`.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly when a direct probe times out.
    /// Default 3: the chance that all paths lose a packet is tiny.
    pub indirect_probes: usize,
    /// How long a suspect has to refute before it is declared down.
    /// Default 300 ms (two probe periods). Longer means fewer false
    /// positives under packet loss or CPU saturation, slower detection.
    pub suspect_to_down: Duration,
    /// How many times one update is piggybacked. Default 10 (enough for
    /// clusters up to ~50 nodes; memberlist uses 4·log10(n+1)).
    pub max_transmissions: u8,
    /// How often updates are gossiped outside the probe cycle. Default 50 ms.
    pub gossip_period: Duration,
    /// Members each periodic gossip goes to. Default 3.
    pub gossip_fanout: usize,
    /// How often a node asks a random member for its member list, so a
    /// member nobody told us about is found. Default 2 s.
    pub announce_period: Duration,
    /// How often a node announces itself to members it thinks are down, so
    /// a healed partition merges back. Default 500 ms, to 2 members.
    pub announce_down_period: Duration,
    /// How long a down identity is remembered (it cannot rejoin unless its
    /// generation is higher). Default 15 min.
    pub remove_down_after: Duration,
    /// Largest gossip packet produced and accepted. Default 1400 bytes (one
    /// UDP datagram below a 1500 MTU; QUIC datagrams fit ~1200, set it lower
    /// when gossip rides on QUIC datagrams).
    pub max_packet_size: usize,
    /// How often a node re-broadcasts its own metadata even if unchanged,
    /// so late joiners learn it. Default 1 s.
    pub meta_refresh: Duration,
    /// Highest local health score (Lifeguard): a node that sees itself slow (its timers
    /// late, acks late, suspected by others) stretches its probe timeouts and its verdicts by
    /// up to `1 + max_local_health` times. Default 4 (see `docs/PROTOCOL.md`, "Local
    /// health"); 0 turns it off.
    pub max_local_health: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(150),
            probe_rtt: Duration::from_millis(50),
            indirect_probes: 3,
            suspect_to_down: Duration::from_millis(300),
            max_transmissions: 10,
            gossip_period: Duration::from_millis(50),
            gossip_fanout: 3,
            announce_period: Duration::from_secs(2),
            announce_down_period: Duration::from_millis(500),
            remove_down_after: Duration::from_secs(15 * 60),
            max_packet_size: 1400,
            meta_refresh: Duration::from_secs(1),
            max_local_health: 4,
        }
    }
}

/// A configuration field with an unusable value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("membership config: {field} {problem}")]
pub struct ConfigError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn nonzero(field: &'static str, ok: bool) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            problem: "must not be zero",
        })
    }
}

impl Config {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero("probe_period", !self.probe_period.is_zero())?;
        nonzero("probe_rtt", !self.probe_rtt.is_zero())?;
        if self.probe_rtt >= self.probe_period {
            return Err(ConfigError {
                field: "probe_rtt",
                problem: "must be below probe_period",
            });
        }
        nonzero("indirect_probes", self.indirect_probes > 0)?;
        nonzero("suspect_to_down", !self.suspect_to_down.is_zero())?;
        nonzero("max_transmissions", self.max_transmissions > 0)?;
        nonzero("gossip_period", !self.gossip_period.is_zero())?;
        nonzero("gossip_fanout", self.gossip_fanout > 0)?;
        nonzero("announce_period", !self.announce_period.is_zero())?;
        nonzero("announce_down_period", !self.announce_down_period.is_zero())?;
        nonzero("meta_refresh", !self.meta_refresh.is_zero())?;
        if self.max_local_health > 32 {
            return Err(ConfigError {
                field: "max_local_health",
                problem: "must be at most 32",
            });
        }
        if self.max_packet_size < 256 {
            return Err(ConfigError {
                field: "max_packet_size",
                problem: "must be at least 256",
            });
        }
        Ok(())
    }

    /// foca's configuration; call after [`Config::validate`].
    pub(crate) fn to_foca(&self) -> foca::Config {
        let one = NonZeroUsize::MIN;
        let periodic = |frequency, n: usize| foca::PeriodicParams {
            frequency,
            num_members: NonZeroUsize::new(n).unwrap_or(one),
        };
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: NonZeroUsize::new(self.indirect_probes).unwrap_or(one),
            max_transmissions: NonZeroU8::new(self.max_transmissions).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspect_to_down,
            remove_down_after: Some(self.remove_down_after),
            max_packet_size: NonZeroUsize::new(self.max_packet_size).unwrap_or(one),
            notify_down_members: true,
            periodic_announce: Some(periodic(self.announce_period, 1)),
            periodic_announce_to_down_members: Some(periodic(self.announce_down_period, 2)),
            periodic_gossip: Some(periodic(self.gossip_period, self.gossip_fanout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_rtt_is_checked() {
        assert_eq!(Config::default().validate(), Ok(()));
        let bad = Config {
            probe_rtt: Duration::from_millis(200),
            ..Config::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("probe_rtt"));
    }
}
