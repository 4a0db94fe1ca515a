//! [`Membership`]: one node's SWIM state machine (foca) plus its metadata.

use std::net::SocketAddr;
use std::time::Instant;

use foca::{Foca, Identity, Runtime, State, Timer};
use rand010::SeedableRng;
use rand010::rngs::SmallRng;

use super::codec::GossipCodec;
use super::meta::{MetaRecord, SharedMeta};
use super::runtime::{Event, Queues, Transmit};
use super::{Config, MembershipError, NodeId, NodeMeta};

/// A member's liveness as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; still counted as live until `suspect_to_down` passes.
    Suspect,
    /// Declared down (or left); owns nothing.
    Down,
}

impl MemberState {
    /// Alive or suspect: a member that still owns what it owned.
    pub const fn is_live(self) -> bool {
        !matches!(self, Self::Down)
    }
}

/// One row of the cluster view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Who.
    pub id: NodeId,
    /// How this node sees it.
    pub state: MemberState,
    /// Its SWIM incarnation (bumped by each refutation).
    pub incarnation: u16,
    /// What it last said about itself, once learned.
    pub meta: Option<NodeMeta>,
}

/// One node's membership: feed it packets and time, drain packets and events.
///
/// Sans-IO (like `quinn-proto`): nothing here reads a clock or a socket.
/// The driver calls [`Membership::handle_packet`] for each gossip packet,
/// [`Membership::handle_timeout`] whenever [`Membership::poll_timeout`] is
/// due, and sends what [`Membership::poll_transmit`] returns.
pub struct Membership {
    foca: Foca<NodeId, GossipCodec, SmallRng, SharedMeta>,
    store: SharedMeta,
    queues: Queues,
    config: Config,
    meta: NodeMeta,
    meta_version: u64,
    next_meta_refresh: Instant,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", self.foca.identity())
            .field("members", &self.foca.num_members())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A node that knows nobody yet. `seed` feeds the random member choice
    /// (the simulator passes a fixed one; a node passes a random one).
    pub fn new(
        id: NodeId,
        meta: NodeMeta,
        config: Config,
        seed: u64,
        now: Instant,
    ) -> Result<Self, MembershipError> {
        config.validate()?;
        let store = SharedMeta::default();
        let foca = Foca::with_custom_broadcast(
            id,
            config.to_foca(),
            SmallRng::seed_from_u64(seed),
            GossipCodec,
            store.clone(),
        );
        let mut node = Self {
            foca,
            store,
            queues: Queues::new(now),
            next_meta_refresh: now + config.meta_refresh,
            config,
            meta,
            meta_version: 0,
        };
        node.publish_meta()?;
        Ok(node)
    }

    /// This node's current identity (its generation changes on rejoin).
    pub fn id(&self) -> NodeId {
        *self.foca.identity()
    }

    /// Announces this node to each seed address (a static list or the
    /// addresses a DNS name resolved to). Seeds that are this node are skipped.
    pub fn join(
        &mut self,
        seeds: impl IntoIterator<Item = SocketAddr>,
        now: Instant,
    ) -> Result<(), MembershipError> {
        self.queues.now = now;
        let me = self.id().addr;
        for addr in seeds.into_iter().filter(|a| *a != me) {
            self.foca.announce(NodeId::seed(addr), &mut self.queues)?;
        }
        Ok(())
    }

    /// Leaves gracefully: peers learn at once instead of detecting a failure.
    pub fn leave(&mut self, now: Instant) -> Result<(), MembershipError> {
        self.queues.now = now;
        self.foca.leave_cluster(&mut self.queues)?;
        Ok(())
    }

    /// Handles one gossip packet received from the network.
    pub fn handle_packet(&mut self, data: &[u8], now: Instant) -> Result<(), MembershipError> {
        self.queues.now = now;
        let seen = self.queues.events.len();
        let result = self.foca.handle_data(data, &mut self.queues);
        self.react(seen)?;
        result.map_err(MembershipError::from)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MembershipError> {
        self.queues.now = now;
        let seen = self.queues.events.len();
        while let Some((due, timer)) = self.queues.pop_due(now) {
            // A suspicion timer that fires more than a probe period late means
            // this node was stalled (starved of CPU, paused): the suspect's
            // refutation may be waiting unread. Trust our clock again only
            // after a full `suspect_to_down` of running (Lifeguard's idea that
            // a node whose own timers are late is the unhealthy one).
            let late = now.saturating_duration_since(due);
            if late > self.config.probe_period && matches!(timer, Timer::ChangeSuspectToDown { .. })
            {
                tracing::debug!(?late, "membership timers late: suspicion deferred");
                self.queues.submit_after(timer, self.config.suspect_to_down);
                continue;
            }
            // A stale timer (an old probe, a changed identity) is an error in
            // foca's eyes but harmless here: keep firing the others.
            if let Err(err) = self.foca.handle_timer(timer, &mut self.queues) {
                tracing::trace!(?err, "membership timer");
            }
        }
        if now >= self.next_meta_refresh {
            self.next_meta_refresh = now + self.config.meta_refresh;
            self.publish_meta()?;
        }
        self.react(seen)
    }

    /// When [`Membership::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.queues
            .next_deadline()
            .map_or(self.next_meta_refresh, |t| t.min(self.next_meta_refresh))
    }

    /// The next gossip packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queues.outbox.pop_front()
    }

    /// The next membership change.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.queues.events.pop_front()
    }

    /// Replaces this node's metadata; it spreads with the next packets.
    pub fn set_meta(&mut self, meta: NodeMeta) -> Result<(), MembershipError> {
        self.meta = meta;
        self.publish_meta()
    }

    /// This node's own metadata.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// Live members other than this node (alive or suspect): what
    /// ownership hashes over, together with [`Membership::id`].
    pub fn live_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.foca.iter_members().map(|m| *m.id())
    }

    /// The whole cluster as this node sees it, this node first (its own row
    /// shows incarnation 0: foca does not expose its own incarnation).
    pub fn view(&self) -> Vec<MemberView> {
        let me = self.id();
        let mut rows = vec![MemberView {
            id: me,
            state: MemberState::Alive,
            incarnation: 0,
            meta: Some(self.meta.clone()),
        }];
        let store = self.store.0.lock();
        rows.extend(self.foca.iter_membership_state().map(|m| MemberView {
            id: *m.id(),
            state: match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Down,
            },
            incarnation: m.incarnation(),
            meta: store.get(m.id()).cloned(),
        }));
        drop(store);
        rows
    }

    /// Timers waiting to fire (for tests and metrics).
    pub fn pending_timers(&self) -> usize {
        self.queues.pending_timers()
    }

    /// Bumps the version of our own record and hands it to foca.
    fn publish_meta(&mut self) -> Result<(), MembershipError> {
        self.meta_version += 1;
        let record = MetaRecord {
            id: self.id(),
            version: self.meta_version,
            meta: self.meta.clone(),
        };
        let mut buf = Vec::with_capacity(64);
        record.encode(&mut buf);
        self.foca.add_broadcast(&buf)?;
        Ok(())
    }

    /// Reacts to the events foca produced since `seen`: a newcomer needs our
    /// metadata now (not at the next refresh), a rejoin changes our id.
    fn react(&mut self, seen: usize) -> Result<(), MembershipError> {
        let mut republish = false;
        for event in self.queues.events.iter().skip(seen) {
            match event {
                Event::Up(_) | Event::Rejoined(_) | Event::Active => republish = true,
                Event::Renamed { new, .. } => {
                    let (addr, generation) = (new.addr(), new.generation);
                    self.store.0.lock().forget_before(addr, generation);
                    republish = true;
                }
                Event::Down(id) => tracing::debug!(member = %id, "member down"),
                Event::Idle | Event::Defunct => {}
            }
        }
        if republish {
            self.publish_meta()?;
        }
        Ok(())
    }
}
