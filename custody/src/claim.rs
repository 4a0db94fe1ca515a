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
//!
//! Drop notes do the same for copies: an owner that drops a member it cannot reach from a
//! session's replica set (it counts it gone) cannot tell it to forget its copy, and goes on
//! making changes durable without it. It tells every member it can reach instead
//! (`Dropped`); when the dropped member later inquires about the session (its owner looks
//! gone), the members that noted the drop answer that its copy is stale, and it drops the
//! copy rather than take the session over with changes missing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::SessionId;
use crate::machine::Custody;
use crate::replica::beats;
use crate::wire::{Claim, CustodyMsg, DropNote};

/// How long a member keeps a noted claim.
pub(crate) const NOTE_TTL: Duration = Duration::from_secs(600);
/// Claims per message.
const CLAIM_CHUNK: usize = 1_000;

/// A drop noted here: the claim it was made under, the copy number from which on the
/// dropped member's copy is stale, and from which copy on that is in force (0: noted, not
/// known to be in force — the member is told nothing from it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotedDrop {
    pub(crate) claim: Claim,
    pub(crate) below: u64,
    pub(crate) forced_below: u64,
    pub(crate) at: Instant,
}

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

    /// Notes (at the next tick, to every reachable member) that `member` was dropped from
    /// `id`'s replica set under this node's claim `epoch`, missing copies from `below` on —
    /// `forced`: the second round, more than half of the cluster noted the first.
    pub(crate) fn announce_drop(
        &mut self,
        id: SessionId,
        epoch: u32,
        (below, forced): (u64, bool),
        member: SocketAddr,
    ) {
        let note = DropNote {
            session: id.0,
            epoch,
            owner: self.members.me().addr,
            below,
            member,
            forced,
        };
        // Kept here too, as a claim is (`announce_claim`): a restarted process learns the
        // notes from the members it asks (recovery.rs), and the owner that made the drop is
        // the one member sure to have it (seed 25227: the only other noter drained and
        // restarted; the process back at its address learned no drop from the owner, took
        // it for a voter, and a majority with the dropped replica revived its stale copy).
        self.note_drops(vec![note]);
        self.dropping.push(note);
    }

    /// Sends the drop notes made since the last tick.
    pub(crate) fn drops_due(&mut self) {
        if self.dropping.is_empty() {
            return;
        }
        let notes = std::mem::take(&mut self.dropping);
        let to = self.reachable();
        for chunk in notes.chunks(CLAIM_CHUNK) {
            for a in &to {
                self.send(*a, CustodyMsg::Dropped(chunk.to_vec()));
            }
        }
    }

    /// Another owner's drop notes: the newest per (session, member) is kept, and the owner
    /// is told they are noted.
    pub(crate) fn on_dropped(&mut self, from: SocketAddr, notes: Vec<DropNote>) {
        let noted: Vec<(u128, SocketAddr, u64, bool)> = notes
            .iter()
            .map(|d| (d.session, d.member, d.below, d.forced))
            .collect();
        self.note_drops(notes);
        self.send(from, CustodyMsg::DropsNoted(noted));
    }

    /// Keeps the newest drop note per (session, member): under the newest claim, the
    /// highest `below` noted and the highest known to be in force.
    pub(crate) fn note_drops(&mut self, notes: Vec<DropNote>) {
        let now = self.now;
        for d in notes {
            let key = (SessionId(d.session), d.member);
            let claim = Claim {
                epoch: d.epoch,
                owner: d.owner,
            };
            let forced_below = if d.forced { d.below } else { 0 };
            match self.drops.get_mut(&key) {
                Some(n) if newer(n.claim, claim) => {}
                Some(n) if n.claim == claim => {
                    if d.below > n.below || forced_below > n.forced_below {
                        n.below = n.below.max(d.below);
                        n.forced_below = n.forced_below.max(forced_below);
                        n.at = now;
                    }
                }
                _ => {
                    self.drops.insert(
                        key,
                        NotedDrop {
                            claim,
                            below: d.below,
                            forced_below,
                            at: now,
                        },
                    );
                }
            }
        }
    }

    /// Members that noted drops made here. A drop is noted in two rounds, each done once
    /// more than half of the cluster (with this node; no tie broken by the lowest address,
    /// members.rs) noted it: the first makes it in force, the second makes that known —
    /// only then does the dropped member leave the set for good, and what its copy lacks
    /// may be shown. A member that noted the first round alone cannot tell whether the drop
    /// came into force (this owner may have died short of it, having shown nothing the
    /// dropped copy lacks), so it tells the dropped member nothing (failover.rs,
    /// `on_inquire`); every group of more than half shares a member with the second round's,
    /// so a dropped member's inquiry meets the note once anything was shown without it.
    pub(crate) fn on_drops_noted(
        &mut self,
        from: SocketAddr,
        entries: &[(u128, SocketAddr, u64, bool)],
    ) {
        for (session, member, below, forced) in entries {
            let id = SessionId(*session);
            let Some(crate::machine::Entry {
                role: crate::machine::Role::Owner(o),
                ..
            }) = self.sessions.get_mut(&id)
            else {
                continue;
            };
            if !o.set.iter().any(|t| {
                t.addr == *member
                    && t.announced
                    && t.announced_below == *below
                    && t.forcing == *forced
            }) {
                continue;
            }
            // The dropped member's own word does not count: it is the one the notes must
            // reach through others (its inquiry does not consult its own notes). Seed 1639:
            // the stalled replica, back, noted its own drop and so completed the first
            // round, which the owner's death left short of the second; the note in force
            // made it discard the one copy that held all its client was told. The cost: a
            // dropped member back after the announcement that no longer ranks in the set
            // waits for the note like a gone one, so while more than half of the others are
            // not up the session shows nothing.
            if from != *member && !o.drop_noted.contains(&(*member, from)) {
                o.drop_noted.push((*member, from));
            }
            let noters: crate::det::Set<SocketAddr> = o
                .drop_noted
                .iter()
                .filter(|(m, _)| m == member)
                .map(|(_, by)| *by)
                .collect();
            if !self.members.strict_majority_of(&noters) {
                continue;
            }
            let Some(crate::machine::Entry {
                role: crate::machine::Role::Owner(o),
                ..
            }) = self.sessions.get_mut(&id)
            else {
                continue;
            };
            o.drop_noted.retain(|(m, _)| m != member);
            if !*forced {
                // In force: the second round tells the members so — started by `advance`
                // (owner.rs) once the note is all that keeps this owner from showing, so that
                // notes in force are not left behind by an owner that then shows nothing.
                if let Some(t) = o.set.iter_mut().find(|t| t.addr == *member) {
                    t.first_noted = true;
                }
                self.advance(id);
                continue;
            }
            // A note from an earlier copy than the first the member missed: it stays, and
            // what its copy holds may be shown (owner.rs, `advance`).
            if let Some(t) = o
                .set
                .iter_mut()
                .find(|t| t.addr == *member && t.dropped_below.is_some_and(|d| *below < d))
            {
                t.announced = false;
                t.first_noted = false;
                t.forcing = false;
                t.noted_below = Some(*below);
                self.advance(id);
                continue;
            }
            o.set.retain(|t| t.addr != *member);
            let epoch = o.epoch;
            self.digest_set_changed(id, epoch, &[*member], &[]);
            self.advance(id);
            self.mark(id);
        }
    }

    /// Drops notes older than `NOTE_TTL`.
    pub(crate) fn expire_notes(&mut self, now: Instant) {
        self.notes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < NOTE_TTL);
        self.drops
            .retain(|_, n| now.saturating_duration_since(n.at) < NOTE_TTL);
        self.void_claims
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < NOTE_TTL);
    }

    /// Whether `claim` is one this node gave up before it was in force.
    pub(crate) fn is_void(&self, id: SessionId, claim: Claim) -> bool {
        claim.owner == self.members.me().addr
            && self
                .void_claims
                .get(&id)
                .is_some_and(|(e, _)| *e == claim.epoch)
    }
}
