//! Random-scenario seeds that once broke an invariant, replayed on every test run. Each is
//! `random::scenario(seed)`: `cargo run -p mcp-custody --release --example sim -- --seed N
//! --trace` shows what happens. These failed in a 10,000-seed run before the fencing rules
//! of docs/PROTOCOL.md "Fencing stale copies" (make before break, drop notes noted by a
//! majority, claimants that speak for themselves, dead claimants overruled only once every
//! other member answered).

use mcp_custody::sim::{World, random};

const SEEDS: &[u64] = &[
    543, 797, 817, 1098, 1202, 1211, 1383, 1501, 1607, 1630, 1831, 2281, 2377, 2522, 3095, 3862,
    3879, 3953, 4386, 5136, 6680, 6766, 7043, 7369, 7449, 7552, 7695, 8268, 8928, 8959, 9229, 9583,
    9826, 9829, 9972,
];

#[test]
fn seeds_that_once_failed_pass() {
    let mut failed = Vec::new();
    for &seed in SEEDS {
        let (cfg, ops) = random::scenario(seed);
        let report = World::new(cfg, seed).run(&ops);
        if let Some(first) = report.violations.first() {
            failed.push(format!("seed {seed}: {first}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
