//! Helpers for black-box tests: a node on 127.0.0.1:0 and raw HTTP/1.1 exchanges, so the
//! tests see exactly the bytes a client would.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use mcp_node::Settings;
use mcpcluster_api::NodeConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub async fn start(mut config: NodeConfig) -> mcp_node::Running {
    config.listen = "127.0.0.1:0".into();
    config.admin_listen = "127.0.0.1:0".into();
    config.log.level = "warn".into();
    let settings = Settings::validate(config).expect("valid test config");
    mcp_node::start(settings).await.expect("node starts")
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

pub const ACCEPT_BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
pub const JSON: (&str, &str) = ("content-type", "application/json");

/// Sends one request with `Connection: close` and reads the whole answer (bounded by `wait`).
pub async fn send_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    wait: Duration,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: 127.0.0.1:{}\r\n", addr.port()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut raw)).await;
    parse(&raw)
}

pub async fn send(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    send_with(addr, method, "/mcp", headers, body, Duration::from_secs(5)).await
}

pub fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `initialize` and return the session id.
pub async fn initialize(addr: SocketAddr) -> String {
    let r = send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.header("mcp-session-id").expect("session id").to_string()
}

/// Modern `_meta` for a request body.
pub fn modern_meta() -> &'static str {
    r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#
}

/// One CA and peer certificate for in-process cluster nodes, in a fresh temp folder.
pub fn dev_certs(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-node-{tag}-{}", std::process::id()));
    mcp_node::cluster::tls::write_dev_certs(&dir, "mcp-peer").expect("dev certs");
    dir
}

/// A clustered node's config on 127.0.0.1 (ports chosen by the OS) with the certificates in
/// `dir` and the given seeds; tests adjust it before [`start_config`].
pub fn cluster_config(name: &str, dir: &std::path::Path, seeds: &[SocketAddr]) -> NodeConfig {
    let mut c = NodeConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        ..NodeConfig::default()
    };
    c.log.level = "warn".into();
    // The cluster tests read /cluster and /drain without credentials: the explicit opt-in
    // for a loopback admin address.
    c.admin.insecure_local = true;
    let k = &mut c.cluster;
    k.enabled = true;
    k.node_name = name.into();
    k.peer_listen = "127.0.0.1:0".into();
    k.seeds = seeds.iter().map(ToString::to_string).collect();
    k.load_publish_ms = 100;
    k.tls.ca_file = dir.join("ca.crt").display().to_string();
    k.tls.cert_file = dir.join("tls.crt").display().to_string();
    k.tls.key_file = dir.join("tls.key").display().to_string();
    c
}

/// Starts a node with `config` as is.
pub async fn start_config(config: NodeConfig) -> mcp_node::Running {
    let settings = Settings::validate(config).expect("valid test config");
    mcp_node::start(settings).await.expect("node starts")
}

/// Members a clustered node sees live with their metadata (itself included).
pub fn live_members(n: &mcp_node::Running) -> usize {
    n.cluster
        .as_ref()
        .expect("clustered")
        .view
        .borrow()
        .iter()
        .filter(|m| m.state.is_live() && m.meta.is_some())
        .count()
}

/// A clustered node's peer (QUIC) address: its identity in the membership.
pub fn peer_addr(n: &mcp_node::Running) -> SocketAddr {
    n.cluster.as_ref().expect("clustered").view.borrow()[0]
        .id
        .addr
}

/// `tools/call` of `echo` with `text` inside `session`.
pub async fn echo(addr: SocketAddr, session: &str, id: u32, text: &str) -> Reply {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
    );
    send(
        addr,
        "POST",
        &[ACCEPT_BOTH, JSON, ("mcp-session-id", session)],
        &body,
    )
    .await
}
