//! The node's side of the membership: pushes this node's load into gossip, turns membership
//! events into logs (a span per peer) and metrics, and forgets the links of dead peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mcp_cluster::membership::{Event, MemberState, NodeId, NodeMeta};
use mcp_cluster::transport::{MembershipHandle, Transport};
use tokio::sync::broadcast::error::RecvError;

use super::metrics::EventLabel;
use super::peers::Peers;
use crate::node::Node;

/// What this node says about itself; `mcp_addr` is where it serves MCP.
pub fn node_meta(node: &Node, mcp_addr: SocketAddr) -> NodeMeta {
    NodeMeta {
        address: mcp_addr.to_string(),
        name: node.name.clone(),
        connections: u64::from(node.connections.load(Ordering::Relaxed)),
        sessions: node.sessions.len() as u64,
        draining: node.is_draining(),
    }
}

/// Runs until the membership driver stops (after a leave).
pub async fn run(
    node: Arc<Node>,
    peers: Arc<Peers>,
    transport: Transport,
    membership: Arc<MembershipHandle>,
    period: Duration,
    leaving: Arc<AtomicBool>,
    mcp_addr: SocketAddr,
) {
    let mut events = membership.events();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = node_meta(&node, mcp_addr);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let meta = node_meta(&node, mcp_addr);
                if meta != published {
                    published = meta.clone();
                    membership.set_meta(meta).await;
                }
                observe(&node, &transport, &membership);
            }
            event = events.recv() => match event {
                Ok(event) => on_event(&node, &peers, &transport, &membership, event, &leaving),
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "membership events lagged"),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Member counts by state and the RTT to each peer.
fn observe(node: &Node, transport: &Transport, membership: &MembershipHandle) {
    let view = membership.view.borrow().clone();
    let count = |s: MemberState| view.iter().filter(|r| r.state == s).count() as i64;
    let m = &node.metrics.cluster;
    m.set_members(
        count(MemberState::Alive),
        count(MemberState::Suspect),
        count(MemberState::Down),
    );
    for r in view.iter().skip(1) {
        let name = r
            .meta
            .as_ref()
            .map_or_else(|| r.id.addr.to_string(), |m| m.name.clone());
        let stats = transport.peer_stats(r.id.addr);
        let rtt = stats
            .as_ref()
            .filter(|_| r.state.is_live())
            .and_then(|s| s.rtt)
            .map(|d| d.as_secs_f64());
        m.set_rtt(&name, rtt, stats.as_ref().map_or(0, |s| s.queued));
        if let Some(stats) = stats {
            m.frames(r.id.addr, stats.frames);
        }
    }
}

/// Whether a new generation at the same address is the same process renewing its identity
/// (foca's `renew`: the generation plus one per rejoin) rather than a restart (a new process
/// starts at its start time in milliseconds, far above its predecessor's after any real run).
fn is_renewal(old: NodeId, new: NodeId) -> bool {
    new.generation > old.generation && new.generation - old.generation < 100
}

fn on_event(
    node: &Arc<Node>,
    peers: &Arc<Peers>,
    transport: &Transport,
    membership: &MembershipHandle,
    event: Event,
    leaving: &AtomicBool,
) {
    let m = &node.metrics.cluster;
    let name_of = |addr| {
        membership
            .view
            .borrow()
            .iter()
            .find(|r| r.id.addr == addr)
            .and_then(|r| r.meta.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default()
    };
    match event {
        Event::Up(id) => {
            m.event(EventLabel::up);
            // Gossip has its own socket: open the frame link now, not at the first frame.
            transport.warm_up(id.addr);
            let _span =
                tracing::info_span!("peer", peer = %id.addr, name = %name_of(id.addr)).entered();
            tracing::info!(generation = id.generation, "member up");
            peers.membership_changed(node, None);
        }
        Event::Down(id) => {
            m.event(EventLabel::down);
            let name = name_of(id.addr);
            let _span = tracing::info_span!("peer", peer = %id.addr, name = %name).entered();
            tracing::info!(generation = id.generation, "member down");
            // Its connection is dead or closing; a restarted process dials afresh.
            transport.forget(id.addr);
            m.set_rtt(&name, None, 0);
            peers.membership_changed(node, Some(id));
        }
        Event::Renamed { old, new } => {
            m.event(EventLabel::renamed);
            let _span = tracing::info_span!("peer", peer = %new.addr).entered();
            if is_renewal(old, new) {
                // The same process, declared down by someone and back under the next
                // generation (a stall, a healed partition): it still owns its sessions.
                tracing::info!(
                    old = old.generation,
                    new = new.generation,
                    "member rejoined under a new generation"
                );
                peers.owner_renewed(old, new);
                peers.membership_changed(node, None);
            } else {
                tracing::info!(
                    old = old.generation,
                    new = new.generation,
                    "member restarted"
                );
                // The old process is gone, and so is its end of our connection: drop ours
                // now, or frames to the new process wait for the idle timeout (5 s).
                transport.forget(new.addr);
                transport.warm_up(new.addr);
                // What the old process owned is taken over, like after a death.
                peers.membership_changed(node, Some(old));
            }
        }
        Event::Rejoined(id) => {
            m.event(EventLabel::rejoined);
            tracing::warn!(
                generation = id.generation,
                "this node was declared down; rejoined"
            );
            peers.rejoined(node);
        }
        Event::Active => {
            m.event(EventLabel::active);
            tracing::info!("joined the cluster");
        }
        Event::Idle => {
            m.event(EventLabel::idle);
            tracing::info!("no other live member");
        }
        Event::Defunct if leaving.load(Ordering::Acquire) => {
            m.event(EventLabel::defunct);
            tracing::debug!("left: this node is down for its peers");
        }
        Event::Defunct => {
            m.event(EventLabel::defunct);
            tracing::error!("this node was declared down and cannot rejoin");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_is_told_from_a_restart() {
        let addr = "10.0.0.1:7946".parse().expect("addr");
        let old = NodeId::new(addr, 1_795_900_000_000);
        assert!(is_renewal(old, NodeId::new(addr, 1_795_900_000_001)));
        assert!(is_renewal(old, NodeId::new(addr, 1_795_900_000_003)));
        assert!(
            !is_renewal(old, NodeId::new(addr, 1_795_900_004_500)),
            "restarted 4.5 s later"
        );
        assert!(!is_renewal(old, old));
    }
}
