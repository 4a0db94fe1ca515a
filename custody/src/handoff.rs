//! Hand-off: an owner gives a session to another node, which becomes its owner (epoch + 1).
//!
//! - **Drain**: a draining node hands every session to the top-ranked live member that takes
//!   copies, `drain_rate` per second.
//! - **Rebalancing**: a node owning more than its share of the cluster's sessions (by the
//!   gossiped counts) by more than `rebalance_slack` moves sessions to the member that ranks
//!   first for them, if that member is under its share, `rebalance_rate` per second — so a
//!   restarted node gets its sessions back and the next crash does not hit one node's
//!   backlog.
//!
//! Only sessions with no request in progress and every change durable move, and requests for
//! one being handed off wait (`Route::Wait`): nothing changes it between the copy and the
//! acknowledgement. The successor acknowledges once its claim is confirmed by a majority and
//! its own replicas hold the session (replica.rs, `handed_from`); the sender then forgets it
//! (requests still arriving here are forwarded there). It sends again after `handoff_retry`,
//! keeps the session (epoch raised past the offer) if the successor goes away first, and
//! gives it up if the successor tells it another claim won.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::action::{Action, Release};
use crate::id::SessionId;
use crate::machine::{Custody, Entry, Handoff, Role};
use crate::wire::{CustodyMsg, Replicate};

impl Custody {
    /// A request starts being served here for an owned session (it may add events, so the
    /// session does not move meanwhile). `false`: not owned here or moving — route again.
    pub fn begin(&mut self, id: SessionId) -> bool {
        match self.sessions.get_mut(&id) {
            Some(Entry {
                role: Role::Owner(o),
                ..
            }) if o.handoff.is_none() => {
                o.busy = o.busy.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// The request [`Custody::begin`] counted ended.
    pub fn end(&mut self, id: SessionId) {
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        {
            o.busy = o.busy.saturating_sub(1);
        }
    }

    /// Where a session would go now if handed off: the top-ranked live member that takes
    /// copies, other than this node.
    fn handoff_target(&self, id: SessionId) -> Option<SocketAddr> {
        let me = self.members.me().addr;
        mcp_cluster::ownership::rank(&id.key(), self.members.takers())
            .into_iter()
            .find(|m| m.addr != me)
            .map(|m| m.addr)
    }

    /// Hands an owned session to `to`; `false` if it cannot move now (not owned, busy, moving).
    pub fn hand_off(
        &mut self,
        id: SessionId,
        to: SocketAddr,
        rebalance: bool,
        now: Instant,
    ) -> bool {
        let me = self.members.me();
        // Only from a node that may serve the session: on the wrong side of a partition the
        // majority may be taking it over right now.
        if !self.in_touch(now) {
            return false;
        }
        let Some(Entry {
            data,
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return false;
        };
        if o.handoff.is_some() || o.busy > 0 || o.confirm != 0 || to == me.addr {
            return false;
        }
        if !o.pending.is_empty() || !o.tickets.is_empty() {
            // Only a session whose changes are all durable moves: this node settles nothing
            // on the successor's word alone (its claim may yet lose to a take-over that
            // raced the hand-off, with copies that lack those changes).
            return false;
        }
        let h = Handoff {
            to,
            epoch: o.epoch.saturating_add(1),
            seq: o.seq + 1,
            sent_at: now,
            rebalance,
        };
        o.handoff = Some(h);
        let msg = CustodyMsg::Replicate(Box::new(Replicate {
            session: id.0,
            epoch: h.epoch,
            seq: h.seq,
            owner: me.addr,
            owner_generation: me.generation,
            replicas: o.set.iter().map(|t| t.addr).collect(),
            handoff: true,
            full: true,
            state: data.state_copy(),
            streams: data.whole_streams(),
        }));
        self.handing.insert(id);
        self.send(to, msg);
        true
    }

    /// The successor acknowledged: the session is its now.
    pub(crate) fn handoff_done(&mut self, id: SessionId, h: Handoff, now: Instant) {
        // Nothing waits for durability here: a session moves only once every change is
        // durable (`hand_off`), and none is made while it moves.
        self.remove_owned(id, false);
        self.moved.insert(id, (h.to, h.epoch, now));
        self.stats.handoffs_sent += 1;
        if h.rebalance {
            self.stats.rebalanced += 1;
        }
        self.actions.push_back(Action::Released {
            session: id,
            to: Some(h.to),
            why: Release::HandedOff,
        });
    }

    /// Gives up hand-offs whose target is gone (not live, silent for a lease): the session
    /// stays here at its epoch, but is served again only once an inquiry found no newer claim
    /// — the target may have taken it and copied it before it went.
    pub(crate) fn abort_handoffs_to_gone(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.handing.iter().copied().collect();
        for id in ids {
            let offer = match self.sessions.get(&id) {
                Some(Entry {
                    role: Role::Owner(o),
                    ..
                }) => o.handoff.map(|h| (h.to, h.epoch)),
                _ => None,
            };
            let Some((to, h_epoch)) = offer else {
                self.handing.remove(&id);
                continue;
            };
            if !self.addr_gone(to, now) {
                continue;
            }
            if let Some(Entry {
                role: Role::Owner(o),
                ..
            }) = self.sessions.get_mut(&id)
            {
                o.handoff = None;
                o.confirm = 1;
                // Past the offer's epoch once confirmed: if the target accepts the offer
                // late, it loses.
                o.bump_to = Some(h_epoch.saturating_add(1));
                for t in &mut o.set {
                    t.full = true;
                }
            }
            self.handing.remove(&id);
            self.orphans.push_back((now, id));
            self.mark(id);
        }
    }

    /// Whether nothing at `addr` is live or heard from within the lease.
    pub(crate) fn addr_gone(&self, addr: SocketAddr, now: Instant) -> bool {
        !self.members.addr_is_live(addr)
            && self
                .members
                .contact(addr)
                .is_none_or(|c| now.saturating_duration_since(c.at) >= self.cfg.lease)
    }

    /// Retries late hand-offs and starts new ones within the rate.
    pub(crate) fn handoffs_due(&mut self, now: Instant, elapsed: Duration) {
        let retry = self.cfg.handoff_retry;
        let late: Vec<SessionId> = self
            .handing
            .iter()
            .copied()
            .filter(|id| {
                matches!(self.sessions.get(id), Some(Entry { role: Role::Owner(o), .. })
                    if o.handoff.is_some_and(|h| now.saturating_duration_since(h.sent_at) >= retry))
            })
            .collect();
        for id in late {
            self.resend_handoff(id, now);
        }
        self.abort_handoffs_to_gone(now);
        let rate = if self.draining {
            self.cfg.drain_rate
        } else {
            self.cfg.rebalance_rate
        };
        self.handoff_budget = (self.handoff_budget + rate * elapsed.as_secs_f64()).min(rate);
        if self.draining {
            self.drain_some(now);
        } else {
            self.rebalance_some(now);
        }
    }

    fn resend_handoff(&mut self, id: SessionId, now: Instant) {
        let me = self.members.me();
        let Some(Entry {
            data,
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        else {
            return;
        };
        let Some(h) = o.handoff.as_mut() else {
            return;
        };
        h.sent_at = now;
        let msg = CustodyMsg::Replicate(Box::new(Replicate {
            session: id.0,
            epoch: h.epoch,
            seq: h.seq,
            owner: me.addr,
            owner_generation: me.generation,
            replicas: o.set.iter().map(|t| t.addr).collect(),
            handoff: true,
            full: true,
            state: data.state_copy(),
            streams: data.whole_streams(),
        }));
        let to = h.to;
        self.send(to, msg);
    }

    fn drain_some(&mut self, now: Instant) {
        if self.rebalance_queue.is_empty() && self.owned > self.handing.len() {
            self.rebalance_queue = self
                .sessions
                .iter()
                .filter(|(_, e)| matches!(&e.role, Role::Owner(o) if o.handoff.is_none()))
                .map(|(id, _)| *id)
                .collect();
        }
        while self.handoff_budget >= 1.0 {
            let Some(id) = self.rebalance_queue.pop_front() else {
                return;
            };
            let Some(to) = self.handoff_target(id) else {
                self.rebalance_queue.clear();
                return; // nobody takes copies
            };
            if self.hand_off(id, to, false, now) {
                self.handoff_budget -= 1.0;
            }
        }
    }

    /// This node's share of the cluster's owned sessions (gossiped counts of the live members
    /// that take copies, this node's own count exact).
    fn share(&self) -> Option<f64> {
        let me = self.members.me().addr;
        let takers = self.members.takers();
        if takers.len() < 2 {
            return None;
        }
        let others: u64 = self
            .members
            .all()
            .iter()
            .filter(|m| m.id.addr != me && takers.contains(&m.id))
            .map(|m| m.sessions)
            .sum();
        Some((others + self.owned as u64) as f64 / takers.len() as f64)
    }

    fn rebalance_some(&mut self, now: Instant) {
        let Some(share) = self.share() else {
            self.rebalance_queue.clear();
            return;
        };
        let excess = self.owned as f64 - share * (1.0 + self.cfg.rebalance_slack);
        if excess < 1.0 || self.handoff_budget < 1.0 {
            if excess < 1.0 {
                self.rebalance_queue.clear();
            }
            return;
        }
        let me = self.members.me().addr;
        if self.rebalance_queue.is_empty() {
            // Sessions another member ranks first for (they would have been created there).
            let takers = self.members.takers().to_vec();
            self.rebalance_queue = self
                .sessions
                .iter()
                .filter(|(_, e)| matches!(&e.role, Role::Owner(o) if o.handoff.is_none()))
                .filter(|(id, _)| {
                    mcp_cluster::ownership::rank(&id.key(), &takers)
                        .first()
                        .is_some_and(|m| m.addr != me)
                })
                .map(|(id, _)| *id)
                .collect();
            if self.rebalance_queue.is_empty() {
                return;
            }
        }
        let mut moved = 0.0;
        while self.handoff_budget >= 1.0 && moved < excess {
            let Some(id) = self.rebalance_queue.pop_front() else {
                return;
            };
            let takers = self.members.takers();
            let Some(first) = mcp_cluster::ownership::rank(&id.key(), takers)
                .first()
                .copied()
            else {
                return;
            };
            if first.addr == me {
                continue;
            }
            let under = self
                .members
                .member(first.addr)
                .is_some_and(|m| (m.sessions as f64) < share);
            if under && self.hand_off(id, first.addr, true, now) {
                self.handoff_budget -= 1.0;
                moved += 1.0;
            }
        }
    }
}
