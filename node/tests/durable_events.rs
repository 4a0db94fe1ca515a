//! Durable before shown (`cluster.durableEvents`, docs/PROTOCOL.md "Durable events"), with
//! three real `mcp-node` processes: a client reads its session's GET stream on the owner while
//! events arrive; the owner is killed with SIGKILL right after the client saw one; events
//! announced after the take-over land on the new owner; the client resumes with
//! `Last-Event-ID` on another node and gets every one of them, under the ids that follow the
//! last one it saw — no gap.
//!
//! Without durability the replica may lack the last events the client saw: the new owner then
//! numbers its next events from where its copy ends, under ids the client already has, and the
//! resume (after the client's last id) skips them. `DURABLE_EVENTS_ROUNDS` (default 1) repeats
//! the whole scenario; the environment reaches the nodes, so `MCP_NODE_CLUSTER_DURABLE_EVENTS=false`
//! shows the old behaviour's failure.

mod common;
mod fleet;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleet::stream::{hold, hold_after};
use fleet::{converge, counter, sse_ids, start_fleet, temp, write_certs};

/// Events the client must see before the owner is killed.
const SEEN_BEFORE_KILL: usize = 12;
/// Events announced after the take-over, before the client resumes.
const AFTER_TAKEOVER: usize = 5;

/// Announces `notifications/tools/list_changed` cluster-wide through `addr` in `session` (a
/// session of a node that stays up); `true` once the announcement was made.
async fn announce(addr: SocketAddr, session: &str) -> bool {
    let r = common::send(
        addr,
        "POST",
        &[common::ACCEPT_BOTH, common::JSON, ("mcp-session-id", session)],
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}"#,
    )
    .await;
    r.status == 200 && r.body.contains("announced")
}

/// `stream-seq` → seq.
fn seq(id: &str) -> u32 {
    id.split_once('-')
        .and_then(|(_, q)| q.parse().ok())
        .unwrap_or_else(|| panic!("not an event id: {id}"))
}

async fn one_round(round: usize) {
    let certs = write_certs(&format!("certs-durable-{round}"));
    let logs = temp(&format!("logs-durable-{round}"));
    let (mut fleet, ports) = start_fleet(&certs, &logs);
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;

    // The session under test is owned by node-0 (opened there) and read there; the
    // announcements come through a session of node-1, which stays up.
    let session = common::initialize(ports[0].mcp).await;
    let announcer = common::initialize(ports[1].mcp).await;
    let held = hold(ports[0].mcp, &session).await;
    held.until("the priming event", Duration::from_secs(5), |h| {
        !sse_ids(&h.text()).is_empty()
    })
    .await;

    // Announcements one after the other, as fast as they are answered, until stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let announcing = tokio::spawn({
        let (stop, made, announcer, at) =
            (stop.clone(), made.clone(), announcer.clone(), ports[1].mcp);
        async move {
            while !stop.load(Ordering::Acquire) {
                if announce(at, &announcer).await {
                    made.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });

    // Kill the owner the moment the client has just seen an event (past the first few).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    loop {
        let n = held.list_changed();
        if n >= SEEN_BEFORE_KILL && n > seen {
            break;
        }
        seen = n;
        assert!(!held.ended(), "the stream ended early:\n{}", held.text());
        assert!(
            Instant::now() < deadline,
            "{seen} events seen in 30 s ({} announced)",
            made.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut owner = fleet.0[0].take().expect("node-0");
    owner.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = owner.wait();
    stop.store(true, Ordering::Release);
    let _ = announcing.await;
    // What the client saw in all: the bytes the owner wrote before it died are read too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.ended() {
        assert!(
            Instant::now() < deadline,
            "the killed owner's stream never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen_ids = sse_ids(&held.text());
    let last = seen_ids.last().expect("events seen").clone();
    let stream = last.split_once('-').map(|(s, _)| s.to_owned()).expect("id");
    assert_eq!(
        seen_ids.iter().map(|i| seq(i)).collect::<Vec<_>>(),
        (0..seen_ids.len() as u32).collect::<Vec<_>>(),
        "the owner's stream itself had no gap"
    );

    // A survivor takes the session over (its replica, after the take-over grace).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let took = counter(admins[1], "mcp_cluster_failovers_total").await
            + counter(admins[2], "mcp_cluster_failovers_total").await;
        if took >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no take-over within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took_over = killed.elapsed();
    // Events the new owner writes into the stream while no client reads it.
    for _ in 0..AFTER_TAKEOVER {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !announce(ports[1].mcp, &announcer).await {
            assert!(
                Instant::now() < deadline,
                "announcements fail after the kill"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The client resumes after the last id it saw, through node-2.
    let resumed = hold_after(ports[2].mcp, &session, Some(&last)).await;
    // The new owner replays them at once; a skipped one never comes (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(5);
    while resumed.list_changed() < AFTER_TAKEOVER && Instant::now() < deadline {
        assert!(
            !resumed.ended(),
            "the resumed stream ended:\n{}",
            resumed.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Anything still on its way arrives meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = sse_ids(&resumed.text());
    let expected: Vec<String> = (1..=got.len() as u32)
        .map(|k| format!("{stream}-{}", seq(&last) + k))
        .collect();
    assert_eq!(
        got,
        expected,
        "the resume after {last} gets the next ids, none skipped (saw {} events, then {} \
         announced after the take-over):\n{}",
        seen_ids.len(),
        AFTER_TAKEOVER,
        resumed.text()
    );
    assert!(
        got.len() >= AFTER_TAKEOVER,
        "every event announced after the take-over reaches the client, under the ids after \
         {last}: got {got:?} — the new owner's copy lacked events the client saw, so it wrote \
         the first of them under an id the client already had and the resume skipped it"
    );
    let undurable = counter(admins[1], "mcp_cluster_events_shown_undurable_total").await
        + counter(admins[2], "mcp_cluster_events_shown_undurable_total").await;
    println!(
        "round {round}: the client saw {} events ({last} last), SIGKILL of the owner; taken over \
         after {took_over:?}; the resume through node-2 got {} events from {} on, no gap \
         ({} announcements in all; survivors' undurable events: {undurable})",
        seen_ids.len(),
        got.len(),
        got.first().map_or("-", String::as_str),
        made.load(Ordering::Relaxed) + AFTER_TAKEOVER,
    );
    resumed.task.abort();
    held.task.abort();
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_after_its_owner_is_killed_misses_no_event_the_client_saw() {
    let rounds: usize = std::env::var("DURABLE_EVENTS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        one_round(round).await;
    }
}
