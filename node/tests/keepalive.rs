//! SSE keep-alives: every stream whose client is connected to the node gets a `:` comment
//! every `limits.sseKeepaliveSecs`, legacy GET streams and `subscriptions/listen` streams
//! alike; a drain completes a listen stream at once, not at its next keep-alive.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mcpcluster_api::NodeConfig;

fn with_keepalive(secs: u64) -> NodeConfig {
    let mut c = NodeConfig::default();
    c.limits.sse_keepalive_secs = secs;
    c
}

/// Comment-only events (`:`) in a dechunked SSE body.
fn keepalives(body: &str) -> usize {
    body.lines().filter(|l| *l == ":").count()
}

async fn get_stream(node: &mcp_node::Running, wait: Duration) -> Reply {
    let sid = initialize(node.mcp_addr).await;
    send_with(
        node.mcp_addr,
        "GET",
        "/mcp",
        &[("accept", "text/event-stream"), ("mcp-session-id", &sid)],
        "",
        wait,
    )
    .await
}

fn listen_body() -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"subscriptions/listen","params":{{{},"notifications":{{"toolsListChanged":true}}}}}}"#,
        modern_meta()
    )
}

const LISTEN_HEADERS: [(&str, &str); 4] = [
    ACCEPT_BOTH,
    JSON,
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "subscriptions/listen"),
];

#[tokio::test]
async fn get_streams_get_a_keepalive_every_period() {
    let (fast, slow) = tokio::join!(start(with_keepalive(1)), start(NodeConfig::default()));
    let wait = Duration::from_millis(3_500);
    let (a, b) = tokio::join!(get_stream(&fast, wait), get_stream(&slow, wait));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(b.status, 200, "{b:?}");
    let n = keepalives(&a.body);
    assert!(
        (2..=4).contains(&n),
        "sseKeepaliveSecs 1: 3 or so in 3.5 s, got {n}: {:?}",
        a.body
    );
    assert_eq!(
        keepalives(&b.body),
        0,
        "the default period (30 s) sends none in 3.5 s: {:?}",
        b.body
    );
    tokio::join!(fast.shutdown(), slow.shutdown());
}

#[tokio::test]
async fn listen_streams_get_a_keepalive_every_period() {
    let node = start(with_keepalive(1)).await;
    let r = send_with(
        node.mcp_addr,
        "POST",
        "/mcp",
        &LISTEN_HEADERS,
        &listen_body(),
        Duration::from_millis(2_500),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("notifications/subscriptions/acknowledged"),
        "{:?}",
        r.body
    );
    let n = keepalives(&r.body);
    assert!(
        (1..=3).contains(&n),
        "2 or so in 2.5 s, got {n}: {:?}",
        r.body
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_drain_completes_a_listen_stream_at_once() {
    let node = start(NodeConfig::default()).await;
    let addr = node.mcp_addr;
    let listen = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = send_with(
            addr,
            "POST",
            "/mcp",
            &LISTEN_HEADERS,
            &listen_body(),
            Duration::from_secs(10),
        )
        .await;
        (r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.node.begin_drain();
    let (r, took) = listen.await.expect("listen task");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains(r#""resultType":"complete""#),
        "the drain completes the subscription: {:?}",
        r.body
    );
    assert!(
        took < Duration::from_secs(3),
        "ended {took:?} after it began, not at the next keep-alive (30 s)"
    );
    node.shutdown().await;
}

/// A stream relayed from its owner gets its keep-alives from the node its client is connected
/// to, once per period (the owner sends none over the peer link: with both, a period would
/// bring two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_streams_get_a_keepalive_every_period_from_the_client_side() {
    let dir = dev_certs("keepalive-test");
    let config = |name: &str, seeds: &[std::net::SocketAddr]| {
        let mut c = cluster_config(name, &dir, seeds);
        c.limits.sse_keepalive_secs = 1;
        c.shutdown_grace_secs = 1;
        c
    };
    let owner = start_config(config("node-a", &[])).await;
    let relay = start_config(config("node-b", &[peer_addr(&owner)])).await;
    let started = Instant::now();
    while [&owner, &relay].iter().any(|n| live_members(n) < 2) {
        assert!(started.elapsed() < Duration::from_secs(10), "no cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sid = initialize(owner.mcp_addr).await;
    let r = send_with(
        relay.mcp_addr,
        "GET",
        "/mcp",
        &[("accept", "text/event-stream"), ("mcp-session-id", &sid)],
        "",
        Duration::from_millis(3_500),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let n = keepalives(&r.body);
    assert!(
        (2..=4).contains(&n),
        "sseKeepaliveSecs 1 through a relay: 3 or so in 3.5 s, got {n}: {:?}",
        r.body
    );
    tokio::join!(relay.shutdown(), owner.shutdown());
}
