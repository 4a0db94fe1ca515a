//! mcp-load's client and run loop against a real node on 127.0.0.1:0, in both eras.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mcp_load::client::Client;
use mcp_load::client::resume::{Backoff, Endpoint, ResumableSession};
use mcp_load::report::Report;
use mcp_load::run::{Era, Live, LoadConfig, Target, run};
use mcpcluster_api::NodeConfig;
use serde_json::json;

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
    for era in [Era::Legacy, Era::Modern, Era::Mix] {
        let cfg = LoadConfig {
            addr: n.mcp_addr,
            path: "/mcp".into(),
            sessions: 20,
            ramp_rate: 0.0,
            workers: 4,
            rate: 200.0,
            duration: Duration::from_millis(500),
            era,
            sources: Vec::new(),
            tool: "echo".into(),
            timeout: mcp_load::run::DEFAULT_TIMEOUT,
            closed_loop: false,
            call_at: None,
            calls_per_session: 0,
            progress: false,
        };
        let live = Arc::new(Live::default());
        let (ramp, calls) = run(&cfg, live.clone()).await;
        let report = Report::merge("t", cfg.rate, 0.5, &[ramp], &[calls]);
        assert_eq!(report.sessions_held, 20, "{era:?}: {report:?}");
        assert_eq!(report.calls_due, 100);
        assert_eq!(report.calls_ok, 100, "{era:?}: {:?}", report.errors);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(live.calls_ok.load(Ordering::Relaxed), 100);
        assert!(report.latency.p50_us > 0 && report.latency.p50_us <= report.latency.max_us);
        assert!(
            report.service.p99_us <= report.latency.p99_us
                && report.service.max_us <= report.latency.max_us,
            "service time never exceeds time from the due time: {report:?}"
        );
        assert_eq!(
            report.timeline.iter().map(|s| s.ok).sum::<u64>(),
            100,
            "every answered call is in the timeline"
        );
    }
    let status = n.node.sessions.len();
    assert!(
        status >= 20,
        "legacy held sessions exist on the node: {status}"
    );
    n.shutdown().await;
}

fn config(addr: std::net::SocketAddr) -> LoadConfig {
    LoadConfig {
        addr,
        path: "/mcp".into(),
        sessions: 0,
        ramp_rate: 0.0,
        workers: 2,
        rate: 0.0,
        duration: Duration::from_millis(300),
        era: Era::Legacy,
        sources: Vec::new(),
        tool: "echo".into(),
        timeout: mcp_load::run::DEFAULT_TIMEOUT,
        closed_loop: false,
        call_at: None,
        calls_per_session: 0,
        progress: false,
    }
}

#[tokio::test]
async fn closed_loop_sends_back_to_back_for_the_duration() {
    let n = node().await;
    // Stateless calls: a legacy session's token bucket (200/s by default) would refuse part of
    // a closed loop, which is the node's job, not what this test is about.
    let cfg = LoadConfig {
        closed_loop: true,
        era: Era::Modern,
        ..config(n.mcp_addr)
    };
    let live = Arc::new(Live::default());
    let started = std::time::Instant::now();
    let (_, calls) = run(&cfg, live).await;
    assert!(calls.ok >= 10, "a closed loop keeps sending: {calls:?}");
    assert_eq!(
        calls.due, calls.ok,
        "every call sent was answered: {:?}",
        calls.errors
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it stops after its duration"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn sessions_created_at_url_are_used_through_call_url() {
    let a = node().await;
    let b = node().await;
    // Sessions live where they were created: through another (unclustered) node the calls and
    // streams of a session created on `a` find no session, which shows they went to `b`.
    let cfg = LoadConfig {
        sessions: 3,
        rate: 100.0,
        call_at: Some(Target {
            addr: b.mcp_addr,
            path: "/mcp".into(),
        }),
        ..config(a.mcp_addr)
    };
    let (ramp, calls) = run(&cfg, Arc::new(Live::default())).await;
    assert_eq!(ramp.held, 0, "{ramp:?}");
    assert_eq!(ramp.errors.get("http_404"), Some(&3), "{:?}", ramp.errors);
    // A POST for an unknown session: 404 with a JSON-RPC error body (reported by its code).
    assert_eq!(calls.ok, 0);
    assert_eq!(
        calls.errors.get("rpc_-32000").copied().unwrap_or(0),
        calls.due,
        "{:?}",
        calls.errors
    );
    // Through the node that made them, with a new session every 2 calls, every call works and
    // the sessions are created there: one per worker connection plus one per 2 calls after.
    // One worker: with two, how the calls split between them decides the count (15 and 15
    // make 16 sessions, 14 and 16 make 15), and that is timing.
    let before = a.node.sessions.len();
    let cfg = LoadConfig {
        sessions: 2,
        rate: 100.0,
        workers: 1,
        calls_per_session: 2,
        call_at: Some(Target {
            addr: a.mcp_addr,
            path: "/mcp".into(),
        }),
        ..config(a.mcp_addr)
    };
    let (ramp, calls) = run(&cfg, Arc::new(Live::default())).await;
    assert_eq!(ramp.held, 2, "{ramp:?}");
    assert_eq!((calls.due, calls.ok), (30, 30), "{:?}", calls.errors);
    let made = a.node.sessions.len() - before;
    // 2 held, and 30 calls on one worker: its connection's session for calls 1-2, then a new
    // one before calls 3, 5, ..., 29 = 15.
    assert_eq!(made, 2 + 15, "sessions created");
    assert_eq!(b.node.sessions.len(), 0, "nothing reached the other node");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_silent_server_gives_timeouts_and_the_run_still_ends() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = LoadConfig {
        sessions: 3,
        rate: 100.0,
        timeout: Duration::from_millis(200),
        ..config(addr)
    };
    let live = Arc::new(Live::default());
    let started = std::time::Instant::now();
    let (ramp, calls) = run(&cfg, live).await;
    assert_eq!(ramp.held, 0);
    assert_eq!(ramp.errors.get("timeout"), Some(&3), "{:?}", ramp.errors);
    assert_eq!(calls.ok, 0);
    let timeouts = calls.errors.get("timeout").copied().unwrap_or(0);
    let unsent = calls.errors.get("unsent_at_deadline").copied().unwrap_or(0);
    assert!(timeouts > 0, "{:?}", calls.errors);
    assert_eq!(
        calls.errors.values().sum::<u64>(),
        calls.due,
        "every due call is accounted for: {:?}",
        calls.errors
    );
    assert!(
        unsent > 0,
        "calls still queued at the deadline are counted: {:?}",
        calls.errors
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn a_lost_stream_resumes_with_last_event_id_and_misses_nothing() {
    let n = node().await;
    let endpoint = Endpoint {
        addr: n.mcp_addr,
        path: "/mcp".into(),
        source: None,
    };
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 5);
    let mut session = ResumableSession::open(endpoint, backoff)
        .await
        .expect("session with stream");
    let sid = session.session().to_string();
    let mut caller = session.request_client().await.expect("request connection");

    // An event while connected.
    caller
        .call_tool(false, "test_trigger_tool_change", json!({}))
        .await
        .expect("trigger");
    let first = next_notification(&mut session).await;
    assert_eq!(first, "notifications/tools/list_changed");
    let seen = session
        .last_event_id()
        .expect("events carry ids")
        .to_string();

    // Lose the connection, miss two events, come back.
    session.drop_connection();
    caller
        .call_tool(false, "test_trigger_prompt_change", json!({}))
        .await
        .expect("trigger");
    caller
        .call_tool(false, "test_trigger_tool_change", json!({}))
        .await
        .expect("trigger");
    assert_eq!(
        next_notification(&mut session).await,
        "notifications/prompts/list_changed"
    );
    assert_eq!(
        next_notification(&mut session).await,
        "notifications/tools/list_changed"
    );
    assert_eq!(session.reconnects(), 1);
    assert_eq!(session.session(), sid, "same session, never re-initialized");
    assert_ne!(session.last_event_id(), Some(seen.as_str()));

    // A session the server forgot is a permanent error, not an endless retry.
    let mut gone = Client::connect(n.mcp_addr, "/mcp", None)
        .await
        .expect("connect");
    gone.set_session(Some("0".repeat(32)));
    let err = gone.open_stream(None).await.expect_err("unknown session");
    assert!(!err.is_transient(), "{err}");
    n.shutdown().await;
}

async fn next_notification(session: &mut ResumableSession) -> String {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), session.next_event())
            .await
            .expect("an event within 5 s")
            .expect("stream event");
        if let Some(method) = ev
            .message()
            .and_then(|m| m["method"].as_str().map(String::from))
        {
            return method;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_merges_processes_and_measures_the_server() {
    let n = node().await;
    let dir = std::env::temp_dir().join(format!("mcp-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json_path = dir.join("report.json");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-load"))
        .args(["--url", &format!("http://{}/mcp", n.mcp_addr)])
        .args(["--sessions", "60", "--ramp-rate", "0", "--workers", "4"])
        .args([
            "--rate",
            "300",
            "--duration",
            "1",
            "--processes",
            "2",
            "--source-ips",
            "3",
        ])
        .args(["--server-pid", &std::process::id().to_string()])
        .args([
            "--admin",
            &n.admin_addr.to_string(),
            "--label",
            "test",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json_path)
        .arg("--plot")
        .arg(dir.join("test"))
        .output()
        .await
        .expect("runs mcp-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mcp-load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("json written")).expect("json");
    assert_eq!(report["processes"], 2);
    assert_eq!(report["sessions_held"], 60, "{stdout}");
    assert_eq!(report["calls_due"], 300);
    assert_eq!(report["calls_ok"], 300, "{stdout}");
    let server = &report["server"];
    assert!(server["rss_held_bytes"].as_u64() > Some(0), "{server}");
    assert!(
        server["node_gauges"]["mcp_sessions"].as_f64() >= Some(60.0),
        "the node's own gauges: {server}"
    );
    for plot in ["test-latency.png", "test-memory.png"] {
        let bytes = std::fs::read(dir.join(plot)).expect("plot written");
        assert!(bytes.starts_with(b"\x89PNG"), "{plot} is a PNG");
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Past RLIMIT_NOFILE with too few processes: a clear refusal before any connection.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-load"))
        .args(["--sessions", "4000000", "--processes", "1", "--quiet"])
        .output()
        .await
        .expect("runs mcp-load");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--processes 1") && err.contains("RLIMIT_NOFILE"),
        "{err}"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn calls_asking_for_progress_are_answered_on_an_sse_stream() {
    let n = node().await;
    let cfg = LoadConfig {
        rate: 100.0,
        progress: true,
        ..config(n.mcp_addr)
    };
    let (_, calls) = run(&cfg, Arc::new(Live::default())).await;
    assert!(calls.due > 0, "{calls:?}");
    assert_eq!(calls.ok, calls.due, "{:?}", calls.errors);
    // Each call's answer went on a response stream of its session: a stream per call.
    let mut streams = 0;
    n.node
        .sessions
        .for_each(|s| streams += s.state.lock().streams.len());
    assert!(streams > 0, "no call was answered on an SSE stream");
    n.shutdown().await;
}
