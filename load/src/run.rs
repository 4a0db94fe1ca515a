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
    /// Calls per second (open loop); 0 = no call phase.
    pub rate: f64,
    /// Length of the call phase.
    pub duration: Duration,
    /// Protocol era.
    pub era: Era,
    /// Local source addresses to spread connections over (empty: the OS picks).
    pub sources: Vec<IpAddr>,
    /// Tool to call with `{"text": "load"}`.
    pub tool: String,
}

impl LoadConfig {
    fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    /// Calls due in the call phase.
    pub fn total_calls(&self) -> u64 {
        if self.rate > 0.0 && self.workers > 0 {
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
            match hold_one(&cfg, i as usize).await {
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
    let mut c = Client::connect(cfg.addr, &cfg.path, cfg.source(i)).await?;
    if cfg.era.modern(i) {
        c.listen().await?;
    } else {
        c.initialize().await?;
        c.open_stream(None).await?;
    }
    Ok(c)
}

/// Connects the workers, then sends `tools/call` open-loop from `start` for `cfg.duration`.
pub async fn calls(cfg: &LoadConfig, start: Instant, live: Arc<Live>) -> CallReport {
    let total = cfg.total_calls();
    let mut report = CallReport {
        due: total,
        ..CallReport::default()
    };
    if total == 0 {
        return report;
    }
    let errors: SharedErrors = Arc::default();
    let due_rx = match pacer::start(start, cfg.rate, total) {
        Ok(rx) => rx,
        Err(e) => {
            count(&errors, &live, format!("pacer: {e}"));
            report.errors = take(&errors);
            return report;
        }
    };
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..cfg.workers as usize {
        let (cfg, rx, errors, live) = (cfg.clone(), due_rx.clone(), errors.clone(), live.clone());
        workers.spawn(async move { call_worker(cfg, w, start, rx, errors, live).await });
    }
    drop(due_rx);
    let (mut latency, mut service, mut timeline) =
        (Hist::default(), Hist::default(), Timeline::default());
    while let Some(done) = workers.join_next().await {
        if let Ok(w) = done {
            latency.merge(&w.latency);
            service.merge(&w.service);
            timeline.merge(&w.timeline.report());
            report.ok += w.ok;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.latency = latency.to_bins();
    report.service = service.to_bins();
    report.timeline = timeline.report();
    report.errors = take(&errors);
    report
}

#[derive(Default)]
struct WorkerResult {
    latency: Hist,
    service: Hist,
    timeline: Timeline,
    ok: u64,
}

async fn call_worker(
    cfg: LoadConfig,
    w: usize,
    start: Instant,
    due: async_channel::Receiver<pacer::Due>,
    errors: SharedErrors,
    live: Arc<Live>,
) -> WorkerResult {
    let mut out = WorkerResult::default();
    let modern = cfg.era.modern(w);
    let source = cfg.source(w + cfg.sessions as usize);
    let mut client = connect_worker(&cfg, modern, source).await;
    while let Ok(d) = due.recv().await {
        let at = d.at.saturating_duration_since(start);
        if client.is_err() {
            client = connect_worker(&cfg, modern, source).await;
        }
        let result = match client.as_mut() {
            Ok(c) => {
                let sent = Instant::now();
                c.call_tool(modern, &cfg.tool, json!({ "text": "load" }))
                    .await
                    .map(|_| sent)
            }
            Err(e) => Err(ClientError::Connect(std::io::Error::other(e.to_string()))),
        };
        match result {
            Ok(sent) => {
                let now = Instant::now();
                let latency = now.saturating_duration_since(d.at);
                out.latency.record(latency);
                out.service.record(now.saturating_duration_since(sent));
                out.timeline.ok(at, latency);
                out.ok += 1;
                live.calls_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if matches!(e, ClientError::Io(_) | ClientError::BadHttp(_)) {
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

async fn connect_worker(
    cfg: &LoadConfig,
    modern: bool,
    source: Option<IpAddr>,
) -> Result<Client, String> {
    let connect = async {
        let mut c = Client::connect(cfg.addr, &cfg.path, source).await?;
        if !modern {
            c.initialize().await?;
        }
        Ok::<_, ClientError>(c)
    };
    connect.await.map_err(|e| e.to_string())
}

/// A whole run in this process: ramp, calls starting 200 ms after the ramp, then the report.
pub async fn run(cfg: &LoadConfig, live: Arc<Live>) -> (RampReport, CallReport) {
    let (held, ramp) = ramp(cfg, live.clone()).await;
    let calls = calls(cfg, Instant::now() + Duration::from_millis(200), live).await;
    drop(held);
    (ramp, calls)
}
