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
    /// What the last [`Membership::view_if_changed`] saw, to tell whether the view changed.
    published: Published,
}

/// The parts of the view last handed out: members' (id, state, incarnation), the
/// metadata store's change counter, and whether this node's own metadata changed since.
#[derive(Debug, Default)]
struct Published {
    own: Option<NodeId>,
    members: Vec<(NodeId, State, u16)>,
    meta_changes: u64,
    own_meta_changed: bool,
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
            published: Published {
                own_meta_changed: true,
                ..Published::default()
            },
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
        self.enter(now);
        let me = self.id().addr;
        for addr in seeds.into_iter().filter(|a| *a != me) {
            self.foca.announce(NodeId::seed(addr), &mut self.queues)?;
        }
        Ok(())
    }

    /// Leaves gracefully: peers learn at once instead of detecting a failure.
    pub fn leave(&mut self, now: Instant) -> Result<(), MembershipError> {
        self.enter(now);
        self.foca.leave_cluster(&mut self.queues)?;
        Ok(())
    }

    /// Handles one gossip packet received from the network.
    pub fn handle_packet(&mut self, data: &[u8], now: Instant) -> Result<(), MembershipError> {
        self.enter(now);
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
        // Timers fire in the order they were due, parked ones included: one fired before
        // may give a parked one something to do.
        self.queues.now = now;
        let seen = self.queues.events.len();
        let mut first = true;
        while let Some((due, timer)) = self.queues.pop_due(now) {
            if let Some(period) = self.idle().period(&timer) {
                // Nothing to do, and the loop did not wake up for it: not a late timer.
                self.queues.rearm_parked(timer, due, period, now);
                continue;
            }
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

    /// When [`Membership::handle_timeout`] should next be called. Periodic timers that
    /// would do nothing now (gossip with nothing to gossip, announcements to down members
    /// with none down) do not count: they are parked (see `Idle`).
    pub fn poll_timeout(&self) -> Instant {
        let idle = self.idle();
        self.queues
            .next_deadline(|t| idle.period(t).is_some())
            .map_or(self.next_meta_refresh, |t| t.min(self.next_meta_refresh))
    }

    /// Which of foca's periodic timers would do nothing if they fired now.
    fn idle(&self) -> Idle {
        Idle {
            gossip: (self.foca.updates_backlog() == 0 && self.foca.custom_broadcast_backlog() == 0)
                .then_some(self.config.gossip_period),
            announce_down: (!self
                .foca
                .iter_membership_state()
                .any(|m| m.state() == State::Down))
            .then_some(self.config.announce_down_period),
        }
    }

    /// Every entry point but [`Membership::handle_timeout`] starts here: the clock, and the
    /// parked timers due before `now` moved past it in their own phase (they would have fired
    /// for nothing before this call), so one that stops being parked in this call fires
    /// when foca would have fired it (its next period), not at once.
    fn enter(&mut self, now: Instant) {
        self.queues.now = now;
        let idle = self.idle();
        self.queues.roll_parked(now, |t| idle.period(t));
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

    /// Replaces this node's metadata at `now`; it spreads with the next packets.
    pub fn set_meta(&mut self, meta: NodeMeta, now: Instant) -> Result<(), MembershipError> {
        self.enter(now);
        self.published.own_meta_changed |= self.meta != meta;
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

    /// [`Membership::view`] if it may differ from the one this returned last time (a
    /// member's state, incarnation or identity, or anyone's metadata changed), else `None`:
    /// a driver publishes the view after every packet and timer without rebuilding it
    /// each time.
    pub fn view_if_changed(&mut self) -> Option<Vec<MemberView>> {
        let meta_changes = self.store.0.lock().changes();
        let members = self.foca.iter_membership_state();
        let own = Some(self.id());
        let same = !self.published.own_meta_changed
            && own == self.published.own
            && meta_changes == self.published.meta_changes
            && members.len() == self.published.members.len()
            && members
                .zip(&self.published.members)
                .all(|(m, (id, state, inc))| {
                    m.id() == id && m.state() == *state && m.incarnation() == *inc
                });
        if same {
            return None;
        }
        self.published.members.clear();
        self.published.members.extend(
            self.foca
                .iter_membership_state()
                .map(|m| (*m.id(), m.state(), m.incarnation())),
        );
        self.published.own = own;
        self.published.meta_changes = meta_changes;
        self.published.own_meta_changed = false;
        Some(self.view())
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

/// foca's periodic timers that fire for nothing in the current state, with their period.
///
/// foca re-arms `PeriodicGossip` every `gossip_period` and `PeriodicAnnounceDown` every
/// `announce_down_period` whatever the state, and they send nothing while there is no update
/// or broadcast to gossip, or no member is down (drawing no random number either). Such a
/// timer stays queued but wakes nobody: [`Queues::roll_parked`] keeps it in phase, and it
/// fires as before from the first period after it has something to do. On an idle cluster
/// that removes most of the membership thread's wake-ups between probes; the probe and
/// suspicion timers are never parked.
#[derive(Debug, Clone, Copy)]
struct Idle {
    gossip: Option<Duration>,
    announce_down: Option<Duration>,
}

impl Idle {
    /// The period of `timer` if it is parked.
    fn period(self, timer: &Timer<NodeId>) -> Option<Duration> {
        match timer {
            Timer::PeriodicGossip(_) => self.gossip,
            Timer::PeriodicAnnounceDown(_) => self.announce_down,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use foca::{Codec, Message};

    use super::*;

    fn id(port: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([127, 0, 0, 1], port)), 1)
    }

    /// Two nodes on a lossless, instant network: every packet is handled when it is sent,
    /// every timer when [`Membership::poll_timeout`] says. Returns node 0's calls of
    /// `handle_timeout` (its wake-ups for timers) and when it sent a `Gossip` message.
    fn run(nodes: &mut [Membership; 2], from: Instant, until: Instant) -> (usize, Vec<Instant>) {
        let (mut now, mut wakeups, mut gossip) = (from, 0, Vec::new());
        loop {
            let mut sent = true;
            while sent {
                sent = false;
                for i in 0..2 {
                    while let Some(t) = nodes[i].poll_transmit() {
                        sent = true;
                        let header = GossipCodec.decode_header(&t.data[..]).expect("header");
                        if i == 0 && matches!(header.message, Message::Gossip) {
                            gossip.push(now);
                        }
                        let j = usize::from(nodes[1].id().addr == t.to.addr);
                        let _ = nodes[j].handle_packet(&t.data, now);
                    }
                }
            }
            let next = nodes[0].poll_timeout().min(nodes[1].poll_timeout());
            if next > until {
                return (wakeups, gossip);
            }
            now = now.max(next);
            for (i, n) in nodes.iter_mut().enumerate() {
                if n.poll_timeout() <= now {
                    wakeups += usize::from(i == 0);
                    n.handle_timeout(now).expect("timers");
                }
            }
        }
    }

    fn pair(config: &Config, t0: Instant) -> [Membership; 2] {
        let new = |port| {
            Membership::new(id(port), NodeMeta::default(), config.clone(), 7, t0)
                .expect("membership")
        };
        let mut nodes = [new(7000), new(7002)];
        nodes[1].join([id(7000).addr], t0).expect("join");
        nodes
    }

    /// Idle (nothing to gossip, nobody down), a node wakes up for its probes, their
    /// indirect-probe checks and its announcements only: foca's gossip and down-member
    /// timers stay parked. A change is gossiped within one gossip period, as foca would.
    #[test]
    fn idle_timers_are_parked_and_fire_in_phase_when_there_is_work() {
        let config = Config {
            meta_refresh: Duration::from_secs(3600),
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut nodes = pair(&config, t0);
        let settled = t0 + Duration::from_secs(5);
        run(&mut nodes, t0, settled);
        assert_eq!(nodes[0].live_peers().count(), 1, "converged");
        assert!(nodes[0].view_if_changed().is_some());
        assert_eq!(nodes[0].view_if_changed(), None, "nothing changed since");

        let window = Duration::from_secs(10);
        let (wakeups, gossip) = run(&mut nodes, settled, settled + window);
        let per_period = |p: Duration| (window.as_secs_f64() / p.as_secs_f64()).ceil() as usize;
        let due = 2 * per_period(config.probe_period) + per_period(config.announce_period);
        assert!(gossip.is_empty(), "nothing to gossip: {gossip:?}");
        assert!(
            wakeups <= due + 2,
            "{wakeups} wake-ups in {window:?}, {due} timers with something to do"
        );
        assert_eq!(
            nodes[0].view_if_changed(),
            None,
            "an idle view is not rebuilt"
        );

        // A change at an arbitrary instant goes out with the next gossip period.
        let at = settled + window + Duration::from_millis(7);
        let meta = NodeMeta {
            sessions: 1,
            ..NodeMeta::default()
        };
        nodes[0].set_meta(meta, at).expect("meta");
        let (_, gossip) = run(&mut nodes, at, at + Duration::from_secs(1));
        let first = *gossip.first().expect("the change is gossiped");
        assert!(
            first > at && first <= at + config.gossip_period,
            "gossiped {:?} after the change",
            first - at
        );
        assert!(nodes[0].view_if_changed().is_some(), "own metadata changed");
        assert_eq!(
            nodes[1].view()[1].meta.as_ref().map(|m| m.sessions),
            Some(1),
            "the peer learned it"
        );
    }
}
