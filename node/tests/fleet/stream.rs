//! A client's GET stream held open against one of the fleet's nodes, read in the background,
//! and the events the process tests make appear on it (`relayed_streams.rs`,
//! `upstream_failover.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sse_ids;

/// A GET stream held open: what it received so far, and whether the server closed it.
pub struct Held {
    pub text: Arc<Mutex<String>>,
    pub closed: Arc<AtomicBool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Held {
    pub fn text(&self) -> String {
        self.text.lock().clone()
    }

    /// The server closed the connection or ended the body (the last chunk of a chunked body).
    pub fn ended(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.text().ends_with("\r\n0\r\n\r\n")
    }

    pub fn list_changed(&self) -> usize {
        self.text()
            .matches("notifications/tools/list_changed")
            .count()
    }

    pub async fn until(&self, what: &str, limit: Duration, ok: impl Fn(&Self) -> bool) {
        let started = Instant::now();
        while !ok(self) {
            assert!(
                !self.ended(),
                "{what}: the client's stream ended; got:\n{}",
                self.text()
            );
            assert!(
                started.elapsed() < limit,
                "{what}: not within {limit:?}; got:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Opens the session's GET stream at `addr` and reads it in the background.
pub async fn hold(addr: SocketAddr, session: &str) -> Held {
    hold_after(addr, session, None).await
}

/// Opens the session's GET stream at `addr` — resumed after `last_id` when given
/// (`Last-Event-ID`) — and reads it in the background.
pub async fn hold_after(addr: SocketAddr, session: &str, last_id: Option<&str>) -> Held {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let resume = last_id
        .map(|id| format!("last-event-id: {id}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:{}\r\naccept: text/event-stream\r\n\
         mcp-session-id: {session}\r\nmcp-protocol-version: 2025-11-25\r\n{resume}\r\n",
        addr.port()
    );
    conn.write_all(req.as_bytes()).await.expect("write");
    let text = Arc::new(Mutex::new(String::new()));
    let closed = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (text, closed) = (text.clone(), closed.clone());
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text.lock().push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            closed.store(true, Ordering::Release);
        }
    });
    Held { text, closed, task }
}

/// Announces `notifications/tools/list_changed` cluster-wide, through `addr` in `session`,
/// retrying (bounded) while the session is being taken over or handed off.
pub async fn trigger_list_changed(addr: SocketAddr, session: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = crate::common::send(
            addr,
            "POST",
            &[
                crate::common::ACCEPT_BOTH,
                crate::common::JSON,
                ("mcp-session-id", session),
            ],
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_trigger_tool_change","arguments":{}}}"#,
        )
        .await;
        if r.status == 200 && r.body.contains("announced") {
            return;
        }
        assert_ne!(r.status, 404, "session {session} was lost: {r:?}");
        assert!(Instant::now() < deadline, "never served again: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the stream's events are `<stream>-<seq>` of one stream, consecutive from the
/// priming event (0): no gap, no duplicate.
pub fn assert_consecutive(held: &Held) {
    let text = held.text();
    let ids = sse_ids(&text);
    let stream = ids
        .first()
        .and_then(|id| id.split_once('-'))
        .map(|(s, _)| s.to_owned())
        .unwrap_or_else(|| panic!("no event id in:\n{text}"));
    let expected: Vec<String> = (0..ids.len()).map(|q| format!("{stream}-{q}")).collect();
    assert_eq!(
        ids, expected,
        "one stream's events in order, each once:\n{text}"
    );
}
