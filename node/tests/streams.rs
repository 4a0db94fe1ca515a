//! SSE behaviour of legacy sessions: notifications switch a POST answer to SSE with event ids,
//! and a GET with `Last-Event-ID` replays what the client missed on that stream.

mod common;

use std::time::Duration;

use common::*;
use mcpcluster_api::NodeConfig;

#[tokio::test]
async fn progress_streams_then_resumes_from_last_event_id() {
    let node = start(NodeConfig::default()).await;
    let a = node.mcp_addr;
    let sid = initialize(a).await;
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_tool_with_progress","arguments":{},"_meta":{"progressToken":"p1"}}}"#;
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        call,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let ids: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    let data: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(
        data.len(),
        4,
        "3 progress notifications and the result: {}",
        r.body
    );
    assert!(data[3].contains("\"id\":3"));
    assert_eq!(ids[0].split('-').nth(1), Some("0"), "priming event first");

    // Pretend the connection dropped after the first progress event: resume after it.
    let first = ids[1];
    let r = send_with(
        a,
        "GET",
        "/mcp",
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", &sid),
            ("last-event-id", first),
        ],
        "",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(r.status, 200);
    let replayed: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(
        replayed.len(),
        3,
        "two progress events and the result are replayed: {}",
        r.body
    );
    assert!(replayed[2].contains("\"result\""));
    node.shutdown().await;
}
