//! Where a request for a session goes from this node.
//!
//! - Owned here → served here (or `Wait` while it is being handed off).
//! - A copy whose owner is live → forwarded to the owner. Owner gone → forwarded to the
//!   first live member of the owner's replica list, or taken over here if that is this node
//!   (`Wait` while the owner's lease runs).
//! - Handed off from here → forwarded to where it went.
//! - Nothing here → forwarded to the top-ranked live member (a node reached by a forward that
//!   holds nothing asks the next one in rank), through every live member if need be (a
//!   session whose holders rank low — its replica set was chosen while better-ranked members
//!   were away — is still found), at most `MAX_HOPS` nodes; then 404.
//! - Without a quorum every session request gets `NoQuorum` (503): the majority may have
//!   taken the session over.

use std::time::Instant;

use crate::action::Route;
use crate::failover::OwnerState;
use crate::id::SessionId;
use crate::machine::{Custody, Entry, Role};

/// Most nodes a request passes through before it is answered 404 (with fewer live members,
/// one more than their number).
pub const MAX_HOPS: u8 = 16;

impl Custody {
    /// Where a request for `id` goes (`hop`: nodes it passed already). Takes a copy over
    /// when this node succeeds a gone owner.
    pub fn route(&mut self, id: SessionId, hop: u8, now: Instant) -> Route {
        self.now = self.now.max(now);
        let me = self.members.me().addr;
        let quorum = self.members.quorum();
        let touch = self.in_touch(now);
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        {
            return if !quorum {
                Route::NoQuorum
            } else if o.handoff.is_some() || !Custody::confirmed(o) || !touch {
                Route::Wait
            } else {
                Route::Local
            };
        }
        match self.sessions.get(&id).map(|e| &e.role) {
            Some(Role::Owner(_)) => Route::Wait,
            Some(Role::Copy(c)) => {
                let state = self.owner_state(c.owner, now);
                if state == OwnerState::Alive {
                    return Route::Forward(c.owner.addr);
                }
                // Another member holds it better (or owns it): it is served there, until the
                // answer is a lease old (then ask again).
                if let Some((a, at)) = self.deferred.get(&id).copied()
                    && self.members.addr_is_live(a)
                    && now.saturating_duration_since(at) < self.cfg.lease
                {
                    return Route::Forward(a);
                }
                if state == OwnerState::Gone
                    && self.may_take_over(now)
                    && !self.inquiring.contains(&id)
                {
                    // Find out at once who holds it best; the answer takes it over.
                    self.inquire(vec![id], now);
                    if matches!(
                        self.sessions.get(&id).map(|e| &e.role),
                        Some(Role::Owner(o)) if Custody::confirmed(o)
                    ) {
                        return Route::Local;
                    }
                }
                Route::Wait
            }
            None => {
                if let Some((to, _, _)) = self.moved.get(&id)
                    && self.members.addr_is_live(*to)
                {
                    return Route::Forward(*to);
                }
                if !self.members.quorum() {
                    return Route::NoQuorum;
                }
                // Sure only when this node knows its cluster and no member went down lately:
                // a member that did may hold the session (a partition) or be being succeeded.
                let grace = self.cfg.unknown_grace;
                let recent = |t: Option<Instant>| {
                    t.is_some_and(|t| now.saturating_duration_since(t) < grace)
                };
                let recent_loss =
                    recent(self.members.last_down()) || recent(self.members.last_change());
                let nobody = if self.settled(now) && !recent_loss {
                    Route::NotFound
                } else {
                    Route::Joining
                };
                let limit = (self.members.live().len() + 1).min(usize::from(MAX_HOPS));
                if usize::from(hop) >= limit {
                    return nobody;
                }
                let ranked = mcp_cluster::ownership::rank(&id.key(), self.members.live());
                let next = if hop == 0 {
                    ranked.iter().find(|m| m.addr != me)
                } else {
                    // Forwarded here by a node that ranked this one first: ask the next.
                    match ranked.iter().position(|m| m.addr == me) {
                        Some(p) => ranked.get(p + 1),
                        None => ranked.first(),
                    }
                };
                match next {
                    Some(m) if m.addr != me => Route::Forward(m.addr),
                    _ => nobody,
                }
            }
        }
    }
}
