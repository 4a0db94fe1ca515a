//! A member's identity on the wire: its peer address plus a generation.

use std::fmt;
use std::net::SocketAddr;

/// Who a member is: the address its peers reach it on, and the generation of
/// the process behind that address.
///
/// Two identities with the same `addr` are the same member at different
/// times; the higher `generation` wins (foca's address conflict rule). A node
/// starts with a generation larger than any it used before (the caller passes
/// the wall-clock milliseconds at start), so a restarted process rejoins at
/// once instead of waiting for its old identity to be forgotten. When a live
/// node learns that the cluster declared it down (a partition that healed, a
/// long pause), [`foca::Identity::renew`] bumps the generation by one and it
/// rejoins.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Where peers send gossip and frames (QUIC and gossip share the socket).
    pub addr: SocketAddr,
    /// Start generation; higher wins over the same `addr`.
    pub generation: u64,
}

impl NodeId {
    /// An identity for `addr` at `generation`.
    pub const fn new(addr: SocketAddr, generation: u64) -> Self {
        Self { addr, generation }
    }

    /// A placeholder for a seed whose generation we do not know: foca accepts
    /// an `Announce` addressed to any identity with the receiver's address.
    pub const fn seed(addr: SocketAddr) -> Self {
        Self {
            addr,
            generation: 0,
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.addr, self.generation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewed_identity_wins_the_conflict() {
        let id = NodeId::new("10.0.0.1:7000".parse().expect("addr"), 5);
        let renewed = id.renew().expect("renews");
        assert!(renewed.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&renewed));
        assert_eq!(renewed.addr(), id.addr());
    }
}
