//! Scripted scenarios: each failover story of docs/PROTOCOL.md played in the simulator, with
//! the invariants checked after every step (at most one owner per epoch, no acknowledged
//! session or event lost while fewer than R holders fail, convergence to R live copies).
//!
//! Each runs on a few fixed seeds: the seed only moves jitter and client choices; the story is
//! the script. A failure prints the seed, and `cargo run -p mcp-custody --release --example
//! sim -- --seed N` replays random seeds the same way.

use std::time::Duration;

use mcp_custody::sim::{Faults, Op, Report, SimConfig, World};

const SEEDS: [u64; 3] = [1, 2, 3];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(nodes: u16, clients: usize) -> SimConfig {
    SimConfig {
        nodes,
        clients,
        ..SimConfig::default()
    }
}

/// Runs the script on every seed; returns the reports, failing on any violation.
fn play(name: &str, cfg: &SimConfig, ops: &[Op]) -> Vec<Report> {
    play_seeds(name, cfg, ops, &SEEDS)
}

fn play_seeds(name: &str, cfg: &SimConfig, ops: &[Op], seeds: &[u64]) -> Vec<Report> {
    seeds
        .iter()
        .map(|&seed| {
            let report = World::new(cfg.clone(), seed).run(ops);
            assert!(
                report.violations.is_empty(),
                "{name}, seed {seed}: {:#?}",
                report.violations
            );
            assert!(
                report.acked > 0,
                "{name}, seed {seed}: no session was opened"
            );
            report
        })
        .collect()
}

/// The end of every script: everything served again, then one owner and R − 1 current
/// copies per session.
fn settle(ops: &mut Vec<Op>) {
    ops.push(Op::AssertServed { within: secs(10) });
    ops.push(Op::Load(false));
    ops.push(Op::AssertConverged { within: secs(30) });
}

#[test]
fn a_killed_owners_sessions_are_taken_over_without_loss() {
    let mut ops = vec![Op::Start, Op::Wait(secs(3)), Op::Kill(1), Op::Wait(secs(3))];
    settle(&mut ops);
    for r in play("kill", &config(3, 200), &ops) {
        assert_eq!(
            r.lost_legit, 0,
            "R = 2 and one node died: nothing may be lost"
        );
        assert!(r.takeovers > 0, "the dead node's sessions were taken over");
        assert!(
            r.served_within <= secs(3),
            "served again after {:?}",
            r.served_within
        );
    }
}

#[test]
fn a_stalled_owner_is_never_a_second_owner() {
    // A false death: the process is frozen (a busy or throttled machine) long enough to be
    // declared down, then goes on as if nothing happened.
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Stall {
            node: 0,
            duration: secs(3),
        },
        Op::Wait(secs(5)),
    ];
    settle(&mut ops);
    for r in play("stall", &config(3, 200), &ops) {
        assert_eq!(r.lost_legit, 0);
    }
}

#[test]
fn short_stalls_take_nothing_over() {
    // Stalls shorter than the lease (a GC pause, a descheduled process): no verdict, no
    // take-over, nothing moves.
    let mut ops = vec![Op::Start, Op::Wait(secs(3))];
    for node in 0..3 {
        ops.push(Op::Stall {
            node,
            duration: ms(300),
        });
        ops.push(Op::Wait(ms(700)));
    }
    settle(&mut ops);
    for r in play("short stalls", &config(3, 200), &ops) {
        assert_eq!(r.takeovers, 0, "a 300 ms stall moved sessions");
    }
}

#[test]
fn the_minority_side_of_a_partition_changes_nothing_and_the_heal_merges() {
    // docs/PROTOCOL.md "Partitions": the cut node's sessions move to the majority; after the
    // heal the stale owner gives them up. This is the make e2e-failover scenario p that lost
    // 2 of 200 sessions on a busy machine: here with a stall on the majority side during
    // the cut (the false death seen there).
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Partition(vec![2], vec![0, 1]),
        Op::Wait(ms(1500)),
        Op::Stall {
            node: 0,
            duration: ms(1500),
        },
        Op::Wait(secs(3)),
        Op::Heal,
        Op::Wait(secs(3)),
    ];
    settle(&mut ops);
    for r in play("partition", &config(3, 200), &ops) {
        assert_eq!(r.lost_legit, 0);
    }
}

#[test]
fn a_healed_partition_where_every_node_renewed_merges_again() {
    // Found by the simulator: after this cut every node had been declared down somewhere and
    // renewed its identity; peers ignore what an unknown identity sends, so the cluster
    // stayed split for good until rejoined nodes announced themselves to every member they
    // knew (cluster/src/membership/node.rs). Without that, seeds 7, 13 and 19 left 11 to 17
    // sessions unserved (forwarded in a circle between the two halves, or refused for want of
    // a quorum).
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(2)),
        Op::Partition(vec![0, 3], vec![1, 2, 4]),
        Op::Wait(ms(3500)),
        Op::Heal,
        Op::Wait(secs(3)),
    ];
    settle(&mut ops);
    play_seeds("split heal", &config(5, 150), &ops, &[7, 13, 19]);
}

#[test]
fn a_drained_node_hands_every_session_off() {
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Drain(1),
        Op::Wait(secs(3)),
    ];
    settle(&mut ops);
    for r in play("drain", &config(3, 200), &ops) {
        assert_eq!(r.lost_legit, 0);
        assert!(r.handoffs > 0, "the draining node handed sessions off");
    }
}

#[test]
fn a_hand_off_racing_a_take_over_loses_nothing() {
    // make e2e-failover under a CPU hog (docs/PROTOCOL.md "Drain hand-off"): during a rolling
    // restart n1 drains and hands a session off while a replica, thinking n1 dead, claims the
    // same epoch for it; the loser used to answer the client 404. Here: the successor n0 is
    // frozen when n1's hand-offs reach it, then n1 freezes with its hand-offs unacknowledged;
    // the others declare both down and n1's replicas take its sessions over (epoch 1), and
    // n0 wakes to hand-ins of epoch 1 too. Every request through any node must find its
    // session, with nothing it was told undone.
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Stall {
            node: 0,
            duration: ms(1500),
        },
        Op::BeginDrain(1),
        Op::Wait(ms(60)),
        Op::Stall {
            node: 1,
            duration: secs(2),
        },
        Op::Wait(secs(4)),
        Op::Drain(1),
        Op::Restart(1),
        Op::Wait(secs(3)),
    ];
    settle(&mut ops);
    // Seed 4 stopped showing the race when restarted processes began to ask for notes at
    // start (recovery.rs: other messages, other timings): 7 replaces it. Seed 3 stopped when
    // the membership began to park its idle timers (5e36d84: timers due at the same instant
    // fire in another order; 0 supersedes, 0 take-overs, nothing lost) and 4 shows it again:
    // 4 replaces 3. Seeds 1-24 all lost nothing at 5e36d84; 22 of them show the race.
    let seeds = [1, 2, 4, 5, 6, 7];
    let reports = play_seeds("hand-off race", &config(5, 200), &ops, &seeds);
    for r in &reports {
        assert_eq!(r.lost_legit, 0, "R = 2 and no holder was lost");
    }
    // The story happened: every run handed sessions off and gave some claim up to another,
    // and most took sessions over as well.
    assert!(reports.iter().all(|r| r.handoffs > 0 && r.superseded > 0));
    assert!(reports.iter().filter(|r| r.takeovers > 0).count() >= 5);
}

#[test]
fn a_rolling_restart_loses_nothing() {
    let mut ops = vec![Op::Start, Op::Wait(secs(3))];
    for node in 0..4 {
        ops.push(Op::Drain(node));
        ops.push(Op::Wait(secs(1)));
        ops.push(Op::Restart(node));
        ops.push(Op::Wait(secs(3)));
    }
    settle(&mut ops);
    for r in play("rolling restart", &config(4, 200), &ops) {
        assert_eq!(r.lost_legit, 0);
    }
}

#[test]
fn lost_duplicated_and_reordered_messages_lose_nothing() {
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(2)),
        Op::SetFaults(Faults {
            drop: 0.02,
            duplicate: 0.02,
            reorder: 0.02,
        }),
        Op::Wait(secs(4)),
        Op::Kill(2),
        Op::Wait(secs(3)),
        Op::SetFaults(Faults::default()),
    ];
    settle(&mut ops);
    for r in play("faults", &config(4, 200), &ops) {
        assert_eq!(r.lost_legit, 0);
    }
}

#[test]
fn failed_connections_lose_nothing() {
    let mut ops = vec![Op::Start, Op::Wait(secs(2))];
    for node in 0..3 {
        ops.push(Op::FailLinks(node));
        ops.push(Op::Wait(ms(500)));
    }
    settle(&mut ops);
    play("failed links", &config(3, 200), &ops);
}

#[test]
fn losing_every_holder_is_the_only_way_to_lose_a_session() {
    // R = 2, two nodes killed at once: sessions held only by those two are lost (allowed and
    // counted apart); no other session is.
    let mut ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Kill(0),
        Op::Kill(1),
        Op::Wait(secs(3)),
    ];
    settle(&mut ops);
    let reports = play("two killed", &config(5, 200), &ops);
    assert!(
        reports.iter().any(|r| r.lost_legit > 0),
        "with R = 2 some sessions had both holders among the two killed"
    );
}

#[test]
fn sessions_spread_evenly_again_after_a_restart() {
    // A node that comes back empty gets its share again (hand-offs in the background). Ranks
    // place sessions at random, so a share is only meaningful with many sessions: with 3,000
    // the spread of rank-first counts is ~26, a quarter of the 10 % slack.
    let ops = vec![
        Op::Start,
        Op::Wait(secs(3)),
        Op::Kill(2),
        Op::Wait(secs(3)),
        Op::Restart(2),
        Op::AssertBalanced {
            within: secs(60),
            slack: 0.1,
        },
        Op::AssertServed { within: secs(10) },
    ];
    play("rebalance", &config(3, 3000), &ops);
}
