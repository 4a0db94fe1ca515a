//! Random-scenario seeds that once broke an invariant, replayed on every test run. Each is
//! `random::scenario(seed)`: `cargo run -p mcp-custody --release --example sim -- --seed N
//! --trace` shows what happens.
//!
//! - `FENCING`: failed in a 10,000-seed run before the fencing rules of docs/PROTOCOL.md
//!   "Fencing stale copies" (make before break, drop notes noted by a majority, claimants that
//!   speak for themselves, dead claimants overruled only once every other member answered).
//! - `AFTER_FENCING`: failed after those (seeds 1-10,000 at 7422887), each fixed at its root:
//!   4781, 8329, 1951 — a confirmation raised an epoch nobody asked for (epoch 0 to 1), a
//!   claim a replica's take-over then collided with (8329 also: a drop note under that
//!   newer claim told the stale copy's holder nothing); 3794, 5642 — a hand-in not yet confirmed
//!   won over a take-over of the same epoch by the lower address and undid what the take-over
//!   had acknowledged (hand-ins are now "fresh" until confirmed, and the sender keeps the
//!   session until the successor's replicas hold it); 8832 — a drop note announced although
//!   nothing the dropped copy lacked was ever shown (a log level set to the value it had),
//!   discarding the last copy; 6593, 8392 — the simulator counted a copy that lacks streams
//!   opened after it was made as holding what the client saw (it is stale: the loss is one
//!   of all the holders).
//! - `ON_THE_WAY`: failed with intermediate versions of those fixes, each showing a rule they
//!   needed: 8233 — a take-over decided on answers gathered just before a cut (take-overs are
//!   fresh until confirmed too); 3863, 8162 (and 6593 again) — a fresh claim and the owner it
//!   came from must weigh each other by what the owner made durable, not by copy numbers made
//!   out of touch; 3160, 4136 — copies of a member that came back renewed after being
//!   counted down; 7623 — a note whose claimant is only silent, or restarted, is not
//!   overruled while a member is missing; 7811 — an owner answers for itself, not with a
//!   newer note it holds; 8506 — no drop note on a timer; 6367 — a claimant back under a new
//!   process is asked again, not taken for a claim in force.
//! - `PAST_10000`: failed in seeds 10,001-20,000 at 536d030, each fixed at its root: 11271 —
//!   a process restarted while a member was stalled never heard of it, and counted a majority
//!   over its view of 3 members where the others knew 4 (majorities now count over the
//!   configured cluster size, `Config::cluster_size`); 12322 — a restarted process answered
//!   inquiries without the claim and drop notes its predecessor held, making with a stale
//!   replica a majority that knew nothing (restarted processes now learn the notes before
//!   their answers count, recovery.rs); 15714 — an owner back in touch gave its session up
//!   to its hand-off's successor whose claim was not in force yet, and told its replica to
//!   forget; the successor died before its confirmation, and with it the session (an owner
//!   now waits for such a claim to be in force). 12481 failed an intermediate version of
//!   these fixes: a confirmation raised the owner's epoch past a hand-off it still offered
//!   (to a successor restarted at the same address), which then froze the session for good
//!   (the raise now withdraws the offer).
//! - `PAST_20000`: failed in seeds 20,001-30,000 at 8b264d1: 25227 — the owner that dropped
//!   a stalled replica kept no note of its own drop; the only other noter drained and
//!   restarted, the process back at its address learned the notes from the owner (none of
//!   this drop), counted as a voter, and with the dropped replica took the session over
//!   from its stale copy (an event the client saw differed). An owner now keeps its drop
//!   notes as it keeps its claims.
//! - `RANDOM_SMOKE`: failed `make sim-smoke` in CI at 868ce11+: 14202686 — an owner back from
//!   a stall heard that another node had taken its session over (a copy of that claim on a
//!   live member) while that claimant itself did not answer; it gave the session up to the
//!   silent claimant at once, and that claimant (killed) and its replica (killed right after
//!   answering) took the last data with them. An owner now waits for a winning claim whose
//!   owner did not answer, as it does for notes of such claims. 543511571 — a replica that
//!   held the last acknowledged change (a log level) under one claim had noted a newer claim
//!   (a hand-off's successor, killed before it copied anything) and answered inquiries with
//!   that note alone; the note's claimant counted as dead, nobody seemed to hold more than
//!   the inquirer's older copy, and it took the session over with the level undone. A member
//!   now reports the copy it holds beside a newer claim's note. 9472 failed an intermediate
//!   version of that change: a take-over that gave its claim up before it was in force (the
//!   claim it came from went on — now visible through the copies reported beside notes) later
//!   dropped its own copy of the claim that went on, the newest there was, for its void claim's
//!   notes. A node now keeps the claims it gave up so, and their notes count for nothing to it.
//!   14206170 — a replica back from a stall was sent the copies it had missed; the owner's
//!   next copies only dropped it from the set, and the drop note it announced (from the first
//!   copy the replica missed) made the replica drop, once the owner and its new replica were
//!   killed, a copy that held everything its client was told. A drop note now starts at the
//!   last copy that changed the session when the copies missed after it changed nothing.
//!   900002555 (a fresh range after those fixes) was the simulator's: a client whose level
//!   change was in flight when its owner died was taken to accept any level, so a dropped
//!   replica's copy with an older level counted as holding the session and its loss (the
//!   owner and the replica holding the acknowledged level both killed) as a violation. The
//!   level is now the acknowledged one or the one of the change of unknown outcome.
//!   900009399 was the simulator's too: the client set its level 1 → 2 → 1 while a replica
//!   was stalled and dropped from the set; the owner and the new replica, the holders of the
//!   last two acknowledged changes, were killed, and the drop note made the stalled replica
//!   drop its copy — which held level 1 from before the 2. The simulator compared values and
//!   counted that copy as holding what the client was told. A level is now the value and the
//!   change that set it (a tag the simulated client writes beside it): the copy missed two
//!   acknowledged changes, and the loss is one with all their holders.
//!   1639 failed an intermediate version (stop 21) that counted notes only by more than half
//!   of the cluster, with no tie broken by the lowest address (it fixed 14202013, below): 3
//!   of 6 members noted an owner's drop of a stalled replica, short
//!   of force without the tie, so the owner showed nothing more before it and its new
//!   replica were killed; the note's holders still told the dropped replica its copy was
//!   stale, and it discarded the one copy that held everything its client was told.
//!   970008353 (stop 21's fresh block, R = 3): the owner and another node were killed; a
//!   replica took the session over (a claim not confirmed yet) and was killed 0.17 s later;
//!   the other replica had asked meanwhile, heard the claimant answer as a fresh owner, and
//!   dropped its copy — the newest there was — for a claim that was never in force. A copy is
//!   now dropped only for a claim in force (a confirmed owner, or a copy made under it); a
//!   fresh claimant is waited for, as owners wait for one.
//!   14202013 (a CI run's `sim-smoke`, stop 20; fixed at its root in stop 22): 4 nodes, node
//!   2 killed; the owner of a session, node 0 (the lowest address), dropped a stalled replica
//!   — a drop noted by exactly half, itself and the new replica, node 3, in force by the tie
//!   — and was killed and restarted. The restarted process needed every other member's notes
//!   (node 2's too: with the lowest address, it and node 2 alone made a majority that might
//!   have noted something), so no inquiry anywhere could decide until node 2 came back; node
//!   3, holding the newest copy, drained meanwhile and took it away, and the drop note
//!   discarded the stalled replica's copy. Notes (claims confirmed, drops noted) and the
//!   inquiries that decide on them now take more than half of the cluster, no tie; a
//!   restarted process recovers with the notes of half of the others. That alone broke 1639
//!   (above), so a drop is noted in two rounds, and only a note in force — the second round,
//!   sent once more than half noted the first — tells the dropped member its copy is stale.
//!   With two rounds, 14206170 failed until an owner showed what a note in force covers
//!   before announcing the raised note the rest needs (else the note in force, followed by
//!   nothing shown, discarded a copy holding all its client saw once the owner died), and
//!   1639 until the dropped member's own noting stopped counting toward either round (the
//!   stalled replica had completed the first; the owner died short of the second).
//!   980002840 (stop 22's fresh block) failed that version: 4 nodes cut 2 | 2; the owner
//!   dropped its replica across the cut, and its client's next level change waited for the
//!   note (2 of 4: short of force without the tie). After the heal the first round ended and
//!   the second went out at once, but the owner, re-confirming its sessions and then losing
//!   its new replica, showed nothing before it was killed; the note in force made the
//!   dropped replica discard a copy holding all its client was told. The second round now
//!   starts only from `advance`, when the note is all that keeps the owner from showing.

use mcp_custody::sim::{World, random};

const FENCING: &[u64] = &[
    543, 797, 817, 1098, 1202, 1211, 1383, 1501, 1607, 1630, 1831, 2281, 2377, 2522, 3095, 3862,
    3879, 3953, 4386, 5136, 6680, 6766, 7043, 7369, 7449, 7552, 7695, 8268, 8928, 8959, 9229, 9583,
    9826, 9829, 9972,
];

const AFTER_FENCING: &[u64] = &[1951, 3794, 4781, 5642, 6593, 8329, 8392, 8832];

const ON_THE_WAY: &[u64] = &[3160, 3863, 4136, 6367, 7623, 7811, 8162, 8233, 8506];

const PAST_10000: &[u64] = &[11271, 12322, 12481, 15714];

const PAST_20000: &[u64] = &[25227];

const RANDOM_SMOKE: &[u64] = &[
    14202686, 543511571, 9472, 14206170, 900002555, 900009399, 1639, 970008353, 14202013, 980002840,
];

#[test]
fn seeds_that_once_failed_pass() {
    let mut failed = Vec::new();
    for &seed in FENCING
        .iter()
        .chain(AFTER_FENCING)
        .chain(ON_THE_WAY)
        .chain(PAST_10000)
        .chain(PAST_20000)
        .chain(RANDOM_SMOKE)
    {
        let (cfg, ops) = random::scenario(seed);
        let report = World::new(cfg, seed).run(&ops);
        if let Some(first) = report.violations.first() {
            failed.push(format!("seed {seed}: {first}"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
