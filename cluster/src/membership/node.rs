//! [`Membership`]: one node's SWIM state machine (foca) plus its metadata.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foca::{Foca, Identity, State, Timer};
use rand010::SeedableRng;
use rand010::rngs::SmallRng;

use super::codec::GossipCodec;
use super::health::Health;
use super::meta::{MetaRecord, SharedMeta};
use super::runtime::{Event, Queues, Transmit};
use super::{Config, MembershipError, NodeId, NodeMeta, Observation};

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
    health: Health,
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
            health: Health::new(config.max_local_health, config.probe_rtt),
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
        let (rtt, suspected) = self.queues.observer.received(data, self.id(), now);
        if let Some(rtt) = rtt {
            let in_time = rtt <= self.health.scale(self.config.probe_rtt);
            self.observe(Observation::ProbeAck { rtt, in_time });
            let changed = self.health.ack(in_time);
            self.health_changed(changed);
        }
        if suspected {
            self.observe(Observation::SuspectedHere);
            let changed = self.health.suspected();
            self.health_changed(changed);
        }
        let seen = self.queues.events.len();
        let result = self.foca.handle_data(data, &mut self.queues);
        self.react(seen)?;
        result.map_err(MembershipError::from)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), MembershipError> {
        self.queues.now = now;
        let seen = self.queues.events.len();
        let mut first = true;
        while let Some((due, timer)) = self.queues.pop_due(now) {
            let late = now.saturating_duration_since(due);
            if first {
                first = false;
                self.observe(Observation::TimerLate(late));
                let changed = self.health.timer_ran(late);
                self.health_changed(changed);
            }
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
            {
                if !self.still_suspect(*member_id, *incarnation) {
                    // Refuted (or renamed, or already down). foca 2.0 would still send
                    // `TurnUndead` to the member, which then thinks it was declared down
                    // and rejoins under a new generation: a death nobody declared, and
                    // the rejoin makes its peers re-send every session. Never hand foca
                    // a suspicion that no longer stands.
                    self.queues
                        .suspected_since
                        .remove(&(*member_id, *incarnation));
                    continue;
                }
                if let Some(by) = self.verdict_delay(*member_id, *incarnation, late, now) {
                    self.observe(Observation::VerdictDeferred {
                        member: *member_id,
                        by,
                    });
                    self.queues.defer(timer, by);
                    continue;
                }
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
            // Connected to nobody while knowing members (a rejoin whose announces were lost):
            // announce again, every refresh, until someone answers.
            if self.foca.num_members() == 0 && self.foca.iter_membership_state().len() > 0 {
                self.announce_to_known()?;
            }
        }
        self.react(seen)
    }

    /// Whether `member` is still suspect at `incarnation` (no refutation, no rename, not down).
    fn still_suspect(&self, member: NodeId, incarnation: u16) -> bool {
        self.foca.iter_membership_state().any(|m| {
            *m.id() == member && m.state() == State::Suspect && m.incarnation() == incarnation
        })
    }

    /// Whether a suspicion timer that fires now must wait before declaring `member` down,
    /// and for how long:
    /// - it fired more than a probe period late: this node was stalled (starved of CPU,
    ///   paused), and the suspect's refutation may be waiting unread; trust our clock again
    ///   only after a full `suspect_to_down` of running;
    /// - this node's health got worse since the suspicion started: the suspect gets the
    ///   scaled `suspect_to_down` from the start of the suspicion.
    fn verdict_delay(
        &mut self,
        member: NodeId,
        incarnation: u16,
        late: Duration,
        now: Instant,
    ) -> Option<Duration> {
        if late > self.config.probe_period {
            tracing::debug!(?late, "membership timers late: suspicion deferred");
            return Some(self.config.suspect_to_down);
        }
        let key = (member, incarnation);
        let since = self.queues.suspected_since.get(&key).copied();
        let until = since.map(|t| t + self.health.scale(self.config.suspect_to_down));
        match until {
            Some(until) if until > now => Some(until - now),
            _ => {
                self.queues.suspected_since.remove(&key);
                None
            }
        }
    }

    /// Publishes a new health score to the timers and the observations.
    fn health_changed(&mut self, changed: bool) {
        if changed {
            self.queues.multiplier = self.health.multiplier();
            self.observe(Observation::Health(self.health.score()));
        }
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

    /// The next measurement of the failure detector (for metrics).
    pub fn poll_observation(&mut self) -> Option<Observation> {
        self.queues.observer.pop()
    }

    fn observe(&mut self, o: Observation) {
        self.queues.observer.push(o);
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

    /// The local health score (0 = healthy; timeouts scale with `1 + score`).
    pub fn local_health(&self) -> u32 {
        self.health.score()
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
        let mut rejoined = false;
        for event in self.queues.events.iter().skip(seen) {
            match event {
                Event::Rejoined(_) => {
                    republish = true;
                    rejoined = true;
                }
                Event::Up(_) | Event::Active => republish = true,
                Event::Renamed { new, .. } => {
                    let (addr, generation) = (new.addr(), new.generation);
                    self.store.0.lock().forget_before(addr, generation);
                    republish = true;
                }
                Event::Down(id) => tracing::debug!(member = %id, "member down"),
                Event::Idle | Event::Defunct => {}
            }
        }
        if rejoined {
            self.announce_to_known()?;
        }
        if republish {
            self.publish_meta()?;
        }
        Ok(())
    }

    /// Announces this node to every member it knows of, in any state. After a rejoin foca
    /// starts over disconnected under the new identity, and peers drop every message but an
    /// `Announce` addressed to an identity they do not know: when a healed partition makes
    /// every node renew at once, nobody would talk to anybody again (the simulator of the
    /// session layer found clusters that stayed split for good). An `Announce` is accepted
    /// by address, answered with a `Feed`, and the node is connected again.
    fn announce_to_known(&mut self) -> Result<(), MembershipError> {
        let me = self.id().addr;
        let known: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .map(|m| *m.id())
            .filter(|id| id.addr != me)
            .collect();
        for id in known {
            self.foca.announce(id, &mut self.queues)?;
        }
        Ok(())
    }
}
