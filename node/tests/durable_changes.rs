//! Acknowledged state changes are durable (`cluster.durableEvents`; docs/PROTOCOL.md, "What
//! waits for acknowledgements"), with three real `mcp-node` processes: a client sets its
//! session's log level on the owner and the owner is killed with SIGKILL the moment the OK
//! arrives; the node that takes the session over has the level the client was told it set —
//! a tool logging below it sends no log notification there, and one at it does after the
//! level is lowered again.
//!
//! Without the wait the answer can leave before the copy carrying the change: the new owner
//! then has the level before it, and logs what the client asked not to get.
//! `DURABLE_CHANGES_ROUNDS` (default 1) repeats the scenario; the environment reaches the
//! nodes, so `MCP_NODE_CLUSTER_DURABLE_EVENTS=false` shows the old behaviour.

mod common;
mod fleet;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet::{converge, counter, start_fleet, temp, write_certs};

fn headers(session: &str) -> [(&str, &str); 4] {
    [
        common::ACCEPT_BOTH,
        common::JSON,
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-11-25"),
    ]
}

async fn set_level(addr: SocketAddr, session: &str, level: &str) -> common::Reply {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{{"level":"{level}"}}}}"#
    );
    common::send(addr, "POST", &headers(session), &body).await
}

/// Calls `test_logging_tool` (it logs at `info`) through `addr`, retrying (bounded) while the
/// session is being taken over; whether a log notification came with the answer.
async fn logs_info(addr: SocketAddr, session: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = common::send(
            addr,
            "POST",
            &headers(session),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_logging_tool","arguments":{}}}"#,
        )
        .await;
        if r.status == 200 && r.body.contains("Logging tool executed") {
            return r.body.contains("notifications/message");
        }
        assert_ne!(r.status, 404, "session {session} was lost: {r:?}");
        assert!(Instant::now() < deadline, "never served again: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_round(round: usize) {
    let certs = write_certs(&format!("certs-changes-{round}"));
    let logs = temp(&format!("logs-changes-{round}"));
    let (mut fleet, ports) = start_fleet(&certs, &logs);
    let admins: Vec<SocketAddr> = ports.iter().map(|p| p.admin).collect();
    converge(&admins).await;

    // Owned by node-0 (opened there); every level below is set there, then node-0 dies.
    let session = common::initialize(ports[0].mcp).await;
    assert!(
        logs_info(ports[0].mcp, &session).await,
        "the tool logs at info under the default level"
    );
    let r = set_level(ports[0].mcp, &session, "debug").await;
    assert_eq!(r.status, 200, "{r:?}");
    let sent = Instant::now();
    let r = set_level(ports[0].mcp, &session, "warning").await;
    let answered = sent.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(r#""result""#), "{r:?}");
    let mut owner = fleet.0[0].take().expect("node-0");
    owner.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = owner.wait();

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
    assert!(
        !logs_info(ports[1].mcp, &session).await,
        "the new owner logs at info: it lacks the level `warning` its client was told was set \
         (answered in {answered:?}, then SIGKILL of the owner)"
    );
    // The session is served and its level is what decides: lowered again, the tool logs.
    let r = set_level(ports[2].mcp, &session, "info").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        logs_info(ports[1].mcp, &session).await,
        "at level info the tool's info line is sent"
    );
    println!(
        "round {round}: logging/setLevel warning answered in {answered:?}, SIGKILL of the owner; \
         taken over after {took_over:?}; the new owner has the level"
    );
    drop(fleet);
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_level_acknowledged_just_before_its_owner_is_killed_holds_on_the_new_owner() {
    let rounds: usize = std::env::var("DURABLE_CHANGES_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        one_round(round).await;
    }
}
