//! The operator's admin client against a real `mcp-node` (127.0.0.1:0): the `/cluster` and
//! `/drain` shapes the autoscaler and the drain gate rely on.

use std::time::Duration;

use mcp_operator::nodes::{NodeClient, total};
use mcpcluster_api::NodeConfig;

async fn node() -> mcp_node::Running {
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..NodeConfig::default()
    };
    config.log.level = "warn".into();
    let settings = mcp_node::Settings::validate(config).expect("valid config");
    mcp_node::start(settings).await.expect("node starts")
}

#[tokio::test]
async fn reads_load_and_drains_a_real_node() {
    let node = node().await;
    let admin = node.admin_addr.to_string();
    let client = NodeClient::new(Duration::from_secs(2));

    let view = client.cluster(&admin).await.expect("GET /cluster");
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.self_, view.members[0].name);
    let load = total(&[view]);
    assert_eq!((load.connections, load.sessions, load.members), (0, 0, 1));

    let idle = client.drain(&admin, false).await.expect("GET /drain");
    assert!(!idle.draining && !idle.done);
    let started = client.drain(&admin, true).await.expect("POST /drain");
    assert!(started.draining);
    assert!(started.done, "no client connected: done at once");
    let view = client.cluster(&admin).await.expect("GET /cluster");
    assert!(view.members[0].draining);
    let cancelled = client.cancel_drain(&admin).await.expect("DELETE /drain");
    assert!(!cancelled.draining);
    node.shutdown().await;
}

#[tokio::test]
async fn an_absent_node_is_an_error_not_a_hang() {
    let client = NodeClient::new(Duration::from_millis(500));
    // A port nobody listens on (bound, then released).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let started = std::time::Instant::now();
    assert!(client.cluster(&addr.to_string()).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}
