//! Every refusal path of the `/mcp` endpoint, black-box: status, headers and a JSON-RPC error
//! body naming the problem.

mod common;

use common::*;
use mcpcluster_api::NodeConfig;

#[tokio::test]
async fn transport_refusals() {
    let node = start(NodeConfig::default()).await;
    let a = node.mcp_addr;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    let r = send_with(
        a,
        "POST",
        "/other",
        &[ACCEPT_BOTH, JSON],
        ping,
        std::time::Duration::from_secs(2),
    )
    .await;
    assert_eq!(r.status, 404, "unknown path");

    let r = send(a, "PUT", &[ACCEPT_BOTH, JSON], ping).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|v| v.contains("POST")));

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("host", "evil.example.com")],
        ping,
    )
    .await;
    assert_eq!(r.status, 403, "DNS rebinding: foreign Host");
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("origin", "http://evil.example.com")],
        ping,
    )
    .await;
    assert_eq!(r.status, 403, "foreign Origin");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Origin"))
    );

    let r = send(a, "POST", &[("accept", "application/json"), JSON], ping).await;
    assert_eq!(r.status, 406, "Accept without text/event-stream");

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, ("content-type", "text/plain")],
        ping,
    )
    .await;
    assert_eq!(r.status, 415);

    let r = send(a, "POST", &[ACCEPT_BOTH, JSON], "{not json").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32700);

    let r = send(a, "POST", &[ACCEPT_BOTH, JSON], &format!("[{ping}]")).await;
    assert_eq!(r.status, 400, "batches are refused");
    assert_eq!(r.json()["error"]["code"], -32600);

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["id"], 9, "the id is echoed when it can be read");

    node.shutdown().await;
}

#[tokio::test]
async fn body_limit_is_413() {
    let mut config = NodeConfig::default();
    config.limits.max_body_bytes = 2048;
    let node = start(config).await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = send(node.mcp_addr, "POST", &[ACCEPT_BOTH, JSON], &big).await;
    assert_eq!(r.status, 413);
    node.shutdown().await;
}

#[tokio::test]
async fn session_refusals() {
    let node = start(NodeConfig::default()).await;
    let a = node.mcp_addr;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

    let r = send(a, "POST", &[ACCEPT_BOTH, JSON], list).await;
    assert_eq!(r.status, 400, "legacy request without Mcp-Session-Id");

    let r = send(
        a,
        "POST",
        &[
            ACCEPT_BOTH,
            JSON,
            ("mcp-session-id", "0123456789abcdef0123456789abcdef"),
        ],
        list,
    )
    .await;
    assert_eq!(r.status, 404, "unknown session");
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", "garbage")],
        list,
    )
    .await;
    assert_eq!(r.status, 404, "malformed session id is unknown");

    let r = send(a, "GET", &[("accept", "text/event-stream")], "").await;
    assert_eq!(r.status, 400, "GET without a session");

    let sid = initialize(a).await;
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        list,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["result"]["tools"].is_array());

    let r = send(
        a,
        "GET",
        &[("accept", "application/json"), ("mcp-session-id", &sid)],
        "",
    )
    .await;
    assert_eq!(r.status, 406, "GET must accept text/event-stream");

    let r = send(a, "DELETE", &[("mcp-session-id", &sid)], "").await;
    assert_eq!(r.status, 200);
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        list,
    )
    .await;
    assert_eq!(r.status, 404, "deleted session is gone");

    node.shutdown().await;
}

#[tokio::test]
async fn modern_refusals() {
    let node = start(NodeConfig::default()).await;
    let a = node.mcp_addr;
    let v = ("mcp-protocol-version", "2026-07-28");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{{{}}}}}"#,
        modern_meta()
    );

    let r = send(a, "POST", &[ACCEPT_BOTH, JSON, v], &body).await;
    assert_eq!(r.status, 400, "missing Mcp-Method");
    assert_eq!(r.json()["error"]["code"], -32020);
    assert_eq!(r.json()["id"], 5);

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, v, ("mcp-method", "prompts/list")],
        &body,
    )
    .await;
    assert_eq!(
        r.json()["error"]["code"],
        -32020,
        "Mcp-Method must match the body"
    );

    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, v, ("mcp-method", "tools/list")],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["resultType"], "complete");

    let bad_version = body.replace("2026-07-28", "1999-01-01");
    let r = send(
        a,
        "POST",
        &[
            ACCEPT_BOTH,
            JSON,
            ("mcp-protocol-version", "1999-01-01"),
            ("mcp-method", "tools/list"),
        ],
        &bad_version,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], -32022);
    assert_eq!(r.json()["error"]["data"]["requested"], "1999-01-01");

    let unknown = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"no/such","params":{{{}}}}}"#,
        modern_meta()
    );
    let r = send(
        a,
        "POST",
        &[ACCEPT_BOTH, JSON, v, ("mcp-method", "no/such")],
        &unknown,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], -32601);

    let r = send(a, "GET", &[("accept", "text/event-stream"), v], "").await;
    assert_eq!(r.status, 405, "2026-07-28 has no GET stream");

    let bad_args = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":5}},{}}}}}"#,
        modern_meta()
    );
    let r = send(
        a,
        "POST",
        &[
            ACCEPT_BOTH,
            JSON,
            v,
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
        &bad_args,
    )
    .await;
    let err = &r.json()["error"];
    assert_eq!(err["code"], -32602, "{r:?}");
    assert!(
        err["message"].as_str().is_some_and(|m| m.contains("/text")),
        "names the field: {err}"
    );

    node.shutdown().await;
}
