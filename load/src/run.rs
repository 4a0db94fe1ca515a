//! One load run: ramp held sessions, then open-loop `tools/call` traffic, then a report.
//!
//! Open loop: call *i* is due at `start + i / rate` whatever happened to earlier calls, and its
//! latency is measured from that due time, so a server that stalls cannot hide the stall by
//! slowing the generator down (coordinated omission).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::client::{Client, ClientError};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// MCP path.
    pub path: String,
    /// Sessions to open and hold idle (legacy: with a GET stream each).
    pub sessions: u32,
    /// Sessions opened per second during the ramp.
    pub ramp_rate: f64,
    /// Connections sending `tools/call`.
    pub workers: u32,
    /// Calls per second (open loop); 0 = no call phase.
    pub rate: f64,
    /// Length of the call phase.
    pub duration: Duration,
    /// Use 2026-07-28 stateless calls instead of legacy sessions.
    pub modern: bool,
    /// Local source addresses to spread connections over (empty: the OS picks).
    pub sources: Vec<IpAddr>,
    /// Tool to call and its `text` argument.
    pub tool: String,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Sessions held open at the end of the ramp.
    pub sessions_held: u32,
    /// Seconds the ramp took.
    pub ramp_seconds: f64,
    /// Calls due in the call phase.
    pub calls_due: u64,
    /// Calls answered with a result.
    pub calls_ok: u64,
    /// Answered calls per second over the call phase.
    pub throughput_per_sec: f64,
    /// Latency from the due time (what a client on a schedule sees; includes any lateness of
    /// the generator itself, e.g. up to ~1 ms of tokio timer granularity).
    pub latency: Latency,
    /// Latency from the moment the request was actually written (service time only).
    pub service: Latency,
    /// Failures by kind (ramp and calls).
    pub errors: BTreeMap<String, u64>,
}

/// Progress updates for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Sessions opened so far of the total.
    Ramp(u32, u32),
    /// Calls done so far of the total due.
    Calls(u64, u64),
}

fn source(cfg: &LoadConfig, i: usize) -> Option<IpAddr> {
    (!cfg.sources.is_empty()).then(|| cfg.sources[i % cfg.sources.len()])
}

/// Runs the load described by `cfg`; `progress` is called a few times a second.
pub async fn run(cfg: LoadConfig, progress: impl Fn(Progress) + Send + Sync + 'static) -> Report {
    let progress = Arc::new(progress);
    let mut report = Report::default();
    let errors = Arc::new(parking_errors());

    // Ramp: open and hold sessions.
    let ramp_start = Instant::now();
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(256));
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..cfg.sessions {
        if cfg.ramp_rate > 0.0 {
            tokio::time::sleep_until(
                ramp_start + Duration::from_secs_f64(f64::from(i) / cfg.ramp_rate),
            )
            .await;
        }
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let (cfg2, held, errors, opened, progress) = (
            cfg.clone(),
            held.clone(),
            errors.clone(),
            opened.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match hold_one(&cfg2, i as usize).await {
                Ok(c) => {
                    held.lock().await.push(c);
                    let n = opened.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 500 == 0 {
                        progress(Progress::Ramp(n as u32, cfg2.sessions));
                    }
                }
                Err(e) => count(&errors, e.kind()),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    report.sessions_held = held.lock().await.len() as u32;
    report.ramp_seconds = ramp_start.elapsed().as_secs_f64();
    progress(Progress::Ramp(report.sessions_held, cfg.sessions));

    // Calls: open loop over `workers` connections.
    if cfg.rate > 0.0 && cfg.workers > 0 {
        let total = (cfg.rate * cfg.duration.as_secs_f64()).round() as u64;
        report.calls_due = total;
        let slot = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(200);
        let mut workers = Vec::new();
        for w in 0..cfg.workers {
            let (cfg2, slot, done, errors) =
                (cfg.clone(), slot.clone(), done.clone(), errors.clone());
            workers.push(tokio::spawn(async move {
                call_worker(cfg2, w as usize, start, total, slot, done, errors).await
            }));
        }
        let ticker_done = done.clone();
        let ticker_progress = progress.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                ticker_progress(Progress::Calls(ticker_done.load(Ordering::Relaxed), total));
            }
        });
        let mut hist = new_hist();
        let mut service = new_hist();
        let mut ok = 0;
        for wk in workers {
            if let Ok((h, s, n)) = wk.await {
                let _ = hist.add(&h);
                let _ = service.add(&s);
                ok += n;
            }
        }
        ticker.abort();
        let elapsed = start.elapsed().as_secs_f64().max(1e-9);
        report.calls_ok = ok;
        report.throughput_per_sec = ok as f64 / elapsed.max(cfg.duration.as_secs_f64());
        report.latency = percentiles(&hist);
        report.service = percentiles(&service);
    }
    report.errors = errors.lock().map(|m| m.clone()).unwrap_or_default();
    drop(held);
    report
}

type Errors = std::sync::Mutex<BTreeMap<String, u64>>;

fn parking_errors() -> Errors {
    std::sync::Mutex::new(BTreeMap::new())
}

fn count(errors: &Errors, kind: String) {
    if let Ok(mut m) = errors.lock() {
        *m.entry(kind).or_insert(0) += 1;
    }
}

fn percentiles(h: &Histogram<u64>) -> Latency {
    Latency {
        p50_us: h.value_at_quantile(0.50),
        p95_us: h.value_at_quantile(0.95),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn hold_one(cfg: &LoadConfig, i: usize) -> Result<Client, ClientError> {
    let mut c = Client::connect(cfg.addr, &cfg.path, source(cfg, i)).await?;
    if !cfg.modern {
        c.initialize().await?;
        c.open_stream().await?;
    }
    Ok(c)
}

async fn call_worker(
    cfg: LoadConfig,
    w: usize,
    start: Instant,
    total: u64,
    slot: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    errors: Arc<Errors>,
) -> (Histogram<u64>, Histogram<u64>, u64) {
    let mut hist = new_hist();
    let mut service = new_hist();
    let mut ok = 0;
    let mut client: Option<Client> = None;
    loop {
        let i = slot.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let due = start + Duration::from_secs_f64(i as f64 / cfg.rate);
        tokio::time::sleep_until(due).await;
        if client.is_none() {
            match connect_worker(&cfg, w).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    count(&errors, e.kind());
                    done.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let sent = Instant::now();
        match c
            .call_tool(cfg.modern, &cfg.tool, json!({ "text": "load" }))
            .await
        {
            Ok(_) => {
                ok += 1;
                let now = Instant::now();
                let _ = hist.record((now.saturating_duration_since(due).as_micros() as u64).max(1));
                let _ =
                    service.record((now.saturating_duration_since(sent).as_micros() as u64).max(1));
            }
            Err(e) => {
                if matches!(e, ClientError::Io(_) | ClientError::BadHttp(_)) {
                    client = None; // reconnect on the next call
                }
                count(&errors, e.kind());
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    (hist, service, ok)
}

async fn connect_worker(cfg: &LoadConfig, w: usize) -> Result<Client, ClientError> {
    let mut c =
        Client::connect(cfg.addr, &cfg.path, source(cfg, w + cfg.sessions as usize)).await?;
    if !cfg.modern {
        c.initialize().await?;
    }
    Ok(c)
}
