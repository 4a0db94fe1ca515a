//! [`Custody`]: the session layer of one node as a sans-IO state machine.
//!
//! It holds every session this node owns and every copy it keeps for other owners (their
//! durable [`SessionData`] and who holds what), and decides everything about them: which
//! replicas an owned session is copied to, when an event may be shown to its client, where a
//! request goes, when a replica takes a session over, when and to whom a session is handed
//! off, and how two owners of one session meet. It never reads a clock, a socket or a task:
//! the driver feeds it the membership view, peer messages, local changes and the time, and
//! carries out the [`Action`]s it returns — the shape of `quinn-proto` and of this project's
//! `Membership`. The rules are in docs/PROTOCOL.md, "Sessions across the cluster".
//!
//! Concerns live in their own files as `impl Custody` blocks: `owner.rs` (copies, acks,
//! durability), `replica.rs` (applying copies), `failover.rs` (take-over), `handoff.rs` (drain
//! and rebalancing), `digest.rs` (anti-entropy), `route.rs` (where a request goes).

use std::collections::VecDeque;

use crate::det::{Map, Set};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use mcp_cluster::membership::{MemberView, NodeId};
use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use crate::action::{Action, Refusal, Stats, Ticket};
use crate::config::Config;
use crate::data::{NewSession, SessionData, StreamKind};
use crate::digest::Digest;
use crate::id::SessionId;
use crate::members::Members;
use crate::wire::{Ack, CustodyMsg};

/// One session held here.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) data: SessionData,
    pub(crate) role: Role,
    pub(crate) dirty: bool,
}

/// Owned here, or a copy of another node's.
#[derive(Debug)]
pub(crate) enum Role {
    Owner(Box<Owned>),
    Copy(Box<CopyOf>),
}

/// What an owner tracks of a session's replication.
#[derive(Debug)]
pub(crate) struct Owned {
    pub(crate) epoch: u32,
    /// The number of the last copy sent.
    pub(crate) seq: u64,
    /// The replicas, in rank order, and how far each acknowledged.
    pub(crate) set: Vec<Track>,
    /// Copies sent and not yet acknowledged by every replica, oldest first.
    pub(crate) pending: VecDeque<Pending>,
    /// Changes waiting for the next copy.
    pub(crate) tickets: Vec<Ticket>,
    /// Since when some copy is unacknowledged.
    pub(crate) unacked_since: Option<Instant>,
    pub(crate) in_retransmit: bool,
    /// A hand-off in progress: requests wait until it ends.
    pub(crate) handoff: Option<Handoff>,
    /// Requests being served here (the session does not move while any is).
    pub(crate) busy: u16,
    /// Nonzero: this node may have been out of touch long enough for another node to take the
    /// session over; it is served again once an inquiry found no newer claim.
    pub(crate) confirm: u64,
    /// The claim was never in force here (a hand-in waiting for its confirmation): until a
    /// majority's answers show no other claim at its epoch or above, it copies nothing and
    /// supersedes nobody, and it yields to any other claim of an equal epoch (one derived
    /// from the same predecessor at the same time: a take-over may already have served it).
    pub(crate) fresh: bool,
    /// A fresh claim's predecessor: the claim it was taken over or handed from (epoch, owner)
    /// and the copy number of the data it started from. If that claim went on meanwhile (a
    /// member holds it with a later copy: its owner was stalled or cut off, not dead, and
    /// confirmed itself first), the fresh claim is void.
    pub(crate) from_claim: Option<(u32, SocketAddr, u64)>,
    /// After a hand-off given up: the epoch to take once confirmed, past the offer's, so
    /// that the offer, if accepted late, loses to this node's claim.
    pub(crate) bump_to: Option<u32>,
    /// Members of the previous owner's replica list to tell `Forget` once this node's own
    /// set is known (after a take-over).
    pub(crate) forget_after: Vec<SocketAddr>,
    /// `(dropped member, member that noted the drop)`.
    pub(crate) drop_noted: Vec<(SocketAddr, SocketAddr)>,
    /// A hand-in not acknowledged yet: the sender and the acknowledgement it waits for, sent
    /// once this node's claim is confirmed and its replicas hold the session (until then the
    /// sender keeps the session, and takes it back if this node goes away).
    pub(crate) handed_from: Option<(SocketAddr, Ack)>,
    /// The session's data (state or streams) changed since the last copy was made — as
    /// opposed to a copy made only for the set (a member joined or left, a drop noted) or a
    /// retransmission.
    pub(crate) changed: bool,
    /// The last copy made durable that changed the session's data (`changed`).
    pub(crate) durable_changed: u64,
}

/// One replica of an owned session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Track {
    pub(crate) addr: SocketAddr,
    /// The highest copy number it acknowledged.
    pub(crate) acked: u64,
    /// Its next copy must be whole.
    pub(crate) full: bool,
    /// It left the set and was told `Forget`; until it confirms (or is gone) it may still
    /// hold a copy and take the session over, so nothing becomes durable without it.
    pub(crate) leaving: bool,
    /// A leaving member's `Forget` is held back until every member of the new set has
    /// acknowledged this copy (whole): until then it may be the only other holder of what
    /// became durable, and a partition could leave the new members without it.
    pub(crate) forget_after: Option<u64>,
    /// A member dropped while gone (it could not be told to forget): it stays, leaving,
    /// until a majority noted the drop (claim.rs) — from this copy number on its copy is
    /// stale — so that nothing becomes durable without it before a majority can tell it so.
    pub(crate) dropped_below: Option<u64>,
    /// The drop was announced (`Dropped`): the member leaves once a majority noted it. Until
    /// then (`dropped_below` set, not announced) nothing was shown that the member's copy
    /// lacks, so its copy is as good as any; the drop is announced when this owner is about
    /// to show something the copy lacks, and forgotten if the member turns up again (then it
    /// is told to forget, as any member leaving the set).
    pub(crate) announced: bool,
    /// The `below` of the drop note announced (or noted): the copy number from which on the
    /// member's copy is stale. It is below `dropped_below` when the copies the member missed
    /// up to what is shown changed nothing (they only changed the set): a copy made before
    /// the drop then holds all that is shown.
    pub(crate) announced_below: u64,
    /// More than half of the cluster noted the announced drop (its first round): the second
    /// is started by `advance` when the note is all that keeps it from showing.
    pub(crate) first_noted: bool,
    /// The second round is out (`DropNote::forced`): the member leaves, and what its copy
    /// lacks may be shown, once more than half noted the drop in force too. Only a note in
    /// force tells the member its copy is stale: one short of force may be all its owner made
    /// before it died, having shown nothing the copy lacks (seed 1639).
    pub(crate) forcing: bool,
    /// A majority noted a drop note whose `below` is less than `dropped_below`: the member
    /// stays (leaving) and what its copy holds may be shown without a new note; showing a
    /// change made after that copy needs the note again, raised.
    pub(crate) noted_below: Option<u64>,
}

/// A copy sent and not yet acknowledged by every replica, and what it makes durable.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) seq: u64,
    /// `(stream, highest event number, finished)`.
    pub(crate) marks: Vec<(u32, u32, bool)>,
    pub(crate) tickets: Vec<Ticket>,
    /// It carries a change of the session's data (`Owned::changed`): a member that missed
    /// only copies that do not holds the same session (`advance`, drop notes).
    pub(crate) changed: bool,
}

/// A hand-off in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handoff {
    pub(crate) to: SocketAddr,
    pub(crate) epoch: u32,
    pub(crate) seq: u64,
    pub(crate) sent_at: Instant,
    pub(crate) rebalance: bool,
}

/// What a replica knows of the session it copies.
#[derive(Debug)]
pub(crate) struct CopyOf {
    pub(crate) owner: NodeId,
    pub(crate) epoch: u32,
    /// The number of the last copy applied.
    pub(crate) seq: u64,
    /// The owner's replica list, in order: the first live one takes over.
    pub(crate) replicas: Vec<SocketAddr>,
}

/// The session layer of one node.
#[derive(Debug)]
pub struct Custody {
    pub(crate) cfg: Config,
    pub(crate) members: Members,
    pub(crate) sessions: Map<SessionId, Entry>,
    /// Sessions handed off from here: where to, at which epoch, and when.
    pub(crate) moved: Map<SessionId, (SocketAddr, u32, Instant)>,
    pub(crate) dirty: Vec<SessionId>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) acks_out: Vec<(SocketAddr, Ack)>,
    /// Owned sessions with unacknowledged copies, by when to look again.
    pub(crate) retransmit: VecDeque<(Instant, SessionId)>,
    /// Copies whose owner is gone, by when to look again.
    pub(crate) orphans: VecDeque<(Instant, SessionId)>,
    /// Take-over inquiries in progress, and the sessions they cover.
    pub(crate) inquiries: Map<u64, crate::failover::Inquiry>,
    pub(crate) inquiring: Set<SessionId>,
    pub(crate) next_inquiry: u64,
    /// Copies of gone owners that another member holds better (or owns): where requests go.
    pub(crate) deferred: Map<SessionId, (SocketAddr, Instant)>,
    /// The newest claim noted per session (claim.rs), and when.
    pub(crate) notes: Map<SessionId, (crate::wire::Claim, Instant)>,
    /// Claims this node made and gave up before they were in force (failover.rs,
    /// `confirm_owned`: the claim they came from went on): their epoch, and when. Such a
    /// claim copied nothing and served nothing, so its notes on other members say nothing
    /// about where the session's data is.
    pub(crate) void_claims: Map<SessionId, (u32, Instant)>,
    /// Claims announced and not sent yet.
    pub(crate) claiming: Vec<(u128, crate::wire::Claim)>,
    /// Members dropped from replica sets without their confirmation, noted here (claim.rs):
    /// by (session, member), the claim and the first copy number it missed.
    pub(crate) drops: Map<(SessionId, SocketAddr), crate::claim::NotedDrop>,
    /// Drop notes made here and not sent yet.
    pub(crate) dropping: Vec<crate::wire::DropNote>,
    /// Since when this node has had a majority (take-overs wait a lease after it).
    pub(crate) quorum_since: Instant,
    /// Since when this node has not been in touch with a majority (see `in_touch`).
    pub(crate) out_of_touch_since: Option<Instant>,
    /// When to check every replica set again (members that went down are gone by then).
    pub(crate) reconcile_at: Option<Instant>,
    /// Owned sessions whose replica set must be checked (the membership changed).
    pub(crate) reconcile: VecDeque<SessionId>,
    /// Sessions being handed off.
    pub(crate) handing: Set<SessionId>,
    /// Candidates for rebalancing, consumed a few per tick.
    pub(crate) rebalance_queue: VecDeque<SessionId>,
    pub(crate) handoff_budget: f64,
    /// Owner side: per replica, what it should hold of this node's sessions.
    pub(crate) digest_out: Map<SocketAddr, Digest>,
    /// Replica side: per owner identity, what this node holds of its sessions.
    pub(crate) digest_in: Map<NodeId, Digest>,
    /// Inventories being received, per owner identity.
    pub(crate) inventories: Map<NodeId, Set<u128>>,
    /// When an inventory was last asked of each owner.
    pub(crate) inventory_asked: Map<SocketAddr, Instant>,
    pub(crate) draining: bool,
    /// A process started into a running cluster: it has not learned yet the notes its
    /// predecessor held, and its answers to inquiries do not count (recovery.rs).
    pub(crate) recovering: bool,
    pub(crate) recovery: crate::recovery::Recovery,
    pub(crate) stats: Stats,
    pub(crate) owned: usize,
    pub(crate) copies: usize,
    pub(crate) unacked: usize,
    rng: SmallRng,
    next_ticket: u64,
    pub(crate) next_tick: Instant,
    pub(crate) next_heartbeat: Instant,
    pub(crate) next_digest: Instant,
    pub(crate) last_tick: Instant,
    started: Instant,
    settled: bool,
    /// The latest time any entry point was given (what copies sent from `poll_action` are
    /// stamped with).
    pub(crate) now: Instant,
}

impl Custody {
    /// The session layer of node `me`, alone until [`Custody::set_view`]; `seed` drives its
    /// random choices (session ids), so a simulation replays exactly.
    pub fn new(me: NodeId, cfg: Config, seed: u64, now: Instant) -> Self {
        Self {
            members: Members::new(me, cfg.cluster_size),
            sessions: Map::default(),
            moved: Map::default(),
            dirty: Vec::new(),
            actions: VecDeque::new(),
            acks_out: Vec::new(),
            retransmit: VecDeque::new(),
            orphans: VecDeque::new(),
            inquiries: Map::default(),
            inquiring: Set::default(),
            next_inquiry: 0,
            deferred: Map::default(),
            notes: Map::default(),
            void_claims: Map::default(),
            claiming: Vec::new(),
            drops: Map::default(),
            dropping: Vec::new(),
            quorum_since: now,
            out_of_touch_since: None,
            reconcile_at: None,
            reconcile: VecDeque::new(),
            handing: Set::default(),
            rebalance_queue: VecDeque::new(),
            handoff_budget: 0.0,
            digest_out: Map::default(),
            digest_in: Map::default(),
            inventories: Map::default(),
            inventory_asked: Map::default(),
            draining: false,
            recovering: cfg.has_seeds,
            recovery: crate::recovery::Recovery::default(),
            stats: Stats::default(),
            owned: 0,
            copies: 0,
            unacked: 0,
            rng: SmallRng::seed_from_u64(seed),
            next_ticket: 1,
            next_tick: now + cfg.tick,
            next_heartbeat: now,
            next_digest: now + cfg.digest_period,
            last_tick: now,
            started: now,
            now,
            settled: !cfg.has_seeds,
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// This node's identity now (it changes when the node rejoins under a new generation).
    pub fn me(&self) -> NodeId {
        self.members.me()
    }

    /// The membership as this layer sees it.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.owned = self.owned as u64;
        s.copies = self.copies as u64;
        s.unacked = self.unacked as u64;
        s
    }

    /// Sessions owned here.
    pub fn owned(&self) -> usize {
        self.owned
    }

    /// Copies of other nodes' sessions held here.
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// Whether this node may serve sessions (it sees a majority).
    pub fn has_quorum(&self) -> bool {
        self.members.quorum()
    }

    /// Whether this node may serve and settle its sessions now: its view shows a majority,
    /// and it heard from a majority directly within half a lease (the other half is the
    /// margin before any replica may take a session over).
    pub(crate) fn in_touch(&self, now: Instant) -> bool {
        self.members.quorum() && self.members.majority_heard(now, self.cfg.lease / 2)
    }

    /// Whether this node knows its cluster well enough to say a session does not exist.
    pub fn settled(&mut self, now: Instant) -> bool {
        if !self.settled
            && (now.duration_since(self.started) >= self.cfg.settle
                || self.members.live().len() > 1)
        {
            self.settled = true;
        }
        self.settled
    }

    pub(crate) fn ticket(&mut self) -> Ticket {
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        t
    }

    // ----- the membership --------------------------------------------------------------

    /// The membership's view changed (`view[0]` is this node).
    pub fn set_view(&mut self, view: &[MemberView], now: Instant) {
        self.now = self.now.max(now);
        let had_quorum = self.members.quorum();
        let old_me = self.members.me();
        let changes = self
            .members
            .update(view, self.draining, self.owned as u64, now);
        if !changes.any() {
            return;
        }
        for (old, new) in &changes.renewed {
            self.owner_renewed(*old, *new);
        }
        // A member back under its next generation after this view counted it down: copies
        // held under the earlier one are its (else they would wait for a digest from it, and
        // if it went down again first, no view change would ever name their owner gone).
        for new in &changes.came {
            self.follow_renewals(*new);
        }
        for gone in &changes.gone {
            self.owner_gone(*gone, now);
        }
        if !changes.gone.is_empty() {
            // Replicas that went down leave replica sets once their lease ran out.
            self.reconcile_at = Some(now + self.cfg.lease + self.cfg.tick);
        }
        if changes.me_renewed {
            // Declared down somewhere and back: peers may have taken sessions over. Compare
            // digests now, and confirm each session with its replicas before serving it.
            self.next_digest = now;
            self.reconfirm_all();
        }
        self.abort_handoffs_to_gone(now);
        self.inquiries_view_changed(now);
        self.reconcile_all();
        if (!had_quorum || self.members.me() != old_me) && self.members.quorum() {
            // (Re)gained a majority, or rejoined: the view may still miss members this node
            // could not see; take nothing over until it had time to catch up.
            self.quorum_since = now;
        }
        if !had_quorum && self.members.quorum() {
            // Back from the minority side: the majority may have taken sessions over.
            self.reconfirm_all();
            self.resume_settling();
        }
    }

    /// Starts (or calls off) draining: sessions are handed to their successors and this
    /// node takes no new copies once peers see its `draining` flag.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Whether the node drains.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    // ----- local sessions --------------------------------------------------------------

    /// A new session owned here (`initialize`): its id, and the ticket settled once its
    /// replicas hold it (the client must not learn the id before).
    pub fn create(
        &mut self,
        new: NewSession,
        now: Instant,
    ) -> Result<(SessionId, Ticket), Refusal> {
        self.now = self.now.max(now);
        if self.draining {
            return Err(Refusal::Draining);
        }
        if !self.members.quorum() {
            self.stats.refused_no_quorum += 1;
            return Err(Refusal::NoQuorum);
        }
        if self.owned >= self.cfg.max_sessions {
            return Err(Refusal::Full);
        }
        if self.replication_behind(now) {
            self.stats.refused_busy += 1;
            return Err(Refusal::Busy);
        }
        let id = self.draw_id();
        let ticket = self.ticket();
        let owned = Owned {
            epoch: 0,
            seq: 0,
            set: Vec::new(),
            pending: VecDeque::new(),
            tickets: vec![ticket],
            unacked_since: None,
            in_retransmit: false,
            handoff: None,
            busy: 0,
            confirm: 0,
            fresh: false,
            from_claim: None,
            bump_to: None,
            forget_after: Vec::new(),
            drop_noted: Vec::new(),
            handed_from: None,
            changed: false,
            durable_changed: 0,
        };
        self.sessions.insert(
            id,
            Entry {
                data: SessionData::new(new),
                role: Role::Owner(Box::new(owned)),
                dirty: false,
            },
        );
        self.owned += 1;
        self.mark_changed(id);
        Ok((id, ticket))
    }

    /// A fresh id for which this node ranks first among the live members, so every node finds
    /// its owner by ranking (bounded tries: with N members about N are needed).
    fn draw_id(&mut self) -> SessionId {
        let me = self.members.me().addr;
        let mut id = SessionId(self.rng.random::<u128>());
        for _ in 0..256 {
            if self.sessions.contains_key(&id) {
                id = SessionId(self.rng.random::<u128>());
                continue;
            }
            let first = mcp_cluster::ownership::rank(&id.key(), self.members.live())
                .first()
                .map(|m| m.addr);
            if first == Some(me) {
                break;
            }
            id = SessionId(self.rng.random::<u128>());
        }
        id
    }

    /// The durable data of a session owned here (`None`: not owned here).
    pub fn session(&self, id: SessionId) -> Option<&SessionData> {
        match self.sessions.get(&id) {
            Some(e) if matches!(e.role, Role::Owner(_)) => Some(&e.data),
            _ => None,
        }
    }

    /// The ids of the sessions owned here.
    pub fn owned_ids(&self) -> Vec<SessionId> {
        self.sessions
            .iter()
            .filter(|(_, e)| matches!(e.role, Role::Owner(_)))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Calls `f` for every session owned here.
    pub fn for_each_owned(&self, mut f: impl FnMut(SessionId, &SessionData)) {
        for (id, e) in &self.sessions {
            if matches!(e.role, Role::Owner(_)) {
                f(*id, &e.data);
            }
        }
    }

    fn owned_mut(&mut self, id: SessionId) -> Option<&mut Entry> {
        self.sessions
            .get_mut(&id)
            .filter(|e| matches!(&e.role, Role::Owner(o) if o.handoff.is_none()))
    }

    /// Changes a session's durable state (`notifications/initialized`, `logging/setLevel`,
    /// subscriptions); the ticket settles once every replica holds the change.
    pub fn update(&mut self, id: SessionId, f: impl FnOnce(&mut SessionData)) -> Option<Ticket> {
        let ticket = self.ticket();
        let settles = self.in_touch(self.now);
        let e = self.owned_mut(id)?;
        let before = e.data.state_copy();
        f(&mut e.data);
        let same = e.data.state_copy() == before;
        let Role::Owner(o) = &mut e.role else {
            return None;
        };
        if same {
            // Nothing changed (a log level set to what it is): the change is held wherever
            // the current state is — once the copies in flight are acknowledged, or now. No
            // copy is made for it (a copy would count as something the replicas lack).
            if let Some(p) = o.pending.back_mut() {
                p.tickets.push(ticket);
                return Some(ticket);
            }
            if o.tickets.is_empty() && o.confirm == 0 && settles && !o.set.iter().any(|t| t.leaving)
            {
                self.actions.push_back(Action::Settled { ticket, ok: true });
                return Some(ticket);
            }
        }
        o.tickets.push(ticket);
        if same {
            self.mark(id);
        } else {
            self.mark_changed(id);
        }
        Some(ticket)
    }

    /// Takes the next server→client request id of a session.
    pub fn next_request_id(&mut self, id: SessionId) -> Option<i64> {
        let e = self.owned_mut(id)?;
        let n = e.data.next_request;
        e.data.next_request = n.saturating_add(1);
        self.mark_changed(id);
        Some(n)
    }

    /// Opens an SSE stream in a session; its number.
    pub fn open_stream(&mut self, id: SessionId, kind: StreamKind) -> Option<u32> {
        let e = self.owned_mut(id)?;
        let n = e.data.open_stream(kind);
        self.mark_changed(id);
        Some(n)
    }

    /// Appends an event to a stream: logged, copied, and shown to the client
    /// ([`Action::Deliver`]) once durable. Returns its number (`None`: not owned here, or the
    /// stream is unknown or finished).
    pub fn append(&mut self, id: SessionId, stream: u32, json: Bytes) -> Option<u32> {
        let cap = self.cfg.event_log_capacity;
        let e = self.owned_mut(id)?;
        let seq = e.data.push(stream, json, cap)?;
        if !self.cfg.durable_events {
            self.show_now(id, stream);
        }
        self.mark_changed(id);
        Some(seq)
    }

    /// Ends a stream (its response was sent); readers end once its events are durable.
    pub fn finish_stream(&mut self, id: SessionId, stream: u32) {
        let Some(e) = self.owned_mut(id) else {
            return;
        };
        let Some(s) = e.data.stream_mut(stream) else {
            return;
        };
        if s.finished {
            return;
        }
        s.finished = true;
        if !self.cfg.durable_events {
            self.show_now(id, stream);
        }
        self.mark_changed(id);
    }

    /// Events of `stream` after `after` that may be shown (a reader attaching or resuming);
    /// `None` if the session is not owned here or the stream is unknown.
    pub fn replay(&self, id: SessionId, stream: u32, after: u32) -> Option<crate::data::Replay> {
        self.session(id)?.stream(stream).map(|s| s.replay(after))
    }

    /// Ends a session owned here (DELETE, expiry): its replicas drop their copies.
    pub fn delete(&mut self, id: SessionId) -> bool {
        let Some(e) = self.sessions.get(&id) else {
            return false;
        };
        if !matches!(e.role, Role::Owner(_)) {
            return false;
        }
        self.remove_owned(id, true);
        true
    }

    /// A change to announce to every node's subscribers (this one's included).
    pub fn announce(&mut self, event: u8, uri: String) {
        let me = self.members.me().addr;
        for m in self.members.live().to_vec() {
            if m.addr != me {
                self.send(
                    m.addr,
                    CustodyMsg::Notify {
                        event,
                        uri: uri.clone(),
                    },
                );
            }
        }
        self.actions.push_back(Action::Announce { event, uri });
    }

    // ----- peers -----------------------------------------------------------------------

    /// A message from a peer.
    pub fn handle_message(&mut self, from: SocketAddr, msg: CustodyMsg, now: Instant) {
        self.now = self.now.max(now);
        let generation = match &msg {
            CustodyMsg::Heartbeat { generation } => Some(*generation),
            _ => None,
        };
        self.members.heard(from, generation, now);
        match msg {
            CustodyMsg::Replicate(r) => self.on_replicate(from, *r, now),
            CustodyMsg::Acks(acks) => {
                for a in acks {
                    self.on_ack(from, a, now);
                }
            }
            CustodyMsg::Resync { session } => self.on_resync(from, SessionId(session)),
            CustodyMsg::Notify { event, uri } => {
                self.actions.push_back(Action::Announce { event, uri });
            }
            CustodyMsg::Forget { session, epoch } => {
                self.on_forget(from, SessionId(session), epoch)
            }
            CustodyMsg::Superseded {
                session,
                epoch,
                owner,
            } => self.on_superseded(SessionId(session), epoch, owner),
            CustodyMsg::Heartbeat { .. } => {}
            CustodyMsg::Digest {
                generation,
                count,
                hash,
            } => self.on_digest(from, generation, Digest { count, hash }, now),
            CustodyMsg::InventoryRequest => self.on_inventory_request(from),
            CustodyMsg::Inquire { id, sessions } => self.on_inquire(from, id, &sessions, now),
            CustodyMsg::Claims(claims) => self.on_claims(claims),
            CustodyMsg::Dropped(notes) => self.on_dropped(from, notes),
            CustodyMsg::DropsNoted(entries) => self.on_drops_noted(from, &entries),
            CustodyMsg::Holdings { id, voter, entries } => {
                self.on_holdings(from, id, voter, entries, now)
            }
            CustodyMsg::NotesRequest { round } => self.on_notes_request(from, round),
            CustodyMsg::Notes {
                round,
                recovering,
                part,
                parts,
                claims,
                drops,
            } => self.on_notes(from, round, recovering, (part, parts), claims, drops),
            CustodyMsg::Inventory {
                generation,
                entries,
                last,
            } => self.on_inventory(from, generation, &entries, last),
        }
    }

    /// A message to a peer could not be queued (its queue is full): what it carried is
    /// treated as lost, so that replica gets a full copy later.
    pub fn send_refused(&mut self, to: SocketAddr, msg: &CustodyMsg) {
        if let CustodyMsg::Replicate(r) = msg {
            let id = SessionId(r.session);
            if let Some(Entry {
                role: Role::Owner(o),
                ..
            }) = self.sessions.get_mut(&id)
                && let Some(t) = o.set.iter_mut().find(|t| t.addr == to)
            {
                t.full = true;
            }
        }
    }

    pub(crate) fn send(&mut self, to: SocketAddr, msg: CustodyMsg) {
        self.actions.push_back(Action::Send { to, msg });
    }

    // ----- time and output --------------------------------------------------------------

    /// When [`Custody::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
            .min(self.next_heartbeat)
            .min(self.next_digest)
    }

    /// Runs what is due: heartbeats, digests, retransmissions, take-overs, replica set
    /// repairs, hand-offs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat;
            // To every known member, down ones too: after a partition heals, peers hear this
            // node before their membership view catches up, and keep their hands off its
            // sessions (the lease in failover.rs).
            let me = self.members.me();
            let to: Vec<SocketAddr> = self
                .members
                .all()
                .iter()
                .map(|m| m.id.addr)
                .filter(|a| *a != me.addr)
                .collect();
            for a in to {
                self.send(
                    a,
                    CustodyMsg::Heartbeat {
                        generation: me.generation,
                    },
                );
            }
        }
        if now >= self.next_digest {
            self.next_digest = now + self.cfg.digest_period;
            self.send_digests();
            self.expire_notes(now);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.cfg.tick;
            let elapsed = now.saturating_duration_since(self.last_tick);
            let touch = self.in_touch(now);
            if elapsed >= self.cfg.lease / 2
                || (touch
                    && self
                        .out_of_touch_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= self.cfg.lease / 2))
            {
                // This node did not run for a while (a stall, a starved CPU), or heard from no
                // majority for as long: others may have taken sessions over meanwhile.
                self.reconfirm_all();
            }
            if touch {
                if self.out_of_touch_since.take().is_some() {
                    self.resume_settling();
                }
            } else if self.out_of_touch_since.is_none() {
                self.out_of_touch_since = Some(now);
            }
            self.last_tick = now;
            if self.reconcile_at.is_some_and(|t| now >= t) {
                self.reconcile_at = None;
                self.reconcile_all();
            }
            self.retransmit_due(now);
            self.claims_due();
            self.drops_due();
            self.recovery_due(now);
            self.orphans_due(now);
            self.reconcile_some();
            self.handoffs_due(now, elapsed);
            let ttl = self.cfg.moved_ttl;
            self.moved
                .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < ttl);
        }
    }

    /// The next thing to do, or `None`. Pending copies and acknowledgements are built first,
    /// so that everything changed since the last poll travels in as few messages as possible.
    pub fn poll_action(&mut self) -> Option<Action> {
        // Acknowledgements first: a node that just received a hand-off acknowledges it before
        // its first copy of the session reaches the sender (which would otherwise take that
        // copy for a rival claim).
        if !self.acks_out.is_empty() {
            self.flush_acks();
        }
        if !self.dirty.is_empty() {
            self.flush_dirty();
        }
        self.actions.pop_front()
    }

    fn flush_acks(&mut self) {
        let mut acks = std::mem::take(&mut self.acks_out);
        acks.sort_by_key(|(to, _)| *to);
        let mut i = 0;
        while i < acks.len() {
            let to = acks[i].0;
            let mut batch = Vec::new();
            while i < acks.len() && acks[i].0 == to {
                batch.push(acks[i].1);
                i += 1;
            }
            self.send(to, CustodyMsg::Acks(batch));
        }
    }

    /// Settles what was acknowledged while this node could not settle (no majority in view
    /// or in touch), unless it waits for a confirmation.
    pub(crate) fn resume_settling(&mut self) {
        let waiting: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, e)| matches!(&e.role, Role::Owner(o) if !o.pending.is_empty() || !o.tickets.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.advance(id);
            self.mark(id);
        }
    }

    /// Queues a session for a copy at the next poll.
    /// Marks a change of an owned session's data for the next copy.
    pub(crate) fn mark_changed(&mut self, id: SessionId) {
        if let Some(Entry {
            role: Role::Owner(o),
            ..
        }) = self.sessions.get_mut(&id)
        {
            o.changed = true;
        }
        self.mark(id);
    }

    pub(crate) fn mark(&mut self, id: SessionId) {
        if let Some(e) = self.sessions.get_mut(&id)
            && !e.dirty
        {
            e.dirty = true;
            self.dirty.push(id);
        }
    }
}
