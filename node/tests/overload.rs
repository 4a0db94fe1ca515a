//! Overload is refused cleanly and quickly: connection cap → 503, session cap → 503,
//! per-session rate → 429, all with `Retry-After`; nothing hangs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mcpcluster_api::NodeConfig;
use tokio::net::TcpStream;

#[tokio::test]
async fn connection_cap_answers_503_not_a_hang() {
    let mut config = NodeConfig::default();
    config.limits.max_connections = 2;
    let node = start(config).await;
    let a = node.mcp_addr;
    let held1 = TcpStream::connect(a).await.expect("connect");
    let held2 = TcpStream::connect(a).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused promptly"
    );
    drop((held1, held2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sid = initialize(a).await;
    assert!(
        !sid.is_empty(),
        "capacity comes back when connections close"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn session_cap_answers_503() {
    let mut config = NodeConfig::default();
    config.limits.max_sessions = 1;
    let node = start(config).await;
    let _sid = initialize(node.mcp_addr).await;
    let r = send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#,
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    node.shutdown().await;
}

#[tokio::test]
async fn session_rate_limit_answers_429() {
    let mut config = NodeConfig::default();
    config.limits.session_burst = 3;
    config.limits.session_rate_per_sec = 0.1;
    let node = start(config).await;
    let sid = initialize(node.mcp_addr).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{},"method":"ping"}}"#, i + 10);
        let r = send(
            node.mcp_addr,
            "POST",
            &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
            &body,
        )
        .await;
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            assert_eq!(r.json()["error"]["code"], -32000);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let metrics = node.node.metrics.encode();
    assert!(
        metrics.contains("mcp_rejections_total{reason=\"rate_limited\"} 2"),
        "{metrics}"
    );
    node.shutdown().await;
}
