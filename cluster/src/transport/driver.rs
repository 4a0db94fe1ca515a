//! Drives a sans-IO [`Membership`] with a real clock over a [`GossipLink`], on a thread of
//! its own (default) or as a task of the caller's runtime.
//!
//! Why a thread of its own: a task in the node's busy multi-thread runtime waits behind
//! every runnable connection task before its timer or its packet is handled, and that wait
//! is what made busy nodes miss probes (`docs/PROTOCOL.md`, "The failure detector under
//! load"). A thread that sleeps between timers is woken by the kernel within a scheduler
//! slice even when the CPUs are saturated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use super::endpoint::GossipPacket;
use super::gossip_socket::{GossipSocket, MAX_DATAGRAM, gossip_addr};
use super::seal::GossipKey;
use super::{Seeds, Transport};
use crate::membership::{Event, MemberView, Membership, NodeMeta, Observation};

/// How often the published view is refreshed when nothing else changes it
/// (metadata arrives continuously).
const VIEW_REFRESH: Duration = Duration::from_millis(100);
/// How often a node that is not yet in a cluster announces itself to the seeds again.
const JOIN_RETRY: Duration = Duration::from_secs(1);

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
                pending: Some(socket),
                socket: None,
                rbuf: vec![0; MAX_DATAGRAM],
                sbuf: Vec::with_capacity(2048),
                refused: 0,
            }),
        }
    }

    /// Registers a UDP socket with the runtime the loop runs in (must be called there).
    fn attach(&mut self) -> std::io::Result<()> {
        if let Link::Udp(u) = &mut self.inner
            && let Some(s) = u.pending.take()
        {
            u.socket = Some(tokio::net::UdpSocket::from_std(s.socket)?);
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
    pending: Option<GossipSocket>,
    socket: Option<tokio::net::UdpSocket>,
    key: GossipKey,
    rbuf: Vec<u8>,
    sbuf: Vec<u8>,
    /// Packets refused (bad tag, stale, not ours) since the last log line about them.
    refused: u64,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl UdpLink {
    async fn recv(&mut self) -> Option<Received> {
        loop {
            let socket = self.socket.as_ref()?;
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

    fn try_recv(&mut self) -> Option<Received> {
        loop {
            let socket = self.socket.as_ref()?;
            match socket.try_recv_from(&mut self.rbuf) {
                Ok((n, from)) => {
                    if let Some(r) = self.open(n, from) {
                        return Some(r);
                    }
                }
                Err(_) => return None,
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
        let (Some(socket), Some(dst)) = (self.socket.as_ref(), gossip_addr(to)) else {
            return;
        };
        self.key.seal(data, wall_ms(), &mut self.sbuf);
        // A full socket buffer drops the packet: SWIM tolerates loss, and waiting here
        // would delay every timer behind it.
        if let Err(err) = socket.try_send_to(&self.sbuf, dst) {
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

/// The running membership: its view, its events, and how to change it.
#[derive(Debug)]
pub struct MembershipHandle {
    /// The whole cluster as this node sees it (this node first), refreshed
    /// on every membership change and at least every 100 ms.
    pub view: watch::Receiver<Vec<MemberView>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Sender<Command>,
    stop: Arc<Notify>,
}

impl MembershipHandle {
    /// Membership changes from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Publishes new metadata (load, draining) for this node.
    pub async fn set_meta(&self, meta: NodeMeta) {
        let _ = self.commands.send(Command::SetMeta(meta)).await;
    }

    /// Leaves the cluster gracefully (peers learn at once).
    pub async fn leave(&self) {
        let _ = self.commands.send(Command::Leave).await;
    }

    /// Stops the driver abruptly (as a crash would).
    pub fn abort(&self) {
        self.stop.notify_one();
    }
}

/// Runs `membership` over `link`; resolves and announces to `seeds` every second until the
/// node is part of a cluster. Must be called inside a tokio runtime.
pub fn spawn_membership(
    membership: Membership,
    link: GossipLink,
    seeds: Seeds,
    options: DriverOptions,
) -> MembershipHandle {
    let (view_tx, view) = watch::channel(membership.view());
    let (events, _) = broadcast::channel(256);
    let (commands, command_rx) = mpsc::channel(16);
    let stop = Arc::new(Notify::new());
    let driver = Driver {
        membership,
        link,
        seeds,
        view: view_tx,
        events: events.clone(),
        commands: command_rx,
        stop: stop.clone(),
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
        stop,
    }
}

struct Driver {
    membership: Membership,
    link: GossipLink,
    seeds: Seeds,
    view: watch::Sender<Vec<MemberView>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    stop: Arc<Notify>,
    observe: Option<ObserveFn>,
    active: bool,
}

impl Driver {
    async fn run(mut self) {
        if let Err(err) = self.link.attach() {
            tracing::error!(%err, "gossip socket: the membership cannot run");
            return;
        }
        let mut next_join = Instant::now();
        let mut next_view = Instant::now();
        let stop = self.stop.clone();
        loop {
            let now = Instant::now();
            if !self.active && !self.seeds.is_empty() && now >= next_join {
                let addrs = self.seeds.resolve().await;
                if let Err(err) = self.membership.join(addrs, Instant::now()) {
                    tracing::debug!(%err, "join");
                }
                self.flush();
                next_join = Instant::now() + JOIN_RETRY;
            }
            let mut deadline = self.membership.poll_timeout().min(next_view);
            if !self.active && !self.seeds.is_empty() {
                deadline = deadline.min(next_join);
            }
            tokio::select! {
                // Packets first: after a stall (a starved CPU), the acks and
                // refutations already received must count before timers
                // that are now overdue declare anyone suspect or down.
                biased;
                () = stop.notified() => return,
                packet = self.link.recv() => {
                    let Some(packet) = packet else { return };
                    self.handle(packet);
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    while let Some(packet) = self.link.try_recv() {
                        self.handle(packet);
                    }
                    if let Err(err) = self.membership.handle_timeout(Instant::now()) {
                        tracing::debug!(%err, "membership timer");
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::SetMeta(meta)) => {
                        if let Err(err) = self.membership.set_meta(meta) {
                            tracing::warn!(%err, "metadata not published");
                        }
                    }
                    Some(Command::Leave) => {
                        let _ = self.membership.leave(Instant::now());
                        self.flush();
                        self.view.send_replace(self.membership.view());
                        return;
                    }
                    None => return,
                },
            }
            let changed = self.flush();
            let now = Instant::now();
            if changed || now >= next_view {
                self.view.send_replace(self.membership.view());
                next_view = now + VIEW_REFRESH;
            }
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
    /// on; true if there was any event.
    fn flush(&mut self) -> bool {
        while let Some(out) = self.membership.poll_transmit() {
            self.link.send(out.to.addr, out.data);
        }
        while let Some(o) = self.membership.poll_observation() {
            if let Some(observe) = &self.observe {
                observe(&o);
            }
        }
        let mut any = false;
        while let Some(event) = self.membership.poll_event() {
            any = true;
            match &event {
                Event::Active => self.active = true,
                Event::Idle | Event::Defunct => self.active = false,
                Event::Up(id) => tracing::info!(member = %id, "member up"),
                Event::Down(id) => tracing::info!(member = %id, "member down"),
                _ => {}
            }
            let _ = self.events.send(event);
        }
        any
    }
}
