//! The rebalancing task: every `ROUND` it asks [`Balancer`] (`balance.rs`) whether this
//! node owns more than its share and, if so, hands that many sessions to the members under
//! theirs through the drain's hand-off (`Peers::rebalance_round`), paced by
//! `cluster.rebalanceRate` and by the links. One log line per burst, not per session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balance::{Balancer, Hold, Input, Plan, SLACK, WINDOW};
use super::peers::Peers;
use crate::node::Node;
use crate::session::layer::Admission;

/// How often the decision is taken: 100 sessions a round at the default 400/s when one node
/// moves (the rate is the cluster's, split over the nodes that move: `balance.rs`).
const ROUND: Duration = Duration::from_millis(250);

/// A burst ends when nothing moved for this long (its summary is logged then).
const QUIET: Duration = Duration::from_secs(5);

/// A burst: when it started, the acknowledged count then, and the hand-offs sent per member.
struct Burst {
    started: Instant,
    acked_before: u64,
    declined_before: u64,
    /// The acknowledged count when it last grew, and when.
    acked_seen: (u64, Instant),
    /// When a burst that moved nothing for [`QUIET`] was last logged.
    stall_logged: Option<Instant>,
    last_sent: Instant,
    sent: Vec<(std::net::SocketAddr, u64)>,
    share: f64,
}

/// Runs until aborted (the cluster layer's tasks stop at leave). `rate`: sessions per second
/// the cluster moves in all, split over the nodes that move (0: rebalancing off, the task
/// only idles).
pub async fn run(node: Arc<Node>, peers: Arc<Peers>, rate: f64) {
    let mut balancer = Balancer::new(rate, SLACK);
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut burst: Option<Burst> = None;
    loop {
        tick.tick().await;
        peers.forget_old_moves();
        let (members, quorum, settled, stable_for) = peers.balance_view();
        let input = Input {
            owned: peers.owned_staying(&node),
            draining: node.is_draining(),
            members: &members,
            quorum,
            settled,
            stable_for,
            busy: peers.admission() != Admission::Open || peers.handing_count() >= WINDOW,
        };
        let now = Instant::now();
        let plan = balancer.decide(now, &input);
        match plan {
            Plan::Move {
                count,
                receivers,
                share,
            } => {
                let (sent, stats) = peers.rebalance_round(&node, count, &receivers);
                let b = burst.get_or_insert_with(|| {
                    tracing::info!(
                        owned = input.owned,
                        share = share.round() as u64,
                        "owning more than this node's share: moving sessions to members under theirs"
                    );
                    Burst {
                        started: now,
                        acked_before: peers.rebalanced_total(),
                        declined_before: peers.rebalance_declined(),
                        acked_seen: (peers.rebalanced_total(), now),
                        stall_logged: None,
                        last_sent: now,
                        sent: Vec::new(),
                        share,
                    }
                });
                b.share = share;
                // Asked to move and moving nothing (sending none, or only what the receivers
                // decline) for a while: say why, at most once per QUIET.
                let acked = peers.rebalanced_total();
                if acked != b.acked_seen.0 {
                    b.acked_seen = (acked, now);
                }
                let declined = peers.rebalance_declined() - b.declined_before;
                if now.duration_since(b.acked_seen.1) >= QUIET
                    && b.stall_logged
                        .is_none_or(|t| now.duration_since(t) >= QUIET)
                {
                    b.stall_logged = Some(now);
                    let to: Vec<String> =
                        receivers.iter().map(|(a, n)| format!("{a}={n}")).collect();
                    tracing::info!(
                        owned = input.owned,
                        share = share.round() as u64,
                        count,
                        receivers = %to.join(","),
                        candidates = stats.candidates,
                        not_sent = stats.not_sent,
                        declined,
                        "rebalancing moves nothing: no session here has a receiver as successor, none could be sent, or the receivers decline"
                    );
                }
                for (to, n) in sent.into_iter().filter(|(_, n)| *n > 0) {
                    balancer.sent(now, to, n);
                    b.last_sent = now;
                    match b.sent.iter_mut().find(|(a, _)| *a == to) {
                        Some(e) => e.1 += n,
                        None => b.sent.push((to, n)),
                    }
                }
            }
            Plan::Hold(why) => {
                let Some(b) = burst.as_ref() else { continue };
                // A burst ends when the node is balanced, or nothing moved for a while (the
                // cluster changed, or the receivers filled up).
                if why == Hold::Balanced || now.duration_since(b.last_sent) >= QUIET {
                    let b = burst.take().expect("checked");
                    let moved = peers.rebalanced_total() - b.acked_before;
                    let declined = peers.rebalance_declined() - b.declined_before;
                    let to: Vec<String> = b.sent.iter().map(|(a, n)| format!("{a}={n}")).collect();
                    tracing::info!(
                        moved,
                        declined,
                        sent = %to.join(","),
                        owned = input.owned,
                        share = b.share.round() as u64,
                        took_ms = b.started.elapsed().as_millis() as u64,
                        stopped = ?why,
                        "rebalancing burst ended"
                    );
                }
            }
        }
    }
}
