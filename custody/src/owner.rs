//! The owner's side: copying changes to the replica set in numbered copies, counting
//! acknowledgements, and showing events to clients once every replica holds them.
//!
//! - The replica set of a session is the `R − 1` live members after this node in rendezvous
//!   rank, that take copies (not draining). A member new to the set gets a full copy; one that
//!   left it gets `Forget`.
//! - Copies are numbered per session; a replica applies copy `k` only after `k − 1`, so its
//!   acknowledgement of `k` covers everything before. When every replica acknowledged `k`, the
//!   events that copy carried become durable ([`Action::Deliver`]) and the tickets it carried
//!   settle.
//! - A replica silent for `retransmit` while still live gets a full copy again.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::action::{Action, Ticket};
use crate::data::Shown;
use crate::id::SessionId;
use crate::machine::{Custody, Entry, Owned, Pending, Role, Track};
use crate::wire::{Ack, CustodyMsg, Replicate};

impl Custody {
    /// The replicas an owned session should have now, in rank order — plus, after them,
    /// current replicas the membership counts down but that are not gone yet (heard from
    /// within the lease). Such a replica may be alive on the other side of a partition and
    /// take the session over once its lease on this owner runs out; while it might, this
    /// owner must not count a change as durable without it.
    pub(crate) fn desired_set(&self, id: SessionId) -> Vec<SocketAddr> {
        let me = self.members.me().addr;
        let r = self.cfg.replication_factor.saturating_sub(1);
        if r == 0 {
            return Vec::new();
        }
        let mut set: Vec<SocketAddr> =
            mcp_cluster::ownership::rank(&id.key(), self.members.takers())
                .into_iter()
                .filter(|m| m.addr != me)
                .take(r)
                .map(|m| m.addr)
                .collect();
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get(&id)
        {
            let now = self.now;
            for t in &o.set {
                if !set.contains(&t.addr)
                    && !self.members.addr_is_live(t.addr)
                    && !self.addr_gone(t.addr, now)
                {
                    set.push(t.addr);
                }
            }
        }
        set
    }

    pub(crate) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for id in dirty {
            if let Some(e) = self.sessions.get_mut(&id) {
                e.dirty = false;
            }
            self.replicate(id);
        }
    }

    /// Sends what changed in an owned session to its replicas (whole to new ones).
    pub(crate) fn replicate(&mut self, id: SessionId) {
        let desired = self.desired_set(id);
        let now = self.now;
        let me = self.members.me();
        let gone: Vec<SocketAddr> = match self.sessions.get(&id) {
            Some(Entry {
                role: Role::Owner(o),
                ..
            }) => o
                .set
                .iter()
                .map(|t| t.addr)
                .filter(|a| self.addr_gone(*a, now))
                .collect(),
            _ => Vec::new(),
        };
        // Without a majority nothing becomes durable: the majority may be taking the session
        // over from its copies, which do not have what only this side holds.
        let quorum = self.members.quorum();
        let touch = self.in_touch(now);
        let Some(Entry {
            data,
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        if o.handoff.is_some() || o.confirm != 0 {
            // Nothing is copied before the claim is confirmed: a hand-in's or a take-over's
            // copies would displace those of a claim that raced it (replica.rs, `yields`),
            // and an owner back from a stall would number copies past what it may still
            // give up (failover.rs, `confirm_owned`).
            return;
        }
        let epoch = o.epoch;
        // The set first: members that left it drop their copy, new ones get it whole.
        let current: Vec<SocketAddr> = o.set.iter().map(|t| t.addr).collect();
        let mut forget: Vec<SocketAddr> = Vec::new();
        let mut added: Vec<SocketAddr> = Vec::new();
        let serving: Vec<SocketAddr> = o
            .set
            .iter()
            .filter(|t| !t.leaving)
            .map(|t| t.addr)
            .collect();
        // Without a majority the set stays as it was: the members this side cannot see may
        // well be alive, and an empty set would count as "held by every replica".
        let changed = o.set.iter().any(|t| {
            (t.leaving && gone.contains(&t.addr))
                || (t.dropped_below.is_some() && !t.announced && !gone.contains(&t.addr))
        });
        if (serving != desired || changed) && quorum {
            added.extend(desired.iter().filter(|a| !current.contains(a)));
            let old = std::mem::take(&mut o.set);
            let mut set: Vec<Track> = desired
                .iter()
                .map(|a| {
                    let mut t = old.iter().find(|t| t.addr == *a).copied().unwrap_or(Track {
                        addr: *a,
                        acked: 0,
                        full: true,
                        leaving: false,
                        forget_after: None,
                        dropped_below: None,
                        announced: false,
                        announced_below: 0,
                        first_noted: false,
                        forcing: false,
                        noted_below: None,
                    });
                    if t.leaving {
                        // Back in the set after being told to forget: it needs it whole.
                        t.leaving = false;
                        t.forget_after = None;
                        t.dropped_below = None;
                        t.announced = false;
                        t.first_noted = false;
                        t.forcing = false;
                        t.noted_below = None;
                        t.full = true;
                        t.acked = 0;
                    }
                    t
                })
                .collect();
            // Members leaving the set are told to forget once the new set holds the session
            // (make before break), and stay (not copied to) until they confirm or are gone.
            let below = o.seq + 1;
            for t in old.into_iter().filter(|t| !desired.contains(&t.addr)) {
                if gone.contains(&t.addr) || (t.dropped_below.is_some() && t.announced) {
                    // Gone: it cannot be told to forget. It stays until a majority noted
                    // that its copy is stale (claim.rs) — announced only once this owner is
                    // about to show something the copy lacks (`advance`): a copy that misses
                    // only what no client saw is not stale.
                    set.push(Track {
                        leaving: true,
                        acked: 0,
                        forget_after: None,
                        dropped_below: Some(t.dropped_below.unwrap_or(below)),
                        ..t
                    });
                    continue;
                }
                if !t.leaving || t.dropped_below.is_some() {
                    // (A dropped member back before its drop was announced: told to forget
                    // like any member leaving the set.)
                    forget.push(t.addr);
                }
                let t = Track {
                    dropped_below: None,
                    announced: false,
                    first_noted: false,
                    forcing: false,
                    noted_below: None,
                    ..t
                };
                set.push(Track {
                    leaving: true,
                    acked: 0,
                    ..t
                });
            }
            o.set = set;
        }
        let mut untracked: Vec<SocketAddr> = Vec::new();
        for a in std::mem::take(&mut o.forget_after) {
            if !desired.contains(&a) && !forget.contains(&a) && !current.contains(&a) {
                untracked.push(a);
            }
        }
        let mut out: Vec<(SocketAddr, CustodyMsg)> = Vec::new();
        for a in untracked {
            out.push((
                a,
                CustodyMsg::Forget {
                    session: id.0,
                    epoch,
                },
            ));
        }
        if o.set.is_empty() && touch && o.confirm == 0 {
            // Nobody to wait for: everything is durable now.
            o.pending.clear();
            let tickets = std::mem::take(&mut o.tickets);
            let was_unacked = o.unacked_since.take().is_some();
            let shown = data.all_durable();
            for a in &forget {
                out.push((
                    *a,
                    CustodyMsg::Forget {
                        session: id.0,
                        epoch,
                    },
                ));
            }
            if was_unacked {
                self.unacked -= 1;
            }
            self.show(id, shown, tickets);
            self.hand_in_durable(id, true);
            self.digest_set_changed(id, epoch, &[], &added);
            for (to, msg) in out {
                self.send(to, msg);
            }
            return;
        }
        if o.set.iter().all(|t| t.leaving) {
            // Nothing to copy to (no quorum and no replica, or only members to confirm a
            // Forget): wait.
            for a in &forget {
                out.push((
                    *a,
                    CustodyMsg::Forget {
                        session: id.0,
                        epoch,
                    },
                ));
            }
            self.digest_set_changed(id, epoch, &[], &added);
            for (to, msg) in out {
                self.send(to, msg);
            }
            return;
        }
        o.seq += 1;
        let seq = o.seq;
        // Make before break: the members that just left keep their copy until every member
        // of the new set acknowledged this copy.
        for t in o.set.iter_mut().filter(|t| forget.contains(&t.addr)) {
            t.forget_after = Some(seq);
        }
        forget.clear();
        let any_full = o.set.iter().any(|t| t.full && !t.leaving);
        let all_full = o.set.iter().filter(|t| !t.leaving).all(|t| t.full);
        let (delta, marks) = data.copy(all_full);
        let whole = if any_full && !all_full {
            Some(data.whole_streams())
        } else {
            None
        };
        let state = data.state_copy();
        let replicas: Vec<SocketAddr> = o
            .set
            .iter()
            .filter(|t| !t.leaving)
            .map(|t| t.addr)
            .collect();
        o.pending.push_back(Pending {
            seq,
            marks,
            tickets: std::mem::take(&mut o.tickets),
            changed: std::mem::take(&mut o.changed),
        });
        let newly_unacked = o.unacked_since.is_none();
        if newly_unacked {
            o.unacked_since = Some(now);
        }
        let schedule = !o.in_retransmit;
        o.in_retransmit = true;
        for t in o.set.iter_mut().filter(|t| !t.leaving) {
            let full = t.full;
            t.full = false;
            let streams = match (&whole, full) {
                (Some(w), true) => w.clone(),
                _ => delta.clone(),
            };
            out.push((
                t.addr,
                CustodyMsg::Replicate(Box::new(Replicate {
                    session: id.0,
                    epoch,
                    seq,
                    owner: me.addr,
                    owner_generation: me.generation,
                    replicas: replicas.clone(),
                    handoff: false,
                    full,
                    state: state.clone(),
                    streams,
                })),
            ));
        }
        for a in &forget {
            out.push((
                *a,
                CustodyMsg::Forget {
                    session: id.0,
                    epoch,
                },
            ));
        }
        if newly_unacked {
            self.unacked += 1;
        }
        if schedule {
            self.retransmit.push_back((now + self.cfg.retransmit, id));
        }
        for (to, msg) in out {
            if let CustodyMsg::Replicate(r) = &msg {
                self.stats.copies_sent += 1;
                if r.full {
                    self.stats.full_copies_sent += 1;
                }
            }
            self.send(to, msg);
        }
        self.digest_set_changed(id, epoch, &[], &added);
    }

    /// A replica acknowledged copies of a session (or the successor a hand-off).
    pub(crate) fn on_ack(&mut self, from: SocketAddr, a: Ack, now: Instant) {
        let id = SessionId(a.session);
        let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        if let Some(h) = o.handoff
            && h.to == from
            && h.epoch == a.epoch
            && h.seq == a.seq
        {
            self.handoff_done(id, h, now);
            return;
        }
        if a.seq == crate::replica::FORGOTTEN {
            // A member leaving the set confirmed it dropped its copy.
            if let Some(pos) = o.set.iter().position(|t| t.addr == from && t.leaving) {
                o.set.remove(pos);
                let epoch = o.epoch;
                self.digest_set_changed(id, epoch, &[from], &[]);
                self.advance(id);
            }
            return;
        }
        if a.epoch != o.epoch {
            return;
        }
        let Some(t) = o.set.iter_mut().find(|t| t.addr == from && !t.leaving) else {
            return;
        };
        if a.seq > t.acked && a.seq <= o.seq {
            t.acked = a.seq;
            self.release_leavers(id);
            self.advance(id);
        }
    }

    /// Tells the members leaving an owned session's set to forget it once every member of
    /// the new set acknowledged the copy that made it a holder.
    pub(crate) fn release_leavers(&mut self, id: SessionId) {
        let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        let caught_up = o
            .set
            .iter()
            .filter(|t| !t.leaving)
            .map(|t| t.acked)
            .min()
            .unwrap_or(u64::MAX);
        let epoch = o.epoch;
        let mut tell = Vec::new();
        for t in o.set.iter_mut().filter(|t| t.leaving) {
            if t.forget_after.is_some_and(|s| s <= caught_up) {
                t.forget_after = None;
                tell.push(t.addr);
            }
        }
        for a in tell {
            self.send(
                a,
                CustodyMsg::Forget {
                    session: id.0,
                    epoch,
                },
            );
        }
    }

    /// Makes durable what every replica acknowledged.
    pub(crate) fn advance(&mut self, id: SessionId) {
        let in_touch = self.in_touch(self.now);
        let Some(Entry {
            data,
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        if !in_touch || o.confirm != 0 {
            // See `replicate`: shown and settled once the majority is back, and once no
            // other node turned out to have taken the session over meanwhile.
            return;
        }
        // A member that may still hold a copy and has not confirmed it forgot it (or a
        // dropped one whose drop note is in a round) holds everything back — except a
        // dropped member whose drop is not announced: copies that show nothing may pass it;
        // and one whose note's first round is done waits for the second, started here.
        if o.set.iter().any(|t| {
            t.leaving
                && (t.dropped_below.is_none() || (t.announced && (t.forcing || !t.first_noted)))
        }) {
            return;
        }
        let unannounced = o.set.iter().any(|t| t.leaving);
        let upto = o
            .set
            .iter()
            .filter(|t| !t.leaving)
            .map(|t| t.acked)
            .min()
            .unwrap_or(u64::MAX);
        // What becomes durable now: whether it shows or settles anything, and the last copy
        // that changed the session up to it (a copy from it on holds all of that). The
        // copies up to `free` may become durable without a new drop note: they show nothing
        // a dropped member may lack, or its note in force covers what they change. They are
        // shown even when the rest waits for a note: a note in force whose owner then shows
        // nothing (it needs the note again, raised, first) would tell the dropped member
        // its copy is stale although that copy holds all its client saw, should the owner
        // die before the raised note is in force (seed 14206170 with notes in two rounds).
        let covered = |need: u64| {
            o.set.iter().filter(|t| t.leaving).all(|t| {
                let below = need.min(t.dropped_below.unwrap_or(0));
                below == 0 || t.noted_below.is_some_and(|n| n >= below)
            })
        };
        let mut shows = false;
        let mut need = o.durable_changed;
        let mut free = 0;
        let mut blocked = false;
        for p in o.pending.iter().take_while(|p| p.seq <= upto) {
            shows |= !p.tickets.is_empty() || data.would_show(&p.marks);
            if p.changed {
                need = p.seq;
            }
            blocked |= unannounced && shows && !covered(need);
            if !blocked {
                free = p.seq;
            }
        }
        let mut drops = Vec::new();
        if unannounced && shows {
            // About to show what a dropped member may lack: a majority must note first from
            // which copy on its copy is stale (claim.rs) — the first it missed, or, when the
            // copies it missed up to this one changed nothing, the last that changed the
            // session (seed 14206170: a replica back from a stall was sent the copies it
            // missed, the ones after them only dropped it from the set, and its copy held
            // everything shown).
            // A note whose first round is done goes into its second now, and only now:
            // this owner shows as soon as it is in force. Started when the first round ended,
            // it put notes in force at members while the owner went on showing nothing
            // (re-confirming after a heal, a new replica not caught up), and a note in force
            // with nothing shown discards a copy that holds all its client saw, should the
            // owner die meanwhile (seed 980002840).
            for t in o.set.iter_mut().filter(|t| t.leaving) {
                let below = need.min(t.dropped_below.unwrap_or(0));
                if below == 0 || t.noted_below.is_some_and(|n| n >= below) {
                    continue;
                }
                if t.announced {
                    if t.first_noted && !t.forcing {
                        t.forcing = true;
                        drops.push((t.announced_below, true, t.addr));
                    }
                    continue;
                }
                t.announced = true;
                t.announced_below = below;
                t.forcing = false;
                t.first_noted = false;
                drops.push((below, false, t.addr));
            }
        }
        if !drops.is_empty() {
            let epoch = o.epoch;
            // Re-sent until more than half noted it (`retransmit_due`).
            let schedule = !o.in_retransmit;
            o.in_retransmit = true;
            for (below, forced, member) in drops {
                self.announce_drop(id, epoch, (below, forced), member);
            }
            if schedule {
                self.retransmit
                    .push_back((self.now + self.cfg.retransmit, id));
            }
        }
        let Some(Entry {
            data,
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        let mut shown = Vec::new();
        let mut settled: Vec<Ticket> = Vec::new();
        while o.pending.front().is_some_and(|p| p.seq <= free) {
            let Some(p) = o.pending.pop_front() else {
                break;
            };
            for (stream, seq, finished) in p.marks {
                if let Some((events, ended)) = data.make_durable(stream, seq, finished) {
                    shown.push((stream, events, ended));
                }
            }
            settled.extend(p.tickets);
            if p.changed {
                o.durable_changed = p.seq;
            }
        }
        let done = o.pending.is_empty() && o.unacked_since.take().is_some();
        if done {
            self.unacked -= 1;
        }
        self.show(id, shown, settled);
        self.hand_in_durable(id, false);
    }

    /// A hand-in whose claim is confirmed and whose replicas hold everything it was handed
    /// (a copy made since was acknowledged by all; `alone`: there is nobody to copy to):
    /// the sender may let it go now.
    fn hand_in_durable(&mut self, id: SessionId, alone: bool) {
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
            && o.confirm == 0
            && o.pending.is_empty()
            && (alone || o.seq > o.handed_from.map_or(u64::MAX, |(_, a)| a.seq))
            && let Some((to, ack)) = o.handed_from.take()
        {
            self.acks_out.push((to, ack));
        }
    }

    /// What became durable reaches the driver: each stream's events, then its end, then
    /// the tickets settled.
    fn show(&mut self, id: SessionId, shown: Vec<Shown>, settled: Vec<Ticket>) {
        for (stream, events, ended) in shown {
            for (seq, json) in events {
                self.actions.push_back(Action::Deliver {
                    session: id,
                    stream,
                    seq,
                    json,
                });
            }
            if ended {
                self.actions.push_back(Action::StreamEnded {
                    session: id,
                    stream,
                });
            }
        }
        for t in settled {
            self.actions.push_back(Action::Settled {
                ticket: t,
                ok: true,
            });
        }
    }

    /// Durability is off: show what a stream has at once.
    pub(crate) fn show_now(&mut self, id: SessionId, stream: u32) {
        let Some(e) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(s) = e.data.stream(stream) else {
            return;
        };
        let (last, fin) = (s.next_seq().saturating_sub(1), s.finished);
        if let Some((events, ended)) = e.data.make_durable(stream, last, fin) {
            self.show(id, vec![(stream, events, ended)], Vec::new());
        }
    }

    /// A replica lost track (a gap): it gets a full copy.
    pub(crate) fn on_resync(&mut self, from: SocketAddr, id: SessionId) {
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
            && let Some(t) = o.set.iter_mut().find(|t| t.addr == from)
        {
            t.full = true;
            self.mark(id);
        }
    }

    /// Replicas silent for `retransmit` get a full copy again, if they are still live and
    /// talking (a copy lost with a failed connection); silent ones wait for the membership.
    pub(crate) fn retransmit_due(&mut self, now: Instant) {
        let lease = self.cfg.lease;
        let mut again = VecDeque::new();
        while self.retransmit.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, id)) = self.retransmit.pop_front() else {
                break;
            };
            let members = &self.members;
            let Some(Entry {
                role: Role::Owner(o),
                ..
            }) = self.sessions.get_mut(&id)
            else {
                continue;
            };
            // (A dropped member whose drop is not announced needs nothing until then.)
            if o.pending.is_empty()
                && !o
                    .set
                    .iter()
                    .any(|t| t.leaving && (t.dropped_below.is_none() || t.announced))
            {
                o.in_retransmit = false;
                continue;
            }
            let last = o.seq;
            let mut resend = false;
            let mut forgets = Vec::new();
            let mut drops = Vec::new();
            for t in &mut o.set {
                if t.dropped_below.is_some() {
                    // Announced: again, until more than half noted it (a first round that is
                    // done waits for `advance` to start the second).
                    if t.announced && (t.forcing || !t.first_noted) {
                        drops.push((o.epoch, (t.announced_below, t.forcing), t.addr));
                        resend = true;
                    }
                    continue;
                }
                let talking = members
                    .contact(t.addr)
                    .is_some_and(|c| now.saturating_duration_since(c.at) < lease);
                if t.leaving {
                    if talking && t.forget_after.is_none() {
                        forgets.push((t.addr, o.epoch));
                    }
                    resend = true; // look again (the member may be gone by then)
                } else if t.acked < last && talking {
                    t.full = true;
                    resend = true;
                }
            }
            for (epoch, below, member) in drops {
                self.announce_drop(id, epoch, below, member);
            }
            for (a, epoch) in forgets {
                self.send(
                    a,
                    CustodyMsg::Forget {
                        session: id.0,
                        epoch,
                    },
                );
            }
            again.push_back((now + self.cfg.retransmit, id));
            if resend {
                self.stats.retransmits += 1;
                self.mark(id);
            }
        }
        self.retransmit.extend(again);
    }

    /// Whether new sessions should be refused: copies wait too long for acknowledgements, or
    /// too many sessions wait.
    pub(crate) fn replication_behind(&self, now: Instant) -> bool {
        if self.unacked > self.cfg.max_unacked {
            return true;
        }
        self.retransmit.iter().take(64).any(|(_, id)| {
            matches!(self.sessions.get(id), Some(Entry { role: Role::Owner(o), .. })
                if o.unacked_since.is_some_and(|t| now.saturating_duration_since(t) > self.cfg.max_ack_lag))
        })
    }

    /// Every owned session must be confirmed before it is served again: this node may have
    /// been out of touch long enough for a replica to take it over. Every live member is asked
    /// what it holds (an inquiry, as for take-overs); a session some member holds under a newer
    /// claim is given up, the others are served again.
    pub(crate) fn reconfirm_all(&mut self) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter_mut()
            .filter_map(|(id, e)| match &mut e.role {
                Role::Owner(o) => {
                    o.confirm = 1;
                    Some(*id)
                }
                Role::Copy(_) => None,
            })
            .collect();
        let now = self.now;
        self.orphans.extend(ids.into_iter().map(|id| (now, id)));
    }

    /// Whether an owned session may be served (not waiting for a confirmation).
    pub(crate) fn confirmed(o: &Owned) -> bool {
        o.confirm == 0
    }

    /// Every owned session's replica set is checked again, a few per tick.
    pub(crate) fn reconcile_all(&mut self) {
        self.reconcile = self
            .sessions
            .iter()
            .filter(|(_, e)| matches!(e.role, Role::Owner(_)))
            .map(|(id, _)| *id)
            .collect();
    }

    pub(crate) fn reconcile_some(&mut self) {
        for _ in 0..self.cfg.reconcile_per_tick {
            let Some(id) = self.reconcile.pop_front() else {
                return;
            };
            let desired = self.desired_set(id);
            if let Some(Entry {
                role: Role::Owner(o),
                ..
            }) = self.sessions.get(&id)
                && (o.set.len() != desired.len()
                    || o.set.iter().any(|t| t.leaving)
                    || o.set.iter().zip(&desired).any(|(t, d)| t.addr != *d))
            {
                self.mark(id);
            }
        }
    }

    /// Removes an owned session; `forget`: its replicas drop their copies. Waiting tickets
    /// fail.
    pub(crate) fn remove_owned(&mut self, id: SessionId, forget: bool) -> Option<Box<Owned>> {
        let e = self.sessions.remove(&id)?;
        let Role::Owner(o) = e.role else {
            self.sessions.insert(id, e);
            return None;
        };
        self.owned -= 1;
        if o.unacked_since.is_some() {
            self.unacked -= 1;
        }
        self.handing.remove(&id);
        let addrs: Vec<SocketAddr> = o.set.iter().map(|t| t.addr).collect();
        self.digest_set_changed(id, o.epoch, &addrs, &[]);
        if forget {
            for a in &addrs {
                self.send(
                    *a,
                    CustodyMsg::Forget {
                        session: id.0,
                        epoch: o.epoch,
                    },
                );
            }
        }
        for p in &o.pending {
            for t in &p.tickets {
                self.actions.push_back(Action::Settled {
                    ticket: *t,
                    ok: false,
                });
            }
        }
        for t in &o.tickets {
            self.actions.push_back(Action::Settled {
                ticket: *t,
                ok: false,
            });
        }
        Some(o)
    }
}
