//! Notes of ownership changes, so that a node that was out of touch learns of them.
//!
//! Whenever a node starts owning a session other than by creating it — it took it over, it
//! was handed it, it gave up a hand-off and keeps it under a raised epoch — it tells every
//! member it can reach its claim (`Claims`), and each notes the newest claim it heard per
//! session (kept `NOTE_TTL`). Inquiries (failover.rs) report notes with what members hold,
//! and decide only on answers from a majority. So an owner that was stalled or cut off while
//! a replica took its session over, and that confirms itself with a majority afterwards,
//! meets the note even when the new owner and its replicas are out of its reach, and gives
//! the session up instead of serving stale state.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::SessionId;
use crate::machine::Custody;
use crate::replica::beats;
use crate::wire::{Claim, CustodyMsg};

/// How long a member keeps a noted claim.
pub(crate) const NOTE_TTL: Duration = Duration::from_secs(600);
/// Claims per message.
const CLAIM_CHUNK: usize = 1_000;

/// Whether claim `a` is newer than claim `b`.
pub(crate) fn newer(a: Claim, b: Claim) -> bool {
    beats((a.epoch, a.owner), (b.epoch, b.owner))
}

impl Custody {
    /// Tells every reachable member (at the next tick) that this node owns `id` at `epoch`.
    pub(crate) fn announce_claim(&mut self, id: SessionId, epoch: u32) {
        let claim = Claim {
            epoch,
            owner: self.members.me().addr,
        };
        self.notes.insert(id, (claim, self.now));
        self.claiming.push((id.0, claim));
    }

    /// Sends the claims announced since the last tick.
    pub(crate) fn claims_due(&mut self) {
        if self.claiming.is_empty() {
            return;
        }
        let claims = std::mem::take(&mut self.claiming);
        let to = self.reachable();
        for chunk in claims.chunks(CLAIM_CHUNK) {
            for a in &to {
                self.send(*a, CustodyMsg::Claims(chunk.to_vec()));
            }
        }
    }

    /// Members that are live or were heard from within the lease, other than this node.
    pub(crate) fn reachable(&self) -> Vec<SocketAddr> {
        let me = self.members.me().addr;
        let lease = self.cfg.lease;
        let now = self.now;
        let mut to: Vec<SocketAddr> = self
            .members
            .all()
            .iter()
            .map(|m| m.id.addr)
            .filter(|a| *a != me)
            .filter(|a| {
                self.members.addr_is_live(*a)
                    || self
                        .members
                        .contact(*a)
                        .is_some_and(|c| now.saturating_duration_since(c.at) < lease)
            })
            .collect();
        to.sort();
        to.dedup();
        to
    }

    /// Another node's claims: the newest per session is noted.
    pub(crate) fn on_claims(&mut self, claims: Vec<(u128, Claim)>) {
        let now = self.now;
        for (s, c) in claims {
            let id = SessionId(s);
            let keep = self.notes.get(&id).is_some_and(|(n, _)| !newer(c, *n));
            if !keep {
                self.notes.insert(id, (c, now));
            }
        }
    }

    /// Drops notes older than `NOTE_TTL`.
    pub(crate) fn expire_notes(&mut self, now: Instant) {
        self.notes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < NOTE_TTL);
    }
}
