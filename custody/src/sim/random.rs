//! Random scenarios: a seed chooses the cluster (3-6 nodes, R = 2 or 3, 30-200 clients) and a
//! sequence of faults — kills and restarts, stalls long and short (false deaths), partitions
//! and heals, failed connections, drains followed by restarts (a rolling restart), message
//! loss, duplication and reordering — then heals everything and asserts that every session is
//! served again and that replicas converge. Every choice follows the seed: a failing seed
//! replays exactly (`SIM_SEED=N cargo test -p mcp-custody --release --test sim_random replay`).

use std::time::Duration;

use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use super::links::{Faults, Idx};
use super::world::{Op, SimConfig};

/// The cluster and the operations a seed chooses.
pub fn scenario(seed: u64) -> (SimConfig, Vec<Op>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cfg = SimConfig::default();
    let nodes: Idx = rng.random_range(3..=6);
    cfg.nodes = nodes;
    cfg.clients = rng.random_range(30..=200);
    cfg.custody.replication_factor = if rng.random_bool(0.3) { 3 } else { 2 };
    let ms =
        |rng: &mut SmallRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..=hi));
    let mut ops = vec![Op::Start, Op::Wait(Duration::from_secs(2))];
    let mut down: Vec<Idx> = Vec::new();
    let faults = rng.random_range(3..=8);
    for _ in 0..faults {
        let up: Vec<Idx> = (0..nodes).filter(|i| !down.contains(i)).collect();
        let pick = |rng: &mut SmallRng, from: &[Idx]| from[rng.random_range(0..from.len())];
        match rng.random_range(0..8) {
            0 | 1 if up.len() > 2 => {
                let x = pick(&mut rng, &up);
                ops.push(Op::Kill(x));
                down.push(x);
            }
            2 if !down.is_empty() => {
                let x = down.remove(rng.random_range(0..down.len()));
                ops.push(Op::Restart(x));
            }
            3 => {
                let x = pick(&mut rng, &up);
                let d = ms(&mut rng, 100, 3_000);
                ops.push(Op::Stall {
                    node: x,
                    duration: d,
                });
            }
            4 => {
                let k = rng.random_range(1..=(nodes / 2).max(1));
                let mut side: Vec<Idx> = Vec::new();
                while side.len() < usize::from(k) {
                    let x = rng.random_range(0..nodes);
                    if !side.contains(&x) {
                        side.push(x);
                    }
                }
                let other: Vec<Idx> = (0..nodes).filter(|i| !side.contains(i)).collect();
                ops.push(Op::Partition(side, other));
                ops.push(Op::Wait(ms(&mut rng, 500, 6_000)));
                ops.push(Op::Heal);
            }
            5 => {
                let x = pick(&mut rng, &up);
                ops.push(Op::FailLinks(x));
            }
            6 if up.len() > 2 => {
                let x = pick(&mut rng, &up);
                ops.push(Op::Drain(x));
                ops.push(Op::Wait(ms(&mut rng, 200, 2_000)));
                ops.push(Op::Restart(x));
            }
            _ => {
                let f = Faults {
                    drop: if rng.random_bool(0.5) { 0.01 } else { 0.0 },
                    duplicate: if rng.random_bool(0.5) { 0.01 } else { 0.0 },
                    reorder: if rng.random_bool(0.5) { 0.01 } else { 0.0 },
                };
                ops.push(Op::SetFaults(f));
                ops.push(Op::Wait(ms(&mut rng, 500, 4_000)));
                ops.push(Op::SetFaults(Faults::default()));
            }
        }
        ops.push(Op::Wait(ms(&mut rng, 300, 3_000)));
    }
    ops.push(Op::SetFaults(Faults::default()));
    ops.push(Op::Heal);
    for x in down {
        ops.push(Op::Restart(x));
    }
    ops.push(Op::Wait(Duration::from_secs(3)));
    ops.push(Op::AssertServed {
        within: Duration::from_secs(10),
    });
    ops.push(Op::Load(false));
    ops.push(Op::AssertConverged {
        within: Duration::from_secs(30),
    });
    (cfg, ops)
}
