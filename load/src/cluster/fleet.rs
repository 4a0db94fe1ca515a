//! The parent of a cluster run: starts the shard processes, walks the plan (ramp stages, the
//! hold, the final check), merges the shards' seconds into one timeline (written as JSON lines
//! while the run goes on) and builds the report. Every wait has a deadline; a stage whose
//! deadline passes stops the ramp, and the run goes on to the hold and ends with a report.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command as Process};
use tokio::sync::mpsc;

use super::report::{ClusterReport, Phase};
use super::second::{Second, Span};
use super::shard::unix_ms;
use super::{Command, ShardConfig, ShardDone, ShardMsg};
use crate::run::Target;

/// Connections per source address (see `mcp-load`'s legacy mode: TIME_WAIT and the kernel's
/// port search make more per address slow).
pub const CONNECTIONS_PER_SOURCE: u64 = 4_000;

/// The whole run as asked on the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The nodes.
    pub nodes: Vec<Target>,
    /// Ramp stages: sessions held after each (increasing).
    pub stages: Vec<u32>,
    /// Time held after each stage is reached, before the next.
    pub stage_hold: Duration,
    /// Longest a stage may take; past it the ramp stops there.
    pub stage_timeout: Option<Duration>,
    /// The hold after the last stage (calls go on).
    pub hold: Duration,
    /// End the hold early when this file exists.
    pub until_file: Option<PathBuf>,
    /// Written (Unix ms) when the last stage ended and the hold starts.
    pub ready_file: Option<PathBuf>,
    /// Sessions opened per second, all processes.
    pub ramp_rate: f64,
    /// `initialize` exchanges in flight per process.
    pub open_concurrency: u32,
    /// Calls per second, all processes (from the end of the first stage).
    pub rate: f64,
    /// Final-check calls per second, all processes.
    pub final_rate: f64,
    /// Call connections per node per process.
    pub pool: u32,
    /// Share of streams relayed through a node other than the session's.
    pub relay_fraction: f64,
    /// Tool to call.
    pub tool: String,
    /// One exchange's limit.
    pub timeout: Duration,
    /// A session's limit without a success.
    pub deadline: Duration,
    /// Silent stream limit.
    pub stream_idle: Duration,
    /// Announcement period.
    pub announce_every: Option<Duration>,
    /// Processes (0: as `RLIMIT_NOFILE` requires).
    pub processes: u32,
    /// Spread connections over 127.2.K.x source addresses (shard K).
    pub source_ips: bool,
    /// Label.
    pub label: String,
    /// Per-second JSON lines go here while the run goes on.
    pub timeline: Option<PathBuf>,
    /// A progress line on stderr every 5 s.
    pub progress: bool,
}

impl Plan {
    /// The last stage.
    pub fn sessions(&self) -> u32 {
        self.stages.last().copied().unwrap_or(0)
    }

    /// A stage's deadline: three times its planned length at the ramp rate plus a minute.
    pub fn stage_deadline(&self, from: u32, to: u32) -> Duration {
        if let Some(t) = self.stage_timeout {
            return t;
        }
        let n = f64::from(to.saturating_sub(from));
        let planned = if self.ramp_rate > 0.0 {
            n / self.ramp_rate
        } else {
            n / 1_000.0
        };
        Duration::from_secs_f64(planned * 3.0 + 60.0)
    }

    /// An upper bound of the whole run (every stage at its deadline, the hold, the final
    /// check), which the shards get as their own limit.
    pub fn max_run(&self) -> Duration {
        let mut total = Duration::from_secs(60);
        let mut from = 0;
        for &s in &self.stages {
            total += self.stage_deadline(from, s) + self.stage_hold + self.timeout * 2;
            from = s;
        }
        let final_calls = f64::from(self.sessions()) / self.final_rate.max(1.0);
        total
            + self.hold
            + (self.deadline + self.timeout) * 3
            + Duration::from_secs_f64(final_calls)
    }
}

/// File descriptors a shard needs beyond its connections.
const FD_MARGIN: u64 = 256;

fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

/// `k`-th share of `total` over `n`.
pub fn share(total: u32, n: u32, k: u32) -> u32 {
    total / n + u32::from(k < total % n)
}

/// The shard configurations of `plan`.
pub fn shards(plan: &Plan, t0_unix_ms: u64) -> anyhow::Result<Vec<ShardConfig>> {
    let pool_conns = plan.nodes.len() as u64 * u64::from(plan.pool.max(1));
    let per = nofile_limit().saturating_sub(FD_MARGIN + pool_conns);
    if per < 100 {
        bail!(
            "RLIMIT_NOFILE {} leaves no room for sessions next to {pool_conns} pool connections",
            nofile_limit()
        );
    }
    let needed = u64::from(plan.sessions()).div_ceil(per).max(1) as u32;
    let n = if plan.processes == 0 {
        needed
    } else if plan.processes < needed {
        bail!(
            "--processes {}: {} sessions need at least {needed} processes under RLIMIT_NOFILE {}",
            plan.processes,
            plan.sessions(),
            nofile_limit()
        );
    } else {
        plan.processes
    };
    if plan.source_ips && n > 512 {
        bail!("at most 512 processes with source addresses (127.2-3.K.x)");
    }
    let max_run = plan.max_run();
    Ok((0..n)
        .map(|k| {
            let conns = u64::from(share(plan.sessions(), n, k)) + pool_conns;
            let ips = conns.div_ceil(CONNECTIONS_PER_SOURCE).clamp(1, 254) as u8;
            let sources = if plan.source_ips {
                (1..=ips)
                    .map(|i| {
                        IpAddr::V4(Ipv4Addr::new(127, 2 + (k / 256) as u8, (k % 256) as u8, i))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            ShardConfig {
                shard: k,
                shards: n,
                t0_unix_ms,
                nodes: plan.nodes.clone(),
                sources,
                pool: plan.pool.max(1),
                relay_fraction: plan.relay_fraction,
                ramp_rate: plan.ramp_rate / f64::from(n),
                open_concurrency: plan.open_concurrency.max(1),
                rate: plan.rate / f64::from(n),
                tool: plan.tool.clone(),
                timeout: plan.timeout,
                deadline: plan.deadline,
                stream_idle: plan.stream_idle,
                announce_every: if k == 0 { plan.announce_every } else { None },
                final_rate: plan.final_rate / f64::from(n),
                max_run,
                seed: t0_unix_ms ^ (u64::from(k) << 32) ^ 0x9e37_79b9_7f4a_7c15,
            }
        })
        .collect())
}

enum Event {
    Msg(u32, ShardMsg),
    Exited(u32),
}

struct Shards {
    stdins: Vec<Option<ChildStdin>>,
    children: Vec<Child>,
    alive: Vec<bool>,
    done: Vec<Option<ShardDone>>,
    ramp: Vec<Option<(u32, u64, u64, u64)>>,
    pending: BTreeMap<u32, Second>,
    timeline: Vec<Second>,
    last_t: u32,
    problems: Vec<String>,
    out: Option<std::fs::File>,
}

impl Shards {
    async fn send(&mut self, k: usize, cmd: &Command) {
        let Some(stdin) = self.stdins[k].as_mut() else {
            return;
        };
        let mut line = serde_json::to_vec(cmd).unwrap_or_default();
        line.push(b'\n');
        if stdin.write_all(&line).await.is_err() {
            self.stdins[k] = None;
        }
    }

    async fn send_all(&mut self, cmd: &Command) {
        for k in 0..self.stdins.len() {
            self.send(k, cmd).await;
        }
    }

    fn record(&mut self, line: &serde_json::Value) {
        if let Some(f) = self.out.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Msg(_, ShardMsg::Second(s)) => {
                let t = s.t;
                self.last_t = self.last_t.max(t);
                self.pending.entry(t).or_default().merge(&s);
                self.pending.entry(t).or_default().t = t;
                self.flush(false);
            }
            Event::Msg(
                k,
                ShardMsg::RampDone {
                    target,
                    held,
                    failed,
                    opened,
                },
            ) => self.ramp[k as usize] = Some((target, held, failed, opened)),
            Event::Msg(k, ShardMsg::Done(d)) => self.done[k as usize] = Some(d),
            Event::Exited(k) => {
                self.alive[k as usize] = false;
                if self.done[k as usize].is_none() {
                    self.problems
                        .push(format!("load process {k} exited before the end of the run"));
                }
            }
        }
    }

    /// Moves merged seconds to the timeline: those every live shard reported, and any older
    /// than 3 s behind the newest (a slow or dead shard); all of them when `all`.
    fn flush(&mut self, all: bool) {
        let alive = self.alive.iter().filter(|a| **a).count() as u32;
        while let Some((&t, s)) = self.pending.iter().next() {
            if !(all || s.shards >= alive || t + 3 < self.last_t) {
                break;
            }
            let s = self.pending.remove(&t).unwrap_or_default();
            if let Some(prev) = self.timeline.last()
                && prev.t >= t
            {
                // A late report of a second already written (a shard starved for more than
                // 3 s): merge it in place, or put it in order if no shard had reported that
                // second, and write the second again, whole, marked `revised`, so that a
                // reader of the file counts what the report counts.
                let at = self.timeline.partition_point(|p| p.t < t);
                if self.timeline.get(at).is_some_and(|p| p.t == t) {
                    self.timeline[at].merge(&s);
                } else {
                    self.timeline.insert(at, s);
                }
                let line = second_line(&self.timeline[at], true);
                self.record(&line);
                continue;
            }
            let line = second_line(&s, false);
            self.record(&line);
            self.timeline.push(s);
        }
    }

    fn held(&self) -> u64 {
        self.timeline.last().map_or(0, |s| s.held)
    }
}

/// Runs `plan` with the shard processes of `exe` (`mcp-load`); returns the report.
pub async fn run(exe: &Path, plan: &Plan) -> anyhow::Result<ClusterReport> {
    anyhow::ensure!(!plan.nodes.is_empty(), "no nodes");
    anyhow::ensure!(!plan.stages.is_empty(), "no stages");
    let t0 = unix_ms();
    let configs = shards(plan, t0)?;
    let n = configs.len();
    let out = match &plan.timeline {
        Some(p) => {
            Some(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut st = Shards {
        stdins: Vec::new(),
        children: Vec::new(),
        alive: vec![true; n],
        done: vec![None; n],
        ramp: vec![None; n],
        pending: BTreeMap::new(),
        timeline: Vec::new(),
        last_t: 0,
        problems: Vec::new(),
        out,
    };
    st.record(&serde_json::json!({
        "type": "start", "t0_unix_ms": t0, "label": plan.label, "processes": n,
        "nodes": plan.nodes.iter().map(|t| format!("http://{}{}", t.addr, t.path)).collect::<Vec<_>>(),
    }));
    for (k, cfg) in configs.iter().enumerate() {
        let mut child = Process::new(exe)
            .arg("cluster")
            .arg("--shard")
            .arg(serde_json::to_string(cfg)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting load process {k} ({})", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("load process {k}: no pipes");
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<ShardMsg>(&line) {
                    Ok(m) => {
                        let _ = tx.send(Event::Msg(k as u32, m));
                    }
                    Err(_) => eprintln!("load process {k}: unexpected output: {line}"),
                }
            }
            let _ = tx.send(Event::Exited(k as u32));
        });
        st.stdins.push(Some(stdin));
        st.children.push(child);
    }
    drop(tx);

    let mut phases: Vec<Phase> = Vec::new();
    let mut progress_at = Instant::now() + Duration::from_secs(5);
    // Waits (handling events) until `done(st)` or `until`; false on the deadline or when
    // every shard is gone.
    macro_rules! wait {
        ($until:expr, $done:expr) => {{
            let until: Instant = $until;
            loop {
                if $done(&st) {
                    break true;
                }
                if Instant::now() >= until || st.alive.iter().all(|a| !a) {
                    break false;
                }
                if plan.progress && Instant::now() >= progress_at {
                    progress_at += Duration::from_secs(5);
                    eprintln!("{}", progress_line(&st, plan));
                }
                let tick = (until - Instant::now()).min(Duration::from_millis(200));
                match tokio::time::timeout(tick, rx.recv()).await {
                    Ok(Some(ev)) => st.handle(ev),
                    Ok(None) => break false,
                    Err(_) => {}
                }
            }
        }};
    }
    let second_now = || ((unix_ms() - t0) / 1000) as u32;
    let mut from_sessions = 0;
    let mut opened_before = 0u64;
    let mut calls_started = false;
    for (i, &stage) in plan.stages.iter().enumerate() {
        let name = format!("ramp {stage}");
        let started = Instant::now();
        let from = second_now();
        st.record(&serde_json::json!({"type": "phase", "name": name, "t": from}));
        for k in 0..n {
            let sessions = share(stage, n as u32, k as u32);
            st.send(k, &Command::Target { sessions }).await;
        }
        let want: Vec<u32> = (0..n).map(|k| share(stage, n as u32, k as u32)).collect();
        let ramp_done = |st: &Shards| {
            st.ramp
                .iter()
                .zip(&want)
                .zip(&st.alive)
                .all(|((r, w), alive)| !alive || r.is_some_and(|(t, _, _, _)| t >= *w))
        };
        let deadline = started + plan.stage_deadline(from_sessions, stage);
        let mut reached = wait!(deadline, ramp_done);
        if !reached {
            eprintln!(
                "mcp-load: stage {stage}: not reached within {:?} ({} held); the ramp stops here",
                plan.stage_deadline(from_sessions, stage),
                st.held()
            );
            // Their answers to this, not the last stage's.
            st.ramp.iter_mut().for_each(|r| *r = None);
            st.send_all(&Command::StopRamp).await;
            let settle = Instant::now() + plan.deadline + plan.timeout;
            let _ = wait!(settle, |st: &Shards| st
                .ramp
                .iter()
                .zip(&st.alive)
                .all(|(r, alive)| !alive || r.is_some()));
        }
        let ramp_seconds = started.elapsed().as_secs_f64();
        let held: u64 = st.ramp.iter().flatten().map(|r| r.1).sum();
        let opened: u64 = st.ramp.iter().flatten().map(|r| r.3).sum();
        reached &= held >= u64::from(stage);
        if !calls_started && plan.rate > 0.0 {
            calls_started = true;
            let start_unix_ms = unix_ms() + 500;
            st.send_all(&Command::Calls { start_unix_ms }).await;
        }
        let hold_until = Instant::now()
            + if i + 1 < plan.stages.len() {
                plan.stage_hold
            } else {
                Duration::ZERO
            };
        let _ = wait!(hold_until, |_: &Shards| false);
        phases.push(Phase {
            name,
            target: Some(u64::from(stage)),
            reached: Some(reached),
            ramp_seconds: Some(ramp_seconds),
            ramp_rate: Some(opened.saturating_sub(opened_before) as f64 / ramp_seconds.max(1e-3)),
            held: Some(held),
            span: Span {
                from,
                to: second_now().max(from + 1),
                ..Span::default()
            },
        });
        from_sessions = stage;
        opened_before = opened;
        if !reached {
            break;
        }
    }

    // The hold.
    let from = second_now();
    st.record(&serde_json::json!({"type": "phase", "name": "hold", "t": from}));
    if let Some(p) = &plan.ready_file {
        std::fs::write(p, format!("{}\n", unix_ms()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let until_file = plan.until_file.clone();
    let _ = wait!(Instant::now() + plan.hold, |_: &Shards| until_file
        .as_ref()
        .is_some_and(|p| p.exists()));
    phases.push(Phase {
        name: "hold".into(),
        span: Span {
            from,
            to: second_now().max(from + 1),
            ..Span::default()
        },
        ..Phase::default()
    });

    // The final check.
    let from = second_now();
    st.record(&serde_json::json!({"type": "phase", "name": "final check", "t": from}));
    st.send_all(&Command::Finish).await;
    let final_calls = f64::from(plan.sessions()) / plan.final_rate.max(1.0);
    let bound = Instant::now()
        + (plan.deadline + plan.timeout) * 3
        + Duration::from_secs_f64(final_calls)
        + Duration::from_secs(30);
    let finished = wait!(bound, |st: &Shards| st
        .done
        .iter()
        .zip(&st.alive)
        .all(|(d, alive)| d.is_some() || !alive));
    if !finished {
        st.problems
            .push("the final check did not end in time; load processes killed".into());
    }
    // Let the shards exit (their last second arrives first), then make sure they are gone.
    let exit_by = Instant::now() + Duration::from_secs(5);
    let _ = wait!(exit_by, |st: &Shards| st.alive.iter().all(|a| !a));
    for c in &mut st.children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    while let Ok(ev) = rx.try_recv() {
        st.handle(ev);
    }
    st.flush(true);
    phases.push(Phase {
        name: "final check".into(),
        span: Span {
            from,
            to: st.timeline.last().map_or(from, |s| s.t + 1).max(from + 1),
            ..Span::default()
        },
        ..Phase::default()
    });
    for p in &mut phases {
        p.span = Span::of(&st.timeline, p.span.from, p.span.to);
    }

    let mut report = ClusterReport {
        label: plan.label.clone(),
        nodes: plan
            .nodes
            .iter()
            .map(|t| format!("http://{}{}", t.addr, t.path))
            .collect(),
        processes: n as u32,
        t0_unix_ms: t0,
        sessions_requested: u64::from(plan.sessions()),
        rate: plan.rate,
        phases,
        problems: st.problems.clone(),
        ..ClusterReport::default()
    };
    for d in st.done.iter().flatten() {
        report.lost += d.lost;
        report.lost_sessions.extend(d.lost_sessions.iter().cloned());
        report.final_checked += d.checked;
        report.final_ok += d.final_ok;
        if !d.complete {
            report.problems.push(format!(
                "load process {} did not finish its final check",
                d.shard
            ));
        }
    }
    report.lost_sessions.sort_by_key(|l| l.at_ms);
    report.timeline = std::mem::take(&mut st.timeline);
    Ok(report)
}

fn progress_line(st: &Shards, plan: &Plan) -> String {
    let Some(s) = st.timeline.last() else {
        return "mcp-load: starting".into();
    };
    let span = Span::of(&st.timeline, s.t.saturating_sub(4), s.t + 1);
    format!(
        "mcp-load: t={}s held {}/{} streams {} impaired {} | calls {:.0}/s p99 {:.2} ms | errors {} lost {} missed {} | load cpu {:.2}",
        s.t,
        s.held,
        plan.sessions(),
        s.streams_up,
        s.impaired,
        span.call_rate,
        span.latency.p99_us as f64 / 1000.0,
        span.sum.error_count(),
        span.sum.lost,
        span.sum.gaps + span.sum.duplicates + span.sum.resets,
        (span.sum.cpu_user_s + span.sum.cpu_sys_s) / 5.0
    )
}

/// One second as a line of the timeline file. `revised`: the second was written before and
/// this line replaces it (late shard reports merged in).
fn second_line(s: &Second, revised: bool) -> serde_json::Value {
    let v = serde_json::to_value(s).unwrap_or_default();
    let mut line = serde_json::json!({ "type": "second" });
    if let (Some(obj), serde_json::Value::Object(fields)) = (line.as_object_mut(), v) {
        if revised {
            obj.insert("revised".into(), serde_json::Value::Bool(true));
        }
        obj.extend(fields);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_grow_with_the_stage() {
        for total in [0u32, 1, 7, 1_000, 100_000] {
            assert_eq!((0..6).map(|k| share(total, 6, k)).sum::<u32>(), total);
        }
        for k in 0..6 {
            assert!(share(999, 6, k) <= share(1_000, 6, k));
        }
    }

    fn second(t: u32, held: u64, lost: u64) -> Second {
        Second {
            t,
            shards: 1,
            held,
            lost,
            ..Second::default()
        }
    }

    /// What the timeline file says, read the way `bench/scale.py` reads it: a `revised` line
    /// replaces the second written before.
    fn read_back(path: &Path) -> Vec<(u32, u64, u64)> {
        let mut out: Vec<(u32, u64, u64)> = Vec::new();
        for line in std::fs::read_to_string(path)
            .expect("a readable test timeline")
            .lines()
        {
            let v: serde_json::Value =
                serde_json::from_str(line).expect("a readable test timeline");
            let row = (
                v["t"].as_u64().expect("a readable test timeline") as u32,
                v["held"].as_u64().expect("a readable test timeline"),
                v["lost"].as_u64().expect("a readable test timeline"),
            );
            match out.iter_mut().find(|r| r.0 == row.0) {
                Some(r) if v["revised"] == true => *r = row,
                Some(_) => panic!("second {} written twice without `revised`", row.0),
                None => out.push(row),
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_shard_reporting_late_is_counted_in_the_file_too() {
        let path = std::env::temp_dir().join(format!("mcp-load-timeline-{}", std::process::id()));
        let mut st = Shards {
            stdins: Vec::new(),
            children: Vec::new(),
            alive: vec![true, true],
            done: vec![None, None],
            ramp: vec![None, None],
            pending: BTreeMap::new(),
            timeline: Vec::new(),
            last_t: 0,
            problems: Vec::new(),
            out: Some(std::fs::File::create(&path).expect("a temporary file")),
        };
        // Shard 0 reports seconds 0-9; shard 1 reports nothing until second 9, then its
        // seconds 0-9 (second 1 it lost 5 sessions). Seconds more than 3 s behind the newest
        // were written with shard 0's part alone.
        for t in 0..10 {
            if t != 2 {
                st.handle(Event::Msg(0, ShardMsg::Second(Box::new(second(t, 100, 0)))));
            }
            st.flush(false);
        }
        for t in 0..10 {
            let lost = if t == 1 { 5 } else { 0 };
            st.handle(Event::Msg(
                1,
                ShardMsg::Second(Box::new(second(t, 50, lost))),
            ));
            st.flush(false);
        }
        st.flush(true);
        drop(st.out.take());
        let mut expected: Vec<(u32, u64, u64)> = (0..10)
            .map(|t| (t, if t == 2 { 50 } else { 150 }, if t == 1 { 5 } else { 0 }))
            .collect();
        expected.sort();
        assert_eq!(read_back(&path), expected);
        let in_memory: Vec<(u32, u64, u64)> =
            st.timeline.iter().map(|s| (s.t, s.held, s.lost)).collect();
        assert_eq!(in_memory, expected);
        let _ = std::fs::remove_file(&path);
    }
}
