//! [`Driver`]: the tokio driver of the session layer's state machine (`mcp_custody::Custody`),
//! step 2 of docs/ARCHITECTURE.md "Custody into the node: the plan". Not started by
//! `cluster::start` yet: `peers.rs` still serves the node's sessions.
//!
//! One `Custody` per node, under a mutex: local callers (the HTTP side, later) call it
//! synchronously — a route answer is needed at once — and wake the driver's task, which owns
//! all the I/O: it feeds the machine the membership view, custody's peer messages and time
//! (`handle_timeout` when `poll_timeout` is due), drains `poll_action`, and carries the
//! actions out through [`Effects`] with the lock released. Changes that wait for their
//! replicas (a new session, a state change) return a [`Settle`], resolved by
//! `Action::Settled`. Time is tokio's clock (`tokio::time::Instant`), so tests that pause it
//! drive the machine too.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use mcp_cluster::membership::MemberView;
use mcp_custody::{
    Acquire, Action, Config, Custody, CustodyMsg, NewSession, Refusal, Release, Replay, Route,
    SessionData, SessionId, Stats, StreamKind, Ticket,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// Peer messages handed to the driver at most at once per wake-up.
const INBOUND_BATCH: usize = 256;

/// What the driver does with the machine's actions, other than settling tickets (its own).
/// Called from the driver's task without its lock held; none may block.
pub trait Effects: Send + Sync + 'static {
    /// Queues `msg` for the peer `to`; gives it back when the peer's queue refused it (the
    /// machine then sends that replica a full copy later).
    fn send(&self, to: SocketAddr, msg: CustodyMsg) -> Result<(), CustodyMsg>;
    /// Event `seq` of `stream` may be shown: write it to the stream's reader, if attached.
    fn deliver(&self, session: SessionId, stream: u32, seq: u32, json: Bytes);
    /// The stream ended and all its events were delivered: end its reader.
    fn stream_ended(&self, session: SessionId, stream: u32);
    /// The session is owned here now.
    fn acquired(&self, session: SessionId, why: Acquire);
    /// The session is no longer owned here.
    fn released(&self, session: SessionId, to: Option<SocketAddr>, why: Release);
    /// A change to tell this node's subscribers about.
    fn announce(&self, event: u8, uri: String);
}

/// Resolves once the change it names is held by every replica (`true`), or never will be
/// (`false`: the session was deleted, lost here, or the driver stopped).
#[derive(Debug)]
pub struct Settle(oneshot::Receiver<bool>);

impl Future for Settle {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(false))
    }
}

struct Inner {
    custody: Custody,
    /// Who waits for which ticket.
    waiting: HashMap<Ticket, oneshot::Sender<bool>>,
}

impl Inner {
    fn wait(&mut self, ticket: Ticket) -> Settle {
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(ticket, tx);
        Settle(rx)
    }
}

/// The session layer of one node: its `Custody`, and the task that drives it ([`Driver::run`]).
pub struct Driver {
    inner: Mutex<Inner>,
    wake: Notify,
    effects: Arc<dyn Effects>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

/// The driver's clock: tokio's, as a `std` instant (the machine's type).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Driver {
    /// The session layer of node `me` (`view[0]` of the membership's view), with `effects`
    /// carrying its actions out; `seed` drives its random choices (session ids).
    pub fn new(
        me: mcp_cluster::membership::NodeId,
        cfg: Config,
        seed: u64,
        effects: Arc<dyn Effects>,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                custody: Custody::new(me, cfg, seed, now()),
                waiting: HashMap::new(),
            }),
            wake: Notify::new(),
            effects,
        })
    }

    /// Runs `f` on the machine, then wakes the task to carry out what it queued.
    fn with<T>(&self, f: impl FnOnce(&mut Inner, Instant) -> T) -> T {
        let out = f(&mut self.inner.lock(), now());
        self.wake.notify_one();
        out
    }

    /// A new session owned here (`initialize`): its id, and the [`Settle`] the client's
    /// answer waits for (it must not learn the id before its replicas hold the session).
    pub fn create(&self, new: NewSession) -> Result<(SessionId, Settle), Refusal> {
        self.with(|i, now| {
            let (id, ticket) = i.custody.create(new, now)?;
            Ok((id, i.wait(ticket)))
        })
    }

    /// Changes the durable state of a session owned here; `None` if it is not (or moving).
    pub fn update(&self, id: SessionId, f: impl FnOnce(&mut SessionData)) -> Option<Settle> {
        self.with(|i, _| {
            let ticket = i.custody.update(id, f)?;
            Some(i.wait(ticket))
        })
    }

    /// Opens an SSE stream in a session owned here; its number.
    pub fn open_stream(&self, id: SessionId, kind: StreamKind) -> Option<u32> {
        self.with(|i, _| i.custody.open_stream(id, kind))
    }

    /// Appends an event to a stream; it reaches [`Effects::deliver`] once durable.
    pub fn append(&self, id: SessionId, stream: u32, json: Bytes) -> Option<u32> {
        self.with(|i, _| i.custody.append(id, stream, json))
    }

    /// Ends a stream; its reader ends ([`Effects::stream_ended`]) once its events are durable.
    pub fn finish_stream(&self, id: SessionId, stream: u32) {
        self.with(|i, _| i.custody.finish_stream(id, stream));
    }

    /// What a reader resuming `stream` after event `after` gets.
    pub fn replay(&self, id: SessionId, stream: u32, after: u32) -> Option<Replay> {
        self.inner.lock().custody.replay(id, stream, after)
    }

    /// Where a request for `id` goes (`hop`: nodes it passed already).
    pub fn route(&self, id: SessionId, hop: u8) -> Route {
        self.with(|i, now| i.custody.route(id, hop, now))
    }

    /// Ends a session owned here (DELETE, expiry).
    pub fn delete(&self, id: SessionId) -> bool {
        self.with(|i, _| i.custody.delete(id))
    }

    /// A change to announce to every node's subscribers (this one's included).
    pub fn announce(&self, event: u8, uri: String) {
        self.with(|i, _| i.custody.announce(event, uri));
    }

    /// Starts or calls off a drain (sessions go to their successors).
    pub fn set_draining(&self, draining: bool) {
        self.with(|i, _| i.custody.set_draining(draining));
    }

    /// The machine's counters and gauges.
    pub fn stats(&self) -> Stats {
        self.inner.lock().custody.stats()
    }

    /// Feeds the machine until `view` or `inbound` closes: view changes, custody's peer
    /// messages (`from`, message), its timers, and local calls' wake-ups; carries out its
    /// actions after each.
    pub async fn run(
        self: Arc<Self>,
        mut view: watch::Receiver<Vec<MemberView>>,
        mut inbound: mpsc::Receiver<(SocketAddr, CustodyMsg)>,
    ) {
        let first = view.borrow_and_update().clone();
        self.inner.lock().custody.set_view(&first, now());
        let mut batch = Vec::with_capacity(INBOUND_BATCH);
        loop {
            self.carry_out();
            let due = tokio::time::Instant::from_std(self.inner.lock().custody.poll_timeout());
            tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let v = view.borrow_and_update().clone();
                    self.inner.lock().custody.set_view(&v, now());
                }
                n = inbound.recv_many(&mut batch, INBOUND_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let mut i = self.inner.lock();
                    let at = now();
                    for (from, msg) in batch.drain(..) {
                        i.custody.handle_message(from, msg, at);
                    }
                }
                () = tokio::time::sleep_until(due) => {
                    self.inner.lock().custody.handle_timeout(now());
                }
                () = self.wake.notified() => {}
            }
        }
        // Nobody will settle what still waits.
        self.inner.lock().waiting.clear();
    }

    /// Drains the machine's actions and carries them out (the lock released meanwhile).
    fn carry_out(&self) {
        loop {
            let mut actions = Vec::new();
            let mut settled = Vec::new();
            {
                let mut i = self.inner.lock();
                while let Some(a) = i.custody.poll_action() {
                    match a {
                        Action::Settled { ticket, ok } => {
                            if let Some(tx) = i.waiting.remove(&ticket) {
                                settled.push((tx, ok));
                            }
                        }
                        other => actions.push(other),
                    }
                }
            }
            if actions.is_empty() && settled.is_empty() {
                return;
            }
            for (tx, ok) in settled {
                // A waiter that went away (its client left) needs no answer.
                let _ = tx.send(ok);
            }
            let mut refused = Vec::new();
            for a in actions {
                match a {
                    Action::Send { to, msg } => {
                        if let Err(msg) = self.effects.send(to, msg) {
                            refused.push((to, msg));
                        }
                    }
                    Action::Deliver {
                        session,
                        stream,
                        seq,
                        json,
                    } => self.effects.deliver(session, stream, seq, json),
                    Action::StreamEnded { session, stream } => {
                        self.effects.stream_ended(session, stream);
                    }
                    Action::Acquired { session, why } => self.effects.acquired(session, why),
                    Action::Released { session, to, why } => {
                        self.effects.released(session, to, why);
                    }
                    Action::Announce { event, uri } => self.effects.announce(event, uri),
                    Action::Settled { .. } => {}
                }
            }
            if !refused.is_empty() {
                let mut i = self.inner.lock();
                for (to, msg) in &refused {
                    i.custody.send_refused(*to, msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Three drivers over in-memory links, on tokio's real clock with short timers: what
    //! the driver must get right is the plumbing — the view, messages both ways, timers,
    //! tickets and actions — while the machine's rules are the simulator's to check.
    use std::time::Duration;

    use mcp_cluster::membership::{MemberState, NodeId, NodeMeta};

    use super::*;

    type Inbox = mpsc::Sender<(SocketAddr, CustodyMsg)>;

    /// What a node's effects saw.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Deliver(SessionId, u32, u32, Bytes),
        Ended(SessionId, u32),
        Acquired(SessionId, Acquire),
        Released(SessionId, Release),
        Announce(u8, String),
    }

    /// The links between the test's nodes: a node removed from `inboxes` is dead (what is
    /// sent to it, or by it, is lost).
    #[derive(Default)]
    struct Net {
        inboxes: Mutex<HashMap<SocketAddr, Inbox>>,
    }

    struct Node {
        me: SocketAddr,
        net: Arc<Net>,
        seen: Mutex<Vec<Seen>>,
    }

    impl Effects for Node {
        fn send(&self, to: SocketAddr, msg: CustodyMsg) -> Result<(), CustodyMsg> {
            let inboxes = self.net.inboxes.lock();
            if !inboxes.contains_key(&self.me) {
                return Ok(()); // dead: lost
            }
            match inboxes.get(&to) {
                Some(tx) => tx.try_send((self.me, msg)).map_err(|e| e.into_inner().1),
                None => Ok(()),
            }
        }
        fn deliver(&self, session: SessionId, stream: u32, seq: u32, json: Bytes) {
            self.seen
                .lock()
                .push(Seen::Deliver(session, stream, seq, json));
        }
        fn stream_ended(&self, session: SessionId, stream: u32) {
            self.seen.lock().push(Seen::Ended(session, stream));
        }
        fn acquired(&self, session: SessionId, why: Acquire) {
            self.seen.lock().push(Seen::Acquired(session, why));
        }
        fn released(&self, session: SessionId, _to: Option<SocketAddr>, why: Release) {
            self.seen.lock().push(Seen::Released(session, why));
        }
        fn announce(&self, event: u8, uri: String) {
            self.seen.lock().push(Seen::Announce(event, uri));
        }
    }

    struct Member {
        id: NodeId,
        driver: Arc<Driver>,
        effects: Arc<Node>,
        view: watch::Sender<Vec<MemberView>>,
        task: tokio::task::JoinHandle<()>,
    }

    fn config() -> Config {
        Config {
            cluster_size: 3,
            lease: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            retransmit: Duration::from_millis(150),
            tick: Duration::from_millis(10),
            handoff_retry: Duration::from_millis(400),
            drain_rate: 1_000.0,
            ..Config::default()
        }
    }

    /// `ids` as `me` sees them: itself first, `down` declared down, `draining` draining.
    fn view_of(
        me: NodeId,
        ids: &[NodeId],
        down: &[NodeId],
        draining: &[NodeId],
    ) -> Vec<MemberView> {
        let v: Vec<MemberView> = std::iter::once(me)
            .chain(ids.iter().copied().filter(|i| *i != me))
            .map(|id| MemberView {
                id,
                state: if down.contains(&id) {
                    MemberState::Down
                } else {
                    MemberState::Alive
                },
                incarnation: 0,
                meta: Some(NodeMeta {
                    draining: draining.contains(&id),
                    ..NodeMeta::default()
                }),
            })
            .collect();
        v
    }

    fn cluster() -> (Arc<Net>, Vec<Member>) {
        let net = Arc::new(Net::default());
        let ids: Vec<NodeId> = (1..=3)
            .map(|p| NodeId::new(SocketAddr::from(([127, 0, 0, 1], 7000 + p)), 1))
            .collect();
        let members = ids
            .iter()
            .enumerate()
            .map(|(k, &id)| {
                let (tx, rx) = mpsc::channel(4096);
                net.inboxes.lock().insert(id.addr, tx);
                let effects = Arc::new(Node {
                    me: id.addr,
                    net: net.clone(),
                    seen: Mutex::new(Vec::new()),
                });
                let driver = Driver::new(id, config(), k as u64 + 1, effects.clone());
                let (view, view_rx) = watch::channel(view_of(id, &ids, &[], &[]));
                let task = tokio::spawn(driver.clone().run(view_rx, rx));
                Member {
                    id,
                    driver,
                    effects,
                    view,
                    task,
                }
            })
            .collect();
        (net, members)
    }

    /// Polls `f` every 10 ms for at most `within`.
    async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        f()
    }

    /// Creates a session on the first member once the members heard each other.
    async fn settled_session(m: &[Member]) -> SessionId {
        let mut created = None;
        assert!(
            eventually(Duration::from_secs(5), || {
                created = m[0].driver.create(NewSession::default()).ok();
                created.is_some()
            })
            .await,
            "no quorum within 5 s"
        );
        let (id, settle) = created.expect("created");
        let ok = tokio::time::timeout(Duration::from_secs(5), settle)
            .await
            .expect("settled within 5 s");
        assert!(ok, "the new session settled as not durable");
        id
    }

    #[tokio::test]
    async fn a_session_settles_and_its_events_changes_and_announcements_reach_the_effects() {
        let (_net, m) = cluster();
        let id = settled_session(&m).await;
        assert_eq!(m[0].driver.stats().owned, 1);
        assert_eq!(
            m.iter().map(|x| x.driver.stats().copies).sum::<u64>(),
            1,
            "R = 2: one copy elsewhere"
        );
        assert_eq!(m[0].driver.route(id, 0), Route::Local);
        let other = m[1].driver.route(id, 0);
        assert_eq!(
            other,
            Route::Forward(m[0].id.addr),
            "a peer forwards to the owner"
        );

        let stream = m[0]
            .driver
            .open_stream(id, StreamKind::Response)
            .expect("stream");
        let seq = m[0]
            .driver
            .append(id, stream, Bytes::from_static(b"{\"n\":1}"))
            .expect("event");
        m[0].driver.finish_stream(id, stream);
        let want = Seen::Deliver(id, stream, seq, Bytes::from_static(b"{\"n\":1}"));
        assert!(
            eventually(Duration::from_secs(5), || {
                let seen = m[0].effects.seen.lock();
                seen.contains(&want) && seen.contains(&Seen::Ended(id, stream))
            })
            .await,
            "event delivered and stream ended: {:?}",
            m[0].effects.seen.lock()
        );

        // A durable change settles; the announcement reaches every node's subscribers.
        let settle = m[0]
            .driver
            .update(id, |d| d.log_level = 3)
            .expect("owned here");
        assert!(
            tokio::time::timeout(Duration::from_secs(5), settle)
                .await
                .expect("settled within 5 s")
        );
        m[0].driver.announce(0, "file:///x".into());
        assert!(
            eventually(Duration::from_secs(5), || m.iter().all(|x| x
                .effects
                .seen
                .lock()
                .contains(&Seen::Announce(0, "file:///x".into()))))
            .await
        );
        for x in &m {
            x.task.abort();
        }
    }

    #[tokio::test]
    async fn a_dead_owners_session_is_taken_over_with_what_its_client_saw() {
        let (net, m) = cluster();
        let id = settled_session(&m).await;
        let stream = m[0]
            .driver
            .open_stream(id, StreamKind::Standalone)
            .expect("stream");
        let seq = m[0]
            .driver
            .append(id, stream, Bytes::from_static(b"{\"seen\":true}"))
            .expect("event");
        assert!(
            eventually(Duration::from_secs(5), || m[0]
                .effects
                .seen
                .lock()
                .iter()
                .any(|s| matches!(s, Seen::Deliver(..))))
            .await,
            "the event was shown"
        );

        // The owner dies: its links go, and the others' views declare it down.
        net.inboxes.lock().remove(&m[0].id.addr);
        m[0].task.abort();
        let ids: Vec<NodeId> = m.iter().map(|x| x.id).collect();
        for x in &m[1..] {
            x.view.send_replace(view_of(x.id, &ids, &[m[0].id], &[]));
        }
        let taken = |x: &Member| {
            x.effects
                .seen
                .lock()
                .contains(&Seen::Acquired(id, Acquire::TakenOver))
        };
        // Routing a request for it, as a client's retry would, moves it along.
        assert!(
            eventually(Duration::from_secs(10), || {
                for x in &m[1..] {
                    let _ = x.driver.route(id, 0);
                }
                m[1..].iter().any(taken)
            })
            .await,
            "not taken over within 10 s"
        );
        let heir = m[1..].iter().find(|x| taken(x)).expect("heir");
        assert!(
            eventually(Duration::from_secs(5), || heir.driver.route(id, 0)
                == Route::Local)
            .await
        );
        let replay = heir
            .driver
            .replay(id, stream, 0)
            .expect("the stream came along");
        assert!(
            replay
                .events
                .iter()
                .any(|(s, json)| *s == seq && json.as_ref() == b"{\"seen\":true}"),
            "the event the client saw is on the new owner: {replay:?}"
        );
        for x in &m[1..] {
            x.task.abort();
        }
    }

    #[tokio::test]
    async fn a_drain_hands_every_session_to_the_others() {
        let (_net, m) = cluster();
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(settled_session(&m).await);
        }
        let all: Vec<NodeId> = m.iter().map(|x| x.id).collect();
        m[0].driver.set_draining(true);
        for x in &m {
            x.view.send_replace(view_of(x.id, &all, &[], &[m[0].id]));
        }
        assert!(
            eventually(Duration::from_secs(10), || m[0].driver.stats().owned == 0).await,
            "still owns {} after 10 s",
            m[0].driver.stats().owned
        );
        for id in &ids {
            assert!(
                m[0].effects
                    .seen
                    .lock()
                    .contains(&Seen::Released(*id, Release::HandedOff))
            );
            assert!(
                m[1..].iter().any(|x| x
                    .effects
                    .seen
                    .lock()
                    .contains(&Seen::Acquired(*id, Acquire::HandedIn))),
                "{id:?} not handed in anywhere"
            );
        }
        assert_eq!(
            m[1..].iter().map(|x| x.driver.stats().owned).sum::<u64>(),
            5
        );
        for x in &m {
            x.task.abort();
        }
    }
}
