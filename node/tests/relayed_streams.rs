//! A client's GET stream held at one node for a session owned by another (relayed over QUIC)
//! survives its session's move (issue 11): when the owner drains (SIGTERM: hand-off, then it
//! leaves) or is killed (SIGKILL: a replica takes over), the relaying node re-attaches the
//! stream to the session's new owner with `Last-Event-ID`, and the client's connection stays
//! open and gets the next event with no gap and no duplicate. Three real `mcp-node` processes.

mod common;
mod fleet;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleet::stream::{assert_consecutive, hold, trigger_list_changed};
use fleet::{converge, counter, signal, sse_ids, start_fleet, temp, write_certs};

/// How the owner goes away.
#[derive(Clone, Copy)]
enum Loss {
    /// SIGTERM: it drains (hands its sessions off), then leaves.
    Drain,
    /// SIGKILL: a replica takes over.
    Kill,
}

async fn relayed_stream_survives(loss: Loss, tag: &str) {
    let certs = write_certs(&format!("certs-relayed-{tag}"));
    let logs = temp(&format!("logs-relayed-{tag}"));
    let (mut fleet, ports) = start_fleet(&certs, &logs);
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;

    // Owned by node-0 (opened there); its GET stream held at node-1, relayed from node-0.
    let session = common::initialize(ports[0].mcp).await;
    let held = hold(ports[1].mcp, &session).await;
    held.until("the priming event", Duration::from_secs(5), |h| {
        !sse_ids(&h.text()).is_empty()
    })
    .await;
    trigger_list_changed(ports[2].mcp, &session).await;
    held.until("the first list_changed", Duration::from_secs(5), |h| {
        h.list_changed() == 1
    })
    .await;
    // The event reaches the session's replica too (asynchronously) before the owner goes: an
    // event the replica never got is lost with a killed owner, whoever resumes the stream.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut owner = fleet.0[0].take().expect("node-0");
    let lost = Instant::now();
    match loss {
        Loss::Drain => signal(&owner, "-TERM"),
        Loss::Kill => owner.kill().expect("SIGKILL"),
    }
    // SIGTERM: node-0 hands the session off and exits once it is safe (no client of its own
    // holds it); both moves (the hand-off, then its leaving) happen before the next event.
    let exit_deadline = Instant::now() + Duration::from_secs(30);
    while owner.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < exit_deadline, "node-0 did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("node-0 gone {:?} after the signal", lost.elapsed());

    trigger_list_changed(ports[2].mcp, &session).await;
    println!(
        "the session served again {:?} after the signal",
        lost.elapsed()
    );
    held.until(
        "the next list_changed on the same connection",
        Duration::from_secs(10),
        |h| h.list_changed() == 2,
    )
    .await;
    println!(
        "the held stream got the next event {:?} after the signal",
        lost.elapsed()
    );
    // Nothing more arrives late (a duplicate replayed after the fact).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.closed.load(Ordering::Acquire),
        "the stream stays open"
    );
    assert_eq!(held.list_changed(), 2, "{}", held.text());
    assert_consecutive(&held);
    let reattached = counter(
        admins[1],
        "mcp_cluster_relayed_streams_reattached_total{outcome=\"ok\"}",
    )
    .await;
    println!("node-1 re-attached the stream {reattached} time(s)");
    assert!(reattached >= 1, "counted as re-attached");
    held.task.abort();
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}

/// The owner drains on SIGTERM: the stream relayed by node-1 follows the session to its
/// successor (and again when node-0 leaves, if it was still passing the stream on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_stream_follows_its_session_when_the_owner_drains() {
    relayed_stream_survives(Loss::Drain, "drain").await;
}

/// The owner is killed: the stream relayed by node-1 re-attaches to the replica that took the
/// session over, from the replica's copy of the event log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_stream_follows_its_session_when_the_owner_is_killed() {
    relayed_stream_survives(Loss::Kill, "kill").await;
}

/// The other side of the rule: a session deleted by its client is not a move. Its relayed
/// stream ends for the client at once (no re-attach is tried, none counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_stream_of_a_deleted_session_ends() {
    let certs = write_certs("certs-relayed-delete");
    let logs = temp("logs-relayed-delete");
    let (fleet, ports) = start_fleet(&certs, &logs);
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;
    let session = common::initialize(ports[0].mcp).await;
    let held = hold(ports[1].mcp, &session).await;
    held.until("the priming event", Duration::from_secs(5), |h| {
        !sse_ids(&h.text()).is_empty()
    })
    .await;
    let deleted = common::send(ports[2].mcp, "DELETE", &[("mcp-session-id", &session)], "").await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let started = Instant::now();
    while !held.ended() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stream of a deleted session ends: {}",
            held.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let name = "mcp_cluster_relayed_streams_reattached_total";
    for outcome in ["ok", "not_found", "gave_up"] {
        let n = counter(admins[1], &format!("{name}{{outcome=\"{outcome}\"}}")).await;
        assert_eq!(n, 0, "no re-attach tried ({outcome})");
    }
    held.task.abort();
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}
