//! Anti-entropy without per-session traffic: each owner keeps, per replica, a count and an
//! XOR of a hash of `(session, epoch)` over the sessions that replica should hold; each replica
//! keeps the same over the copies it holds, per owner. Every `digest_period` an owner sends each
//! live peer its digest (two numbers); a replica whose own differs asks for the list (an
//! inventory), drops the copies the owner no longer has it hold (a lost `Forget`), and asks for
//! a full copy of the ones it lacks. Idle sessions cost nothing: the digests change only when a
//! replica set, an epoch or a session's existence does.

use crate::det::Set;
use std::net::SocketAddr;
use std::time::Instant;

use mcp_cluster::membership::NodeId;

use crate::id::SessionId;
use crate::machine::{Custody, Entry, Role};
use crate::replica::beats;
use crate::wire::CustodyMsg;

/// Entries per inventory message (28 bytes each: ~56 KB).
const INVENTORY_CHUNK: usize = 2_000;

/// A count and an XOR of entry hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Entries.
    pub count: u64,
    /// XOR of their hashes.
    pub hash: u64,
}

/// SplitMix64 finalizer over the id and the epoch.
fn entry_hash(id: SessionId, epoch: u32) -> u64 {
    let mut z = (id.0 as u64) ^ ((id.0 >> 64) as u64).rotate_left(29) ^ (u64::from(epoch) << 7);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Digest {
    fn add(&mut self, id: SessionId, epoch: u32) {
        self.count += 1;
        self.hash ^= entry_hash(id, epoch);
    }
    fn remove(&mut self, id: SessionId, epoch: u32) {
        self.count = self.count.saturating_sub(1);
        self.hash ^= entry_hash(id, epoch);
    }
}

impl Custody {
    /// Owner side: the replica set of `id` (at `epoch`) lost `removed` and gained `added`.
    pub(crate) fn digest_set_changed(
        &mut self,
        id: SessionId,
        epoch: u32,
        removed: &[SocketAddr],
        added: &[SocketAddr],
    ) {
        for a in removed {
            if let Some(d) = self.digest_out.get_mut(a) {
                d.remove(id, epoch);
            }
        }
        for a in added {
            self.digest_out.entry(*a).or_default().add(id, epoch);
        }
    }

    /// Owner side: an owned session's epoch changed with its set unchanged.
    pub(crate) fn digest_epoch_changed(&mut self, id: SessionId, old: u32, new: u32) {
        let addrs: Vec<SocketAddr> = match self.sessions.get(&id) {
            Some(Entry {
                role: Role::Owner(o),
                ..
            }) => o.set.iter().map(|t| t.addr).collect(),
            _ => return,
        };
        self.digest_set_changed(id, old, &addrs, &[]);
        self.digest_set_changed(id, new, &[], &addrs);
    }

    pub(crate) fn digest_in_add(&mut self, owner: NodeId, id: SessionId, epoch: u32) {
        self.digest_in.entry(owner).or_default().add(id, epoch);
    }

    pub(crate) fn digest_in_remove(&mut self, owner: NodeId, id: SessionId, epoch: u32) {
        if let Some(d) = self.digest_in.get_mut(&owner) {
            d.remove(id, epoch);
            if d.count == 0 {
                self.digest_in.remove(&owner);
            }
        }
    }

    /// Copies held under an earlier generation of the same process (a renewal this node's
    /// view never showed) follow `owner`: the sender of a digest or an inventory speaks for
    /// them.
    pub(crate) fn follow_renewals(&mut self, owner: NodeId) {
        let old: Vec<NodeId> = self
            .digest_in
            .keys()
            .copied()
            .filter(|k| crate::members::is_renewal(*k, owner))
            .collect();
        for k in old {
            self.owner_renewed(k, owner);
        }
    }

    /// Sends every live peer what it should hold of this node's sessions.
    pub(crate) fn send_digests(&mut self) {
        let me = self.members.me();
        self.digest_out.retain(|_, d| d.count > 0 || d.hash != 0);
        for m in self.members.live().to_vec() {
            if m.addr == me.addr {
                continue;
            }
            let d = self.digest_out.get(&m.addr).copied().unwrap_or_default();
            self.send(
                m.addr,
                CustodyMsg::Digest {
                    generation: me.generation,
                    count: d.count,
                    hash: d.hash,
                },
            );
        }
    }

    pub(crate) fn on_digest(
        &mut self,
        from: SocketAddr,
        generation: u64,
        theirs: Digest,
        now: Instant,
    ) {
        let owner = NodeId::new(from, generation);
        self.follow_renewals(owner);
        let mine = self.digest_in.get(&owner).copied().unwrap_or_default();
        if mine == theirs {
            return;
        }
        let recently = self
            .inventory_asked
            .get(&from)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.cfg.digest_period);
        if recently {
            return;
        }
        self.inventory_asked.insert(from, now);
        self.stats.digest_mismatches += 1;
        self.send(from, CustodyMsg::InventoryRequest);
    }

    pub(crate) fn on_inventory_request(&mut self, from: SocketAddr) {
        let me = self.members.me();
        let entries: Vec<(u128, u32)> = self
            .sessions
            .iter()
            .filter_map(|(id, e)| match &e.role {
                Role::Owner(o) if o.set.iter().any(|t| t.addr == from) => Some((id.0, o.epoch)),
                _ => None,
            })
            .collect();
        let chunks: Vec<Vec<(u128, u32)>> = if entries.is_empty() {
            vec![Vec::new()]
        } else {
            entries.chunks(INVENTORY_CHUNK).map(<[_]>::to_vec).collect()
        };
        let n = chunks.len();
        for (i, entries) in chunks.into_iter().enumerate() {
            self.send(
                from,
                CustodyMsg::Inventory {
                    generation: me.generation,
                    entries,
                    last: i + 1 == n,
                },
            );
        }
    }

    pub(crate) fn on_inventory(
        &mut self,
        from: SocketAddr,
        generation: u64,
        entries: &[(u128, u32)],
        last: bool,
    ) {
        let owner = NodeId::new(from, generation);
        self.follow_renewals(owner);
        let me = self.members.me().addr;
        let mut seen = self.inventories.remove(&owner).unwrap_or_default();
        for (s, epoch) in entries {
            seen.insert(*s);
            let id = SessionId(*s);
            let reply = match self.sessions.get(&id).map(|e| &e.role) {
                Some(Role::Copy(c)) if c.owner == owner && c.epoch == *epoch => None,
                // A claim not in force yet tells nobody it is superseded.
                Some(Role::Owner(o)) if o.fresh => None,
                Some(Role::Owner(o)) if beats((o.epoch, me), (*epoch, from)) => {
                    Some(CustodyMsg::Superseded {
                        session: *s,
                        epoch: o.epoch,
                        owner: me,
                    })
                }
                Some(Role::Copy(c)) if beats((c.epoch, c.owner.addr), (*epoch, from)) => {
                    Some(CustodyMsg::Superseded {
                        session: *s,
                        epoch: c.epoch,
                        owner: c.owner.addr,
                    })
                }
                _ => Some(CustodyMsg::Resync { session: *s }),
            };
            if let Some(msg) = reply {
                self.send(from, msg);
            }
        }
        if !last {
            self.inventories.insert(owner, seen);
            return;
        }
        let stale: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, e)| {
                matches!(&e.role, Role::Copy(c) if c.owner == owner) && !seen.contains(&id.0)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_copy(id);
            self.stats.copies_dropped += 1;
        }
        let _: Set<u128> = seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_order_free_and_tells_sets_apart() {
        let (a, b) = (SessionId(1), SessionId(2));
        let mut x = Digest::default();
        x.add(a, 0);
        x.add(b, 3);
        let mut y = Digest::default();
        y.add(b, 3);
        y.add(a, 0);
        assert_eq!(x, y);
        y.remove(b, 3);
        y.add(b, 4);
        assert_ne!(x, y, "another epoch");
        y.remove(b, 4);
        y.remove(a, 0);
        assert_eq!(y, Digest::default());
    }
}
