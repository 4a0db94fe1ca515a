//! Declarative content from the configuration (resources, prompt templates with completions,
//! HTTP-backed tools) and the library hook for Rust tools, through the real endpoint.

mod common;

use std::sync::Arc;

use common::*;
use mcpcluster_api::{HttpToolConfig, NodeConfig, PromptArgConfig, PromptConfig, ResourceConfig};
use rmcp::model::{CallToolResult, ContentBlock, Tool};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-shot HTTP endpoint that answers `status` with the request body echoed inside `body`.
async fn tool_endpoint(status: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            let reply = format!("got {body}");
                            let resp = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                                reply.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            break;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}/lookup")
}

fn modern(method: &str, name: Option<&str>, params: Value) -> (Vec<(String, String)>, String) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    let mut headers = vec![
        ("mcp-protocol-version".to_string(), "2026-07-28".to_string()),
        ("mcp-method".to_string(), method.to_string()),
    ];
    if let Some(n) = name {
        headers.push(("mcp-name".to_string(), n.to_string()));
    }
    (
        headers,
        json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string(),
    )
}

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> Value {
    let (extra, body) = modern(method, name, params);
    let mut headers: Vec<(&str, &str)> = vec![ACCEPT_BOTH, JSON];
    headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let r = send(addr, "POST", &headers, &body).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

#[tokio::test]
async fn declarative_content_is_served() {
    let ok_url = tool_endpoint(200).await;
    let failing_url = tool_endpoint(500).await;
    let mut config = NodeConfig {
        packs: vec![],
        ..Default::default()
    };
    config.content.resources.push(ResourceConfig {
        uri: "file:///docs/hello.md".into(),
        name: "hello".into(),
        mime_type: Some("text/markdown".into()),
        text: "# Hello".into(),
        ..Default::default()
    });
    config.content.prompts.push(PromptConfig {
        name: "greet".into(),
        description: Some("Greets someone".into()),
        arguments: vec![PromptArgConfig {
            name: "who".into(),
            required: true,
            completions: vec!["world".into(), "team".into(), "wolves".into()],
            ..Default::default()
        }],
        template: "Say hello to {{who}}.".into(),
    });
    config.content.tools.push(HttpToolConfig {
        name: "lookup".into(),
        url: ok_url,
        input_schema: Some(
            json!({"type":"object","properties":{"word":{"type":"string"}},"required":["word"]}),
        ),
        ..Default::default()
    });
    config.content.tools.push(HttpToolConfig {
        name: "broken".into(),
        url: failing_url,
        ..Default::default()
    });
    let node = start(config).await;
    let a = node.mcp_addr;

    let v = call(
        a,
        "resources/read",
        Some("file:///docs/hello.md"),
        json!({"uri": "file:///docs/hello.md"}),
    )
    .await;
    assert_eq!(v["result"]["contents"][0]["text"], "# Hello");
    assert_eq!(v["result"]["contents"][0]["mimeType"], "text/markdown");

    let v = call(
        a,
        "prompts/get",
        Some("greet"),
        json!({"name": "greet", "arguments": {"who": "Ada"}}),
    )
    .await;
    assert_eq!(
        v["result"]["messages"][0]["content"]["text"],
        "Say hello to Ada."
    );
    let v = call(a, "prompts/get", Some("greet"), json!({"name": "greet"})).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("who")),
        "missing argument named: {v}"
    );

    let v = call(
        a,
        "completion/complete",
        None,
        json!({"ref": {"type": "ref/prompt", "name": "greet"}, "argument": {"name": "who", "value": "w"}}),
    )
    .await;
    assert_eq!(
        v["result"]["completion"]["values"],
        json!(["world", "wolves"])
    );

    let v = call(
        a,
        "tools/call",
        Some("lookup"),
        json!({"name": "lookup", "arguments": {"word": "mcp"}}),
    )
    .await;
    assert_eq!(v["result"]["isError"], false, "{v}");
    assert_eq!(v["result"]["content"][0]["text"], r#"got {"word":"mcp"}"#);
    let v = call(
        a,
        "tools/call",
        Some("lookup"),
        json!({"name": "lookup", "arguments": {}}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32602, "schema enforced: {v}");
    let v = call(
        a,
        "tools/call",
        Some("broken"),
        json!({"name": "broken", "arguments": {}}),
    )
    .await;
    assert_eq!(
        v["result"]["isError"], true,
        "endpoint failure is a tool error: {v}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn library_tools_are_served_in_both_eras() {
    let mut config = NodeConfig {
        packs: vec![],
        ..Default::default()
    };
    config.listen = "127.0.0.1:0".into();
    config.admin_listen = "127.0.0.1:0".into();
    let settings = mcp_node::Settings::validate(config).expect("valid");
    let schema = match json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let node = mcp_node::start_with(settings, |b| {
        b.tool(
            Tool::new("double", "Doubles n", Arc::new(schema)),
            |_cx, args: Map<String, Value>| async move {
                let n = args.get("n").and_then(Value::as_i64).unwrap_or(0);
                Ok(CallToolResult::success(vec![ContentBlock::text(
                    (n * 2).to_string(),
                )]))
            },
        );
    })
    .await
    .expect("starts");
    let v = call(
        node.mcp_addr,
        "tools/call",
        Some("double"),
        json!({"name": "double", "arguments": {"n": 21}}),
    )
    .await;
    assert_eq!(v["result"]["content"][0]["text"], "42");

    let sid = initialize(node.mcp_addr).await;
    let r = send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", &sid)],
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"double","arguments":{"n":5}}}"#,
    )
    .await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "10");
    assert!(
        r.json()["result"].get("resultType").is_none(),
        "legacy results carry no 2026 fields"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn readiness_goes_false_on_shutdown() {
    let node = start(NodeConfig::default()).await;
    let admin = node.admin_addr;
    let r = send_with(
        admin,
        "GET",
        "/readyz",
        &[],
        "",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send_with(
        admin,
        "GET",
        "/metrics",
        &[],
        "",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert!(r.body.contains("mcp_connections"), "{}", r.body);
    node.node
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    let r = send_with(
        admin,
        "GET",
        "/readyz",
        &[],
        "",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert_eq!(r.status, 503);
    let r = send(
        node.mcp_addr,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(r.status, 503, "draining node refuses new connections");
    node.shutdown().await;
}
