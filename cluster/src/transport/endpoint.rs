//! [`Transport`]: the QUIC endpoint, its peers, and the channels to the application.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use quinn::{Connection, TransportConfig, VarInt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::peer::{self, Peer};
use super::{Config, PeerTls, TransportError};
use crate::frame::{FrameStats, Message, Refused};

/// A message received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The peer's address (its `NodeId::addr`).
    pub from: SocketAddr,
    /// The message, in the order the peer sent it.
    pub message: Message,
}

/// A gossip packet received: who sent it, the bytes, and when it was read from the
/// connection (so the membership driver can tell how long it waited to be handled).
#[derive(Debug, Clone)]
pub struct GossipPacket {
    /// The sender's address.
    pub from: SocketAddr,
    /// The packet.
    pub data: Bytes,
    /// When it was taken off the connection.
    pub received: Instant,
}

/// What the application reads.
#[derive(Debug)]
pub struct Receivers {
    /// Messages from every peer, in order per peer.
    pub messages: mpsc::Receiver<Incoming>,
    /// Gossip packets that arrived as QUIC datagrams, for [`super::GossipLink::quic`].
    pub gossip: mpsc::Receiver<GossipPacket>,
}

/// What this node knows about its link to one peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerStats {
    /// Smoothed RTT from quinn's estimator, when connected.
    pub rtt: Option<Duration>,
    /// Messages queued, not yet framed.
    pub queued: usize,
    /// Frames sent on the current and past streams.
    pub frames: FrameStats,
}

pub(crate) struct Inner {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) local: SocketAddr,
    /// This node's address as its peers see it (`Config::advertise`, else
    /// the bound address): compared with a peer's to decide which of the
    /// pair picks the connection that carries frames.
    me: SocketAddr,
    pub(crate) client: quinn::ClientConfig,
    pub(crate) config: Config,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    pub(crate) incoming: mpsc::Sender<Incoming>,
    pub(crate) gossip: mpsc::Sender<GossipPacket>,
    tasks: Mutex<JoinSet<()>>,
    /// The runtime the endpoint was bound in: every task of the transport runs there, even
    /// when a call comes from another thread (the membership's own runtime).
    runtime: tokio::runtime::Handle,
}

/// A cheap handle on the node's QUIC endpoint; clones share it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

fn transport_config(c: &Config) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(c.keep_alive));
    t.max_idle_timeout(
        VarInt::try_from(c.idle_timeout.as_millis() as u64)
            .ok()
            .map(quinn::IdleTimeout::from),
    );
    t.initial_rtt(c.initial_rtt);
    t.stream_receive_window(VarInt::from_u32(c.stream_window));
    t.receive_window(VarInt::from_u32(c.stream_window.saturating_mul(2)));
    t.send_window(u64::from(c.stream_window) * 2);
    t.max_concurrent_uni_streams(VarInt::from_u32(8));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.datagram_receive_buffer_size(Some(1024 * 1024));
    t.datagram_send_buffer_size(1024 * 1024);
    // GSO stays on (quinn's default): one syscall sends many packets.
    Arc::new(t)
}

fn udp_socket(c: &Config) -> Result<std::net::UdpSocket, TransportError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let io = |what| move |e| TransportError::Io(what, e);
    let s = Socket::new(
        Domain::for_address(c.bind),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(io("udp socket"))?;
    // The kernel may cap these at net.core.{r,w}mem_max; we log what we got.
    let _ = s.set_recv_buffer_size(c.udp_buffer_bytes);
    let _ = s.set_send_buffer_size(c.udp_buffer_bytes);
    s.bind(&c.bind.into()).map_err(io("udp bind"))?;
    tracing::debug!(
        recv = s.recv_buffer_size().unwrap_or(0),
        send = s.send_buffer_size().unwrap_or(0),
        asked = c.udp_buffer_bytes,
        "udp socket buffers"
    );
    Ok(s.into())
}

impl Transport {
    /// Binds the endpoint, starts accepting peers, and returns the handle
    /// plus the receiving ends. Must run inside a tokio runtime.
    pub fn bind(config: Config, tls: &PeerTls) -> Result<(Self, Receivers), TransportError> {
        let tc = transport_config(&config);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls.server_crypto()?));
        server.transport_config(tc.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(tls.client_crypto()?));
        client.transport_config(tc);
        let socket = udp_socket(&config)?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| TransportError::Config("Transport::bind needs a tokio runtime"))?;
        let runtime = quinn::default_runtime().ok_or(TransportError::Config(
            "Transport::bind needs a tokio runtime",
        ))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|e| TransportError::Io("quic endpoint", e))?;
        let local = endpoint
            .local_addr()
            .map_err(|e| TransportError::Io("local address", e))?;
        let me = match config.advertise {
            Some(a) => a,
            None if local.ip().is_unspecified() => {
                return Err(TransportError::Config(
                    "a wildcard bind address needs `advertise` (the address peers see)",
                ));
            }
            None => local,
        };
        let (incoming, messages) = mpsc::channel(config.incoming_capacity);
        let (gossip, gossip_rx) = mpsc::channel(config.gossip_capacity);
        let inner = Arc::new(Inner {
            endpoint,
            local,
            me,
            client,
            config,
            peers: Mutex::new(HashMap::new()),
            incoming,
            gossip,
            tasks: Mutex::new(JoinSet::new()),
            runtime: handle,
        });
        let acceptor = inner.clone();
        inner.spawn(async move { acceptor.accept_loop().await });
        Ok((
            Self { inner },
            Receivers {
                messages,
                gossip: gossip_rx,
            },
        ))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Queues `message` for `to`; refused (and given back) when that peer's
    /// queue is full: the caller sheds load or retries later.
    pub fn send(&self, to: SocketAddr, message: Message) -> Result<(), Refused> {
        let peer = self.inner.peer(to);
        let result = peer.push(message, Instant::now());
        if peer.live().is_none() {
            self.inner.dial(&peer);
        }
        result
    }

    /// Sends one gossip packet as a QUIC datagram (dialing first if needed;
    /// held briefly meanwhile). Loss is fine: SWIM expects it.
    pub fn send_gossip(&self, to: SocketAddr, data: Bytes) {
        if to == self.inner.local {
            return;
        }
        let peer = self.inner.peer(to);
        match peer.live() {
            Some(conn) => {
                if let Err(err) = conn.send_datagram(data) {
                    tracing::debug!(peer = %to, ?err, "gossip datagram not sent");
                }
            }
            None => {
                peer.hold_gossip(data, self.inner.config.pending_gossip);
                self.inner.dial(&peer);
            }
        }
    }

    /// Dials `to` in the background unless a connection is up or being dialed: the node calls
    /// it when a member comes up, so the first frame to it does not wait for a handshake (gossip
    /// no longer opens the connections when it has its own socket).
    pub fn warm_up(&self, to: SocketAddr) {
        if to == self.inner.local || to == self.inner.me {
            return;
        }
        let peer = self.inner.peer(to);
        if peer.live().is_none() {
            self.inner.dial(&peer);
        }
    }

    /// Connects to `to` now (tests, warm-up); `Ok` once a connection is up
    /// (frames may still wait for the peer to confirm it). If a dial is
    /// already under way, waits for it instead of dialing a second time.
    pub async fn connect(&self, to: SocketAddr) -> Result<(), TransportError> {
        let peer = self.inner.peer(to);
        if peer.live().is_some() {
            return Ok(());
        }
        if peer.start_dialing() {
            let result = self.inner.dial_now(to).await;
            if let Ok(conn) = &result {
                self.inner.install(&peer, conn.clone(), true);
            }
            peer.stop_dialing();
            return result.map(drop);
        }
        let give_up = Instant::now() + self.inner.config.dial_timeout * 2;
        while peer.is_dialing() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match peer.live() {
            Some(_) => Ok(()),
            None => Err(TransportError::Timeout),
        }
    }

    /// The largest gossip packet the connection to `to` carries, once connected.
    pub fn max_gossip_size(&self, to: SocketAddr) -> Option<usize> {
        self.inner.peer_if_known(to)?.live()?.max_datagram_size()
    }

    /// RTT and queue figures for `to`, if it was ever used.
    pub fn peer_stats(&self, to: SocketAddr) -> Option<PeerStats> {
        let peer = self.inner.peer_if_known(to)?;
        Some(PeerStats {
            rtt: peer.live().map(|c| c.rtt()),
            queued: peer.queued(),
            frames: peer.stats(),
        })
    }

    /// Messages queued for `to` and not yet framed (0 for a peer never used).
    pub fn queued(&self, to: SocketAddr) -> usize {
        self.inner.peer_if_known(to).map_or(0, |p| p.queued())
    }

    /// Drops a peer (declared down): its queue is discarded, its connection closed.
    pub fn forget(&self, addr: SocketAddr) {
        if let Some(peer) = self.inner.peers.lock().remove(&addr) {
            peer.shut();
        }
    }

    /// Closes every connection and stops every task of this endpoint.
    pub fn close(&self) {
        self.inner.endpoint.close(VarInt::from_u32(0), b"bye");
        for peer in self.inner.peers.lock().drain().map(|(_, p)| p) {
            peer.shut();
        }
        self.inner.tasks.lock().abort_all();
    }
}

impl Inner {
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(task, &self.runtime);
    }

    fn peer_if_known(&self, addr: SocketAddr) -> Option<Arc<Peer>> {
        self.peers.lock().get(&addr).cloned()
    }

    /// The peer at `addr`, created (with its sender task) on first use.
    pub(crate) fn peer(self: &Arc<Self>, addr: SocketAddr) -> Arc<Peer> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(&addr) {
            return p.clone();
        }
        let p = Arc::new(Peer::new(addr, self.me, self.config.frame.clone()));
        peers.insert(addr, p.clone());
        drop(peers);
        let (inner, sender) = (self.clone(), p.clone());
        self.spawn(async move { peer::run_sender(inner, sender).await });
        p
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let inner = self.clone();
            self.spawn(async move {
                match incoming.await {
                    Ok(conn) => {
                        let peer = inner.peer(conn.remote_address());
                        inner.install(&peer, conn, false);
                    }
                    Err(err) => tracing::debug!(?err, "peer handshake refused"),
                }
            });
        }
    }

    pub(crate) async fn dial_now(&self, to: SocketAddr) -> Result<Connection, TransportError> {
        let connecting =
            self.endpoint
                .connect_with(self.client.clone(), to, &self.config.server_name)?;
        match tokio::time::timeout(self.config.dial_timeout, connecting).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(TransportError::Timeout),
        }
    }

    /// Dials `peer` in the background unless a dial is already under way.
    pub(crate) fn dial(self: &Arc<Self>, peer: &Arc<Peer>) {
        if !peer.start_dialing() {
            return;
        }
        let (inner, peer) = (self.clone(), peer.clone());
        self.spawn(async move {
            let result = inner.dial_now(peer.addr).await;
            // Installed before the flag drops: until then `live()` is empty,
            // and a second dial of ours could replace the first connection.
            match result {
                Ok(conn) => inner.install(&peer, conn, true),
                Err(err) => tracing::debug!(peer = %peer.addr, %err, "dial failed"),
            }
            peer.stop_dialing();
        });
    }

    /// Takes a new connection to `peer` (dialed by us or accepted), keeping
    /// one per pair to carry frames (see [`Peer::install`]), and starts
    /// reading it.
    pub(crate) fn install(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        conn: Connection,
        dialed_by_us: bool,
    ) {
        peer::spawn_readers(self, peer, &conn);
        if let Some(loser) = peer.install(conn, dialed_by_us) {
            loser.close(VarInt::from_u32(peer::DUPLICATE), b"duplicate connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalCa;

    /// A caller that checked for a connection, found none, and was descheduled while the
    /// dial under way finished (what a busy machine does between `live()` and `dial()`),
    /// must not dial a second time: the deciding peer would take the second connection
    /// over the first and close the first with frames in flight on it (seen as
    /// `quic_transport::three_endpoints_exchange_frames_in_order` losing its last frames
    /// about one run in thirty beside a CPU hog).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_no_connection_check_does_not_dial_again() {
        let ca = LocalCa::generate().expect("ca");
        let bind = || {
            Transport::bind(
                Config {
                    bind: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..Config::default()
                },
                &ca.issue(&["mcp-peer"]).expect("cert"),
            )
            .expect("binds")
        };
        let ((a, _ra), (b, _rb)) = (bind(), bind());
        a.connect(b.local_addr()).await.expect("connects");
        let peer = a.inner.peer(b.local_addr());
        let first = peer.live().expect("a connection is up");

        // What `send` does after its stale check: asks for a dial.
        a.inner.dial(&peer);
        assert!(
            !peer.is_dialing(),
            "a connection is open: no second dial may start"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            first.close_reason().is_none(),
            "the first connection stays open: {:?}",
            first.close_reason()
        );
        assert_eq!(
            peer.live().map(|c| c.stable_id()),
            Some(first.stable_id()),
            "and stays the one used"
        );
        a.close();
        b.close();
    }
}
