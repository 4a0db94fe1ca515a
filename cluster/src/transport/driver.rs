//! Drives a sans-IO [`Membership`] with tokio's clock over the transport's
//! gossip datagrams.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::{Seeds, Transport};
use crate::membership::{Event, MemberView, Membership, NodeMeta};

/// How often the published view is refreshed when nothing else changes it
/// (metadata arrives continuously).
const VIEW_REFRESH: Duration = Duration::from_millis(100);
/// How often a node that is not yet in a cluster announces itself to the seeds again.
const JOIN_RETRY: Duration = Duration::from_secs(1);

enum Command {
    SetMeta(NodeMeta),
    Leave,
}

/// The running membership: its view, its events, and how to change it.
#[derive(Debug)]
pub struct MembershipHandle {
    /// The whole cluster as this node sees it (this node first), refreshed
    /// on every membership change and at least every 100 ms.
    pub view: watch::Receiver<Vec<MemberView>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
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
        self.task.abort();
    }
}

/// Runs `membership` on `transport`'s gossip; resolves and announces to
/// `seeds` every second until the node is part of a cluster.
pub fn spawn_membership(
    mut membership: Membership,
    transport: Transport,
    mut gossip: mpsc::Receiver<(SocketAddr, Bytes)>,
    seeds: Seeds,
) -> MembershipHandle {
    let (view_tx, view) = watch::channel(membership.view());
    let (events, _) = broadcast::channel(256);
    let (commands, mut command_rx) = mpsc::channel(16);
    let events_tx = events.clone();
    let task = tokio::spawn(async move {
        let mut active = false;
        let mut next_join = Instant::now();
        let mut next_view = Instant::now();
        loop {
            let now = Instant::now();
            if !active && !seeds.is_empty() && now >= next_join {
                let addrs = seeds.resolve().await;
                if let Err(err) = membership.join(addrs, Instant::now()) {
                    tracing::debug!(%err, "join");
                }
                flush(&mut membership, &transport, &events_tx, &mut active);
                next_join = Instant::now() + JOIN_RETRY;
            }
            let mut deadline = membership.poll_timeout().min(next_view);
            if !active && !seeds.is_empty() {
                deadline = deadline.min(next_join);
            }
            tokio::select! {
                // Packets first: after a stall (a starved CPU), the acks and
                // refutations already received must count before timers
                // that are now overdue declare anyone suspect or down.
                biased;
                packet = gossip.recv() => {
                    let Some((from, data)) = packet else { return };
                    if let Err(err) = membership.handle_packet(&data, Instant::now()) {
                        tracing::trace!(peer = %from, %err, "gossip packet refused");
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    while let Ok((from, data)) = gossip.try_recv() {
                        if let Err(err) = membership.handle_packet(&data, Instant::now()) {
                            tracing::trace!(peer = %from, %err, "gossip packet refused");
                        }
                    }
                    if let Err(err) = membership.handle_timeout(Instant::now()) {
                        tracing::debug!(%err, "membership timer");
                    }
                }
                command = command_rx.recv() => match command {
                    Some(Command::SetMeta(meta)) => {
                        if let Err(err) = membership.set_meta(meta) {
                            tracing::warn!(%err, "metadata not published");
                        }
                    }
                    Some(Command::Leave) => {
                        let _ = membership.leave(Instant::now());
                        flush(&mut membership, &transport, &events_tx, &mut active);
                        view_tx.send_replace(membership.view());
                        return;
                    }
                    None => return,
                },
            }
            let changed = flush(&mut membership, &transport, &events_tx, &mut active);
            let now = Instant::now();
            if changed || now >= next_view {
                view_tx.send_replace(membership.view());
                next_view = now + VIEW_REFRESH;
            }
        }
    });
    MembershipHandle {
        view,
        events,
        commands,
        task,
    }
}

/// Sends what membership wants sent and publishes its events; true if any.
fn flush(
    m: &mut Membership,
    t: &Transport,
    events: &broadcast::Sender<Event>,
    active: &mut bool,
) -> bool {
    while let Some(out) = m.poll_transmit() {
        t.send_gossip(out.to.addr, out.data);
    }
    let mut any = false;
    while let Some(event) = m.poll_event() {
        any = true;
        match &event {
            Event::Active => *active = true,
            Event::Idle | Event::Defunct => *active = false,
            Event::Up(id) => tracing::info!(member = %id, "member up"),
            Event::Down(id) => tracing::info!(member = %id, "member down"),
            _ => {}
        }
        let _ = events.send(event);
    }
    any
}
