//! Anti-entropy between an owner and its replicas without per-session traffic.
//!
//! Every digest period an owner sends each live peer a [`Digest`] of the copies that peer
//! should hold of its sessions: how many, and an XOR of a hash of `(session, epoch)` over them.
//! The peer computes the same over the copies it holds of that owner (same address and
//! generation). Equal: nothing to do — an idle session costs no peer bytes. Different: the peer
//! asks for the list (an inventory), asks a full copy of what it lacks or holds at an older
//! epoch (`Resync`), and drops what the owner no longer has it hold (a `Forget` that was lost),
//! unless that copy arrived after it asked (the list may predate it).
//!
//! This replaced the owner re-sending every session to its replicas every 15 s, whose cost grew
//! with idle sessions (issue 11: "an idle session costs nothing"). The same scheme is
//! `custody/src/digest.rs`, the session layer that is to replace `peers.rs`.

/// A count and an XOR of entry hashes: equal sets give equal digests, in any order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Entries.
    pub count: u64,
    /// XOR of their hashes.
    pub hash: u64,
}

/// SplitMix64's finalizer over the session id and the epoch.
fn entry_hash(session: u128, epoch: u32) -> u64 {
    let mut z =
        (session as u64) ^ ((session >> 64) as u64).rotate_left(29) ^ (u64::from(epoch) << 7);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Digest {
    /// Adds one copy.
    pub fn add(&mut self, session: u128, epoch: u32) {
        self.count += 1;
        self.hash ^= entry_hash(session, epoch);
    }
}

/// Entries per `Inventory` message (20 bytes each: 80 KiB).
pub const INVENTORY_CHUNK: usize = 4_096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_give_equal_digests_and_an_epoch_tells_them_apart() {
        let mut x = Digest::default();
        x.add(1, 0);
        x.add(u128::MAX, 3);
        let mut y = Digest::default();
        y.add(u128::MAX, 3);
        y.add(1, 0);
        assert_eq!(x, y, "order does not matter");
        let mut z = Digest::default();
        z.add(u128::MAX, 4);
        z.add(1, 0);
        assert_ne!(x, z, "another epoch");
        let mut w = Digest::default();
        w.add(1, 0);
        assert_ne!(x, w, "a missing copy");
        let mut v = Digest::default();
        v.add(2, 0);
        v.add(u128::MAX, 3);
        assert_ne!(x, v, "another session");
    }
}
