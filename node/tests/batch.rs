//! JSON-RPC batches: answered for 2025-03-26 sessions, refused (400) for later versions.

mod common;

use common::*;
use mcpcluster_api::NodeConfig;

async fn init(addr: std::net::SocketAddr, version: &str) -> String {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}}}}}}"#
    );
    let r = send(addr, "POST", &[ACCEPT_BOTH, JSON], &body).await;
    assert_eq!(r.json()["result"]["protocolVersion"], version);
    r.header("mcp-session-id").expect("session").to_string()
}

#[tokio::test]
async fn batches_in_2025_03_26() {
    let node = start(NodeConfig::default()).await;
    let a = node.mcp_addr;
    let sid = init(a, "2025-03-26").await;
    let batch = r#"[
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":"a","method":"ping"},
        {"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}},
        {"jsonrpc":"2.0","id":"c","method":"no/such"},
        {"jsonrpc":"2.0","id":"d","method":"initialize","params":{}},
        {"oops":true}
    ]"#;
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        batch,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let answers = r.json();
    let answers = answers.as_array().expect("array");
    assert_eq!(
        answers.len(),
        5,
        "one answer per request and per invalid entry: {answers:?}"
    );
    assert_eq!(answers[0]["id"], "a");
    assert_eq!(answers[1]["result"]["content"][0]["text"], "hi");
    assert_eq!(answers[2]["error"]["code"], -32601);
    assert_eq!(
        answers[3]["error"]["code"], -32600,
        "initialize cannot be batched"
    );
    assert_eq!(answers[4]["error"]["code"], -32600);

    let only_notifications = r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        only_notifications,
    )
    .await;
    assert_eq!(r.status, 202);

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        "[]",
    )
    .await;
    assert_eq!(r.status, 400, "empty batch");

    let newer = init(a, "2025-06-18").await;
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &newer)],
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    )
    .await;
    assert_eq!(r.status, 400, "batches were removed after 2025-03-26");
    node.shutdown().await;
}
