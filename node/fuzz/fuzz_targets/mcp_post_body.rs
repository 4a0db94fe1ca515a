//! Any body (with either era's headers) through the whole POST path of a real node state:
//! era decision, validation, dispatch, the conformance pack's handlers. Must answer, not panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn node() -> &'static Arc<mcp_node::Node> {
    static NODE: OnceLock<Arc<mcp_node::Node>> = OnceLock::new();
    NODE.get_or_init(|| {
        let settings = mcp_node::Settings::validate(mcpcluster_api::NodeConfig::default()).expect("default config");
        let catalog = mcp_node::content::packs::catalog_for(&settings.config).expect("catalog");
        mcp_node::Node::new(settings, catalog)
    })
}

fuzz_target!(|data: &[u8]| {
    let (modern, body) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => return,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut headers = http::HeaderMap::new();
    headers.insert("accept", http::HeaderValue::from_static("application/json, text/event-stream"));
    if modern {
        headers.insert("mcp-protocol-version", http::HeaderValue::from_static("2026-07-28"));
        headers.insert("mcp-method", http::HeaderValue::from_static("tools/call"));
        headers.insert("mcp-name", http::HeaderValue::from_static("echo"));
    }
    rt.block_on(async {
        let call = mcp_node::http::mcp::handle_body(node().clone(), &headers, bytes::Bytes::copy_from_slice(body));
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), call).await;
    });
});
