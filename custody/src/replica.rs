//! The replica's side: applying an owner's numbered copies, refusing what does not continue
//! them (`Resync`), and how two claims on one session meet — the higher epoch wins, then the
//! lower address; the loser hears `Superseded` and stops owning it.

use std::net::SocketAddr;
use std::time::Instant;

use mcp_cluster::membership::NodeId;

use crate::action::{Acquire, Action, Release};
use crate::data::SessionData;
use crate::id::SessionId;
use crate::machine::{CopyOf, Custody, Entry, Owned, Role};
use crate::wire::{Ack, CustodyMsg, Replicate};

/// The copy number an acknowledgement carries to confirm a `Forget`.
pub(crate) const FORGOTTEN: u64 = u64::MAX;

/// Whether claim `a` (epoch, owner address) beats claim `b`.
pub(crate) fn beats(a: (u32, SocketAddr), b: (u32, SocketAddr)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// Whether an owner holding claim `mine` gives the session up to claim `other`: one that beats
/// it, or — while `mine` is `fresh` (a hand-in not yet confirmed) — any other claim of an
/// equal epoch too. Two claims of one epoch come from one predecessor at the same time (a
/// hand-off racing a take-over by a replica that thought the sender gone); the take-over is
/// in force at once and may have served, the hand-in only once confirmed, so the address
/// must not decide between them.
pub(crate) fn yields(fresh: bool, mine: (u32, SocketAddr), other: (u32, SocketAddr)) -> bool {
    if fresh {
        other.1 != mine.1 && other.0 >= mine.0
    } else {
        beats(other, mine)
    }
}

impl Custody {
    pub(crate) fn on_replicate(&mut self, from: SocketAddr, r: Replicate, now: Instant) {
        let id = SessionId(r.session);
        let owner = NodeId::new(r.owner, r.owner_generation);
        if r.owner != from {
            return; // copies come from their owner only
        }
        if r.handoff {
            self.on_handoff(from, owner, r, now);
            return;
        }
        let me = self.members.me().addr;
        // The successor of a hand-off in progress already copies the session: it got it.
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get(&id)
            && let Some(h) = o.handoff
            && h.to == from
            && r.epoch >= h.epoch
        {
            self.handoff_done(id, h, now);
        }
        match self.sessions.get(&id).map(|e| &e.role) {
            Some(Role::Owner(o)) => {
                let mine = (o.epoch, me);
                if !yields(o.fresh, mine, (r.epoch, from)) {
                    if o.fresh {
                        // A claim not in force yet tells nobody it is superseded.
                        return;
                    }
                    self.send(
                        from,
                        CustodyMsg::Superseded {
                            session: r.session,
                            epoch: o.epoch,
                            owner: me,
                        },
                    );
                    return;
                }
                // A newer owner: this node's claim is stale (a take-over while it was thought
                // dead). It gives the session up and keeps the winner's copy.
                self.release(id, Some(from), Release::Superseded);
            }
            Some(Role::Copy(c)) => {
                let known = (c.epoch, c.owner.addr);
                if known != (r.epoch, from) && beats(known, (r.epoch, from)) {
                    // The sender is an old owner still copying: another one took over.
                    self.send(
                        from,
                        CustodyMsg::Superseded {
                            session: r.session,
                            epoch: known.0,
                            owner: known.1,
                        },
                    );
                    return;
                }
            }
            None => {}
        }
        let cap = self.cfg.event_log_capacity;
        let ack = Ack {
            session: r.session,
            epoch: r.epoch,
            seq: r.seq,
        };
        match self.sessions.get_mut(&id) {
            Some(Entry {
                data,
                role: Role::Copy(c),
                ..
            }) => {
                let same_owner = c.epoch == r.epoch && c.owner.addr == from;
                let in_order = r.full || (same_owner && r.seq == c.seq + 1);
                if !in_order || data.apply(r.full, &r.state, &r.streams, cap).is_err() {
                    if same_owner && r.seq <= c.seq {
                        return; // a duplicate of a copy applied already
                    }
                    self.stats.gaps += 1;
                    self.send(from, CustodyMsg::Resync { session: r.session });
                    return;
                }
                let (old_owner, old_epoch) = (c.owner, c.epoch);
                c.owner = owner;
                c.epoch = r.epoch;
                c.seq = r.seq;
                c.replicas = r.replicas;
                self.stats.copies_applied += 1;
                if (old_owner, old_epoch) != (owner, r.epoch) {
                    self.digest_in_remove(old_owner, id, old_epoch);
                    self.digest_in_add(owner, id, r.epoch);
                    self.deferred.remove(&id);
                }
                self.acks_out.push((from, ack));
                self.watch_owner(owner, id, now);
            }
            Some(Entry {
                role: Role::Owner(_),
                ..
            }) => {}
            None if r.full => {
                if self.copies >= self.cfg.max_copies {
                    self.stats.copies_refused += 1;
                    return;
                }
                let data = SessionData::from_copy(&r.state, &r.streams, cap);
                self.sessions.insert(
                    id,
                    Entry {
                        data,
                        role: Role::Copy(Box::new(CopyOf {
                            owner,
                            epoch: r.epoch,
                            seq: r.seq,
                            replicas: r.replicas,
                        })),
                        dirty: false,
                    },
                );
                self.copies += 1;
                self.stats.copies_applied += 1;
                self.digest_in_add(owner, id, r.epoch);
                self.acks_out.push((from, ack));
                self.watch_owner(owner, id, now);
            }
            None => {
                self.stats.gaps += 1;
                self.send(from, CustodyMsg::Resync { session: r.session });
            }
        }
    }

    /// A copy from an owner this node does not count live (its view lags the copy): no
    /// membership event will come for it, so failover looks at it after the lease.
    fn watch_owner(&mut self, owner: NodeId, id: SessionId, now: Instant) {
        if !self.members.live().contains(&owner) {
            self.orphans.push_back((now + self.cfg.lease, id));
        }
    }

    /// A hand-off: this node becomes the owner (drain, rebalancing).
    fn on_handoff(&mut self, from: SocketAddr, owner: NodeId, r: Replicate, _now: Instant) {
        let id = SessionId(r.session);
        let me = self.members.me().addr;
        let ack = Ack {
            session: r.session,
            epoch: r.epoch,
            seq: r.seq,
        };
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get(&id)
        {
            if o.epoch == r.epoch {
                // Received already: acknowledge again if it was (the acknowledgement was
                // lost), else it will be once durable; apply nothing (this node may have
                // changed the session since).
                if o.handed_from.is_none() {
                    self.acks_out.push((from, ack));
                }
                return;
            }
            if !yields(o.fresh, (o.epoch, me), (r.epoch, from)) {
                if o.fresh {
                    return;
                }
                self.send(
                    from,
                    CustodyMsg::Superseded {
                        session: r.session,
                        epoch: o.epoch,
                        owner: me,
                    },
                );
                return;
            }
        }
        if self.owned >= self.cfg.max_sessions && !self.sessions.contains_key(&id) {
            return; // no acknowledgement: the owner keeps it
        }
        if self.draining || !self.in_touch(_now) {
            // A draining node takes nothing, nor one that could not serve it; the owner tries
            // again (another node, or later).
            return;
        }
        // A copy here under another owner's claim of the offer's epoch or later: that owner
        // took the session over from the sender's replicas while the sender was thought gone.
        if let Some(Entry {
            role: Role::Copy(c),
            ..
        }) = self.sessions.get(&id)
            && c.owner.addr != from
            && yields(true, (r.epoch, me), (c.epoch, c.owner.addr))
        {
            self.send(
                from,
                CustodyMsg::Superseded {
                    session: r.session,
                    epoch: c.epoch,
                    owner: c.owner.addr,
                },
            );
            return;
        }
        self.drop_copy(id);
        if let Some(Entry {
            role: Role::Owner(_),
            ..
        }) = self.sessions.get(&id)
        {
            self.remove_owned(id, false);
        }
        let mut data = SessionData::from_copy(&r.state, &r.streams, self.cfg.event_log_capacity);
        // Shown only once this node's own replicas hold it.
        data.none_durable();
        let previous: Vec<SocketAddr> = r.replicas.iter().copied().filter(|a| *a != me).collect();
        self.sessions.insert(
            id,
            Entry {
                data,
                role: Role::Owner(Box::new(Owned {
                    epoch: r.epoch,
                    seq: r.seq,
                    set: Vec::new(),
                    pending: Default::default(),
                    tickets: Vec::new(),
                    unacked_since: None,
                    in_retransmit: false,
                    handoff: None,
                    busy: 0,
                    // Served once a majority noted this node's claim (claim.rs): the offer
                    // may be one the sender gave up while this node could not answer.
                    confirm: 1,
                    fresh: true,
                    from_claim: Some((r.epoch.saturating_sub(1), from, r.seq.saturating_sub(1))),
                    bump_to: None,
                    forget_after: previous,
                    drop_noted: Vec::new(),
                    handed_from: Some((from, ack)),
                    // Its first copy brings the members the data of another claim.
                    changed: true,
                    durable_changed: 0,
                })),
                dirty: false,
            },
        );
        self.owned += 1;
        self.moved.remove(&id);
        self.stats.handoffs_received += 1;
        self.actions.push_back(Action::Acquired {
            session: id,
            why: Acquire::HandedIn,
        });
        let _ = owner;
        self.announce_claim(id, r.epoch);
        self.orphans.push_back((_now, id));
        self.mark(id);
    }

    /// The owner dropped the session (or this node from its replica set).
    pub(crate) fn on_forget(&mut self, from: SocketAddr, id: SessionId, epoch: u32) {
        // From the copy's owner, or from a newer claim (a successor that took over or was
        // handed the session and chose other replicas).
        if let Some(Entry {
            role: Role::Copy(c),
            ..
        }) = self.sessions.get(&id)
            && ((c.owner.addr == from && c.epoch <= epoch) || epoch > c.epoch)
        {
            self.drop_copy(id);
            self.stats.copies_dropped += 1;
        }
        // Confirmed (even when no copy was here): the owner may settle without this node.
        self.acks_out.push((
            from,
            Ack {
                session: id.0,
                epoch,
                seq: FORGOTTEN,
            },
        ));
    }

    /// `owner` owns a newer version of a session owned here.
    pub(crate) fn on_superseded(&mut self, id: SessionId, epoch: u32, owner: SocketAddr) {
        let me = self.members.me().addr;
        if owner == me {
            return;
        }
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get(&id)
            && yields(o.fresh, (o.epoch, me), (epoch, owner))
        {
            self.release(id, Some(owner), Release::Superseded);
        }
    }

    /// Stops owning a session: its readers end and waiting changes fail; its replicas other
    /// than the new owner drop their copies.
    pub(crate) fn release(&mut self, id: SessionId, to: Option<SocketAddr>, why: Release) {
        let Some(o) = self.remove_owned(id, false) else {
            return;
        };
        // A hand-in given up before it was acknowledged: its sender, which still keeps the
        // session, learns that a claim at least this one's epoch won.
        if let (Some((sender, _)), Some(winner)) = (o.handed_from, to)
            && sender != winner
        {
            self.send(
                sender,
                CustodyMsg::Superseded {
                    session: id.0,
                    epoch: o.epoch,
                    owner: winner,
                },
            );
        }
        for t in &o.set {
            if Some(t.addr) != to {
                self.send(
                    t.addr,
                    CustodyMsg::Forget {
                        session: id.0,
                        epoch: o.epoch,
                    },
                );
            }
        }
        if why == Release::Superseded {
            self.stats.superseded += 1;
        }
        self.actions.push_back(Action::Released {
            session: id,
            to,
            why,
        });
    }

    /// Drops a copy held here (no message).
    pub(crate) fn drop_copy(&mut self, id: SessionId) {
        if let Some(Entry {
            role: Role::Copy(c),
            ..
        }) = self.sessions.get(&id)
        {
            let (owner, epoch) = (c.owner, c.epoch);
            self.sessions.remove(&id);
            self.deferred.remove(&id);
            self.copies -= 1;
            self.digest_in_remove(owner, id, epoch);
        }
    }

    /// An owner renewed its identity (same process, next generation): its copies follow it,
    /// or they would look orphaned and be taken over.
    pub(crate) fn owner_renewed(&mut self, old: NodeId, new: NodeId) {
        let mut moved = Vec::new();
        for (id, e) in &mut self.sessions {
            if let Role::Copy(c) = &mut e.role
                && c.owner == old
            {
                c.owner = new;
                moved.push((*id, c.epoch));
            }
        }
        for (id, epoch) in moved {
            self.digest_in_remove(old, id, epoch);
            self.digest_in_add(new, id, epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 7000))
    }

    #[test]
    fn a_claim_in_force_yields_only_to_one_that_beats_it() {
        assert!(yields(false, (1, a(2)), (2, a(3))), "a later epoch");
        assert!(
            yields(false, (1, a(2)), (1, a(1))),
            "same epoch, lower address"
        );
        assert!(!yields(false, (1, a(2)), (1, a(3))));
        assert!(!yields(false, (2, a(2)), (1, a(1))));
    }

    #[test]
    fn a_fresh_claim_yields_to_any_other_of_its_epoch_or_later() {
        assert!(
            yields(true, (1, a(2)), (1, a(3))),
            "same epoch, higher address"
        );
        assert!(yields(true, (1, a(2)), (1, a(1))));
        assert!(yields(true, (1, a(2)), (4, a(9))));
        assert!(!yields(true, (2, a(2)), (1, a(1))), "an older claim");
        assert!(!yields(true, (1, a(2)), (1, a(2))), "its own");
    }
}
