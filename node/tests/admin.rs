//! Black-box tests of the admin API the operator uses: `GET /cluster` and `POST`/`GET /drain`,
//! and who may use them: a bearer token (401 without, 403 wrong, counted in
//! `mcp_admin_refused_total`), refused to everyone when nothing is configured, anonymous only
//! with the explicit loopback opt-in.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{ACCEPT_BOTH, JSON, send_with};
use mcpcluster_api::NodeConfig;

const TOKEN: &str = "admin-test-token.0123456789_abcdefghij";

/// A file holding `TOKEN`, unique to `tag`.
fn token_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-node-admin-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(tag);
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    path
}

/// A node whose admin token is `TOKEN`.
async fn start_with_token(tag: &str) -> mcp_node::Running {
    let mut config = NodeConfig::default();
    config.admin.token_file = token_file(tag).display().to_string();
    common::start(config).await
}

async fn admin_as(
    node: &mcp_node::Running,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> common::Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    send_with(
        node.admin_addr,
        method,
        path,
        &headers,
        "",
        Duration::from_secs(5),
    )
    .await
}

/// With the right token.
async fn admin(node: &mcp_node::Running, method: &str, path: &str) -> common::Reply {
    admin_as(node, method, path, Some(&format!("Bearer {TOKEN}"))).await
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let key = format!("mcp_admin_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn cluster_reports_this_node_and_its_load() {
    let node = start_with_token("cluster").await;
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
    let node = start_with_token("drain").await;
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
    let node = start_with_token("methods").await;
    let r = admin(&node, "PUT", "/drain").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST, DELETE"));
    assert_eq!(admin(&node, "GET", "/readyz").await.status, 200);
    node.shutdown().await;
}

#[tokio::test]
async fn protected_requests_need_the_token_and_refusals_are_counted() {
    let node = start_with_token("refusals").await;
    let bearer = format!("Bearer {TOKEN}");
    let wrong = "Bearer admin-test-token.0123456789_abcdefghiX";

    // No credentials: 401 with a challenge, for every protected request.
    for (method, path) in [
        ("GET", "/cluster"),
        ("POST", "/drain"),
        ("GET", "/drain"),
        ("DELETE", "/drain"),
    ] {
        let r = admin_as(&node, method, path, None).await;
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"mcp-node admin\"")
        );
        assert!(r.body.contains("Authorization: Bearer"), "{}", r.body);
    }
    // Not a bearer credential: 401. A wrong token: 403. Neither starts a drain.
    let r = admin_as(&node, "POST", "/drain", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("malformed"), "{}", r.body);
    let r = admin_as(&node, "POST", "/drain", Some(wrong)).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("not valid"), "{}", r.body);
    let r = admin_as(&node, "GET", "/cluster", Some(wrong)).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(admin_as(&node, "GET", "/readyz", None).await.status, 200);
    assert!(
        !node.node.is_draining(),
        "a refused POST /drain drained the node"
    );

    // Probes, scrapes and /status need nothing.
    for path in ["/healthz", "/readyz", "/metrics", "/status"] {
        assert_eq!(
            admin_as(&node, "GET", path, None).await.status,
            200,
            "{path}"
        );
    }
    let metrics = admin_as(&node, "GET", "/metrics", None).await.body;
    assert_eq!(refused(&metrics, "missing"), 4, "{metrics}");
    assert_eq!(refused(&metrics, "malformed"), 1, "{metrics}");
    assert_eq!(refused(&metrics, "wrong"), 2, "{metrics}");
    assert_eq!(refused(&metrics, "unconfigured"), 0, "{metrics}");

    // The right token: served.
    assert_eq!(admin(&node, "GET", "/cluster").await.status, 200);
    let r = admin_as(&node, "POST", "/drain", Some(&bearer)).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(admin_as(&node, "GET", "/readyz", None).await.status, 503);
    let metrics = admin_as(&node, "GET", "/metrics", None).await.body;
    assert_eq!(
        refused(&metrics, "missing"),
        4,
        "accepted requests are not counted"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn anonymous_is_refused_by_default() {
    let node = common::start(NodeConfig::default()).await;
    for (method, path) in [("GET", "/cluster"), ("POST", "/drain"), ("GET", "/drain")] {
        let r = admin_as(&node, method, path, None).await;
        assert_eq!(r.status, 403, "{method} {path}: {r:?}");
        assert!(
            r.body.contains("no admin credentials configured")
                && r.body.contains("--admin-insecure-local"),
            "{}",
            r.body
        );
    }
    // A token cannot help when the node has none to compare it with.
    let r = admin_as(&node, "POST", "/drain", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!node.node.is_draining());
    assert_eq!(admin_as(&node, "GET", "/readyz", None).await.status, 200);
    let metrics = admin_as(&node, "GET", "/metrics", None).await.body;
    assert_eq!(refused(&metrics, "unconfigured"), 4, "{metrics}");
    node.shutdown().await;
}

#[tokio::test]
async fn the_loopback_opt_in_allows_anonymous_requests() {
    let mut config = NodeConfig::default();
    config.admin.insecure_local = true; // common::start binds 127.0.0.1
    let node = common::start(config).await;
    assert_eq!(admin_as(&node, "GET", "/cluster", None).await.status, 200);
    assert_eq!(admin_as(&node, "POST", "/drain", None).await.status, 202);
    assert_eq!(admin_as(&node, "DELETE", "/drain", None).await.status, 200);
    // Credentials that are sent are still checked (this node has no token to check against).
    let r = admin_as(&node, "GET", "/cluster", Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(r.status, 403, "{r:?}");
    node.shutdown().await;
}

/// `mcp-node` with `args`: exit status and stderr (bounded: a node that starts is killed).
fn run_node(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-node"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("MCP_NODE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mcp-node runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_opt_in_is_refused_off_loopback_and_bad_token_files_exit_64() {
    let (code, err) = run_node(&["--admin-listen", "0.0.0.0:0", "--admin-insecure-local"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("`admin.insecureLocal`"), "{err}");
    let (code, err) = run_node(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        "/nonexistent/token",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("`admin.tokenFile`"), "{err}");
    let short = token_file("short");
    std::fs::write(&short, "tiny").expect("write");
    let (code, err) = run_node(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        &short.display().to_string(),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("usable token"), "{err}");
}

/// Reads until the node closes `stream`; `None` if it is still open after `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut raw)).await {
        Ok(_) => Some(raw),
        Err(_) => None,
    }
}

/// The admin port holds at most `MAX_CONNECTIONS` connections: one more is answered 503 and
/// closed at once (and counted); when a held one goes, a new one is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_over_the_cap_are_refused() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let node = common::start(NodeConfig::default()).await;
    let addr = node.admin_addr;
    let cap = mcp_node::admin::server::MAX_CONNECTIONS;
    let mut held = Vec::with_capacity(cap);
    for _ in 0..cap {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Accepted in order: once one more is refused, the cap is full of the held ones.
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let raw = closed_within(&mut extra, Duration::from_secs(5))
        .await
        .expect("a connection over the cap is closed at once");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    let reply = common::parse(&raw);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.body, "admin connection limit reached\n");
    let text = node.node.metrics.encode();
    assert!(
        text.lines()
            .any(|l| l.starts_with("mcp_admin_connections_refused_total ") && !l.ends_with(" 0")),
        "counted: {text}"
    );
    // The held connections are real ones: each is served.
    let first = held.first_mut().expect("held");
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let raw = closed_within(first, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert_eq!(common::parse(&raw).status, 200);
    // That one's permit comes back: a new connection is served.
    drop(held.remove(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = send_with(addr, "GET", "/healthz", &[], "", Duration::from_secs(2)).await;
        if r.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no connection served after one left: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    node.shutdown().await;
}

/// A connection that sends nothing, one that stops halfway through its head, and a keep-alive
/// connection idle after its first answer are all closed after `requestHeadTimeoutSecs`.
#[tokio::test]
async fn idle_and_slow_admin_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let mut config = NodeConfig::default();
    config.limits.request_head_timeout_secs = 1;
    let node = common::start(config).await;
    let addr = node.admin_addr;
    let bound = Duration::from_secs(4);

    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");

    let started = tokio::time::Instant::now();
    assert!(
        closed_within(&mut silent, bound).await.is_some(),
        "a silent connection stays open"
    );
    assert!(
        closed_within(&mut slow, bound).await.is_some(),
        "a connection with half a head stays open"
    );
    let raw = closed_within(&mut idle, bound)
        .await
        .expect("an idle keep-alive connection stays open");
    let reply = common::parse(&raw);
    assert_eq!(reply.status, 200, "answered first: {reply:?}");
    assert_eq!(
        reply.header("connection"),
        None,
        "kept alive, then timed out"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    node.shutdown().await;
}
