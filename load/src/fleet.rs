//! Several load-generator processes acting as one.
//!
//! One process may hold at most `RLIMIT_NOFILE` sockets (20,000 here), so a run past that is
//! split over shard processes: the same binary started with `--shard CONFIG`. The parent and its
//! shards speak a line protocol:
//!
//! - shard → parent, one JSON [`ShardMsg`] per line on stdout: `progress` a few times a second,
//!   `ready` when its ramp is over, `done` with its call-phase histograms;
//! - parent → shard on stdin: `go UNIX_MS` (start the call phase at that wall-clock instant, so
//!   every shard's open-loop schedule lines up), then `stop` (close the sessions and exit).
//!
//! The parent measures the server between the phases (RSS once every session is held, before
//! the calls) and merges the histograms exactly.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;

use crate::probe;
use crate::report::{MemorySample, Report, ServerReport};
use crate::run::{self, CallReport, LoadConfig, RampReport};

/// A message from a shard to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardMsg {
    /// Counters so far.
    Progress {
        /// Sessions held.
        held: u64,
        /// Calls finished.
        calls_done: u64,
        /// Calls answered.
        calls_ok: u64,
        /// Failures.
        errors: u64,
    },
    /// The ramp is over; sessions are held.
    Ready {
        /// Ramp outcome.
        ramp: RampReport,
    },
    /// The call phase is over; sessions are still held until `stop`.
    Done {
        /// Call outcome.
        calls: CallReport,
    },
}

/// Run-wide settings beyond one shard's load.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The whole run's load, split over the shards.
    pub load: LoadConfig,
    /// Shard processes.
    pub processes: u32,
    /// Report label.
    pub label: String,
    /// Server process to measure (RSS from `/proc`).
    pub server_pid: Option<u32>,
    /// mcp-node admin address, for its gauges.
    pub admin: Option<SocketAddr>,
}

/// What the progress display is told.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// `false` during the ramp, `true` during calls.
    pub calling: bool,
    /// Sessions held, all shards.
    pub held: u64,
    /// Sessions requested.
    pub sessions: u64,
    /// Calls finished.
    pub calls_done: u64,
    /// Calls due in all.
    pub calls_total: u64,
    /// Calls answered.
    pub calls_ok: u64,
    /// Failures.
    pub errors: u64,
}

/// Splits `load` into `n` shard configurations: sessions, workers and rate divided as evenly as
/// possible; every shard gets all source addresses, rotated so shards start on different ones.
pub fn split(load: &LoadConfig, n: u32) -> Vec<LoadConfig> {
    let n = n.max(1);
    let share = |total: u32, k: u32| total / n + u32::from(k < total % n);
    (0..n)
        .map(|k| {
            let mut c = load.clone();
            c.sessions = share(load.sessions, k);
            c.ramp_rate = load.ramp_rate / f64::from(n);
            c.workers = share(load.workers, k);
            if load.workers > 0 && load.rate > 0.0 && c.workers == 0 {
                c.workers = 1;
            }
            c.rate = load.rate / f64::from(n);
            if !c.sources.is_empty() {
                let len = c.sources.len();
                c.sources.rotate_left(k as usize % len);
            }
            c
        })
        .collect()
}

/// The shard side: runs `cfg` as told by the parent on stdin, reporting on stdout.
pub async fn shard_main(cfg: LoadConfig) -> anyhow::Result<()> {
    let live = Arc::new(run::Live::default());
    let ticker_live = live.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            emit(&ShardMsg::Progress {
                held: ticker_live.held.load(Ordering::Relaxed),
                calls_done: ticker_live.calls_done.load(Ordering::Relaxed),
                calls_ok: ticker_live.calls_ok.load(Ordering::Relaxed),
                errors: ticker_live.errors.load(Ordering::Relaxed),
            });
        }
    });
    let (held, ramp) = run::ramp(&cfg, live.clone()).await;
    emit(&ShardMsg::Ready { ramp });
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let Some(go) = stdin.next_line().await? else {
        return Ok(()); // parent gone
    };
    let start_ms: u64 = go
        .strip_prefix("go ")
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("expected `go UNIX_MS`, got `{go}`"))?;
    let calls = run::calls(&cfg, instant_at(start_ms), live).await;
    ticker.abort();
    emit(&ShardMsg::Done { calls });
    // Hold the sessions until told to stop (or the parent goes away).
    while let Some(line) = stdin.next_line().await? {
        if line.trim() == "stop" {
            break;
        }
    }
    drop(held);
    Ok(())
}

fn emit(msg: &ShardMsg) {
    if let Ok(line) = serde_json::to_string(msg) {
        println!("{line}");
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The monotonic instant matching wall-clock `unix_ms` (now if it has passed).
fn instant_at(target_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(target_ms.saturating_sub(unix_ms()))
}

#[derive(Debug, Default)]
struct ShardState {
    progress: (u64, u64, u64, u64),
    ramp: Option<RampReport>,
    calls: Option<CallReport>,
    exited: bool,
}

struct Shared {
    shards: std::sync::Mutex<Vec<ShardState>>,
    changed: Notify,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<ShardState>) -> T) -> T {
        let mut guard = match self.shards.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    fn snapshot(&self, calling: bool, sessions: u64, calls_total: u64) -> Snapshot {
        self.with(|s| {
            let mut snap = Snapshot {
                calling,
                sessions,
                calls_total,
                ..Snapshot::default()
            };
            for st in s.iter() {
                snap.held += st.progress.0;
                snap.calls_done += st.progress.1;
                snap.calls_ok += st.progress.2;
                snap.errors += st.progress.3;
            }
            snap
        })
    }
}

/// The parent side: starts `fc.processes` shards of `exe`, drives the phases, measures the
/// server, merges. `progress` is called several times a second.
pub async fn run(
    exe: &Path,
    fc: &FleetConfig,
    progress: impl Fn(Snapshot) + Send + Sync + 'static,
) -> anyhow::Result<Report> {
    let configs = split(&fc.load, fc.processes);
    let shared = Arc::new(Shared {
        shards: std::sync::Mutex::new((0..configs.len()).map(|_| ShardState::default()).collect()),
        changed: Notify::new(),
    });
    let rss = |pid: Option<u32>| pid.and_then(probe::rss_bytes).unwrap_or(0);
    let rss_idle = rss(fc.server_pid);
    if let Some(pid) = fc.server_pid
        && probe::rss_bytes(pid).is_none()
    {
        bail!("--server-pid {pid}: no such process (cannot read /proc/{pid}/status)");
    }

    let mut children: Vec<(Child, ChildStdin)> = Vec::new();
    for (k, cfg) in configs.iter().enumerate() {
        let mut child = Command::new(exe)
            .arg("--shard")
            .arg(serde_json::to_string(cfg)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting shard {k} ({})", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("shard {k}: no pipes");
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<ShardMsg>(&line) else {
                    eprintln!("shard {k}: unexpected output: {line}");
                    continue;
                };
                shared.with(|s| match msg {
                    ShardMsg::Progress {
                        held,
                        calls_done,
                        calls_ok,
                        errors,
                    } => s[k].progress = (held, calls_done, calls_ok, errors),
                    ShardMsg::Ready { ramp } => {
                        s[k].progress.0 = u64::from(ramp.held);
                        s[k].ramp = Some(ramp);
                    }
                    ShardMsg::Done { calls } => s[k].calls = Some(calls),
                });
                shared.changed.notify_waiters();
            }
            shared.with(|s| s[k].exited = true);
            shared.changed.notify_waiters();
        });
        children.push((child, stdin));
    }

    let sessions = u64::from(fc.load.sessions);
    let calls_total: u64 = configs.iter().map(LoadConfig::total_calls).sum();
    let progress = Arc::new(progress);

    // Ramp, sampling the server's memory as sessions arrive.
    let ramp_started = Instant::now();
    let ramp_bound = ramp_bound(&fc.load);
    let mut samples = Vec::new();
    loop {
        let (ready, dead) = shared.with(|s| {
            (
                s.iter().all(|st| st.ramp.is_some()),
                s.iter().any(|st| st.exited && st.ramp.is_none()),
            )
        });
        if ready {
            break;
        }
        if dead {
            bail!("a load shard exited during the ramp (see its message above)");
        }
        if ramp_started.elapsed() > ramp_bound {
            bail!("the ramp did not finish within {ramp_bound:?}");
        }
        let snap = shared.snapshot(false, sessions, calls_total);
        // Sample right after a count arrives (the wait below wakes on it), once per new count.
        if let Some(pid) = fc.server_pid
            && samples
                .last()
                .is_none_or(|s: &MemorySample| s.held != snap.held)
        {
            samples.push(MemorySample {
                t: ramp_started.elapsed().as_secs_f64(),
                held: snap.held,
                rss_bytes: rss(Some(pid)),
            });
        }
        progress(snap);
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.changed.notified()).await;
    }
    progress(shared.snapshot(false, sessions, calls_total));
    // Let the server settle (allocator, lazily freed buffers) before measuring.
    if fc.server_pid.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rss_held = rss(fc.server_pid);
    // The curve's last point: every session held, the server settled (a fast ramp may finish
    // before any sample above saw a session).
    if fc.server_pid.is_some() {
        samples.push(MemorySample {
            t: ramp_started.elapsed().as_secs_f64(),
            held: shared.snapshot(false, sessions, calls_total).held,
            rss_bytes: rss_held,
        });
    }
    let node_gauges = match fc.admin {
        Some(a) => Some(
            probe::node_gauges(a)
                .await
                .map_err(anyhow::Error::msg)
                .context("--admin")?,
        ),
        None => None,
    };

    // Calls: every shard starts at the same wall-clock instant.
    let go = format!("go {}\n", unix_ms() + 500);
    for (_, stdin) in &mut children {
        stdin
            .write_all(go.as_bytes())
            .await
            .context("telling a shard to go")?;
    }
    let calls_bound = fc.load.duration + fc.load.timeout + Duration::from_secs(60);
    let calls_started = Instant::now();
    loop {
        let (done, dead) = shared.with(|s| {
            (
                s.iter().all(|st| st.calls.is_some()),
                s.iter().any(|st| st.exited && st.calls.is_none()),
            )
        });
        if done {
            break;
        }
        if dead {
            bail!("a load shard exited during the call phase (see its message above)");
        }
        if calls_started.elapsed() > calls_bound {
            bail!("the call phase did not finish within {calls_bound:?}");
        }
        progress(shared.snapshot(true, sessions, calls_total));
        let _ = tokio::time::timeout(Duration::from_millis(200), shared.changed.notified()).await;
    }
    progress(shared.snapshot(true, sessions, calls_total));
    let rss_end = rss(fc.server_pid);

    for (child, stdin) in &mut children {
        let _ = stdin.write_all(b"stop\n").await;
        let _ = stdin.shutdown().await;
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    let (ramps, calls): (Vec<RampReport>, Vec<CallReport>) = shared.with(|s| {
        (
            s.iter().filter_map(|st| st.ramp.clone()).collect(),
            s.iter().filter_map(|st| st.calls.clone()).collect(),
        )
    });
    let mut report = Report::merge(
        &fc.label,
        fc.load.rate,
        fc.load.duration.as_secs_f64(),
        &ramps,
        &calls,
    );
    if fc.server_pid.is_some() {
        let held = u64::from(report.sessions_held).max(1);
        report.server = Some(ServerReport {
            rss_idle_bytes: rss_idle,
            rss_held_bytes: rss_held,
            rss_end_bytes: rss_end,
            bytes_per_connection: rss_held.saturating_sub(rss_idle) / held,
            samples,
            node_gauges,
        });
    }
    Ok(report)
}

/// How long a ramp may take: three times its planned length plus two minutes.
fn ramp_bound(load: &LoadConfig) -> Duration {
    let planned = if load.ramp_rate > 0.0 {
        f64::from(load.sessions) / load.ramp_rate
    } else {
        f64::from(load.sessions) / 1_000.0
    };
    Duration::from_secs_f64(planned * 3.0 + 120.0)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::run::Era;

    #[test]
    fn splits_evenly_and_keeps_totals() {
        let load = LoadConfig {
            addr: "127.0.0.1:1".parse().expect("addr"),
            path: "/mcp".into(),
            sessions: 10_001,
            ramp_rate: 3_000.0,
            workers: 5,
            rate: 9_000.0,
            duration: Duration::from_secs(2),
            era: Era::Legacy,
            sources: (1..=3)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            tool: "echo".into(),
            timeout: crate::run::DEFAULT_TIMEOUT,
            closed_loop: false,
            call_at: None,
            calls_per_session: 0,
            progress: false,
        };
        let parts = split(&load, 3);
        assert_eq!(parts.iter().map(|p| p.sessions).sum::<u32>(), 10_001);
        assert_eq!(parts.iter().map(|p| p.workers).sum::<u32>(), 5);
        assert!((parts.iter().map(|p| p.rate).sum::<f64>() - 9_000.0).abs() < 1e-6);
        assert_ne!(parts[0].sources[0], parts[1].sources[0]);
        // More shards than workers: every shard still gets one so its rate share is sent.
        assert!(split(&load, 8).iter().all(|p| p.workers >= 1));
    }
}
