//! One peer: its bounded send queue, its connection, and the tasks that
//! write frames to it and read frames and gossip from it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use quinn::{Connection, VarInt};
use tokio::sync::{Notify, watch};

use super::endpoint::{GossipPacket, Incoming, Inner};
use crate::frame::{
    Batcher, Config as FrameConfig, FrameDecoder, FrameEncoder, FrameStats, Message, Refused,
};

/// Error code when a peer sent a frame we cannot decode.
const BAD_FRAME: u32 = 2;
/// Error code on a connection closed because another one carries the pair's frames.
pub(crate) const DUPLICATE: u32 = 1;

/// The first bytes of every frame stream. A stream from the deciding peer
/// (the lower address) is also its confirmation that the connection it
/// arrives on is the one that carries frames.
pub(crate) const PREAMBLE: &[u8; 5] = b"MCPF\x01";

/// The connection that carries a pair's frames, and who dialed it.
#[derive(Clone)]
struct Link {
    conn: Connection,
    dialed_by_us: bool,
}

pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    /// This node's address is the lower of the pair: it alone decides which
    /// connection carries frames; the other node writes frames only on a
    /// connection this one has confirmed (by opening its frame stream on it).
    decides: bool,
    max_batch_bytes: usize,
    batcher: Mutex<Batcher>,
    wake: Notify,
    /// The connection that carries frames: kept (when this node decides) or
    /// confirmed by the peer (when it decides). Nothing else carries frames.
    conn: watch::Sender<Option<Link>>,
    /// Connections that are up but not confirmed (only when the peer
    /// decides); gossip may use them, frames never do. All are kept while
    /// open, so this node dials again only when it has no open connection.
    candidates: Mutex<Vec<Connection>>,
    /// Held while a frame stream from this peer is delivered: a later stream
    /// (a replacement connection) is delivered only after the earlier one ended.
    reading: tokio::sync::Mutex<()>,
    dialing: AtomicBool,
    shut: AtomicBool,
    pending_gossip: Mutex<VecDeque<Bytes>>,
    stats: Mutex<FrameStats>,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, local: SocketAddr, frame: FrameConfig) -> Self {
        Self {
            addr,
            decides: canonical(local) < canonical(addr),
            max_batch_bytes: frame.max_batch_bytes,
            batcher: Mutex::new(Batcher::new(frame)),
            wake: Notify::new(),
            conn: watch::Sender::new(None),
            candidates: Mutex::new(Vec::new()),
            reading: tokio::sync::Mutex::new(()),
            dialing: AtomicBool::new(false),
            shut: AtomicBool::new(false),
            pending_gossip: Mutex::new(VecDeque::new()),
            stats: Mutex::new(FrameStats::default()),
        }
    }

    /// Queues a message; wakes the sender when the batch becomes due or full.
    pub(crate) fn push(&self, message: Message, now: Instant) -> Result<(), Refused> {
        let mut b = self.batcher.lock();
        let was_empty = b.is_empty();
        b.try_push(message, now)?;
        let full = b.queued_bytes() >= self.max_batch_bytes;
        drop(b);
        if was_empty || full {
            self.wake.notify_one();
        }
        Ok(())
    }

    pub(crate) fn queued(&self) -> usize {
        self.batcher.lock().len()
    }

    pub(crate) fn stats(&self) -> FrameStats {
        *self.stats.lock()
    }

    /// The connection that carries frames, if it is open.
    pub(crate) fn kept(&self) -> Option<Connection> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|l| l.conn.close_reason().is_none())
            .map(|l| l.conn.clone())
    }

    /// An open connection (the one carrying frames, else one awaiting the
    /// peer's confirmation): enough for gossip, and no need to dial.
    pub(crate) fn live(&self) -> Option<Connection> {
        self.kept().or_else(|| {
            let mut candidates = self.candidates.lock();
            candidates.retain(|c| c.close_reason().is_none());
            candidates.last().cloned()
        })
    }

    /// Takes the right to dial this peer: true only when no dial is under way *and*, with
    /// the flag held, no connection is open. The check must come after the flag: a dial
    /// installs its connection before it drops the flag, so a caller that saw no connection
    /// a moment ago (and was then descheduled while that dial finished) would otherwise dial
    /// a second time. The deciding peer replaces a connection the other side dialed with a
    /// newer one it dialed (it dials only when it has none open), so a needless second dial
    /// made the decider close the first one with frames still in flight on it: lost.
    pub(crate) fn start_dialing(&self) -> bool {
        if self.dialing.swap(true, Ordering::AcqRel) {
            return false;
        }
        if self.live().is_some() {
            self.stop_dialing();
            return false;
        }
        true
    }

    pub(crate) fn stop_dialing(&self) {
        self.dialing.store(false, Ordering::Release);
    }

    pub(crate) fn is_dialing(&self) -> bool {
        self.dialing.load(Ordering::Acquire)
    }

    pub(crate) fn hold_gossip(&self, data: Bytes, max: usize) {
        let mut q = self.pending_gossip.lock();
        if q.len() < max {
            q.push_back(data);
        }
    }

    /// Takes a new connection (dialed by us or accepted); returns the one to
    /// close, if any.
    ///
    /// When this node decides, the first connection up is kept and stays
    /// kept while it is open: a later one is closed, so frames already
    /// written on the kept one are never lost. The one exception is a new
    /// connection dialed by the peer while the kept one was also dialed by
    /// it: the peer dials only when it has no open connection, so the old
    /// one is dead on its side and the new one replaces it.
    ///
    /// When the peer decides, the connection waits as a candidate until the
    /// peer confirms it ([`Self::confirm`]); nothing is closed here.
    pub(crate) fn install(&self, conn: Connection, dialed_by_us: bool) -> Option<Connection> {
        let loser = if self.decides {
            let mut loser = None;
            self.conn.send_modify(|cur| match cur {
                Some(old)
                    if old.conn.close_reason().is_none()
                        && old.conn.stable_id() != conn.stable_id() =>
                {
                    if !dialed_by_us && !old.dialed_by_us {
                        loser = Some(old.conn.clone());
                        *cur = Some(Link {
                            conn: conn.clone(),
                            dialed_by_us,
                        });
                    } else {
                        loser = Some(conn.clone());
                    }
                }
                _ => {
                    *cur = Some(Link {
                        conn: conn.clone(),
                        dialed_by_us,
                    });
                }
            });
            loser
        } else {
            let mut candidates = self.candidates.lock();
            candidates.retain(|c| c.close_reason().is_none());
            if !candidates.iter().any(|c| c.stable_id() == conn.stable_id()) {
                candidates.push(conn.clone());
            }
            None
        };
        if loser
            .as_ref()
            .is_none_or(|l| l.stable_id() != conn.stable_id())
        {
            for data in self.pending_gossip.lock().drain(..) {
                let _ = conn.send_datagram(data);
            }
        }
        loser
    }

    /// The deciding peer opened its frame stream on `conn`: from now on our
    /// frames go there. Returns the connection it replaces (to close: the
    /// peer confirms a new one only when the old one is dead on its side).
    fn confirm(&self, conn: &Connection) -> Option<Connection> {
        if self.decides || conn.close_reason().is_some() {
            return None;
        }
        let mut old = None;
        self.conn.send_if_modified(|cur| {
            if cur
                .as_ref()
                .is_some_and(|l| l.conn.stable_id() == conn.stable_id())
            {
                return false;
            }
            old = cur.take().map(|l| l.conn);
            *cur = Some(Link {
                conn: conn.clone(),
                dialed_by_us: false,
            });
            true
        });
        self.candidates
            .lock()
            .retain(|c| c.stable_id() != conn.stable_id());
        old.filter(|o| o.close_reason().is_none())
    }

    /// Forgets `conn` (it closed).
    fn clear_if(&self, id: usize) {
        self.conn.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|l| l.conn.stable_id() == id) {
                *cur = None;
                true
            } else {
                false
            }
        });
        self.candidates.lock().retain(|c| c.stable_id() != id);
    }

    /// Stops the sender and closes the connection.
    pub(crate) fn shut(&self) {
        self.shut.store(true, Ordering::Release);
        self.wake.notify_one();
        if let Some(conn) = self.kept() {
            conn.close(VarInt::from_u32(0), b"forgotten");
        }
        for conn in self.candidates.lock().drain(..) {
            conn.close(VarInt::from_u32(0), b"forgotten");
        }
    }

    fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }
}

/// `::ffff:a.b.c.d` (a dual-stack socket's view of an IPv4 peer) as `a.b.c.d`,
/// so both ends of a pair compare the same addresses.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn add(a: FrameStats, b: FrameStats) -> FrameStats {
    FrameStats {
        frames: a.frames + b.frames,
        compressed_frames: a.compressed_frames + b.compressed_frames,
        messages: a.messages + b.messages,
        raw_bytes: a.raw_bytes + b.raw_bytes,
        wire_bytes: a.wire_bytes + b.wire_bytes,
    }
}

/// Writes `peer`'s queue as frames on one uni stream per connection; a new
/// connection gets a new stream and a fresh zstd context. Writes complete
/// when quinn has buffered them; nothing waits for the peer's ACKs.
///
/// Frames go only on the connection that carries them ([`Peer::kept`]); the
/// stream is opened (with its preamble) as soon as there is one, even with
/// nothing queued, because that is how the deciding node confirms it.
pub(crate) async fn run_sender(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut conn_rx = peer.conn.subscribe();
    let mut buf = Vec::new();
    let mut past = FrameStats::default();
    loop {
        if peer.is_shut() {
            return;
        }
        conn_rx.borrow_and_update();
        let Some(conn) = peer.kept() else {
            if peer.queued() == 0 {
                tokio::select! {
                    () = peer.wake.notified() => {}
                    r = conn_rx.changed() => if r.is_err() { return },
                }
                continue;
            }
            if peer.live().is_none() {
                inner.dial(&peer);
            }
            // A connection comes up, or the peer confirms the one that is up.
            let _ = tokio::time::timeout(inner.config.dial_timeout, conn_rx.changed()).await;
            continue;
        };
        let mut stream = match conn.open_uni().await {
            Ok(s) => s,
            Err(err) => {
                tracing::debug!(peer = %peer.addr, %err, "cannot open frame stream");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(err) = stream.write_all(PREAMBLE).await {
            tracing::debug!(peer = %peer.addr, %err, "frame stream closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let mut enc = match FrameEncoder::new(inner.config.frame.clone()) {
            Ok(e) => e,
            Err(err) => {
                tracing::error!(%err, "zstd context");
                return;
            }
        };
        loop {
            let (batch, due) = {
                let mut b = peer.batcher.lock();
                (b.poll_batch(Instant::now()), b.poll_timeout())
            };
            if let Some(batch) = batch {
                buf.clear();
                if let Err(err) = enc.encode(&batch, &mut buf) {
                    tracing::error!(peer = %peer.addr, %err, "frame encoding");
                    break;
                }
                if let Err(err) = stream.write_all(&buf).await {
                    tracing::debug!(peer = %peer.addr, %err, "frame stream closed");
                    break;
                }
                *peer.stats.lock() = add(past, enc.stats());
                continue;
            }
            if peer.is_shut() {
                let _ = stream.finish();
                return;
            }
            let sleep = due.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                () = peer.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                _ = conn.closed() => break,
                r = conn_rx.changed() => {
                    let same = peer.kept().is_some_and(|c| c.stable_id() == conn.stable_id());
                    if r.is_err() || !same {
                        break;
                    }
                }
            }
        }
        // Ends the stream (a no-op when the connection is gone), so the
        // peer's reader of it finishes and a later stream can be delivered.
        let _ = stream.finish();
        past = add(past, enc.stats());
    }
}

/// Reads gossip datagrams and frame streams from `conn`.
pub(crate) fn spawn_readers(inner: &Arc<Inner>, peer: &Arc<Peer>, conn: &Connection) {
    let (c, gossip, p, from) = (conn.clone(), inner.gossip.clone(), peer.clone(), peer.addr);
    inner.spawn(async move {
        while let Ok(data) = c.read_datagram().await {
            // Full means membership is behind; gossip tolerates the loss.
            let _ = gossip.try_send(GossipPacket {
                from,
                data,
                received: Instant::now(),
            });
        }
        p.clear_if(c.stable_id());
    });
    let (c, owner, p) = (conn.clone(), inner.clone(), peer.clone());
    inner.spawn(async move {
        while let Ok(recv) = c.accept_uni().await {
            let task = read_frames(recv, p.clone(), owner.clone(), c.clone());
            owner.spawn(task);
        }
    });
}

async fn read_frames(
    mut recv: quinn::RecvStream,
    peer: Arc<Peer>,
    inner: Arc<Inner>,
    conn: Connection,
) {
    let from = peer.addr;
    let mut preamble = [0u8; PREAMBLE.len()];
    if recv.read_exact(&mut preamble).await.is_err() {
        return;
    }
    if &preamble != PREAMBLE {
        tracing::warn!(peer = %from, "frame stream without our preamble; closing the connection");
        conn.close(VarInt::from_u32(BAD_FRAME), b"bad preamble");
        return;
    }
    if let Some(old) = peer.confirm(&conn) {
        old.close(VarInt::from_u32(DUPLICATE), b"replaced");
    }
    let mut dec = match FrameDecoder::new(inner.config.frame.clone()) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(%err, "zstd context");
            return;
        }
    };
    // One stream from this peer at a time: what an earlier connection still
    // delivers comes before what a later one brings.
    let _turn = peer.reading.lock().await;
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        dec.push(&chunk.bytes);
        if let Err(err) = dec.decode(&mut out) {
            tracing::warn!(peer = %from, %err, "undecodable frame; closing the connection");
            conn.close(VarInt::from_u32(BAD_FRAME), b"bad frame");
            return;
        }
        for message in out.drain(..) {
            // Waiting here is the backpressure: the stream stops being read.
            if inner
                .incoming
                .send(Incoming { from, message })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
