//! The peer messages this node receives: decoded and handed to replication, forwarding or the
//! change fan-out. One task reads them all, in order per peer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_cluster::transport::Incoming;
use tokio::sync::mpsc;

use super::peers::{self, Peers};
use super::relay::{self, Handler};
use super::wire::PeerMsg;
use crate::node::Node;
use crate::session::SessionId;

/// Reads peer messages until the transport closes.
pub async fn run(
    node: Arc<Node>,
    peers: Arc<Peers>,
    handler: Arc<dyn Handler>,
    mut rx: mpsc::Receiver<Incoming>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut taken = Taken::default();
    while rx.recv_many(&mut batch, 256).await > 0 {
        let started = Instant::now();
        let queued = rx.len();
        node.metrics.cluster.set_inbound_queued(queued);
        taken.queued_max = taken.queued_max.max(queued);
        taken.messages += batch.len();
        for Incoming { from, message } in batch.drain(..) {
            let msg = match PeerMsg::decode(message.kind, &message.body) {
                Ok(m) => m,
                Err(e) => {
                    // A peer of another version, or a bug: say so, drop the message.
                    node.metrics.cluster.bad_message();
                    tracing::warn!(%from, error = %e, "undecodable peer message dropped");
                    continue;
                }
            };
            if let PeerMsg::Replicate(r) = &msg
                && r.handoff
            {
                taken.handoffs += 1;
            }
            handle(&node, &peers, &handler, from, msg);
        }
        taken.busy += started.elapsed();
        taken.log_if_due(&node);
    }
}

/// How often the hand-offs taken are summed up in a log line.
const TAKEN_EVERY: Duration = Duration::from_secs(1);

/// What the inbound task did since its last `hand-offs taken` line (logged only in a period
/// when hand-offs arrived: a drain or rebalancing elsewhere): how many hand-offs it applied
/// (each acknowledged at once), how many messages it handled in all, how long it was busy
/// with them, and the deepest its queue got. A busy share near 1 means acknowledgements wait
/// behind this one task.
struct Taken {
    since: Instant,
    handoffs: usize,
    messages: usize,
    busy: Duration,
    queued_max: usize,
}

impl Default for Taken {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            handoffs: 0,
            messages: 0,
            busy: Duration::ZERO,
            queued_max: 0,
        }
    }
}

impl Taken {
    fn log_if_due(&mut self, node: &Node) {
        let period = self.since.elapsed();
        if period < TAKEN_EVERY {
            return;
        }
        if self.handoffs > 0 {
            tracing::info!(
                node = %node.name,
                handoffs = self.handoffs,
                messages = self.messages,
                busy_ms = self.busy.as_millis() as u64,
                period_ms = period.as_millis() as u64,
                queued_max = self.queued_max,
                "hand-offs taken"
            );
        }
        *self = Self::default();
    }
}

fn handle(
    node: &Arc<Node>,
    peers: &Arc<Peers>,
    handler: &Arc<dyn Handler>,
    from: std::net::SocketAddr,
    msg: PeerMsg,
) {
    match msg {
        PeerMsg::Replicate(r) => peers.apply(node, from, &r),
        PeerMsg::ReplicaAck { token, .. } => peers.acked(node, token),
        PeerMsg::HandoffDeclined { token, .. } => peers.declined(token),
        PeerMsg::Forward(f) => relay::serve(handler, &peers.relays, from, *f),
        PeerMsg::ForwardHead(h) => relay::on_head(node, &peers.relays, from, *h),
        PeerMsg::ForwardChunk {
            req,
            seq,
            end,
            data,
        } => relay::on_chunk(&peers.relays, from, req, seq, end, data),
        PeerMsg::ForwardCancel { req } => relay::on_cancel(&peers.relays, from, req),
        PeerMsg::ForwardStarted { req } => relay::on_started(&peers.relays, from, req),
        PeerMsg::ForwardGo { req } => relay::on_go(&peers.relays, from, req),
        PeerMsg::Resync { session } => peers.resync(node, SessionId(session)),
        PeerMsg::Notify { event, uri } => {
            if let Some(ev) = peers::change_event(event, uri) {
                node.announce_local(ev);
            }
        }
        PeerMsg::Forget { session } => peers.forget(node, from, SessionId(session)),
        PeerMsg::Superseded { session, epoch } => {
            peers.superseded(node, from, SessionId(session), epoch);
        }
        PeerMsg::Digest {
            generation,
            count,
            hash,
        } => peers.on_digest(
            node,
            from,
            generation,
            super::digest::Digest { count, hash },
        ),
        PeerMsg::InventoryRequest => peers.on_inventory_request(node, from),
        PeerMsg::Inventory {
            generation,
            entries,
            last,
        } => peers.on_inventory(node, from, generation, &entries, last),
    }
}
