//! mcp-load's client and run loop against a real node on 127.0.0.1:0, in both eras.

use std::time::Duration;

use mcp_load::client::Client;
use mcp_load::run::{LoadConfig, run};
use mcpcluster_api::NodeConfig;

async fn node() -> mcp_node::Running {
    let config = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    mcp_node::start(mcp_node::Settings::validate(config).expect("valid"))
        .await
        .expect("starts")
}

#[tokio::test]
async fn client_speaks_both_eras() {
    let n = node().await;
    let mut legacy = Client::connect(n.mcp_addr, "/mcp", None)
        .await
        .expect("connect");
    let sid = legacy.initialize().await.expect("initialize");
    assert_eq!(sid.len(), 32);
    let r = legacy
        .call_tool(false, "echo", serde_json::json!({"text": "hi"}))
        .await
        .expect("call");
    assert_eq!(r["content"][0]["text"], "hi");
    let r = legacy
        .call_tool(false, "test_tool_with_logging", serde_json::json!({}))
        .await
        .expect("SSE answer");
    assert!(
        r["content"][0]["text"].is_string(),
        "result read from an SSE stream: {r}"
    );
    let mut modern = Client::connect(n.mcp_addr, "/mcp", None)
        .await
        .expect("connect");
    let r = modern
        .call_tool(true, "echo", serde_json::json!({"text": "yo"}))
        .await
        .expect("call");
    assert_eq!(r["content"][0]["text"], "yo");
    let err = modern
        .call_tool(true, "echo", serde_json::json!({}))
        .await
        .expect_err("schema");
    assert_eq!(err.kind(), "rpc_-32602");
    n.shutdown().await;
}

#[tokio::test]
async fn open_loop_run_reports_latency_and_holds_sessions() {
    let n = node().await;
    for modern in [false, true] {
        let cfg = LoadConfig {
            addr: n.mcp_addr,
            path: "/mcp".into(),
            sessions: 20,
            ramp_rate: 0.0,
            workers: 4,
            rate: 200.0,
            duration: Duration::from_millis(500),
            modern,
            sources: Vec::new(),
            tool: "echo".into(),
        };
        let report = run(cfg, |_| {}).await;
        assert_eq!(report.sessions_held, 20, "{report:?}");
        assert_eq!(report.calls_due, 100);
        assert_eq!(report.calls_ok, 100, "{report:?}");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.latency.p50_us > 0 && report.latency.p50_us <= report.latency.max_us);
        assert!(
            report.service.p99_us <= report.latency.p99_us
                && report.service.max_us <= report.latency.max_us,
            "service time never exceeds time from the due time: {report:?}"
        );
    }
    let status = n.node.sessions.len();
    assert!(
        status >= 20,
        "legacy held sessions exist on the node: {status}"
    );
    n.shutdown().await;
}
