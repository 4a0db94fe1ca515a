//! Who holds a session: rendezvous (highest-random-weight) hashing over the
//! live members. Pure functions: every node that sees the same live members
//! computes the same answer, with no coordination.
//!
//! The owner of a new session is the node that received its `initialize`
//! (ownership follows the client); its R−1 replicas are the highest-weight
//! live members other than the owner ([`replicas`]). When the owner is gone,
//! the highest-weight live member takes over ([`rank`]'s first entry among
//! survivors), which is the first replica whenever that replica is alive:
//! failover needs no extra agreement. [`placement`] gives the purely hashed
//! owner + replicas for data that has no natural owner.
//!
//! Rendezvous hashing moves the least possible: adding a member moves only
//! the sessions for which the newcomer now ranks in the top R; removing one
//! moves only the sessions it held.

use std::net::{IpAddr, SocketAddr};

use crate::membership::NodeId;

/// Replication factor used when none is configured: the owner plus one replica.
pub const DEFAULT_REPLICATION: usize = 2;

/// A session's holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Serves the session and orders its writes.
    pub owner: NodeId,
    /// Hold a copy; the first takes over if the owner goes down.
    pub replicas: Vec<NodeId>,
}

/// The weight of `member` for `session`: FNV-1a over the session id and the
/// member's address, finished with the SplitMix64 mixer. Stable across
/// processes, versions and platforms (unlike `std`'s hasher), which the
/// cluster needs since every node must agree. The generation is left out, so
/// a restart at the same address keeps its rank (its data is re-replicated).
pub fn weight(session: &[u8], member: SocketAddr) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(session);
    eat(&[0xff]);
    match member.ip() {
        IpAddr::V4(ip) => eat(&ip.octets()),
        IpAddr::V6(ip) => eat(&ip.octets()),
    }
    eat(&member.port().to_be_bytes());
    mix(h)
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over the whole word.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `members` ordered by weight for `session`, highest first; ties (equal
/// weights) break on the address so the order is total. Duplicates are kept.
pub fn rank(session: &[u8], members: &[NodeId]) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, NodeId)> = members
        .iter()
        .map(|m| (weight(session, m.addr), *m))
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.addr.cmp(&b.1.addr)));
    ranked.dedup_by(|a, b| a.1.addr == b.1.addr);
    ranked.into_iter().map(|(_, m)| m).collect()
}

/// The purely hashed owner and `r − 1` replicas among `live`; `None` when
/// `live` is empty. `r` is capped by the number of members (and at least 1).
pub fn placement(session: &[u8], live: &[NodeId], r: usize) -> Option<Placement> {
    let mut ranked = rank(session, live);
    if ranked.is_empty() {
        return None;
    }
    ranked.truncate(r.max(1));
    let owner = ranked.remove(0);
    Some(Placement {
        owner,
        replicas: ranked,
    })
}

/// The `r − 1` replicas of a session owned by `owner`: the highest-weight
/// members of `live` other than the owner, capped by how many there are.
pub fn replicas(session: &[u8], owner: SocketAddr, live: &[NodeId], r: usize) -> Vec<NodeId> {
    let mut ranked = rank(session, live);
    ranked.retain(|m| m.addr != owner);
    ranked.truncate(r.saturating_sub(1));
    ranked
}

/// Who takes a session over when its owner is no longer live: the
/// highest-weight live member other than the old owner.
pub fn successor(session: &[u8], old_owner: SocketAddr, live: &[NodeId]) -> Option<NodeId> {
    replicas(session, old_owner, live, 2).into_iter().next()
}

#[cfg(test)]
mod tests;
