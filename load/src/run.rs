//! One process's share of a load run: ramp and hold sessions, then send open-loop `tools/call`.
//!
//! Open loop: call *i* is due at `start + i / rate` whatever happened to earlier calls, and its
//! latency is measured from that due time, so a server that stalls cannot hide the stall by
//! slowing the generator down (coordinated omission). [`crate::pacer`] releases the calls;
//! whichever worker connection is free sends the next one.
//!
//! The two phases are separate functions so that several processes ([`crate::fleet`]) can ramp
//! independently and then start their call phases at one shared instant.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::client::{Client, ClientError};
use crate::pacer;
use crate::stats::{Bins, Hist, SecondReport, Timeline};

/// Which protocol era the sessions and calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    /// 2025-11-25 sessions: `initialize`, `Mcp-Session-Id`, a GET stream per held session.
    Legacy,
    /// 2026-07-28 stateless requests; held connections carry `subscriptions/listen`.
    Modern,
    /// Every other held session and worker is modern.
    Mix,
}

impl Era {
    /// Whether the `i`-th session or worker is modern.
    pub fn modern(self, i: usize) -> bool {
        match self {
            Era::Legacy => false,
            Era::Modern => true,
            Era::Mix => i % 2 == 1,
        }
    }
}

/// What one process runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// MCP path.
    pub path: String,
    /// Sessions to open and hold idle, one connection each.
    pub sessions: u32,
    /// Sessions opened per second during the ramp (0: as fast as 256 concurrent opens go).
    pub ramp_rate: f64,
    /// Connections sending `tools/call`.
    pub workers: u32,
    /// Calls per second (open loop); 0 = no call phase unless `closed_loop`.
    pub rate: f64,
    /// Length of the call phase.
    pub duration: Duration,
    /// Protocol era.
    pub era: Era,
    /// Local source addresses to spread connections over (empty: the OS picks).
    pub sources: Vec<IpAddr>,
    /// Tool to call with `{"text": "load"}`.
    pub tool: String,
    /// Longest wait for one exchange (connect + open, or one call); past it the exchange counts
    /// as a `timeout` error and its connection is replaced. Also the grace after `duration`
    /// for calls still queued: those not sent by then count as `unsent_at_deadline`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Closed loop instead of open loop: every worker sends its next call as soon as the last
    /// one is answered, for `duration` (the server's saturation throughput; latency is then
    /// service time, there being no due time).
    #[serde(default)]
    pub closed_loop: bool,
    /// Where a legacy session's requests after `initialize` go (its GET stream, `tools/call`),
    /// when not to `addr`: the session is created on `addr` and used through this endpoint (in
    /// a cluster, another node that forwards to the owner). Modern requests, having no
    /// session, stay on `addr`.
    #[serde(default)]
    pub call_at: Option<Target>,
    /// A call worker's legacy session is replaced by a new one (a fresh `initialize`) every
    /// this many calls; 0 keeps one session per worker connection. With 1, every call creates
    /// its session: session-creating load. The `initialize` counts in the call's latency from
    /// its due time, not in its service time.
    #[serde(default)]
    pub calls_per_session: u32,
    /// Legacy calls ask for progress (`_meta.progressToken`): a tool that reports it (`echo`
    /// does, once) answers on an SSE stream — a progress event, then the result as an event.
    #[serde(default)]
    pub progress: bool,
}

/// An MCP endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// MCP path.
    pub path: String,
}

/// Default of [`LoadConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl LoadConfig {
    fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    /// Calls due in the call phase (0 in a closed loop, where the count is not known ahead).
    pub fn total_calls(&self) -> u64 {
        if self.rate > 0.0 && self.workers > 0 && !self.closed_loop {
            (self.rate * self.duration.as_secs_f64()).round() as u64
        } else {
            0
        }
    }
}

/// Counters a progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    /// Sessions held open.
    pub held: AtomicU64,
    /// Calls finished (answered or failed).
    pub calls_done: AtomicU64,
    /// Calls answered with a result.
    pub calls_ok: AtomicU64,
    /// Failures of any kind so far.
    pub errors: AtomicU64,
}

/// Failures by kind.
pub type Errors = BTreeMap<String, u64>;

/// The ramp's outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RampReport {
    /// Sessions requested.
    pub requested: u32,
    /// Sessions held open at the end of the ramp.
    pub held: u32,
    /// Seconds the ramp took.
    pub seconds: f64,
    /// Failures by kind.
    pub errors: Errors,
}

/// The call phase's outcome, in a form that merges exactly across processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallReport {
    /// Calls due.
    pub due: u64,
    /// Calls answered with a result.
    pub ok: u64,
    /// Seconds from the start to the last answer.
    pub seconds: f64,
    /// Latency from the due time.
    pub latency: Bins,
    /// Latency from the actual send.
    pub service: Bins,
    /// Per second of due time.
    pub timeline: Vec<SecondReport>,
    /// Failures by kind.
    pub errors: Errors,
}

/// Connections held open by [`ramp`]; dropping it closes them.
#[derive(Debug, Default)]
pub struct Held {
    clients: Vec<Client>,
}

impl Held {
    /// Number of held connections.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

type SharedErrors = Arc<std::sync::Mutex<Errors>>;

fn count(errors: &SharedErrors, live: &Live, kind: String) {
    live.errors.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut m) = errors.lock() {
        *m.entry(kind).or_insert(0) += 1;
    }
}

fn take(errors: &SharedErrors) -> Errors {
    errors.lock().map(|m| m.clone()).unwrap_or_default()
}

/// Opens `cfg.sessions` sessions at `cfg.ramp_rate` and holds them (legacy: with the GET
/// stream; modern: with `subscriptions/listen`).
pub async fn ramp(cfg: &LoadConfig, live: Arc<Live>) -> (Held, RampReport) {
    let started = Instant::now();
    let errors: SharedErrors = Arc::default();
    let held = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        cfg.sessions as usize,
    )));
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.sessions {
        if cfg.ramp_rate > 0.0 {
            let due = started + Duration::from_secs_f64(f64::from(i) / cfg.ramp_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (cfg, held, errors, live) = (cfg.clone(), held.clone(), errors.clone(), live.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let opened = tokio::time::timeout(cfg.timeout, hold_one(&cfg, i as usize)).await;
            match opened.unwrap_or(Err(ClientError::Timeout)) {
                Ok(c) => {
                    if let Ok(mut h) = held.lock() {
                        h.push(c);
                    }
                    live.held.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => count(&errors, &live, e.kind()),
            }
        });
        // Reap finished opens as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let clients = held
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default();
    let report = RampReport {
        requested: cfg.sessions,
        held: clients.len() as u32,
        seconds: started.elapsed().as_secs_f64(),
        errors: take(&errors),
    };
    (Held { clients }, report)
}

async fn hold_one(cfg: &LoadConfig, i: usize) -> Result<Client, ClientError> {
    let source = cfg.source(i);
    let mut c = Client::connect(cfg.addr, &cfg.path, source).await?;
    if cfg.era.modern(i) {
        c.listen().await?;
        return Ok(c);
    }
    let session = c.initialize().await?;
    if let Some(t) = &cfg.call_at {
        // The session was created on `addr`; its stream is opened through `call_at`.
        c = Client::connect(t.addr, &t.path, source).await?;
        c.set_session(Some(session));
    }
    c.open_stream(None).await?;
    Ok(c)
}

/// Connects the workers, then sends `tools/call` from `start` for `cfg.duration`: open loop
/// (released by the pacer at `cfg.rate`) or, with `cfg.closed_loop`, back to back.
pub async fn calls(cfg: &LoadConfig, start: Instant, live: Arc<Live>) -> CallReport {
    let total = cfg.total_calls();
    let mut report = CallReport {
        due: total,
        ..CallReport::default()
    };
    let errors: SharedErrors = Arc::default();
    let source = if cfg.closed_loop && cfg.workers > 0 {
        Due::Closed {
            until: start + cfg.duration,
        }
    } else if total == 0 {
        return report;
    } else {
        match pacer::start(start, cfg.rate, total) {
            Ok(rx) => Due::Paced(rx),
            Err(e) => {
                count(&errors, &live, format!("pacer: {e}"));
                report.errors = take(&errors);
                return report;
            }
        }
    };
    let deadline = start + cfg.duration + cfg.timeout;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..cfg.workers as usize {
        let (cfg, due, errors, live) = (cfg.clone(), source.clone(), errors.clone(), live.clone());
        workers.spawn(async move { call_worker(cfg, w, start, deadline, due, errors, live).await });
    }
    drop(source);
    let (mut latency, mut service, mut timeline) =
        (Hist::default(), Hist::default(), Timeline::default());
    let mut sent = 0;
    while let Some(done) = workers.join_next().await {
        if let Ok(w) = done {
            latency.merge(&w.latency);
            service.merge(&w.service);
            timeline.merge(&w.timeline.report());
            report.ok += w.ok;
            sent += w.sent;
        }
    }
    if cfg.closed_loop {
        report.due = sent;
    } else if sent < total {
        let unsent = total - sent;
        live.errors.fetch_add(unsent, Ordering::Relaxed);
        if let Ok(mut m) = errors.lock() {
            *m.entry("unsent_at_deadline".into()).or_insert(0) += unsent;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.latency = latency.to_bins();
    report.service = service.to_bins();
    report.timeline = timeline.report();
    report.errors = take(&errors);
    report
}

/// Where a worker's calls come from.
#[derive(Clone)]
enum Due {
    /// Open loop: due calls from the pacer.
    Paced(async_channel::Receiver<pacer::Due>),
    /// Closed loop: the next call right away, until `until`.
    Closed { until: Instant },
}

impl Due {
    /// The next call to send and its due time, or `None` when the phase is over.
    async fn next(&mut self) -> Option<Instant> {
        match self {
            Due::Paced(rx) => rx.recv().await.ok().map(|d| d.at),
            Due::Closed { until } => {
                let now = Instant::now();
                (now < *until).then_some(now)
            }
        }
    }
}

#[derive(Default)]
struct WorkerResult {
    latency: Hist,
    service: Hist,
    timeline: Timeline,
    sent: u64,
    ok: u64,
}

async fn call_worker(
    cfg: LoadConfig,
    w: usize,
    start: Instant,
    deadline: Instant,
    mut due: Due,
    errors: SharedErrors,
    live: Arc<Live>,
) -> WorkerResult {
    let mut out = WorkerResult::default();
    let modern = cfg.era.modern(w);
    let source = cfg.source(w + cfg.sessions as usize);
    let mut client = connect_worker(&cfg, modern, source).await;
    while let Some(due_at) = due.next().await {
        if Instant::now() >= deadline {
            break; // the rest of the queue counts as unsent
        }
        out.sent += 1;
        let at = due_at.saturating_duration_since(start);
        if client.is_err() {
            client = connect_worker(&cfg, modern, source).await;
        }
        let renewed = match client.as_mut() {
            Ok(w) => w.renew_if_due(&cfg, modern).await,
            Err(kind) => Err(kind.clone()),
        };
        if let Err(kind) = renewed {
            // Could not (re)connect or create the next session: the call fails with that
            // error's kind, and the next call starts on a new connection.
            client = Err(kind.clone());
            out.timeline.error(at);
            count(&errors, &live, kind);
            live.calls_done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(w) = client.as_mut() else {
            continue; // not reached: checked just above
        };
        w.calls += 1;
        let c = &mut w.call;
        let sent = Instant::now();
        let call = c.call_tool_with(
            modern,
            &cfg.tool,
            json!({ "text": "load" }),
            cfg.progress && !modern,
        );
        let result = match tokio::time::timeout(cfg.timeout, call).await {
            Ok(r) => r.map(|_| sent),
            Err(_) => Err(ClientError::Timeout),
        };
        match result {
            Ok(sent) => {
                let now = Instant::now();
                let latency = now.saturating_duration_since(due_at);
                out.latency.record(latency);
                out.service.record(now.saturating_duration_since(sent));
                out.timeline.ok(at, latency);
                out.ok += 1;
                live.calls_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if matches!(
                    e,
                    ClientError::Io(_) | ClientError::BadHttp(_) | ClientError::Timeout
                ) {
                    client = Err(e.kind()); // reconnect before the next call
                }
                out.timeline.error(at);
                count(&errors, &live, e.kind());
            }
        }
        live.calls_done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// A call worker's connections: the one its calls go out on and, when sessions are created
/// elsewhere (`call_at`) and renewed, the connection they are created on.
struct WorkerConn {
    call: Client,
    init: Option<Client>,
    /// Calls sent on the current session.
    calls: u32,
}

impl WorkerConn {
    /// Replaces the legacy session with a new one when `calls_per_session` calls used it.
    async fn renew_if_due(&mut self, cfg: &LoadConfig, modern: bool) -> Result<(), String> {
        if modern || cfg.calls_per_session == 0 || self.calls < cfg.calls_per_session {
            return Ok(());
        }
        let renew = async {
            let on = self.init.as_mut().unwrap_or(&mut self.call);
            on.set_session(None);
            let session = on.initialize().await?;
            self.call.set_session(Some(session));
            Ok::<_, ClientError>(())
        };
        match tokio::time::timeout(cfg.timeout, renew).await {
            Ok(Ok(())) => {
                self.calls = 0;
                Ok(())
            }
            Ok(Err(e)) => Err(e.kind()),
            Err(_) => Err(ClientError::Timeout.kind()),
        }
    }
}

/// Opens a worker connection (legacy: with its session, created on `cfg.addr`; with
/// `cfg.call_at` the calls go out on a second connection there); `Err` is the failure kind for
/// reports.
async fn connect_worker(
    cfg: &LoadConfig,
    modern: bool,
    source: Option<IpAddr>,
) -> Result<WorkerConn, String> {
    let connect = async {
        let mut c = Client::connect(cfg.addr, &cfg.path, source).await?;
        if modern {
            return Ok(WorkerConn {
                call: c,
                init: None,
                calls: 0,
            });
        }
        let session = c.initialize().await?;
        let Some(t) = &cfg.call_at else {
            return Ok(WorkerConn {
                call: c,
                init: None,
                calls: 0,
            });
        };
        let mut call = Client::connect(t.addr, &t.path, source).await?;
        call.set_session(Some(session));
        Ok::<_, ClientError>(WorkerConn {
            call,
            // Kept only when it will create more sessions.
            init: (cfg.calls_per_session > 0).then_some(c),
            calls: 0,
        })
    };
    match tokio::time::timeout(cfg.timeout, connect).await {
        Ok(r) => r.map_err(|e| e.kind()),
        Err(_) => Err(ClientError::Timeout.kind()),
    }
}

/// A whole run in this process: ramp, calls starting 200 ms after the ramp, then the report.
pub async fn run(cfg: &LoadConfig, live: Arc<Live>) -> (RampReport, CallReport) {
    let (held, ramp) = ramp(cfg, live.clone()).await;
    let calls = calls(cfg, Instant::now() + Duration::from_millis(200), live).await;
    drop(held);
    (ramp, calls)
}
