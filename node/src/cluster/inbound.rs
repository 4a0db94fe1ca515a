//! The peer messages this node receives: decoded and handed to replication, forwarding or the
//! change fan-out. One task reads them all, in order per peer.

use std::sync::Arc;

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
    while rx.recv_many(&mut batch, 256).await > 0 {
        node.metrics.cluster.set_inbound_queued(rx.len());
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
            handle(&node, &peers, &handler, from, msg);
        }
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
