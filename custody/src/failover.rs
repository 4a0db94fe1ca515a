//! Take-over: a node holding a copy of a session whose owner is gone becomes its owner.
//!
//! 1. The owner is **gone** when the membership no longer counts it live (down, left, or
//!    replaced by a restarted process at its address) **and** this node has not heard from it
//!    on the data link for `lease` (a restarted process's heartbeat proves the old one gone at
//!    once). A "down" verdict that was wrong — the membership on a starved CPU, a healed
//!    partition's stale gossip — moves nothing while the owner keeps talking.
//! 2. Only with a **quorum**: on the minority side of a partition the owner may be alive.
//! 3. **Inquiry**: the candidate asks every live member what it holds of the sessions (one
//!    message for a batch). A copy is only as good as the last change it received: a replica
//!    that was cut off may hold an old copy while the owner had moved its set to another node.
//!    So only the holder of the most up-to-date copy among the live members takes a session
//!    over (equal copies: the lowest address), and nobody does while some member owns it under
//!    an equal or newer claim. The winner bumps the epoch and announces its claim.
//! 4. **Confirmation**: the new claim is in force — served, copied to the winner's own set,
//!    the other holders told to drop their copies — once a second inquiry, sent after the
//!    claim's note, is answered by a majority with no other claim of its epoch or later and
//!    no sign that the owner it took over from went on without it (`confirm_owned`; the same
//!    confirmation serves a hand-in, and an owner back from a stall or a lost majority).
//!
//! Requests for such a session wait (`Route::Wait`) while this runs; the rest are taken over
//! in the background, `takeovers_per_tick` sessions per inquiry.

use crate::det::{Map, Set};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcp_cluster::membership::NodeId;

use crate::action::{Acquire, Action};
use crate::id::SessionId;
use crate::machine::{Custody, Entry, Owned, Role};
use crate::members::is_renewal;
use crate::replica::beats;
use crate::wire::{CustodyMsg, Holding};

/// How long an inquiry waits for every live member's answer before it is given up (its
/// sessions are looked at again later).
const INQUIRY_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a copy's owner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OwnerState {
    /// Live (or renewed: the same process).
    Alive,
    /// Not live, but heard from within the lease: gone at this instant if silent until then.
    Waiting(Instant),
    /// Gone.
    Gone,
}

/// An inquiry in progress.
#[derive(Debug)]
pub(crate) struct Inquiry {
    sessions: Vec<SessionId>,
    waiting: Set<SocketAddr>,
    answers: Vec<(SocketAddr, Holding)>,
    /// Members whose answers count toward the majority (not recovering: recovery.rs).
    voters: Set<SocketAddr>,
    started: Instant,
}

/// A drop note (role 4) under a claim other than `mine` is, to the inquirer, a note of
/// that claim (role 3): a member answers role 4 in place of a note it holds of the same claim
/// (or an older one), so reading it only as "your copy is stale" would hide a newer claim.
fn drop_note_as_claim(h: Holding, mine: (u32, SocketAddr)) -> Holding {
    if h.role == 4 && (h.epoch, h.owner) != mine {
        Holding {
            role: 3,
            seq: 0,
            ..h
        }
    } else {
        h
    }
}

/// The last copy number whose changes are all durable (every replica acknowledged it).
fn durable_seq(o: &crate::machine::Owned) -> u64 {
    o.pending.front().map_or(o.seq, |p| p.seq.saturating_sub(1))
}

/// The members whose answer says they hold the session (a copy, or as its owner).
fn holders(answers: &[(SocketAddr, Holding)]) -> Set<SocketAddr> {
    answers
        .iter()
        .filter(|(_, h)| matches!(h.role, 1 | 2 | 5))
        .map(|(a, _)| *a)
        .collect()
}

/// How up to date a claim on a session is: its epoch, its owner (the lower address wins
/// between equal epochs), then the copy number.
fn newer(a: (u32, SocketAddr, u64), b: (u32, SocketAddr, u64)) -> bool {
    if (a.0, a.1) != (b.0, b.1) {
        return beats((a.0, a.1), (b.0, b.1));
    }
    a.2 > b.2
}

impl Custody {
    pub(crate) fn owner_state(&self, owner: NodeId, now: Instant) -> OwnerState {
        if self.members.live().contains(&owner) {
            return OwnerState::Alive;
        }
        match self.members.live_at(owner.addr) {
            // A new process at its address (a restart): the owner's process is gone.
            Some(new) if new.generation > owner.generation && !is_renewal(owner, new) => {
                return OwnerState::Gone;
            }
            // The same process renewed, or this view has not caught up with its renewal yet.
            Some(_) => return OwnerState::Alive,
            None => {}
        }
        match self.members.contact(owner.addr) {
            Some(c)
                if c.generation > owner.generation
                    && !is_renewal(owner, NodeId::new(owner.addr, c.generation)) =>
            {
                OwnerState::Gone
            }
            Some(c) => {
                let until = c.at + self.cfg.lease;
                if now >= until {
                    OwnerState::Gone
                } else {
                    OwnerState::Waiting(until)
                }
            }
            None => OwnerState::Gone,
        }
    }

    /// An identity stopped being live: every copy it owns is looked at.
    pub(crate) fn owner_gone(&mut self, gone: NodeId, now: Instant) {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, e)| matches!(&e.role, Role::Copy(c) if c.owner == gone))
            .map(|(id, _)| *id)
            .collect();
        self.orphans.extend(ids.into_iter().map(|id| (now, id)));
    }

    /// Starts inquiries for copies whose owner is gone; gives up late inquiries.
    pub(crate) fn orphans_due(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .inquiries
            .iter()
            .filter(|(_, q)| now.saturating_duration_since(q.started) >= INQUIRY_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(q) = self.inquiries.remove(&id) {
                for s in q.sessions {
                    self.inquiring.remove(&s);
                    self.orphans.push_back((now, s));
                }
            }
        }
        let mut batch = Vec::new();
        let mut later = Vec::new();
        while batch.len() < self.cfg.takeovers_per_tick
            && self.orphans.front().is_some_and(|(at, _)| *at <= now)
        {
            let Some((_, id)) = self.orphans.pop_front() else {
                break;
            };
            if self.inquiring.contains(&id) {
                continue;
            }
            let c = match self.sessions.get(&id).map(|e| &e.role) {
                Some(Role::Copy(c)) => c,
                Some(Role::Owner(o)) if o.confirm != 0 => {
                    // An owned session to confirm (see `reconfirm_all`).
                    if self.members.quorum() {
                        self.inquiring.insert(id);
                        batch.push(id);
                    } else {
                        later.push((now + self.cfg.lease, id));
                    }
                    continue;
                }
                _ => continue,
            };
            match self.owner_state(c.owner, now) {
                OwnerState::Alive => {}
                OwnerState::Waiting(until) => later.push((until, id)),
                OwnerState::Gone if !self.may_take_over(now) => {
                    later.push((now + self.cfg.lease, id));
                }
                OwnerState::Gone => {
                    // Marked now, so a session queued twice is asked about once.
                    self.inquiring.insert(id);
                    batch.push(id);
                }
            }
        }
        self.orphans.extend(later);
        if !batch.is_empty() {
            self.inquire(batch, now);
        }
    }

    /// Whether this node may take sessions over now: it has a majority, and has had it for a
    /// lease (a view just back from the minority side may still miss members).
    pub(crate) fn may_take_over(&self, now: Instant) -> bool {
        self.in_touch(now) && now.saturating_duration_since(self.quorum_since) >= self.cfg.lease
    }

    /// Asks every member that is live or was heard from within the lease what it holds of
    /// `sessions` (heard-from members the view does not count yet are asked too: they may
    /// hold the newest copy).
    pub(crate) fn inquire(&mut self, sessions: Vec<SessionId>, now: Instant) {
        let me = self.members.me().addr;
        let lease = self.cfg.lease;
        let mut waiting: Set<SocketAddr> = self
            .members
            .live()
            .iter()
            .map(|m| m.addr)
            .filter(|a| *a != me)
            .collect();
        for m in self.members.all() {
            if m.id.addr != me
                && self
                    .members
                    .contact(m.id.addr)
                    .is_some_and(|c| now.saturating_duration_since(c.at) < lease)
            {
                waiting.insert(m.id.addr);
            }
        }
        self.next_inquiry += 1;
        let id = self.next_inquiry;
        for s in &sessions {
            self.inquiring.insert(*s);
        }
        let msg = CustodyMsg::Inquire {
            id,
            sessions: sessions.iter().map(|s| s.0).collect(),
        };
        for a in &waiting {
            self.send(*a, msg.clone());
        }
        let done = waiting.is_empty();
        self.inquiries.insert(
            id,
            Inquiry {
                sessions,
                waiting,
                answers: Vec::new(),
                voters: Set::default(),
                started: now,
            },
        );
        if done {
            self.decide(id, now);
        }
    }

    /// Answers an inquiry with what this node holds. Copies asked about are looked at here
    /// too: the inquirer thinks their owner gone, and this node may hold the better copy.
    pub(crate) fn on_inquire(
        &mut self,
        from: SocketAddr,
        id: u64,
        sessions: &[u128],
        now: Instant,
    ) {
        let me = self.members.me().addr;
        for s in sessions {
            let id = SessionId(*s);
            if matches!(self.sessions.get(&id).map(|e| &e.role), Some(Role::Copy(_)))
                && !self.inquiring.contains(&id)
            {
                self.orphans.push_back((now, id));
            }
        }
        let entries = sessions
            .iter()
            .flat_map(|s| {
                let id = SessionId(*s);
                let held = match self.sessions.get(&id).map(|e| &e.role) {
                    // An owner answers with the last copy whose changes are durable (what
                    // it may have shown: the copies after it may yet be given up); one not
                    // confirmed (yet, or again) as role 5 — an owner to a take-over
                    // candidate, but not one a confirmed owner yields to as such.
                    Some(Role::Owner(o)) if o.confirm != 0 => (5, o.epoch, me, durable_seq(o)),
                    Some(Role::Owner(o)) => (2, o.epoch, me, durable_seq(o)),
                    Some(Role::Copy(c)) => (1, c.epoch, c.owner.addr, c.seq),
                    // Handed off from here: a note of the claim it went with (the
                    // successor, when it answers, speaks for itself).
                    None => match self.moved.get(&id) {
                        Some((to, epoch, _)) => (3, *epoch, *to, 0),
                        None => (0, 0, me, 0),
                    },
                };
                let (mut role, mut epoch, mut owner, mut seq) = held;
                // A newer claim noted here (claim.rs) than what this node holds — unless it
                // owns the session: its own answer (how far its changes are durable) is what
                // the claimant must weigh (seed 7811); the claim's note is with a majority.
                if let Some((note, _)) = self.notes.get(&id)
                    && !matches!(role, 2 | 5)
                    && (role == 0
                        || crate::claim::newer(*note, crate::wire::Claim { epoch, owner }))
                {
                    (role, epoch, owner, seq) = (3, note.epoch, note.owner, 0);
                }
                // The inquirer was dropped from the session's replica set (claim.rs): unless
                // a newer claim is known, tell it from which copy on it missed changes that
                // may have been shown — the drop in force; 0 when this node does not know it
                // in force: its owner may have died before more than half noted it, having
                // shown nothing the inquirer's copy lacks, and that copy may be the one that
                // holds all its client was told (seed 1639).
                if matches!(role, 0 | 3)
                    && let Some(n) = self.drops.get(&(id, from))
                    && (role == 0
                        || !crate::claim::newer(crate::wire::Claim { epoch, owner }, n.claim))
                {
                    (role, epoch, owner, seq) = (4, n.claim.epoch, n.claim.owner, n.forced_below);
                }
                let answer = Holding {
                    session: *s,
                    role,
                    epoch,
                    owner,
                    seq,
                };
                // A copy the answer above stands in for is reported too: the noted claim's
                // owner may have died before it copied anything, and then this copy may be
                // the newest data there is (seed 543511571: a copy holding an acknowledged
                // change hidden behind a dead hand-in's note, and an older copy promoted).
                let copy = (held.0 == 1 && role != 1).then_some(Holding {
                    session: *s,
                    role: 1,
                    epoch: held.1,
                    owner: held.2,
                    seq: held.3,
                });
                std::iter::once(answer).chain(copy)
            })
            .collect();
        self.send(
            from,
            CustodyMsg::Holdings {
                id,
                voter: !self.recovering,
                entries,
            },
        );
    }

    pub(crate) fn on_holdings(
        &mut self,
        from: SocketAddr,
        id: u64,
        voter: bool,
        entries: Vec<Holding>,
        now: Instant,
    ) {
        let Some(q) = self.inquiries.get_mut(&id) else {
            return;
        };
        if !q.waiting.remove(&from) {
            return;
        }
        if voter {
            q.voters.insert(from);
        }
        q.answers.extend(entries.into_iter().map(|h| (from, h)));
        if q.waiting.is_empty() {
            self.decide(id, now);
        }
    }

    /// Members that stopped being live and are silent are not waited for.
    pub(crate) fn inquiries_view_changed(&mut self, now: Instant) {
        let lease = self.cfg.lease;
        let members = &self.members;
        let done: Vec<u64> = self
            .inquiries
            .iter_mut()
            .filter_map(|(id, q)| {
                q.waiting.retain(|a| {
                    members.addr_is_live(*a)
                        || members
                            .contact(*a)
                            .is_some_and(|c| now.saturating_duration_since(c.at) < lease)
                });
                q.waiting.is_empty().then_some(*id)
            })
            .collect();
        for id in done {
            self.decide(id, now);
        }
    }

    /// Every answer is in: take over what this node holds the best copy of.
    fn decide(&mut self, id: u64, now: Instant) {
        let Some(q) = self.inquiries.remove(&id) else {
            return;
        };
        let me = self.members.me().addr;
        // Only answers from a majority decide: the newest claim that took effect was noted
        // by a majority, and the two share a member — unless restarts took the notes with
        // them: a restarted process counts only once it learned them (recovery.rs).
        let responders: Set<SocketAddr> = q.answers.iter().map(|(a, _)| *a).collect();
        if !self.majority_decides(&q.voters) {
            for s in q.sessions {
                self.inquiring.remove(&s);
                self.orphans.push_back((now + self.cfg.lease, s));
            }
            return;
        }
        let mut answers: Map<SessionId, Vec<(SocketAddr, Holding)>> = Map::default();
        for (from, h) in q.answers {
            answers
                .entry(SessionId(h.session))
                .or_default()
                .push((from, h));
        }
        for s in q.sessions {
            self.inquiring.remove(&s);
            let theirs = answers.get(&s).cloned().unwrap_or_default();
            if matches!(self.sessions.get(&s).map(|e| &e.role), Some(Role::Owner(o)) if o.confirm != 0)
            {
                if !self.in_touch(now) {
                    // Out of touch since it asked: the answers may be older than a take-over
                    // on the majority's side. Ask again once in touch.
                    self.orphans.push_back((now + self.cfg.tick, s));
                    continue;
                }
                self.confirm_owned(s, &theirs, &responders, now);
                continue;
            }
            let Some(Entry {
                role: Role::Copy(c),
                ..
            }) = self.sessions.get(&s)
            else {
                continue;
            };
            if self.owner_state(c.owner, now) != OwnerState::Gone || !self.may_take_over(now) {
                self.orphans.push_back((now, s));
                continue;
            }
            let mine = (c.epoch, c.owner.addr, c.seq);
            // Claims of the gone owner itself (a member that handed the session to it answers
            // with that hand-off) tell nothing new; nor do notes of claims whose owner is gone
            // too with nobody holding data under them (a take-over that died before it copied).
            let gone_owner = c.owner.addr;
            let mut dead_epoch = 0;
            let mut unsure = false;
            let holders = holders(&theirs);
            let theirs: Vec<(SocketAddr, Holding)> = theirs
                .into_iter()
                .map(|(a, h)| (a, drop_note_as_claim(h, (mine.0, mine.1))))
                .filter(|(_, h)| {
                    if h.role == 2 && h.owner == gone_owner {
                        return false;
                    }
                    // A claimant that answered holding the session speaks for itself: its
                    // own answer says how it holds it.
                    if h.role == 3 && holders.contains(&h.owner) {
                        return false;
                    }
                    // A note of a claim this node gave up before it was in force: nothing
                    // was copied under it.
                    if h.role == 3
                        && self.is_void(
                            s,
                            crate::wire::Claim {
                                epoch: h.epoch,
                                owner: h.owner,
                            },
                        )
                    {
                        return false;
                    }
                    if h.role != 3 || h.owner == me {
                        return true;
                    }
                    if !responders.contains(&h.owner) && !self.addr_gone(h.owner, now) {
                        // A claimant that is live but was not asked (it came back since):
                        // ask again, it speaks for itself.
                        unsure = true;
                        return false;
                    }
                    // A silent claimant's note — or one whose claimant answered holding
                    // nothing (restarted, or gave it up) — counts for nothing only once the
                    // claimant is known dead and every other member answered: a claimant, or
                    // a member, cut off may hold its copies.
                    unsure |= beats((h.epoch, h.owner), (mine.0, mine.1))
                        && (!self.claimant_dead(h.owner, &responders)
                            || !self.heard_from_all_but(&responders, h.owner));
                    dead_epoch = dead_epoch.max(h.epoch);
                    false
                })
                .collect();
            if unsure {
                self.orphans.push_back((now + self.cfg.lease, s));
                continue;
            }
            // The owner dropped this node from the set and went on without it: the copy
            // misses changes made durable since (claim.rs).
            if theirs.iter().any(|(_, h)| {
                h.role == 4 && (h.epoch, h.owner) == (mine.0, mine.1) && mine.2 < h.seq
            }) {
                self.drop_copy(s);
                self.stats.copies_dropped += 1;
                continue;
            }
            let theirs: Vec<(SocketAddr, Holding)> =
                theirs.into_iter().filter(|(_, h)| h.role != 4).collect();
            // A newer claim in force exists (another owner took it over since this copy was
            // made): this copy is obsolete. That owner sends a full copy if it wants one here.
            // A claim not confirmed yet (role 5) is not in force: it copied nothing, and its
            // claimant may die before it confirms, with this copy the newest there is — it is
            // waited for below, as an owner waits (seed 970008353: a take-over killed 0.4 s
            // after it claimed; the replica that had answered it dropped the last copy).
            if theirs.iter().any(|(_, h)| {
                !matches!(h.role, 0 | 5) && beats((h.epoch, h.owner), (mine.0, mine.1))
            }) {
                self.drop_copy(s);
                self.stats.copies_dropped += 1;
                continue;
            }
            // Someone owns it under an equal or newer claim: it is served there.
            if let Some((_, h)) = theirs.iter().find(|(_, h)| {
                matches!(h.role, 2 | 5) && !beats((mine.0, mine.1), (h.epoch, h.owner))
            }) {
                self.deferred.insert(s, (h.owner, now));
                continue;
            }
            // Someone holds a newer copy (or an equal one and a lower address): it takes over.
            if let Some((a, _)) = theirs.iter().find(|(a, h)| {
                h.role == 1 && {
                    let v = (h.epoch, h.owner, h.seq);
                    newer(v, mine) || (v == mine && *a < me)
                }
            }) {
                self.deferred.insert(s, (*a, now));
                continue;
            }
            let others: Vec<SocketAddr> = theirs
                .iter()
                .filter(|(_, h)| h.role == 1)
                .map(|(a, _)| *a)
                .collect();
            self.promote(s, others, dead_epoch);
        }
    }

    /// An owned session was confirmed by a majority's answers: given up if a member holds
    /// it (or noted it, with that claim's owner alive) under a newer claim than the one
    /// checked, else served again (under a raised epoch if it was waiting for one, or if a
    /// dead claimant's note is newer).
    fn confirm_owned(
        &mut self,
        s: SessionId,
        theirs: &[(SocketAddr, Holding)],
        responders: &Set<SocketAddr>,
        now: Instant,
    ) {
        let me = self.members.me().addr;
        let (epoch, fresh, from_claim) = match self.sessions.get(&s).map(|e| &e.role) {
            Some(Role::Owner(o)) => (o.epoch, o.fresh, o.from_claim),
            _ => return,
        };
        // The claim this one comes from went on without it: its owner was not gone after all
        // (stalled, or cut off with a majority while this node was not) and made durable
        // what this node's data misses (seed 3863). Its own answer says how far its changes
        // are durable; without one, a copy of it that is newer than this node's data might
        // hold such changes (copies made out of touch too: this node yields and the copy's
        // holder takes over).
        if fresh && let Some((pe, po, ps)) = from_claim {
            let theirs_of = |h: &Holding| (h.epoch, h.owner) == (pe, po);
            let went_on = match theirs
                .iter()
                .find(|(a, h)| *a == po && matches!(h.role, 2 | 5) && theirs_of(h))
            {
                Some((_, h)) => (h.seq > ps).then_some(po),
                None => theirs
                    .iter()
                    .find(|(_, h)| h.role == 1 && theirs_of(h) && h.seq > ps)
                    .map(|(a, _)| *a),
            };
            if let Some(to) = went_on {
                // This claim never took effect: its notes must not make the copies of the
                // claim that went on look obsolete — to this node, which may hold one of
                // them later (seed 9472: it dropped its own copy, the newest there was, for
                // its void claim's notes once that owner died).
                let void = crate::wire::Claim { epoch, owner: me };
                self.void_claims.insert(s, (epoch, now));
                if self.notes.get(&s).is_some_and(|(c, _)| *c == void) {
                    self.notes.remove(&s);
                }
                self.release(s, Some(to), crate::action::Release::Superseded);
                return;
            }
        }
        let my_durable = match self.sessions.get(&s).map(|e| &e.role) {
            Some(Role::Owner(o)) => durable_seq(o),
            _ => return,
        };
        let mine = (epoch, me);
        let holding = holders(theirs);
        let mut dead_epoch = None;
        let mut rival = None;
        for (_, h) in theirs {
            // A note that this node was dropped from a replica set under a newer claim
            // says as much as a note of that claim.
            let h = &drop_note_as_claim(*h, mine);
            let claimant_answered = responders.contains(&h.owner);
            let theirs = (h.epoch, h.owner);
            // An owner not confirmed is no claim in force yet.
            let rivals = if h.role == 5 && !fresh {
                // A claim of the next epoch not confirmed yet comes from this one (one owner
                // per epoch): it wins only if its data holds all this node made durable
                // (else it gives way when it confirms, above); a later one wins.
                theirs.0 > mine.0.saturating_add(1)
                    || (theirs.0 == mine.0.saturating_add(1) && h.seq >= my_durable)
            } else if h.role == 5 {
                beats(theirs, mine)
            } else {
                crate::replica::yields(fresh, mine, theirs)
            };
            if matches!(h.role, 0 | 4)
                || (h.role == 3 && holding.contains(&h.owner))
                || theirs == (epoch, me)
                || !rivals
            {
                continue;
            }
            // A claim that wins but is not in force yet copies nothing: this node's data and
            // its replicas' copies may be all there is of the session besides the claimant's
            // memory. Giving the session up now (its replicas told to forget) would lose it
            // with the claimant alone, should it die before its confirmation (seed 15714: a
            // hand-off's successor killed while its sender, back in touch, gave the session
            // up to it). Wait, serving nothing: once in force the claimant copies it and
            // supersedes this node; if it dies first, this node serves again.
            if h.role == 5 && !fresh {
                self.orphans.push_back((now + self.cfg.lease, s));
                return;
            }
            // A note whose claimant is live but was not asked (it came back since): ask again,
            // it speaks for itself (seed 6367: a restarted claimant's old note, taken for a
            // claim in force, made this owner give the session up to nobody).
            if h.role == 3 && h.owner != me && !claimant_answered && !self.addr_gone(h.owner, now) {
                self.orphans.push_back((now + self.cfg.tick, s));
                return;
            }
            // A note whose claimant is gone, or answered holding nothing (a restarted
            // process: its predecessor's replicas may hold the claim's data — seed 7623).
            if h.role == 3 && h.owner != me {
                if !self.claimant_dead(h.owner, responders)
                    || !self.heard_from_all_but(responders, h.owner)
                {
                    // The claimant may be cut off rather than dead, holding what it made
                    // durable (its replicas may have died since — seed 7623), or a member
                    // cut off with it may: wait until it is known dead and every other
                    // member answered.
                    self.orphans.push_back((now + self.cfg.lease, s));
                    return;
                }
                dead_epoch = dead_epoch.max(Some(h.epoch));
                continue;
            }
            // A copy of a winning claim whose owner did not answer: that owner may be dead and
            // the copy's holder may die before it takes over, so giving the session up now
            // could drop its last data (seed 14202686: this owner stalled, another node took
            // the session over with a new replica, both were killed, and this owner, back,
            // yielded to the dead one). Wait and ask again: the claimant answers (this node
            // yields), the copy's holder takes over and supersedes this node, or both are
            // gone and their claim's note is what remains (above).
            if h.role == 1 && h.owner != me && !claimant_answered {
                self.orphans.push_back((now + self.cfg.lease, s));
                return;
            }
            rival = Some(h.owner);
            break;
        }
        if let Some(owner) = rival {
            self.release(
                s,
                (owner != me).then_some(owner),
                crate::action::Release::Superseded,
            );
            return;
        }
        let mut raised = None;
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&s)
        {
            o.confirm = 0;
            o.fresh = false;
            let old = o.epoch;
            let mut new = o.bump_to.take().unwrap_or(old).max(old);
            // Only a dead claimant's note raises the epoch (without one the epoch stays: a
            // raise nobody asked for is a claim a replica's take-over may collide with).
            if let Some(dead) = dead_epoch
                && dead >= new
            {
                new = dead.saturating_add(1);
            }
            if new != old {
                o.epoch = new;
                for t in &mut o.set {
                    t.full = true;
                }
                raised = Some((old, new));
                // A hand-off offered under an epoch this raise reaches is withdrawn: its
                // successor would take the offer and then yield to this owner, which would
                // never hear of it and keep the session frozen, offering it again every
                // `handoff_retry` (seed 12481: the claim overruled was the successor's own,
                // whose process had been killed and restarted at the same address).
                if o.handoff.is_some_and(|h| h.epoch <= new) {
                    o.handoff = None;
                    self.handing.remove(&s);
                }
            }
        }
        if let Some((old, new)) = raised {
            self.digest_epoch_changed(s, old, new);
            self.announce_claim(s, new);
        }
        // What was acknowledged meanwhile is durable now.
        self.advance(s);
        self.mark(s);
    }

    /// Whether a claimant that did not answer holding the session is known not to hold it:
    /// it answered (holding nothing: a restarted process at its address, or it gave the
    /// session up), left on purpose (down after draining), or was forgotten. A claimant that
    /// is only silent may be cut off with the only copy of what it made durable.
    fn claimant_dead(&self, claimant: SocketAddr, responders: &Set<SocketAddr>) -> bool {
        responders.contains(&claimant)
            || self
                .members
                .member(claimant)
                .is_none_or(|m| !m.live && m.draining)
    }

    /// Whether every member answered, other than `except` and members that left on purpose
    /// (down after draining): this node must know them all (a member it never heard of
    /// answered nothing).
    fn heard_from_all_but(&self, responders: &Set<SocketAddr>, except: SocketAddr) -> bool {
        let me = self.members.me().addr;
        self.members.knows_all()
            && self
                .members
                .all()
                .iter()
                .filter(|m| m.id.addr != me && m.id.addr != except && (m.live || !m.draining))
                .all(|m| responders.contains(&m.id.addr))
    }

    /// Makes a copy this node's own session; `holders`: other nodes holding copies, told to
    /// drop theirs unless they become replicas again.
    pub(crate) fn promote(&mut self, id: SessionId, holders: Vec<SocketAddr>, above: u32) {
        let me = self.members.me().addr;
        let Some(Entry {
            role: Role::Copy(_),
            ..
        }) = self.sessions.get(&id)
        else {
            return;
        };
        let Some(mut e) = self.sessions.remove(&id) else {
            return;
        };
        let Role::Copy(c) = std::mem::replace(
            &mut e.role,
            Role::Owner(Box::new(Owned {
                epoch: 0,
                seq: 0,
                set: Vec::new(),
                pending: Default::default(),
                tickets: Vec::new(),
                unacked_since: None,
                in_retransmit: false,
                handoff: None,
                busy: 0,
                // In force once a majority noted the claim (the confirmation's inquiry goes
                // out after the `Claims`, on the same links): decided on answers gathered
                // before a cut, a take-over could otherwise be a claim nobody heard, which a
                // replica on the other side then makes too (seed 8233).
                confirm: 1,
                fresh: true,
                from_claim: None,
                bump_to: None,
                forget_after: Vec::new(),
                drop_noted: Vec::new(),
                handed_from: None,
                // Its first copy brings the members the data of another claim.
                changed: true,
                durable_changed: 0,
            })),
        ) else {
            return;
        };
        self.copies -= 1;
        self.digest_in_remove(c.owner, id, c.epoch);
        if let Role::Owner(o) = &mut e.role {
            o.epoch = c.epoch.max(above).saturating_add(1);
            o.seq = c.seq;
            o.from_claim = Some((c.epoch, c.owner.addr, c.seq));
            let mut forget: Vec<SocketAddr> =
                c.replicas.iter().copied().filter(|a| *a != me).collect();
            for h in holders {
                if !forget.contains(&h) && h != me {
                    forget.push(h);
                }
            }
            o.forget_after = forget;
        }
        // Its events are shown again only once this node's own replicas hold them.
        e.data.none_durable();
        e.dirty = false;
        let epoch = match &e.role {
            Role::Owner(o) => o.epoch,
            Role::Copy(_) => 0,
        };
        self.sessions.insert(id, e);
        self.owned += 1;
        self.announce_claim(id, epoch);
        self.deferred.remove(&id);
        self.stats.takeovers += 1;
        self.actions.push_back(Action::Acquired {
            session: id,
            why: Acquire::TakenOver,
        });
        let now = self.now;
        self.orphans.push_back((now, id));
        self.mark(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(role: u8, epoch: u32, owner: u8, seq: u64) -> Holding {
        Holding {
            session: 1,
            role,
            epoch,
            owner: SocketAddr::from(([10, 0, 0, owner], 7000)),
            seq,
        }
    }

    #[test]
    fn a_drop_note_under_another_claim_is_a_note_of_that_claim() {
        let mine = (0, SocketAddr::from(([10, 0, 0, 1], 7000)));
        // Dropped under the claim the copy is of: it says the copy is stale from copy 18.
        assert_eq!(drop_note_as_claim(h(4, 0, 1, 18), mine), h(4, 0, 1, 18));
        // Dropped under a newer claim of the same owner (it raised its epoch since): a claim
        // newer than the copy, whatever the copy number.
        assert_eq!(drop_note_as_claim(h(4, 1, 1, 18), mine), h(3, 1, 1, 0));
        // Other roles pass unchanged.
        assert_eq!(drop_note_as_claim(h(1, 1, 2, 5), mine), h(1, 1, 2, 5));
    }
}
