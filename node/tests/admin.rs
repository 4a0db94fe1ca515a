//! Black-box tests of the admin API the operator uses: `GET /cluster` and `POST`/`GET /drain`.

mod common;

use std::time::Duration;

use common::{ACCEPT_BOTH, JSON, send_with};
use mcpcluster_api::NodeConfig;

async fn admin(node: &mcp_node::Running, method: &str, path: &str) -> common::Reply {
    send_with(
        node.admin_addr,
        method,
        path,
        &[],
        "",
        Duration::from_secs(5),
    )
    .await
}

#[tokio::test]
async fn cluster_reports_this_node_and_its_load() {
    let node = common::start(NodeConfig::default()).await;
    let _session = common::initialize(node.mcp_addr).await;
    let r = admin(&node, "GET", "/cluster").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let name = v["self"].as_str().expect("self is a string");
    assert!(!name.is_empty());
    assert_eq!(v["sessions"], 1, "{v}");
    let members = v["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    let me = &members[0];
    assert_eq!(me["name"], name);
    assert_eq!(me["state"], "alive");
    assert_eq!(me["draining"], false);
    assert_eq!(me["sessions"], 1);
    // The configured MCP listen address (the cluster layer will advertise a dialable one).
    assert_eq!(me["address"], node.node.settings.listen.to_string());
    assert!(
        me["connections"].is_u64() && v["connections"].is_u64(),
        "{v}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn drain_refuses_new_sessions_and_reports_progress() {
    let node = common::start(NodeConfig::default()).await;
    let _session = common::initialize(node.mcp_addr).await;

    let before = admin(&node, "GET", "/drain").await;
    assert_eq!(before.status, 200);
    assert_eq!(before.json()["draining"], false);
    assert_eq!(admin(&node, "GET", "/readyz").await.status, 200);

    let started = admin(&node, "POST", "/drain").await;
    assert_eq!(started.status, 202, "{started:?}");
    let v = started.json();
    assert_eq!(v["draining"], true);
    assert_eq!(v["sessions"], 1);
    assert!(v["done"].is_boolean(), "{v}");

    assert_eq!(admin(&node, "GET", "/readyz").await.status, 503);
    let cluster = admin(&node, "GET", "/cluster").await.json();
    assert_eq!(cluster["members"][0]["draining"], true);

    // A new client is refused while draining.
    let refused = common::send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert_eq!(refused.status, 503, "{refused:?}");

    // Every client has left (the test's requests close their connections): done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = admin(&node, "GET", "/drain").await.json();
        if v["done"] == true {
            assert_eq!(v["connections"], 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "drain never done: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second POST is idempotent.
    assert_eq!(admin(&node, "POST", "/drain").await.status, 202);

    // DELETE calls it off: ready again, new clients welcome.
    let cancelled = admin(&node, "DELETE", "/drain").await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.json()["draining"], false);
    assert_eq!(admin(&node, "GET", "/readyz").await.status, 200);
    let _again = common::initialize(node.mcp_addr).await;
    node.shutdown().await;
}

#[tokio::test]
async fn drain_refuses_other_methods() {
    let node = common::start(NodeConfig::default()).await;
    let r = admin(&node, "PUT", "/drain").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
    assert_eq!(admin(&node, "GET", "/readyz").await.status, 200);
    node.shutdown().await;
}
