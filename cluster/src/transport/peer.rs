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

use super::endpoint::{Incoming, Inner};
use crate::frame::{
    Batcher, Config as FrameConfig, FrameDecoder, FrameEncoder, FrameStats, Message, Refused,
};

/// Error code when a peer sent a frame we cannot decode.
const BAD_FRAME: u32 = 2;

pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    max_batch_bytes: usize,
    batcher: Mutex<Batcher>,
    wake: Notify,
    /// The kept connection and who dialed it (the lower dialer wins a tie).
    conn: watch::Sender<Option<(Connection, SocketAddr)>>,
    dialing: AtomicBool,
    shut: AtomicBool,
    pending_gossip: Mutex<VecDeque<Bytes>>,
    stats: Mutex<FrameStats>,
}

impl Peer {
    pub(crate) fn new(addr: SocketAddr, frame: FrameConfig) -> Self {
        Self {
            addr,
            max_batch_bytes: frame.max_batch_bytes,
            batcher: Mutex::new(Batcher::new(frame)),
            wake: Notify::new(),
            conn: watch::Sender::new(None),
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

    /// The kept connection, if it is open.
    pub(crate) fn live(&self) -> Option<Connection> {
        self.conn
            .borrow()
            .as_ref()
            .filter(|(c, _)| c.close_reason().is_none())
            .map(|(c, _)| c.clone())
    }

    pub(crate) fn start_dialing(&self) -> bool {
        !self.dialing.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn stop_dialing(&self) {
        self.dialing.store(false, Ordering::Release);
    }

    pub(crate) fn hold_gossip(&self, data: Bytes, max: usize) {
        let mut q = self.pending_gossip.lock();
        if q.len() < max {
            q.push_back(data);
        }
    }

    /// Keeps `conn` unless an open connection dialed by a lower address
    /// exists; returns the connection to close, if any. Both ends apply the
    /// same rule, so they keep the same connection.
    pub(crate) fn adopt(&self, conn: Connection, dialer: SocketAddr) -> Option<Connection> {
        let mut loser = None;
        let mut kept_new = false;
        self.conn.send_modify(|cur| match cur {
            Some((old, old_dialer))
                if old.close_reason().is_none() && old.stable_id() != conn.stable_id() =>
            {
                if dialer < *old_dialer {
                    loser = Some(old.clone());
                    *cur = Some((conn.clone(), dialer));
                    kept_new = true;
                } else {
                    loser = Some(conn.clone());
                }
            }
            _ => {
                *cur = Some((conn.clone(), dialer));
                kept_new = true;
            }
        });
        if kept_new {
            for data in self.pending_gossip.lock().drain(..) {
                let _ = conn.send_datagram(data);
            }
        }
        loser
    }

    /// Forgets `conn` if it is the kept one (it closed).
    fn clear_if(&self, id: usize) {
        self.conn.send_if_modified(|cur| {
            if cur.as_ref().is_some_and(|(c, _)| c.stable_id() == id) {
                *cur = None;
                true
            } else {
                false
            }
        });
    }

    /// Stops the sender and closes the connection.
    pub(crate) fn shut(&self) {
        self.shut.store(true, Ordering::Release);
        self.wake.notify_one();
        if let Some(conn) = self.live() {
            conn.close(VarInt::from_u32(0), b"forgotten");
        }
    }

    fn is_shut(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }
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
pub(crate) async fn run_sender(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut conn_rx = peer.conn.subscribe();
    let mut buf = Vec::new();
    let mut past = FrameStats::default();
    loop {
        if peer.is_shut() {
            return;
        }
        if peer.queued() == 0 {
            peer.wake.notified().await;
            continue;
        }
        let Some(conn) = peer.live() else {
            inner.dial(&peer);
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
            }
        }
        past = add(past, enc.stats());
    }
}

/// Reads gossip datagrams and frame streams from `conn`.
pub(crate) fn spawn_readers(inner: &Arc<Inner>, peer: &Arc<Peer>, conn: &Connection) {
    let (c, gossip, p, from) = (conn.clone(), inner.gossip.clone(), peer.clone(), peer.addr);
    inner.spawn(async move {
        while let Ok(data) = c.read_datagram().await {
            // Full means membership is behind; gossip tolerates the loss.
            let _ = gossip.try_send((from, data));
        }
        p.clear_if(c.stable_id());
    });
    let (c, owner) = (conn.clone(), inner.clone());
    inner.spawn(async move {
        while let Ok(recv) = c.accept_uni().await {
            let task = read_frames(recv, from, owner.clone(), c.clone());
            owner.spawn(task);
        }
    });
}

async fn read_frames(
    mut recv: quinn::RecvStream,
    from: SocketAddr,
    inner: Arc<Inner>,
    conn: Connection,
) {
    let mut dec = match FrameDecoder::new(inner.config.frame.clone()) {
        Ok(d) => d,
        Err(err) => {
            tracing::error!(%err, "zstd context");
            return;
        }
    };
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
