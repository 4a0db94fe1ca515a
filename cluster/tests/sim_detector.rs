//! The failure detector against slowness in virtual time: refuted suspicions, slow links,
//! late answers, nodes that stall again and again, and the trade-off between tolerating
//! them and detecting a real death (`cargo test -p mcp-cluster --test sim_detector --
//! --nocapture`; the whole curve: `-- --ignored --nocapture`).

use std::time::Duration;

use mcp_cluster::membership::Config;
use mcp_cluster::sim::{Expect, Link, Operation, Sim, addr};

const N: u16 = 6;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn converged(config: &Config, n: u16, seed: u64) -> Sim {
    let mut sim = Sim::new(config.clone(), seed);
    let mut ops: Vec<Operation> = (0..n)
        .map(|i| Operation::AddNode {
            node: i,
            seeds: if i == 0 { vec![] } else { vec![0] },
        })
        .collect();
    ops.push(Operation::AssertConverged { within: ms(2000) });
    sim.run(&ops).expect("cluster converges");
    sim
}

/// A tiny deterministic generator for the scripts (stall lengths and gaps).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo + 1)
    }
}

/// Kill one node of `N`: how long until every survivor sees it down, over `seeds` runs.
fn kill_detection(config: &Config, seeds: u64) -> Vec<Duration> {
    (0..seeds)
        .map(|seed| {
            let mut sim = converged(config, N, 1000 + seed);
            let victim = 1 + (seed % u64::from(N - 1)) as u16;
            let out = sim
                .run(&[
                    Operation::Wait(ms(1500 + 37 * seed)),
                    Operation::Kill(victim),
                    Operation::AssertAllSee {
                        target: victim,
                        expect: Expect::Down,
                        within: ms(10_000),
                    },
                ])
                .expect("a kill is detected");
            out[0].took
        })
        .collect()
}

/// False downs and rejoins while every link has 0-`jitter` ms of one-way delay and 1% loss.
fn under_jitter(config: &Config, jitter: u64, secs: u64, seed: u64) -> (usize, usize) {
    let mut sim = converged(config, N, 2000 + seed);
    let (d, r) = (sim.downs.len(), sim.rejoins.len());
    sim.run(&[
        Operation::SetDefaultLink(Link {
            drop: 0.01,
            delay: Duration::from_micros(100),
            jitter: ms(jitter),
        }),
        Operation::Wait(Duration::from_secs(secs)),
    ])
    .expect("runs");
    (sim.downs.len() - d, sim.rejoins.len() - r)
}

/// One node stalls for `lo..=hi` ms, runs for 1-3 s, stalls again, for `secs`: how many
/// times the others declared it down, how many healthy peers it declared down, rejoins.
fn stalling(config: &Config, lo: u64, hi: u64, secs: u64, seed: u64) -> (usize, usize, usize) {
    let mut sim = converged(config, N, 3000 + seed);
    let (d, r) = (sim.downs.len(), sim.rejoins.len());
    let stalled = 3;
    let mut rng = Lcg(seed);
    let mut t = 0;
    let mut ops = Vec::new();
    while t < secs * 1000 {
        let stall = rng.next(lo, hi);
        let gap = rng.next(1000, 3000);
        ops.push(Operation::Stall {
            node: stalled,
            duration: ms(stall),
        });
        ops.push(Operation::Wait(ms(stall + gap)));
        t += stall + gap;
    }
    ops.push(Operation::AssertConverged { within: ms(5000) });
    sim.run(&ops).expect("the stalled node is back at the end");
    let downs = &sim.downs[d..];
    let of_it = downs
        .iter()
        .filter(|(_, _, id)| id.addr == addr(stalled))
        .count();
    let by_it = downs
        .iter()
        .filter(|(_, o, id)| *o == stalled && id.addr != addr(stalled))
        .count();
    (of_it, by_it, sim.rejoins.len() - r)
}

fn pct(mut xs: Vec<Duration>, q: f64) -> Duration {
    xs.sort();
    xs[((xs.len() as f64 * q) as usize).min(xs.len() - 1)]
}

/// A suspect that refutes in time is not dead: it must not be told it was declared down
/// (foca 2.0 sends `TurnUndead` when a refuted suspicion's timer fires; the node then
/// rejoins under a new generation, and its peers re-send it every session).
#[test]
fn a_refuted_suspicion_is_not_a_death() {
    for lhm in [0, 4] {
        let config = Config {
            max_local_health: lhm,
            ..Config::default()
        };
        let (mut downs, mut rejoins, mut by_slow, mut by_others) = (0, 0, 0, 0);
        for seed in 0..4 {
            let mut sim = converged(&config, N, 10 + seed);
            let (d, r, s) = (sim.downs.len(), sim.rejoins.len(), sim.suspicions.len());
            // One node behind a slow link: 90 ms each way, so a probe's ack (180 ms) misses
            // the probe period (150 ms) and it is suspected, but its refutation arrives well
            // within `suspect_to_down`.
            sim.run(&[
                Operation::SetNodeLinks {
                    node: 2,
                    link: Link {
                        drop: 0.0,
                        delay: ms(90),
                        jitter: ms(1),
                    },
                },
                Operation::Wait(Duration::from_secs(30)),
            ])
            .expect("runs");
            downs += sim.downs.len() - d;
            rejoins += sim.rejoins.len() - r;
            by_slow += sim.suspicions[s..].iter().filter(|(_, o)| *o == 2).count();
            by_others += sim.suspicions[s..].iter().filter(|(_, o)| *o != 2).count();
        }
        println!(
            "slow node (90 ms links), max local health {lhm}, 4 x 30 s: {downs} downs, {rejoins} rejoins; \
             suspicions raised by the slow node {by_slow}, by the others {by_others}"
        );
        assert_eq!(rejoins, 0, "a node rejoined without being declared down");
        assert_eq!(downs, 0, "a slow but answering node was declared down");
    }
}

/// The trade-off: for each `suspect_to_down` and local-health ceiling, kill detection
/// (p50/p99/max over 40 kills), false downs under late answers, and how long a stall is
/// tolerated.
#[test]
#[ignore = "measurement (~1 min): cargo test -p mcp-cluster --release --test sim_detector -- --ignored --nocapture"]
fn detector_tradeoff() {
    println!(
        "| suspect_to_down | max local health | kill → all see down p50 / p99 / max | jitter 0-80 ms: downs / rejoins | 0-150 ms | stalls 300-800 ms: declared / blamed / rejoins |"
    );
    println!("|---|---|---|---|---|---|");
    for suspect in [300u64, 500, 700] {
        for lhm in [0u32, 4] {
            let config = Config {
                suspect_to_down: ms(suspect),
                max_local_health: lhm,
                ..Config::default()
            };
            let kills = kill_detection(&config, 40);
            let j80 = (0..2)
                .map(|s| under_jitter(&config, 80, 60, s))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let j150 = (0..2)
                .map(|s| under_jitter(&config, 150, 60, s))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let st = (0..2)
                .map(|s| stalling(&config, 300, 800, 60, s))
                .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
            println!(
                "| {suspect} ms | {lhm} | {:?} / {:?} / {:?} | {} / {} | {} / {} | {} / {} / {} |",
                pct(kills.clone(), 0.5),
                pct(kills.clone(), 0.99),
                pct(kills, 1.0),
                j80.0,
                j80.1,
                j150.0,
                j150.1,
                st.0,
                st.1,
                st.2
            );
        }
    }
}
