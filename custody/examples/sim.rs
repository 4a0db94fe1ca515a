//! Runs the session-layer simulator from the command line.
//!
//! ```text
//! cargo run -p mcp-custody --release --example sim -- --seed 42 [--trace]   # replay one seed
//! cargo run -p mcp-custody --release --example sim -- --seeds 10000 [--from N] [--jobs 2] [--seconds S]
//! ```
//!
//! `--seeds` runs that many random scenarios (seeds `--from` onward) and prints a progress
//! line, then the totals; the exit status is 1 when any seed broke an invariant, and each
//! failing seed is printed with the command that replays it. `--seconds` bounds the run: no
//! seed is started after that many seconds (those running finish), and the totals say which
//! seeds ran (`make test` runs the simulator this way).

use std::time::Instant;

use mcp_custody::sim::{World, random};

fn arg(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trace = args.iter().any(|a| a == "--trace");
    if let Some(seed) = arg(&args, "--seed") {
        let (mut cfg, ops) = random::scenario(seed);
        cfg.trace = trace;
        cfg.watch = args
            .iter()
            .position(|a| a == "--watch")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let started = Instant::now();
        let report = World::new(cfg.clone(), seed).run(&ops);
        println!(
            "seed {seed}: {} nodes, {} clients, R={}",
            cfg.nodes, cfg.clients, cfg.custody.replication_factor
        );
        println!("{report:#?}");
        println!("wall time {:.2} s", started.elapsed().as_secs_f64());
        std::process::exit(i32::from(!report.violations.is_empty()));
    }
    let n = arg(&args, "--seeds").unwrap_or(100);
    let from = arg(&args, "--from").unwrap_or(1);
    let jobs = arg(&args, "--jobs").unwrap_or(1).max(1);
    let deadline = arg(&args, "--seconds").map(std::time::Duration::from_secs);
    let started = Instant::now();
    let failed = std::sync::Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicU64::new(0);
    let totals = std::sync::Mutex::new((0u64, 0u64, 0u64, 0u64, 0u64, 0f64));
    // The highest seed run (seeds are taken in order, so every seed up to it ran).
    let last = std::sync::atomic::AtomicU64::new(0);
    let next = std::sync::atomic::AtomicU64::new(from);
    std::thread::scope(|s| {
        for j in 0..jobs {
            let (failed, done, totals, last, next) = (&failed, &done, &totals, &last, &next);
            let _ = j;
            s.spawn(move || {
                loop {
                    if deadline.is_some_and(|d| started.elapsed() >= d) {
                        break;
                    }
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= from + n {
                        break;
                    }
                    last.fetch_max(seed, std::sync::atomic::Ordering::Relaxed);
                    let (cfg, ops) = random::scenario(seed);
                    let r = World::new(cfg, seed).run(&ops);
                    {
                        let mut t = totals.lock().expect("totals");
                        t.0 += r.acked as u64;
                        t.1 += r.events_seen;
                        t.2 += r.takeovers;
                        t.3 += r.lost_legit as u64;
                        t.4 += r.handoffs;
                        t.5 += r.simulated.as_secs_f64();
                    }
                    if !r.violations.is_empty() {
                        eprintln!("seed {seed} FAILED: {}", r.violations[0]);
                        failed.lock().expect("failed").push(seed);
                    }
                    let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if k % 100 == 0 || k == n {
                        let el = started.elapsed().as_secs_f64();
                        let mut left = el / k as f64 * (n - k) as f64;
                        if let Some(d) = deadline {
                            left = left.min((d.as_secs_f64() - el).max(0.0));
                        }
                        eprintln!(
                            "[{k}/{n}] {el:.0} s elapsed, ~{left:.0} s left, {} failed",
                            failed.lock().expect("failed").len()
                        );
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("failed");
    failed.sort_unstable();
    let t = totals.into_inner().expect("totals");
    let ran = done.into_inner();
    let range = if ran == 0 {
        "no seed".to_string()
    } else {
        format!("seeds {from}-{}", last.into_inner())
    };
    println!(
        "{ran} seeds ({range}) in {:.0} s: {} failed; {} sessions acknowledged, {} events seen, {} take-overs, {} hand-offs, {} lost with all holders, {:.0} s simulated",
        started.elapsed().as_secs_f64(),
        failed.len(),
        t.0,
        t.1,
        t.2,
        t.4,
        t.3,
        t.5
    );
    for s in &failed {
        println!("replay: cargo run -p mcp-custody --release --example sim -- --seed {s} --trace");
    }
    std::process::exit(i32::from(!failed.is_empty()));
}
