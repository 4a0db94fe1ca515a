//! Session survival across node failures (`mcp-failover`).
//!
//! Opens N legacy (2025-11-25) sessions, `initialize` spread round-robin over the targets (the
//! cluster's nodes), then keeps every session busy: a GET stream held on a node other than the
//! one that created the session, and a periodic `tools/call` sent each time through the next
//! node round-robin, so most calls and streams go through a node that must forward them to the
//! session's owner.
//!
//! A failed attempt (connection refused or reset, a timeout, 503 with or without `Retry-After`,
//! any other non-404 answer) is retried for the **same** session (same `Mcp-Session-Id`, never a
//! new `initialize`) on the next target after a jittered exponential backoff; a broken GET stream
//! is reopened on the next target with `Last-Event-ID`. A session is **lost** when a node answers
//! 404 (unknown session) after it was established, or when it cannot complete a call (or reopen
//! its stream) within the per-session deadline.
//!
//! The run ends after `duration`, or when `until_file` appears (bounded by `duration`); then a
//! final check: every session not lost must complete one more call and reopen its stream.
//! Every loop is bounded by a deadline or the stop signal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;

use crate::client::resume::Backoff;
use crate::client::{Client, ClientError};
use crate::stats::Hist;

/// One node's MCP endpoint.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address.
    pub addr: SocketAddr,
    /// MCP path.
    pub path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// The nodes' MCP endpoints (at least one).
    pub targets: Vec<Target>,
    /// Sessions to open.
    pub sessions: u32,
    /// `tools/call` per second, all sessions together (0: only the final check's calls).
    pub rate: f64,
    /// Length of the run; with `until_file`, the longest it may wait for the file.
    pub duration: Duration,
    /// Tool to call with `{"text": ...}` (`echo` answers are checked to carry the text back).
    pub tool: String,
    /// Longest wait for one attempt (connect + answer, or connect + stream head).
    pub timeout: Duration,
    /// Longest a session may stay unable to complete a call or reopen its stream: past it the
    /// session is lost.
    pub deadline: Duration,
    /// Most attempts for one call (the first included).
    pub attempts: u32,
    /// Run until this file exists (then the final check).
    pub until_file: Option<PathBuf>,
    /// Written once every session is open and its stream is up (or 10 s after the opens).
    pub ready_file: Option<PathBuf>,
    /// Hold a GET stream per session.
    pub streams: bool,
    /// Concurrent `initialize` exchanges while opening.
    pub open_concurrency: usize,
    /// A progress line on stderr every 5 s.
    pub progress: bool,
    /// An attempt answered this late or later is listed in `slow_calls`.
    pub slow: Duration,
}

/// A session that was lost.
#[derive(Debug, Clone, Serialize)]
pub struct LostSession {
    /// Index of the session in this run.
    pub index: usize,
    /// Its `Mcp-Session-Id`.
    pub session: String,
    /// The target that answered its `initialize`.
    pub initialized_on: String,
    /// Why: `call_404`, `call_deadline`, `stream_404`, `stream_deadline`, `final_call_*`,
    /// `final_stream_*`.
    pub reason: String,
    /// When (Unix seconds).
    pub at: f64,
    /// The last attempt's target and error.
    pub last_error: String,
}

/// A stretch during which a session could not complete a call or had no stream, that ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// Index of the session.
    pub index: usize,
    /// Its `Mcp-Session-Id`.
    pub session: String,
    /// `call` or `stream`.
    pub kind: &'static str,
    /// First failed attempt (Unix seconds).
    pub start: f64,
    /// Success (Unix seconds).
    pub end: f64,
    /// Failed attempts in between.
    pub failed_attempts: u32,
    /// The errors seen, in order, each once, as `KIND@IP:PORT` (the target that failed;
    /// `ended_KIND` for a stream that broke).
    pub errors: Vec<String>,
}

/// An attempt that was answered, but late (typically a forward that waited for a failover).
#[derive(Debug, Clone, Serialize)]
pub struct SlowCall {
    /// Index of the session.
    pub index: usize,
    /// Its `Mcp-Session-Id`.
    pub session: String,
    /// Sent (Unix seconds).
    pub start: f64,
    /// Answered (Unix seconds).
    pub end: f64,
    /// The node that answered.
    pub node: String,
}

/// Call latencies in milliseconds (from a call's first attempt to its answer, retries included;
/// the final check's calls, sent all at once, are not counted).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The run's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FailoverReport {
    /// Targets, in round-robin order.
    pub targets: Vec<String>,
    /// Sessions asked for.
    pub sessions_requested: u32,
    /// Sessions opened (initialize answered).
    pub sessions_opened: u64,
    /// Sessions that could not be opened, by the last error's kind.
    pub open_failed: BTreeMap<String, u64>,
    /// Sessions lost after they were opened.
    pub lost: u64,
    /// Lost sessions by reason.
    pub lost_reasons: BTreeMap<String, u64>,
    /// Every lost session.
    pub lost_sessions: Vec<LostSession>,
    /// Calls answered (final check included).
    pub calls_ok: u64,
    /// Calls answered by a node other than the one that created the session (forwarded).
    pub calls_ok_elsewhere: u64,
    /// Calls that never completed (each loses its session).
    pub calls_failed: u64,
    /// Retries (failed attempts followed by another attempt), calls and streams.
    pub retries: u64,
    /// Failed attempts by kind (`call_connect`, `call_http_503`, `stream_io`, ...).
    pub failed_attempts: BTreeMap<String, u64>,
    /// `Retry-After` headers seen on failed calls.
    pub retry_after_seen: u64,
    /// Call latency (answered calls).
    pub latency_ms: LatencyMs,
    /// Streams reopened with `Last-Event-ID` after they broke.
    pub stream_resumes: u64,
    /// Events read from the GET streams (priming events included).
    pub stream_events: u64,
    /// Longest outage of any session, seconds.
    pub longest_outage_s: f64,
    /// The session it happened to.
    pub longest_outage_session: Option<usize>,
    /// Every outage.
    pub outages: Vec<Outage>,
    /// Answered attempts that took `slow` or more (first attempts and retries alike).
    pub slow_calls: Vec<SlowCall>,
    /// Sessions that passed the final check.
    pub final_check_ok: u64,
    /// Whether `until_file` appeared (null without one).
    pub until_file_seen: Option<bool>,
    /// Run start (Unix seconds).
    pub started_at: f64,
    /// Seconds from start to the end of the final check.
    pub elapsed_s: f64,
}

impl FailoverReport {
    /// Whether the run passed: every session opened, at most `max_lost` lost, and the until-file
    /// (if any) appeared in time.
    pub fn passed(&self, max_lost: u64) -> bool {
        self.open_failed.is_empty()
            && self.sessions_opened > 0
            && self.lost <= max_lost
            && self.until_file_seen != Some(false)
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let kv = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        s.push_str(&format!("targets: {}\n", self.targets.join(" ")));
        s.push_str(&format!(
            "sessions: {} opened of {} (open failures: {}), {} lost ({}), {} passed the final check\n",
            self.sessions_opened,
            self.sessions_requested,
            kv(&self.open_failed),
            self.lost,
            kv(&self.lost_reasons),
            self.final_check_ok
        ));
        s.push_str(&format!(
            "calls: {} ok ({} through another node than the session's first), {} failed, {} retries\n",
            self.calls_ok, self.calls_ok_elsewhere, self.calls_failed, self.retries
        ));
        s.push_str(&format!(
            "failed attempts: {} (Retry-After seen {} times)\n",
            kv(&self.failed_attempts),
            self.retry_after_seen
        ));
        s.push_str(&format!(
            "call latency (first attempt to answer, final check excluded): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
            self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.max
        ));
        s.push_str(&format!(
            "streams: {} events, {} resumed with Last-Event-ID\n",
            self.stream_events, self.stream_resumes
        ));
        s.push_str(&format!(
            "slow answers (an attempt answered after --slow-ms or more): {}\n",
            self.slow_calls.len()
        ));
        s.push_str(&format!(
            "outages: {}, longest {:.3} s{}\n",
            self.outages.len(),
            self.longest_outage_s,
            self.outages
                .iter()
                .max_by(|a, b| (a.end - a.start).total_cmp(&(b.end - b.start)))
                .map(|o| format!(
                    " (session #{} {}, {}: {})",
                    o.index,
                    o.session,
                    o.kind,
                    o.errors.join(" ")
                ))
                .unwrap_or_default()
        ));
        for l in self.lost_sessions.iter().take(20) {
            s.push_str(&format!(
                "LOST #{} {} (initialized on {}): {} at {:.3}; last error: {}\n",
                l.index, l.session, l.initialized_on, l.reason, l.at, l.last_error
            ));
        }
        if self.lost_sessions.len() > 20 {
            s.push_str(&format!(
                "... and {} more lost\n",
                self.lost_sessions.len() - 20
            ));
        }
        if self.until_file_seen == Some(false) {
            s.push_str("the until-file did not appear within --duration\n");
        }
        s.push_str(&format!("elapsed {:.1} s\n", self.elapsed_s));
        s
    }
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[derive(Debug, Default)]
struct Stats {
    hist: Hist,
    calls_ok: u64,
    calls_ok_elsewhere: u64,
    calls_failed: u64,
    retries: u64,
    failed_attempts: BTreeMap<String, u64>,
    retry_after_seen: u64,
    stream_resumes: u64,
    stream_events: u64,
    lost: Vec<LostSession>,
    outages: Vec<Outage>,
    slow_calls: Vec<SlowCall>,
    final_ok: u64,
}

#[derive(Debug)]
struct Shared {
    cfg: FailoverConfig,
    stats: Mutex<Stats>,
    streams_up: AtomicU64,
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed_attempt(&self, kind: String) {
        *self.stats().failed_attempts.entry(kind).or_default() += 1;
    }
}

/// One open session.
#[derive(Debug)]
struct Sess {
    index: usize,
    id: String,
    /// Target index that answered `initialize`.
    home: usize,
    lost: AtomicBool,
}

impl Sess {
    fn lose(&self, shared: &Shared, reason: String, last_error: String) {
        if self.lost.swap(true, Ordering::SeqCst) {
            return;
        }
        let l = LostSession {
            index: self.index,
            session: self.id.clone(),
            initialized_on: shared.cfg.targets[self.home].to_string(),
            reason,
            at: epoch(),
            last_error,
        };
        eprintln!(
            "mcp-failover: LOST session #{} {} (initialized on {}): {} at {:.3}; last error: {}",
            l.index, l.session, l.initialized_on, l.reason, l.at, l.last_error
        );
        shared.stats().lost.push(l);
    }
}

/// Why an attempt failed.
#[derive(Debug)]
enum Fail {
    /// 404: the node does not know the session.
    Gone,
    /// Anything else: worth another attempt (kind, Retry-After seconds).
    Retry(String, Option<f64>),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Status(404) => Fail::Gone,
            e => Fail::Retry(e.kind(), None),
        }
    }
}

/// One `tools/call` attempt on `slot`'s connection (opened if needed).
async fn call_once(
    slot: &mut Option<Client>,
    target: &Target,
    session: &str,
    tool: &str,
    id: i64,
    text: &str,
) -> Result<(), Fail> {
    if slot.is_none() {
        let mut c = Client::connect(target.addr, &target.path, None).await?;
        c.set_session(Some(session.to_string()));
        *slot = Some(c);
    }
    let Some(c) = slot.as_mut() else {
        return Err(Fail::Retry("no_connection".into(), None));
    };
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":{"text":text}}});
    let reply = c.post(&body, &[]).await?;
    if reply
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    {
        // A draining node closes its connections: use a new one next time.
        *slot = None;
    }
    if reply.status == 404 {
        return Err(Fail::Gone);
    }
    if !(200..300).contains(&reply.status) {
        let ra = reply
            .header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok());
        return Err(Fail::Retry(format!("http_{}", reply.status), ra));
    }
    let Some(msg) = reply.message else {
        return Err(Fail::Retry("no_response".into(), None));
    };
    if msg.get("id") != Some(&json!(id)) {
        return Err(Fail::Retry("wrong_id".into(), None));
    }
    if let Some(err) = msg.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        return Err(Fail::Retry(format!("rpc_{code}"), None));
    }
    let Some(result) = msg.get("result") else {
        return Err(Fail::Retry("no_result".into(), None));
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(Fail::Retry("tool_error".into(), None));
    }
    if tool == "echo" && !result.to_string().contains(text) {
        return Err(Fail::Retry("wrong_echo".into(), None));
    }
    Ok(())
}

/// Per-session request state: one connection per target, the round-robin position, ids.
#[derive(Debug)]
struct Caller {
    conns: Vec<Option<Client>>,
    rr: usize,
    next_id: i64,
    backoff: Backoff,
}

impl Caller {
    fn new(targets: usize, start: usize) -> Self {
        Self {
            conns: (0..targets).map(|_| None).collect(),
            rr: start,
            next_id: 1,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(1), u32::MAX),
        }
    }
}

/// Sleeps `d`, or less when the deadline comes first; false if the deadline has passed.
async fn sleep_within(d: Duration, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    tokio::time::sleep(d.min(deadline - now)).await;
    Instant::now() < deadline
}

/// One call, retried on the next target until answered, 404, or the deadline / attempts run
/// out. `Err` carries the loss reason and the last error.
/// `timed`: the latency goes into the histogram (not for the final check's burst).
async fn call(
    shared: &Shared,
    sess: &Sess,
    caller: &mut Caller,
    timed: bool,
) -> Result<(), (String, String)> {
    let cfg = &shared.cfg;
    let n = cfg.targets.len();
    let start = Instant::now();
    let deadline = start + cfg.deadline;
    let mut first_fail: Option<f64> = None;
    let mut failures = 0u32;
    let mut errors: Vec<String> = Vec::new();
    loop {
        let t = caller.rr % n;
        caller.rr = caller.rr.wrapping_add(1);
        let id = caller.next_id;
        caller.next_id += 1;
        let text = format!("failover-{}-{id}", sess.index);
        let attempt_start = epoch();
        let slot = &mut caller.conns[t];
        let left = deadline.saturating_duration_since(Instant::now());
        let r = match timeout(
            cfg.timeout.min(left.max(Duration::from_millis(1))),
            call_once(slot, &cfg.targets[t], &sess.id, &cfg.tool, id, &text),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Fail::Retry("timeout".into(), None)),
        };
        match r {
            Ok(()) => {
                let mut st = shared.stats();
                if timed {
                    st.hist.record(start.elapsed());
                }
                st.calls_ok += 1;
                let end = epoch();
                if timed && end - attempt_start >= cfg.slow.as_secs_f64() {
                    st.slow_calls.push(SlowCall {
                        index: sess.index,
                        session: sess.id.clone(),
                        start: attempt_start,
                        end,
                        node: cfg.targets[t].addr.to_string(),
                    });
                }
                if t != sess.home {
                    st.calls_ok_elsewhere += 1;
                }
                if let Some(s) = first_fail {
                    st.outages.push(Outage {
                        index: sess.index,
                        session: sess.id.clone(),
                        kind: "call",
                        start: s,
                        end: epoch(),
                        failed_attempts: failures,
                        errors,
                    });
                }
                return Ok(());
            }
            Err(Fail::Gone) => {
                caller.conns[t] = None;
                shared.failed_attempt("call_http_404".into());
                shared.stats().calls_failed += 1;
                return Err((
                    "call_404".into(),
                    format!("{}: http 404 (unknown session)", cfg.targets[t]),
                ));
            }
            Err(Fail::Retry(kind, retry_after)) => {
                caller.conns[t] = None;
                failures += 1;
                first_fail.get_or_insert(attempt_start);
                let tagged = format!("{kind}@{}", cfg.targets[t].addr);
                if !errors.contains(&tagged) {
                    errors.push(tagged);
                }
                let last_error = format!("{}: {kind}", cfg.targets[t]);
                shared.failed_attempt(format!("call_{kind}"));
                let mut delay = caller.backoff.delay(failures);
                if let Some(ra) = retry_after {
                    shared.stats().retry_after_seen += 1;
                    // Another node may answer at once; wait for at most 1 s of the hint.
                    delay = delay.max(Duration::from_secs_f64(ra.clamp(0.0, 1.0)));
                }
                if failures >= cfg.attempts.max(1) || !sleep_within(delay, deadline).await {
                    shared.stats().calls_failed += 1;
                    return Err(("call_deadline".into(), last_error));
                }
                shared.stats().retries += 1;
            }
        }
    }
}

/// Connects to `target` and opens the session's GET stream, resuming after `last`.
async fn open_stream(
    target: &Target,
    session: &str,
    last: Option<&str>,
) -> Result<Client, ClientError> {
    let mut c = Client::connect(target.addr, &target.path, None).await?;
    c.set_session(Some(session.to_string()));
    c.open_stream(last).await?;
    Ok(c)
}

/// Holds the session's GET stream until `stop`, reopening it on the next target with
/// `Last-Event-ID` when it breaks. Returns the last event id seen.
async fn hold_stream(
    shared: Arc<Shared>,
    sess: Arc<Sess>,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let cfg = &shared.cfg;
    let n = cfg.targets.len();
    let mut t = (sess.home + 1) % n;
    let mut last: Option<String> = None;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), u32::MAX);
    let mut down: Option<(Instant, f64)> = None;
    let mut failures = 0u32;
    let mut opened_once = false;
    let mut errors: Vec<String> = Vec::new();
    loop {
        if *stop.borrow() || sess.lost.load(Ordering::SeqCst) {
            return last;
        }
        let r = tokio::select! {
            r = timeout(cfg.timeout, open_stream(&cfg.targets[t], &sess.id, last.as_deref())) => r,
            _ = stop.changed() => return last,
        };
        let err = match r {
            Ok(Ok(mut client)) => {
                if opened_once {
                    shared.stats().stream_resumes += 1;
                } else {
                    opened_once = true;
                    shared.streams_up.fetch_add(1, Ordering::SeqCst);
                }
                if let Some((_, since)) = down.take() {
                    shared.stats().outages.push(Outage {
                        index: sess.index,
                        session: sess.id.clone(),
                        kind: "stream",
                        start: since,
                        end: epoch(),
                        failed_attempts: failures,
                        errors: std::mem::take(&mut errors),
                    });
                }
                failures = 0;
                let err = loop {
                    let ev = tokio::select! {
                        ev = client.next_event() => ev,
                        _ = stop.changed() => return client.last_event_id().map(String::from).or(last),
                    };
                    match ev {
                        Ok(_) => shared.stats().stream_events += 1,
                        Err(e) => break e,
                    }
                    if sess.lost.load(Ordering::SeqCst) {
                        return last;
                    }
                };
                if let Some(id) = client.last_event_id() {
                    last = Some(id.to_string());
                }
                // The stream broke (node gone, drained, relay ended): reopen elsewhere at once.
                down = Some((Instant::now(), epoch()));
                errors = vec![format!("ended_{}@{}", err.kind(), cfg.targets[t].addr)];
                shared.failed_attempt(format!("stream_{}", err.kind()));
                t = (t + 1) % n;
                continue;
            }
            Ok(Err(ClientError::Status(404))) => {
                shared.failed_attempt("stream_http_404".into());
                sess.lose(
                    &shared,
                    "stream_404".into(),
                    format!("{}: http 404 (unknown session)", cfg.targets[t]),
                );
                return last;
            }
            Ok(Err(e)) => e.kind(),
            Err(_) => "timeout".to_string(),
        };
        let since = down.get_or_insert((Instant::now(), epoch())).0;
        failures += 1;
        let tagged = format!("{err}@{}", cfg.targets[t].addr);
        if !errors.contains(&tagged) {
            errors.push(tagged);
        }
        let last_error = format!("{}: {err}", cfg.targets[t]);
        shared.failed_attempt(format!("stream_{err}"));
        t = (t + 1) % n;
        if since.elapsed() >= cfg.deadline {
            sess.lose(&shared, "stream_deadline".into(), last_error);
            return last;
        }
        shared.stats().retries += 1;
        let delay = backoff.delay(failures);
        tokio::select! {
            _ = sleep_within(delay, since + cfg.deadline) => {}
            _ = stop.changed() => return last,
        }
    }
}

/// The final check's stream part: reopen the stream on the next target with `Last-Event-ID`.
async fn reopen_stream(
    shared: &Shared,
    sess: &Sess,
    last: Option<&str>,
    start_target: usize,
) -> Result<(), (String, String)> {
    let cfg = &shared.cfg;
    let n = cfg.targets.len();
    let deadline = Instant::now() + cfg.deadline;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), u32::MAX);
    let mut failures = 0;
    let mut t = start_target % n;
    loop {
        let r = timeout(cfg.timeout, open_stream(&cfg.targets[t], &sess.id, last)).await;
        let err = match r {
            Ok(Ok(_client)) => return Ok(()),
            Ok(Err(ClientError::Status(404))) => {
                shared.failed_attempt("stream_http_404".into());
                return Err((
                    "final_stream_404".into(),
                    format!("{}: http 404 (unknown session)", cfg.targets[t]),
                ));
            }
            Ok(Err(e)) => e.kind(),
            Err(_) => "timeout".to_string(),
        };
        shared.failed_attempt(format!("stream_{err}"));
        failures += 1;
        let last_error = format!("{}: {err}", cfg.targets[t]);
        t = (t + 1) % n;
        if !sleep_within(backoff.delay(failures), deadline).await {
            return Err(("final_stream_deadline".into(), last_error));
        }
        shared.stats().retries += 1;
    }
}

/// A session's calls until `stop`, then its final check (after its stream task ended).
async fn drive_session(
    shared: Arc<Shared>,
    sess: Arc<Sess>,
    first_due: Instant,
    period: Option<Duration>,
    mut stop: watch::Receiver<bool>,
    stream: Option<tokio::task::JoinHandle<Option<String>>>,
) {
    let cfg = &shared.cfg;
    let n = cfg.targets.len();
    // Calls start on the node after the stream's, so the three roles rotate.
    let mut caller = Caller::new(n, sess.home + 2);
    if let Some(period) = period {
        let mut due = first_due;
        loop {
            if *stop.borrow() || sess.lost.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.changed() => break,
            }
            if let Err((reason, last)) = call(&shared, &sess, &mut caller, true).await {
                sess.lose(&shared, reason, last);
                break;
            }
            due += period;
            let now = Instant::now();
            if due < now {
                // Behind (a call took long): skip the missed slots rather than burst.
                let missed = (now - due).as_secs_f64() / period.as_secs_f64();
                due += period.mul_f64(missed.ceil());
            }
        }
    } else {
        let _ = stop.wait_for(|s| *s).await;
    }
    let last = match stream {
        Some(h) => h.await.ok().flatten(),
        None => None,
    };
    if sess.lost.load(Ordering::SeqCst) {
        return;
    }
    // Final check: one call and (with streams) a resumed stream, each with the full deadline.
    if let Err((reason, last_error)) = call(&shared, &sess, &mut caller, false).await {
        sess.lose(&shared, format!("final_{reason}"), last_error);
        return;
    }
    if cfg.streams
        && let Err((reason, last_error)) =
            reopen_stream(&shared, &sess, last.as_deref(), caller.rr).await
    {
        sess.lose(&shared, reason, last_error);
        return;
    }
    shared.stats().final_ok += 1;
}

/// Opens one session: `initialize` on target `index % n`, then the next ones on failure.
async fn open_session(shared: &Shared, index: usize) -> Result<Sess, String> {
    let cfg = &shared.cfg;
    let n = cfg.targets.len();
    let deadline = Instant::now() + cfg.deadline;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1), u32::MAX);
    let mut t = index % n;
    let mut failures = 0;
    loop {
        let target = &cfg.targets[t];
        let r = timeout(cfg.timeout, async {
            let mut c = Client::connect(target.addr, &target.path, None).await?;
            c.initialize().await
        })
        .await;
        let kind = match r {
            Ok(Ok(id)) => {
                return Ok(Sess {
                    index,
                    id,
                    home: t,
                    lost: AtomicBool::new(false),
                });
            }
            Ok(Err(e)) => e.kind(),
            Err(_) => "timeout".into(),
        };
        shared.failed_attempt(format!("initialize_{kind}"));
        failures += 1;
        t = (t + 1) % n;
        if !sleep_within(backoff.delay(failures), deadline).await {
            return Err(kind);
        }
    }
}

/// Runs the whole drive: open, hold and call until the end, final check, report.
pub async fn run(cfg: FailoverConfig) -> anyhow::Result<FailoverReport> {
    anyhow::ensure!(!cfg.targets.is_empty(), "no targets");
    anyhow::ensure!(cfg.sessions > 0, "--sessions must be at least 1");
    let started_at = epoch();
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        stats: Mutex::new(Stats::default()),
        streams_up: AtomicU64::new(0),
    });
    let mut report = FailoverReport {
        targets: cfg.targets.iter().map(|t| t.to_string()).collect(),
        sessions_requested: cfg.sessions,
        started_at,
        ..Default::default()
    };

    // Open.
    let gate = Arc::new(Semaphore::new(cfg.open_concurrency.max(1)));
    let mut opens = tokio::task::JoinSet::new();
    for i in 0..cfg.sessions as usize {
        let (shared, gate) = (shared.clone(), gate.clone());
        opens.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, open_session(&shared, i).await)
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = opens.join_next().await {
        match r {
            Ok((_, Ok(s))) => sessions.push(Arc::new(s)),
            Ok((_, Err(kind))) => *report.open_failed.entry(kind).or_default() += 1,
            Err(e) => *report.open_failed.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    sessions.sort_by_key(|s| s.index);
    report.sessions_opened = sessions.len() as u64;
    if cfg.progress {
        eprintln!(
            "mcp-failover: {} sessions opened in {:.1} s ({} failed)",
            sessions.len(),
            t0.elapsed().as_secs_f64(),
            cfg.sessions as u64 - sessions.len() as u64
        );
    }

    // Hold and call.
    let (stop_tx, stop_rx) = watch::channel(false);
    let period =
        (cfg.rate > 0.0).then(|| Duration::from_secs_f64(sessions.len() as f64 / cfg.rate));
    let calls_start = Instant::now() + Duration::from_millis(200);
    let count = sessions.len().max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for s in &sessions {
        let stream = cfg
            .streams
            .then(|| tokio::spawn(hold_stream(shared.clone(), s.clone(), stop_rx.clone())));
        // Spread the first calls evenly over one period.
        let first_due = calls_start
            + period
                .unwrap_or_default()
                .mul_f64(s.index as f64 / count as f64);
        tasks.spawn(drive_session(
            shared.clone(),
            s.clone(),
            first_due,
            period,
            stop_rx.clone(),
            stream,
        ));
    }
    // Ready: every stream opened once or its session lost (or 10 s passed).
    let ready_by = Instant::now() + Duration::from_secs(10);
    while cfg.streams
        && shared.streams_up.load(Ordering::SeqCst) + (shared.stats().lost.len() as u64)
            < (sessions.len() as u64)
        && Instant::now() < ready_by
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(path) = &cfg.ready_file {
        std::fs::write(path, format!("{}\n", epoch()))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    if cfg.progress {
        eprintln!(
            "mcp-failover: ready: {} streams up; calling at {} calls/s{}",
            shared.streams_up.load(Ordering::SeqCst),
            cfg.rate,
            match &cfg.until_file {
                Some(p) => format!(" until {} exists", p.display()),
                None => format!(" for {:.0} s", cfg.duration.as_secs_f64()),
            }
        );
    }

    // Until the end (the duration counts from the first calls).
    let end = calls_start + cfg.duration;
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        if let Some(p) = &cfg.until_file
            && p.exists()
        {
            report.until_file_seen = Some(true);
            break;
        }
        if now >= end {
            if cfg.until_file.is_some() {
                report.until_file_seen = Some(false);
            }
            break;
        }
        if cfg.progress && now >= next_progress {
            next_progress += Duration::from_secs(5);
            let st = shared.stats();
            eprintln!(
                "mcp-failover: t={:.0}s calls ok {} retries {} lost {} stream resumes {} outages {}",
                t0.elapsed().as_secs_f64(),
                st.calls_ok,
                st.retries,
                st.lost.len(),
                st.stream_resumes,
                st.outages.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50).min(end - now)).await;
    }
    if cfg.progress {
        eprintln!("mcp-failover: final check ({} sessions)", sessions.len());
    }
    let _ = stop_tx.send(true);
    // Every task ends: calls and streams stop on the signal, a call in progress and the final
    // check are bounded by the deadline.
    while tasks.join_next().await.is_some() {}

    let st = shared.stats();
    report.lost = st.lost.len() as u64;
    for l in &st.lost {
        *report.lost_reasons.entry(l.reason.clone()).or_default() += 1;
    }
    report.lost_sessions = st.lost.clone();
    report.lost_sessions.sort_by_key(|l| l.index);
    report.calls_ok = st.calls_ok;
    report.calls_ok_elsewhere = st.calls_ok_elsewhere;
    report.calls_failed = st.calls_failed;
    report.retries = st.retries;
    report.failed_attempts = st.failed_attempts.clone();
    report.retry_after_seen = st.retry_after_seen;
    let lat = st.hist.latency();
    report.latency_ms = LatencyMs {
        p50: lat.p50_us as f64 / 1000.0,
        p99: lat.p99_us as f64 / 1000.0,
        max: lat.max_us as f64 / 1000.0,
    };
    report.stream_resumes = st.stream_resumes;
    report.stream_events = st.stream_events;
    report.outages = st.outages.clone();
    report.slow_calls = st.slow_calls.clone();
    report
        .slow_calls
        .sort_by(|a, b| a.start.total_cmp(&b.start));
    report.outages.sort_by(|a, b| a.start.total_cmp(&b.start));
    if let Some(o) = report
        .outages
        .iter()
        .max_by(|a, b| (a.end - a.start).total_cmp(&(b.end - b.start)))
    {
        report.longest_outage_s = o.end - o.start;
        report.longest_outage_session = Some(o.index);
    }
    report.final_check_ok = st.final_ok;
    report.elapsed_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn node() -> mcp_node::Running {
        let config = mcpcluster_api::NodeConfig {
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            ..Default::default()
        };
        mcp_node::start(mcp_node::Settings::validate(config).expect("valid"))
            .await
            .expect("starts")
    }

    fn config(targets: Vec<SocketAddr>) -> FailoverConfig {
        FailoverConfig {
            targets: targets
                .into_iter()
                .map(|addr| Target {
                    addr,
                    path: "/mcp".into(),
                })
                .collect(),
            sessions: 12,
            rate: 40.0,
            duration: Duration::from_millis(800),
            tool: "echo".into(),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(3),
            attempts: 64,
            until_file: None,
            ready_file: None,
            streams: true,
            open_concurrency: 4,
            progress: false,
            slow: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn one_node_three_times_loses_nothing() {
        let n = node().await;
        let r = run(config(vec![n.mcp_addr; 3])).await.expect("runs");
        assert_eq!(r.sessions_opened, 12);
        assert_eq!(r.lost, 0, "{}", r.text());
        assert_eq!(r.final_check_ok, 12);
        assert!(r.calls_ok >= 12 * 2, "{}", r.text());
        assert!(r.passed(0));
        n.shutdown().await;
    }

    #[tokio::test]
    async fn a_dead_target_is_retried_elsewhere() {
        let n = node().await;
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let r = run(config(vec![n.mcp_addr, dead])).await.expect("runs");
        assert_eq!(r.lost, 0, "{}", r.text());
        assert!(r.failed_attempts.get("call_connect").copied().unwrap_or(0) > 0);
        assert!(r.retries > 0);
        assert!(
            r.outages
                .iter()
                .all(|o| o.errors.iter().all(|e| e.ends_with(&dead.to_string())))
        );
        n.shutdown().await;
    }

    /// A stand-in node: answers `initialize` (session `fake-session`; any other session id
    /// gets 404), holds GET streams, and answers the first `refusals` calls with 503 +
    /// `Retry-After: 0`, then echoes.
    async fn flaky_node(refusals: usize) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let refused = Arc::new(AtomicU64::new(0));
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let refused = refused.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() < head_end + 4 + len {
                            continue;
                        }
                        let body: Value =
                            serde_json::from_slice(&buf[head_end + 4..head_end + 4 + len])
                                .unwrap_or(Value::Null);
                        buf.drain(..head_end + 4 + len);
                        let reply = if body["method"] != "initialize"
                            && !head.contains("mcp-session-id: fake-session")
                        {
                            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string()
                        } else if head.starts_with("get ") {
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nid: 1-0\ndata: \n\n"
                                .to_string()
                        } else if body["method"] == "initialize" {
                            let out =
                                json!({"jsonrpc":"2.0","id":body["id"],"result":{}}).to_string();
                            format!(
                                "HTTP/1.1 200 OK\r\nmcp-session-id: fake-session\r\ncontent-length: {}\r\n\r\n{out}",
                                out.len()
                            )
                        } else if body.get("id").is_none() {
                            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string()
                        } else if refused.fetch_add(1, Ordering::SeqCst) < refusals as u64 {
                            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\r\n"
                                .to_string()
                        } else {
                            let text = body["params"]["arguments"]["text"].clone();
                            let out = json!({"jsonrpc":"2.0","id":body["id"],
                                "result":{"content":[{"type":"text","text":text}]}})
                            .to_string();
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{out}",
                                out.len()
                            )
                        };
                        if sock.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_503_with_retry_after_is_retried_on_the_same_session() {
        let addr = flaky_node(5).await;
        let mut cfg = config(vec![addr]);
        cfg.sessions = 1;
        cfg.rate = 5.0;
        let r = run(cfg).await.expect("runs");
        assert_eq!(r.lost, 0, "{}", r.text());
        assert_eq!(
            r.failed_attempts.get("call_http_503"),
            Some(&5),
            "{}",
            r.text()
        );
        assert_eq!(r.retry_after_seen, 5);
        assert!(
            r.outages
                .iter()
                .any(|o| o.kind == "call" && o.errors == [format!("http_503@{addr}")])
        );
        assert_eq!(r.final_check_ok, 1);
    }

    #[tokio::test]
    async fn a_node_that_does_not_know_the_session_loses_it() {
        // Two unrelated nodes: a session created on one gets 404 from the other.
        let (a, b) = (node().await, node().await);
        let r = run(config(vec![a.mcp_addr, b.mcp_addr]))
            .await
            .expect("runs");
        assert_eq!(r.sessions_opened, 12);
        assert_eq!(r.lost, 12, "{}", r.text());
        assert!(
            r.lost_sessions
                .iter()
                .all(|l| l.reason.ends_with("_404") && !l.session.is_empty())
        );
        assert!(!r.passed(0));
        a.shutdown().await;
        b.shutdown().await;
    }

    #[test]
    fn passes_only_without_losses_open_failures_or_a_missing_until_file() {
        let mut r = FailoverReport {
            sessions_opened: 3,
            ..Default::default()
        };
        assert!(r.passed(0));
        r.lost = 1;
        assert!(!r.passed(0));
        assert!(r.passed(1));
        r.lost = 0;
        r.until_file_seen = Some(false);
        assert!(!r.passed(0));
        r.until_file_seen = Some(true);
        r.open_failed.insert("connect".into(), 1);
        assert!(!r.passed(0));
        assert!(r.text().contains("open failures: connect=1"));
    }
}
