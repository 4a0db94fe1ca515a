//! `mcp-load cluster`: the command line of the cluster mode, its validation, and the two
//! process roles (the parent that runs the plan, a `--shard` that runs its share).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::fleet::{self, Plan};
use super::{Command, ShardConfig, shard};
use crate::client::parse_url;
use crate::run::Target;

/// Legacy sessions across a cluster's nodes: ramp, hold with GET streams, call, survive
/// node failures; report per second and per phase.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The nodes' MCP endpoints, comma-separated (http://IP:PORT/mcp or IP:PORT)
    #[arg(long, value_delimiter = ',', required_unless_present = "shard")]
    pub nodes: Vec<String>,
    /// Sessions to hold in the end (one ramp stage, unless --stages)
    #[arg(long, default_value_t = 1000)]
    pub sessions: u32,
    /// Ramp stages, comma-separated, increasing (e.g. 1000,10000,25000): sessions held after
    /// each; the last one replaces --sessions
    #[arg(long, value_delimiter = ',')]
    pub stages: Vec<u32>,
    /// Seconds held after each stage but the last, calls going on
    #[arg(long, default_value_t = 10.0)]
    pub stage_hold: f64,
    /// Seconds a stage may take before the ramp stops there (default: three times its length
    /// at --ramp-rate plus 60)
    #[arg(long)]
    pub stage_timeout: Option<f64>,
    /// Seconds held after the last stage, calls going on (at most 7200)
    #[arg(long, default_value_t = 30.0)]
    pub hold: f64,
    /// End the hold when this file exists
    #[arg(long)]
    pub until_file: Option<PathBuf>,
    /// Write this file (Unix ms) when the hold starts
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Sessions opened per second, all processes (0: as fast as --open-concurrency allows)
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
    /// initialize exchanges in flight per process
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: u32,
    /// tools/call per second, all processes, open loop, from the end of the first stage
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Final check: calls per second, all processes (every held session gets one call)
    #[arg(long, default_value_t = 5000.0)]
    pub final_rate: f64,
    /// Call connections per node per process (calls of every session share them)
    #[arg(long, default_value_t = 4)]
    pub pool: u32,
    /// Share of GET streams opened on another node than the one that created the session
    #[arg(long, default_value_t = 0.8)]
    pub relay_fraction: f64,
    /// Tool called with {"text": ...} (echo answers are checked)
    #[arg(long, default_value = "echo")]
    pub tool: String,
    /// Seconds one exchange may take (connect + answer, or connect + stream head)
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Seconds a session may go without a success before it counts as lost
    #[arg(long, default_value_t = 15.0)]
    pub deadline: f64,
    /// Seconds a stream may stay silent before it is reopened (nodes send a keep-alive every
    /// `limits.sseKeepaliveSecs`, 30 s by default: keep this above twice that)
    #[arg(long, default_value_t = 70.0)]
    pub stream_idle: f64,
    /// Seconds between test_trigger_tool_change calls (needs the node's conformance pack; each
    /// sends an event on every GET stream of the cluster); 0: no events
    #[arg(long, default_value_t = 0.0)]
    pub announce_every: f64,
    /// Load processes (0: as many as RLIMIT_NOFILE requires)
    #[arg(long, default_value_t = 0)]
    pub processes: u32,
    /// Connect from the OS's choice of source address instead of 127.2.K.x (process K, 4,000
    /// connections per address)
    #[arg(long)]
    pub no_source_ips: bool,
    /// Sessions that may be lost without failing the run
    #[arg(long, default_value_t = 0)]
    pub max_lost: u64,
    /// Events that may be missed (gaps, duplicates, forgotten streams) without failing the run
    #[arg(long, default_value_t = 0)]
    pub max_missed: u64,
    /// Label
    #[arg(long, default_value = "mcp-load cluster")]
    pub label: String,
    /// Write every second (JSON lines) to this file as the run goes on
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Write the report as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write PNG plots PREFIX-sessions.png, PREFIX-calls.png, PREFIX-latency.png, PREFIX-cpu.png
    #[arg(long, value_name = "PREFIX")]
    pub plot: Option<PathBuf>,
    /// No progress lines on stderr
    #[arg(long)]
    pub quiet: bool,
    /// Internal: run as one load process of a parent (configuration as JSON)
    #[arg(long, hide = true)]
    pub shard: Option<String>,
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    let url = if s.starts_with("http://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let (addr, path) = parse_url(&url)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--nodes: `{s}`"))?;
    Ok(Target { addr, path })
}

fn secs(name: &str, v: f64, min: f64, max: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v >= min && v <= max) {
        bail!("--{name} must be between {min} and {max} seconds (got {v})");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Validates the arguments into a plan (errors name the flag).
pub fn plan(a: &ClusterArgs) -> anyhow::Result<Plan> {
    let nodes = a
        .nodes
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(parse_target)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if nodes.is_empty() {
        bail!("--nodes: at least one endpoint");
    }
    if nodes.len() > 255 {
        bail!("--nodes: at most 255 endpoints");
    }
    let stages = if a.stages.is_empty() {
        vec![a.sessions]
    } else {
        a.stages.clone()
    };
    if stages.contains(&0) || stages.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--stages must be increasing and above 0 (got {stages:?})");
    }
    if stages.last().copied().unwrap_or(0) > 1_000_000 {
        bail!("--sessions / --stages: at most 1,000,000");
    }
    for (name, v) in [
        ("rate", a.rate),
        ("ramp-rate", a.ramp_rate),
        ("final-rate", a.final_rate),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("--{name} must be a number >= 0 (got {v})");
        }
    }
    if !(0.0..=1.0).contains(&a.relay_fraction) {
        bail!(
            "--relay-fraction must be between 0 and 1 (got {})",
            a.relay_fraction
        );
    }
    if a.pool == 0 || a.pool > 64 {
        bail!("--pool must be 1..=64 (got {})", a.pool);
    }
    if a.open_concurrency == 0 {
        bail!("--open-concurrency must be at least 1");
    }
    let announce_every = if a.announce_every == 0.0 {
        None
    } else {
        Some(secs("announce-every", a.announce_every, 0.1, 3600.0)?)
    };
    Ok(Plan {
        nodes,
        stages,
        stage_hold: secs("stage-hold", a.stage_hold, 0.0, 3600.0)?,
        stage_timeout: a
            .stage_timeout
            .map(|v| secs("stage-timeout", v, 1.0, 7200.0))
            .transpose()?,
        hold: secs("hold", a.hold, 0.0, 7200.0)?,
        until_file: a.until_file.clone(),
        ready_file: a.ready_file.clone(),
        ramp_rate: a.ramp_rate,
        open_concurrency: a.open_concurrency,
        rate: a.rate,
        final_rate: a.final_rate,
        pool: a.pool,
        relay_fraction: a.relay_fraction,
        tool: a.tool.clone(),
        timeout: secs("timeout", a.timeout, 0.1, 300.0)?,
        deadline: secs("deadline", a.deadline, 0.5, 3600.0)?,
        stream_idle: secs("stream-idle", a.stream_idle, 1.0, 3600.0)?,
        announce_every,
        processes: a.processes,
        source_ips: !a.no_source_ips,
        label: a.label.clone(),
        timeline: a.timeline.clone(),
        progress: !a.quiet,
    })
}

/// A shard process: its configuration from `--shard`, commands from stdin, messages on
/// stdout; ends after `finish`, or at once when stdin closes (the parent is gone).
pub fn shard_main(json: &str) -> anyhow::Result<()> {
    let cfg: ShardConfig = serde_json::from_str(json).context("--shard configuration")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("mcp-load-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(c) => {
                        if tx.send(c).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("mcp-load shard: bad command `{line}`: {e}"),
                }
            }
            // Dropping `tx` tells the shard the parent is gone.
        })?;
    let out = Box::new(|msg: super::ShardMsg| {
        if let Ok(mut line) = serde_json::to_vec(&msg) {
            line.push(b'\n');
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&line);
            let _ = o.flush();
        }
    });
    shard::run(cfg, rx, out)
}

/// The parent: runs the plan and prints the report; the process exit code (0 passed, 1 the
/// run failed its checks, 64 bad arguments).
pub fn main(args: &ClusterArgs) -> anyhow::Result<i32> {
    if let Some(json) = &args.shard {
        shard_main(json)?;
        return Ok(0);
    }
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mcp-load cluster: {e:#}");
            return Ok(64);
        }
    };
    let exe = std::env::current_exe().context("locating the mcp-load binary")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report = rt.block_on(fleet::run(&exe, &plan))?;
    report.conclude(args.max_lost, args.max_missed);
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(prefix) = &args.plot {
        for file in crate::plot::cluster(&report, prefix)? {
            println!("plot         {}", file.display());
        }
    }
    Ok(if report.passed() { 0 } else { 1 })
}
