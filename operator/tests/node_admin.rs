//! The operator's admin client against a real `mcp-node` (127.0.0.1:0): the `/cluster` and
//! `/drain` shapes the autoscaler and the drain gate rely on, with the admin token configured
//! as the operator configures the pods (its SHA-256 in a file, `admin.tokenSha256File`).

use std::time::Duration;

use mcp_operator::admin_token::AdminToken;
use mcp_operator::nodes::{NodeClient, NodeError, total};
use mcpcluster_api::NodeConfig;

/// A node holding `token`'s digest, as a pod mounts it from `NAME-admin-token`.
async fn node(token: &AdminToken, tag: &str) -> mcp_node::Running {
    let dir = std::env::temp_dir().join(format!("mcp-operator-node-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let digest = dir.join(format!("{tag}.sha256"));
    std::fs::write(&digest, token.sha256_hex()).expect("write digest");
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..NodeConfig::default()
    };
    config.admin.token_sha256_file = digest.display().to_string();
    config.log.level = "warn".into();
    let settings = mcp_node::Settings::validate(config).expect("valid config");
    mcp_node::start(settings).await.expect("node starts")
}

#[tokio::test]
async fn reads_load_and_drains_a_real_node() {
    let token = AdminToken::generate();
    let node = node(&token, "drains").await;
    let admin = node.admin_addr.to_string();
    let client = NodeClient::new(Duration::from_secs(2));

    let view = client.cluster(&admin, &token).await.expect("GET /cluster");
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.self_, view.members[0].name);
    let load = total(&[view]);
    assert_eq!((load.connections, load.sessions, load.members), (0, 0, 1));

    let idle = client
        .drain(&admin, false, &token)
        .await
        .expect("GET /drain");
    assert!(!idle.draining && !idle.done);
    let started = client
        .drain(&admin, true, &token)
        .await
        .expect("POST /drain");
    assert!(started.draining);
    assert!(started.done, "no client connected: done at once");
    let view = client.cluster(&admin, &token).await.expect("GET /cluster");
    assert!(view.members[0].draining);
    let cancelled = client
        .cancel_drain(&admin, &token)
        .await
        .expect("DELETE /drain");
    assert!(!cancelled.draining);
    node.shutdown().await;
}

#[tokio::test]
async fn another_clusters_token_is_refused_and_drains_nothing() {
    let token = AdminToken::generate();
    let node = node(&token, "refused").await;
    let admin = node.admin_addr.to_string();
    let client = NodeClient::new(Duration::from_secs(2));
    let other = AdminToken::generate();
    match client.drain(&admin, true, &other).await {
        Err(NodeError::Refused(_, status, message)) => {
            assert_eq!(status, 403);
            assert!(message.contains("not valid"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        client.cluster(&admin, &other).await,
        Err(NodeError::Refused(..))
    ));
    assert!(!node.node.is_draining());
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
    assert!(
        client
            .cluster(&addr.to_string(), &AdminToken::generate())
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
