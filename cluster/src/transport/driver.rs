//! Drives a sans-IO [`Membership`] with a real clock over a [`GossipLink`], on a thread of
//! its own (default) or as a task of the caller's runtime.
//!
//! Why a thread of its own: a task in the node's busy multi-thread runtime waits behind
//! every runnable connection task before its timer or its packet is handled, and that wait
//! is what made busy nodes miss probes (`docs/PROTOCOL.md`, "The failure detector under
//! load"). A thread that sleeps between timers is woken by the kernel within a scheduler
//! slice even when the CPUs are saturated.
//!
//! On its own thread with its own UDP socket (the default), the loop is a plain `epoll`
//! wait ([`Driver::run_polled`], mio) until the next packet or the next due timer: one
//! system call per wake-up. A tokio runtime there cost two more per timer (the runtime
//! wakes itself through its eventfd) and woke early for timers more than 64 ms away (its
//! timer wheel's coarser levels). The other combinations run the async loop
//! ([`Driver::run`]).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::endpoint::GossipPacket;
use super::gossip_socket::{GossipSocket, MAX_DATAGRAM, gossip_addr};
use super::seal::GossipKey;
use super::{Seeds, Transport};
use crate::membership::{Event, MemberView, Membership, NodeMeta, Observation};

/// How often a node that is not yet in a cluster announces itself to the seeds again.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// The polled loop's tokens: the gossip socket, and the handle's waker.
const SOCKET: mio::Token = mio::Token(0);
const WAKER: mio::Token = mio::Token(1);
/// Receive errors other than "would block" skipped in one drain of the socket.
const MAX_RECV_ERRORS: usize = 64;

enum Command {
    SetMeta(NodeMeta),
    Leave,
}

/// Where gossip packets go and come from.
#[derive(Debug)]
pub struct GossipLink {
    inner: Link,
}

#[derive(Debug)]
enum Link {
    Quic {
        transport: Transport,
        rx: mpsc::Receiver<GossipPacket>,
    },
    Udp(UdpLink),
}

/// A packet taken off the link.
struct Received {
    from: SocketAddr,
    data: Bytes,
    /// When it was read off a connection by another task (QUIC), to measure how long it
    /// waited for the membership loop; `None` when this loop read it itself (UDP).
    queued_at: Option<Instant>,
}

impl GossipLink {
    /// Gossip as QUIC datagrams on the peer connections (`rx` is the transport's
    /// [`super::Receivers::gossip`]). Sending and receiving then go through the
    /// connection tasks of the transport's runtime.
    pub fn quic(transport: Transport, rx: mpsc::Receiver<GossipPacket>) -> Self {
        Self {
            inner: Link::Quic { transport, rx },
        }
    }

    /// Gossip on its own UDP socket (see [`super::bind_with_gossip`]), read and written by
    /// the membership loop itself.
    pub fn udp(socket: GossipSocket) -> Self {
        Self {
            inner: Link::Udp(UdpLink {
                key: socket.key.clone(),
                socket: UdpSock::Detached(socket.socket),
                rbuf: vec![0; MAX_DATAGRAM],
                sbuf: Vec::with_capacity(2048),
                refused: 0,
                unread: true,
            }),
        }
    }

    fn is_udp(&self) -> bool {
        matches!(self.inner, Link::Udp(_))
    }

    /// Packets may be waiting that no readiness event will announce (UDP only).
    fn unread(&self) -> bool {
        matches!(&self.inner, Link::Udp(u) if u.unread)
    }

    /// Registers a UDP socket with the runtime the loop runs in (must be called there).
    fn attach(&mut self) -> std::io::Result<()> {
        if let Link::Udp(u) = &mut self.inner
            && let UdpSock::Detached(s) = std::mem::replace(&mut u.socket, UdpSock::Gone)
        {
            u.socket = UdpSock::Tokio(tokio::net::UdpSocket::from_std(s)?);
        }
        Ok(())
    }

    /// Registers a UDP socket with `registry` (the polled loop's), readable as [`SOCKET`].
    fn attach_polled(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        if let Link::Udp(u) = &mut self.inner
            && let UdpSock::Detached(s) = std::mem::replace(&mut u.socket, UdpSock::Gone)
        {
            let mut socket = mio::net::UdpSocket::from_std(s);
            registry.register(&mut socket, SOCKET, mio::Interest::READABLE)?;
            u.socket = UdpSock::Polled(socket);
        }
        Ok(())
    }

    async fn recv(&mut self) -> Option<Received> {
        match &mut self.inner {
            Link::Quic { rx, .. } => rx.recv().await.map(|p| Received {
                from: p.from,
                data: p.data,
                queued_at: Some(p.received),
            }),
            Link::Udp(u) => u.recv().await,
        }
    }

    fn try_recv(&mut self) -> Option<Received> {
        match &mut self.inner {
            Link::Quic { rx, .. } => rx.try_recv().ok().map(|p| Received {
                from: p.from,
                data: p.data,
                queued_at: Some(p.received),
            }),
            Link::Udp(u) => u.try_recv(),
        }
    }

    fn send(&mut self, to: SocketAddr, data: Bytes) {
        match &mut self.inner {
            Link::Quic { transport, .. } => transport.send_gossip(to, data),
            Link::Udp(u) => u.send(to, &data),
        }
    }
}

/// The UDP side of [`GossipLink`].
#[derive(Debug)]
struct UdpLink {
    socket: UdpSock,
    key: GossipKey,
    rbuf: Vec<u8>,
    sbuf: Vec<u8>,
    /// Packets refused (bad tag, stale, not ours) since the last log line about them.
    refused: u64,
    /// The last drain stopped before the socket would block: read again without waiting
    /// for readiness (the polled loop's is edge-triggered).
    unread: bool,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The gossip socket, as the loop that reads it holds it.
#[derive(Debug)]
enum UdpSock {
    /// Not attached yet (bound on another thread).
    Detached(std::net::UdpSocket),
    /// Read by the async loop.
    Tokio(tokio::net::UdpSocket),
    /// Read by the polled loop.
    Polled(mio::net::UdpSocket),
    /// Attaching failed.
    Gone,
}

impl UdpSock {
    fn try_recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            Self::Tokio(s) => s.try_recv_from(buf),
            Self::Polled(s) => s.recv_from(buf),
            Self::Detached(_) | Self::Gone => Err(ErrorKind::NotConnected.into()),
        }
    }

    fn try_send_to(&self, buf: &[u8], dst: SocketAddr) -> std::io::Result<usize> {
        match self {
            Self::Tokio(s) => s.try_send_to(buf, dst),
            Self::Polled(s) => s.send_to(buf, dst),
            Self::Detached(_) | Self::Gone => Err(ErrorKind::NotConnected.into()),
        }
    }
}

impl UdpLink {
    async fn recv(&mut self) -> Option<Received> {
        loop {
            let UdpSock::Tokio(socket) = &self.socket else {
                return None;
            };
            match socket.recv_from(&mut self.rbuf).await {
                Ok((n, from)) => {
                    if let Some(r) = self.open(n, from) {
                        return Some(r);
                    }
                }
                Err(err) => {
                    tracing::debug!(%err, "gossip socket");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// The next authentic packet already received, if any. Reads until the socket would
    /// block (the polled loop's readiness is edge-triggered), skipping refused packets and
    /// a bounded number of errors.
    fn try_recv(&mut self) -> Option<Received> {
        let mut errors = 0;
        loop {
            match self.socket.try_recv_from(&mut self.rbuf) {
                Ok((n, from)) => {
                    if let Some(r) = self.open(n, from) {
                        return Some(r);
                    }
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.unread = false;
                    return None;
                }
                Err(_) if errors >= MAX_RECV_ERRORS => {
                    self.unread = true;
                    return None;
                }
                Err(err) => {
                    errors += 1;
                    tracing::trace!(%err, "gossip socket");
                }
            }
        }
    }

    /// The payload of the `n` bytes just read, if the packet is authentic and fresh.
    fn open(&mut self, n: usize, from: SocketAddr) -> Option<Received> {
        match self.key.open(&self.rbuf[..n], wall_ms()) {
            Ok(payload) => Some(Received {
                from,
                data: Bytes::copy_from_slice(payload),
                queued_at: None,
            }),
            Err(err) => {
                // Logged at the first and then every 1,000th: a foreign sender must not
                // flood the log.
                if self.refused.is_multiple_of(1000) {
                    tracing::warn!(peer = %from, %err, refused = self.refused + 1, "gossip packet refused");
                }
                self.refused += 1;
                None
            }
        }
    }

    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let Some(dst) = gossip_addr(to) else {
            return;
        };
        self.key.seal(data, wall_ms(), &mut self.sbuf);
        // A full socket buffer drops the packet: SWIM tolerates loss, and waiting here
        // would delay every timer behind it.
        if let Err(err) = self.socket.try_send_to(&self.sbuf, dst) {
            tracing::trace!(peer = %dst, %err, "gossip packet not sent");
        }
    }
}

/// Where the membership loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverThread {
    /// A thread of its own with a current-thread runtime (default).
    #[default]
    Dedicated,
    /// A task of the runtime `spawn_membership` is called from (for comparison).
    Shared,
}

/// Called with every [`Observation`] (timer lateness, probe RTT, suspicions), from the
/// membership's thread: keep it short (metrics).
pub type ObserveFn = Arc<dyn Fn(&Observation) + Send + Sync>;

/// How [`spawn_membership`] runs the membership.
#[derive(Clone, Default)]
pub struct DriverOptions {
    /// Where the loop runs. Default: a thread of its own.
    pub thread: DriverThread,
    /// Receives the detector's measurements. Default: none.
    pub observe: Option<ObserveFn>,
}

impl std::fmt::Debug for DriverOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverOptions")
            .field("thread", &self.thread)
            .field("observe", &self.observe.is_some())
            .finish()
    }
}

/// The running membership: its view, its events, and how to change it. Dropping it stops
/// the driver.
#[derive(Debug)]
pub struct MembershipHandle {
    /// The whole cluster as this node sees it (this node first), published again as soon as
    /// a packet or a timer changed it (a member's state, incarnation or metadata).
    pub view: watch::Receiver<Vec<MemberView>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Sender<Command>,
    wake: Arc<Wake>,
}

/// How the handle reaches the loop: a stop flag, and whichever wake-up that loop waits on.
#[derive(Debug, Default)]
struct Wake {
    stop: AtomicBool,
    notify: Notify,
    polled: OnceLock<mio::Waker>,
}

impl Wake {
    /// Wakes the polled loop (the async loop is woken by the channel itself).
    fn nudge(&self) {
        if let Some(waker) = self.polled.get()
            && let Err(err) = waker.wake()
        {
            tracing::debug!(%err, "membership waker");
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify.notify_one();
        self.nudge();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl MembershipHandle {
    /// Membership changes from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes new metadata (load, draining) for this node.
    pub async fn set_meta(&self, meta: NodeMeta) {
        let _ = self.commands.send(Command::SetMeta(meta)).await;
        self.wake.nudge();
    }

    /// Leaves the cluster gracefully (peers learn at once).
    pub async fn leave(&self) {
        let _ = self.commands.send(Command::Leave).await;
        self.wake.nudge();
    }

    /// Stops the driver abruptly (as a crash would).
    pub fn abort(&self) {
        self.wake.stop();
    }
}

impl Drop for MembershipHandle {
    fn drop(&mut self) {
        self.wake.stop();
    }
}

/// Runs `membership` over `link`; resolves and announces to `seeds` every second until the
/// node is part of a cluster. Must be called inside a tokio runtime.
pub fn spawn_membership(
    mut membership: Membership,
    link: GossipLink,
    seeds: Seeds,
    options: DriverOptions,
) -> MembershipHandle {
    let first = membership
        .view_if_changed()
        .unwrap_or_else(|| membership.view());
    let (view_tx, view) = watch::channel(first);
    let (events, _) = broadcast::channel(256);
    let (commands, command_rx) = mpsc::channel(16);
    let wake = Arc::new(Wake::default());
    let polled = options.thread == DriverThread::Dedicated && link.is_udp();
    let driver = Driver {
        membership,
        link,
        seeds,
        view: view_tx,
        events: events.clone(),
        commands: command_rx,
        wake: wake.clone(),
        observe: options.observe,
        active: false,
    };
    match options.thread {
        DriverThread::Shared => {
            tokio::spawn(driver.run());
        }
        DriverThread::Dedicated => {
            let spawned = std::thread::Builder::new()
                .name("membership".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) if polled => driver.run_polled(&rt),
                        Ok(rt) => rt.block_on(driver.run()),
                        Err(err) => tracing::error!(%err, "membership runtime"),
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start the membership thread");
            }
        }
    }
    MembershipHandle {
        view,
        events,
        commands,
        wake,
    }
}

struct Driver {
    membership: Membership,
    link: GossipLink,
    seeds: Seeds,
    view: watch::Sender<Vec<MemberView>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    wake: Arc<Wake>,
    observe: Option<ObserveFn>,
    active: bool,
}

impl Driver {
    /// The async loop: a task of the caller's runtime, or the QUIC link on a thread of its
    /// own.
    async fn run(mut self) {
        if let Err(err) = self.link.attach() {
            tracing::error!(%err, "gossip socket: the membership cannot run");
            return;
        }
        let mut next_join = Instant::now();
        let wake = self.wake.clone();
        loop {
            if wake.stopped() {
                return;
            }
            let now = Instant::now();
            if self.joining() && now >= next_join {
                let addrs = self.seeds.resolve().await;
                self.join(addrs);
                next_join = Instant::now() + JOIN_RETRY;
            }
            let mut deadline = self.membership.poll_timeout();
            if self.joining() {
                deadline = deadline.min(next_join);
            }
            tokio::select! {
                // Packets first: after a stall (a starved CPU), the acks and
                // refutations already received must count before timers
                // that are now overdue declare anyone suspect or down.
                biased;
                () = wake.notify.notified() => continue,
                packet = self.link.recv() => {
                    let Some(packet) = packet else { return };
                    self.handle(packet);
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    while let Some(packet) = self.link.try_recv() {
                        self.handle(packet);
                    }
                    self.timers();
                }
                command = self.commands.recv() => {
                    if self.command(command) {
                        return;
                    }
                }
            }
            self.flush();
            self.publish();
        }
    }

    /// The polled loop (own thread, own UDP socket): waits in `epoll` for a packet, the
    /// handle's waker or the next due timer, whichever comes first. `rt` only resolves the
    /// seeds' names while the node is joining.
    fn run_polled(mut self, rt: &tokio::runtime::Runtime) {
        let mut poll = match mio::Poll::new() {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%err, "membership poll: the membership cannot run");
                return;
            }
        };
        if let Err(err) = self.link.attach_polled(poll.registry()) {
            tracing::error!(%err, "gossip socket: the membership cannot run");
            return;
        }
        match mio::Waker::new(poll.registry(), WAKER) {
            Ok(w) => {
                let _ = self.wake.polled.set(w);
            }
            Err(err) => {
                tracing::error!(%err, "membership waker: the membership cannot run");
                return;
            }
        }
        let mut events = mio::Events::with_capacity(8);
        let mut next_join = Instant::now();
        loop {
            // The waker exists from here on: a command sent before it was set is read here.
            if self.wake.stopped() {
                return;
            }
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        if self.command(Some(command)) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if self.joining() && now >= next_join {
                let addrs = rt.block_on(self.seeds.resolve());
                self.join(addrs);
                next_join = Instant::now() + JOIN_RETRY;
            }
            let mut deadline = self.membership.poll_timeout();
            if self.joining() {
                deadline = deadline.min(next_join);
            }
            // A timer already due still polls (without waiting): packets come first.
            let wait = deadline.saturating_duration_since(Instant::now());
            let readable = match poll.poll(&mut events, Some(wait)) {
                Ok(()) => events.iter().any(|e| e.token() == SOCKET),
                Err(err) if err.kind() == ErrorKind::Interrupted => true,
                Err(err) => {
                    tracing::warn!(%err, "membership poll");
                    std::thread::sleep(Duration::from_millis(1));
                    true
                }
            };
            // Packets first (see `run`); a wake-up for a timer or a command reads nothing.
            if readable || self.link.unread() {
                while let Some(packet) = self.link.try_recv() {
                    self.handle(packet);
                    self.flush();
                }
            }
            if Instant::now() >= self.membership.poll_timeout() {
                self.timers();
            }
            self.flush();
            self.publish();
        }
    }

    /// Not yet in a cluster, with seeds to announce to.
    fn joining(&self) -> bool {
        !self.active && !self.seeds.is_empty()
    }

    fn join(&mut self, addrs: Vec<SocketAddr>) {
        if let Err(err) = self.membership.join(addrs, Instant::now()) {
            tracing::debug!(%err, "join");
        }
        self.flush();
    }

    fn timers(&mut self) {
        if let Err(err) = self.membership.handle_timeout(Instant::now()) {
            tracing::debug!(%err, "membership timer");
        }
    }

    /// Carries out a command from the handle (`None`: the handle is gone); true when the
    /// loop must end.
    fn command(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::SetMeta(meta)) => {
                if let Err(err) = self.membership.set_meta(meta, Instant::now()) {
                    tracing::warn!(%err, "metadata not published");
                }
                false
            }
            Some(Command::Leave) => {
                let _ = self.membership.leave(Instant::now());
                self.flush();
                self.view.send_replace(self.membership.view());
                true
            }
            None => true,
        }
    }

    /// Publishes the view if a packet or a timer changed it.
    fn publish(&mut self) {
        if let Some(view) = self.membership.view_if_changed() {
            self.view.send_replace(view);
        }
    }

    fn handle(&mut self, packet: Received) {
        let now = Instant::now();
        if let (Some(observe), Some(at)) = (&self.observe, packet.queued_at) {
            observe(&Observation::PacketWaited(
                now.saturating_duration_since(at),
            ));
        }
        if let Err(err) = self.membership.handle_packet(&packet.data, now) {
            tracing::trace!(peer = %packet.from, %err, "gossip packet refused");
        }
    }

    /// Sends what membership wants sent, publishes its events and hands its observations
    /// on.
    fn flush(&mut self) {
        while let Some(out) = self.membership.poll_transmit() {
            self.link.send(out.to.addr, out.data);
        }
        while let Some(o) = self.membership.poll_observation() {
            if let Some(observe) = &self.observe {
                observe(&o);
            }
        }
        while let Some(event) = self.membership.poll_event() {
            match &event {
                Event::Active => self.active = true,
                Event::Idle | Event::Defunct => self.active = false,
                Event::Up(id) => tracing::info!(member = %id, "member up"),
                Event::Down(id) => tracing::info!(member = %id, "member down"),
                _ => {}
            }
            let _ = self.events.send(event);
        }
    }
}
