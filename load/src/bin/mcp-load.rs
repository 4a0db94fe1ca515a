//! `mcp-load`: holds N MCP sessions open and sends `tools/call` at an open-loop rate; prints
//! throughput, latency percentiles (from the intended send time), errors by kind and the
//! server's memory, as text, JSON and PNG plots. Past the per-process file limit it spreads the
//! connections over several processes and source addresses. Bounded in count and time.
//!
//! `mcp-load cluster --nodes URL,...` holds sessions across a cluster's nodes through
//! failures (see `mcp_load::cluster`); `mcp-load plot CHART.json OUT.png` draws a chart
//! described as JSON (`mcp_load::plot::Chart`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mcp_load::client::parse_url;
use mcp_load::fleet::{self, FleetConfig, Snapshot};
use mcp_load::run::{Era, LoadConfig, Target};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-load",
    version,
    about = "Real MCP load: held sessions + open-loop tools/call",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// MCP endpoint, http://IP:PORT/mcp
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp")]
    url: String,
    /// Legacy sessions are created (`initialize`) at --url, and everything after it (the held
    /// sessions' GET streams, the workers' tools/call) goes to this endpoint instead: in a
    /// cluster, another node, which forwards to the session's owner. Modern requests stay on
    /// --url
    #[arg(long, value_name = "URL")]
    call_url: Option<String>,
    /// A call worker creates a new legacy session every N calls (1: every call creates its
    /// session, initialize at --url, then the call); 0 keeps one session per worker connection
    #[arg(long, default_value_t = 0, value_name = "N")]
    calls_per_session: u32,
    /// Sessions to open and hold, one connection each (legacy: with its GET stream; modern:
    /// with subscriptions/listen)
    #[arg(long, default_value_t = 0)]
    sessions: u32,
    /// Sessions opened per second during the ramp, all processes together (0 = as fast as
    /// possible)
    #[arg(long, default_value_t = 2000.0)]
    ramp_rate: f64,
    /// Connections sending tools/call
    #[arg(long, default_value_t = 32)]
    workers: u32,
    /// tools/call per second, open loop (0 = no call phase)
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Closed loop: each worker sends its next call as soon as the last is answered (saturation
    /// throughput; --rate is then ignored and latency is service time)
    #[arg(long)]
    closed_loop: bool,
    /// Seconds to wait for one exchange (open + stream, or one call) before counting a timeout
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Seconds of calls (at most 600)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Era: legacy (2025-11-25 sessions), modern (2026-07-28 stateless) or mix
    #[arg(long, default_value = "legacy")]
    era: String,
    /// Spread connections over 127.0.0.1 .. 127.0.0.N (0 = one address per 4,000 connections)
    #[arg(long, default_value_t = 0)]
    source_ips: u8,
    /// Tool to call with {"text": ...}
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Legacy calls ask for progress (`_meta.progressToken`): `echo` then reports it once and
    /// answers on an SSE stream (two events of the session's log)
    #[arg(long)]
    progress: bool,
    /// Load-generator processes (0 = as many as RLIMIT_NOFILE requires)
    #[arg(long, default_value_t = 0)]
    processes: u32,
    /// Server process id: report its RSS (from /proc) and memory per connection
    #[arg(long)]
    server_pid: Option<u32>,
    /// mcp-node admin address (IP:PORT): report its gauges with every session held
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Label for the report and plots
    #[arg(long, default_value = "mcp-load")]
    label: String,
    /// Also write the report as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write PNG plots PREFIX-latency.png and PREFIX-memory.png
    #[arg(long, value_name = "PREFIX")]
    plot: Option<PathBuf>,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
    /// Internal: run as a shard of a parent mcp-load (configuration as JSON)
    #[arg(long, hide = true)]
    shard: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Legacy sessions held across a cluster's nodes through failures (`mcp-load cluster
    /// --help`)
    Cluster(Box<mcp_load::cluster::cli::ClusterArgs>),
    /// Draw a chart described as JSON (mcp_load::plot::Chart) into a PNG
    Plot {
        /// The chart, as JSON
        spec: PathBuf,
        /// The PNG to write
        out: PathBuf,
    },
}

fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(String::from)
        })
        .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        .unwrap_or(1024)
}

/// File descriptors a process needs beyond its connections (runtime, pipes, stdio).
const FD_MARGIN: u64 = 128;
/// Connections per source address. The ephemeral port range holds ~28K ports per address, but
/// a run closes its connections from this side, leaving them in TIME_WAIT for a minute: with
/// 20K per address a second run in a row found few free ports and the kernel's port search
/// made connects slow (a 19K ramp fell from ~5K/s to ~1.4K/s). 4K per address leaves room.
const CONNECTIONS_PER_SOURCE: u64 = 4_000;

fn processes_needed(connections: u64, limit: u64) -> anyhow::Result<u32> {
    let per = limit.saturating_sub(FD_MARGIN);
    if per < 64 {
        bail!("RLIMIT_NOFILE is {limit}: too low to run any connections");
    }
    Ok(connections.div_ceil(per).max(1) as u32)
}

fn parse_args(args: &Args) -> anyhow::Result<FleetConfig> {
    let (addr, path) = parse_url(&args.url)
        .map_err(anyhow::Error::msg)
        .context("--url")?;
    let call_at = match &args.call_url {
        Some(url) => {
            let (addr, path) = parse_url(url)
                .map_err(anyhow::Error::msg)
                .context("--call-url")?;
            Some(Target { addr, path })
        }
        None => None,
    };
    let era = match args.era.as_str() {
        "legacy" => Era::Legacy,
        "modern" => Era::Modern,
        "mix" => Era::Mix,
        other => bail!("--era: `{other}` is not legacy, modern or mix"),
    };
    if !(0.0..=600.0).contains(&args.duration) {
        bail!("--duration must be between 0 and 600 seconds");
    }
    if args.rate < 0.0 || args.ramp_rate < 0.0 {
        bail!("--rate and --ramp-rate must not be negative");
    }
    if args.rate > 0.0 && args.workers == 0 {
        bail!("--rate needs at least one --workers connection");
    }
    if args.closed_loop && (args.workers == 0 || args.duration <= 0.0) {
        bail!("--closed-loop needs --workers > 0 and --duration > 0");
    }
    if !(0.1..=300.0).contains(&args.timeout) {
        bail!("--timeout must be between 0.1 and 300 seconds");
    }
    // With --call-url a worker holds a second connection (where its sessions are created) when
    // it renews them; a held session's first connection closes once its stream is open.
    let per_worker = if args.call_url.is_some() && args.calls_per_session > 0 {
        2
    } else {
        1
    };
    let connections = u64::from(args.sessions) + per_worker * u64::from(args.workers);
    let limit = nofile_limit();
    let needed = processes_needed(connections, limit)?;
    let processes = if args.processes == 0 {
        needed
    } else if args.processes < needed {
        bail!(
            "--processes {}: {connections} connections need at least {needed} processes \
             under RLIMIT_NOFILE {limit}",
            args.processes
        );
    } else {
        args.processes
    };
    let source_ips = if args.source_ips == 0 {
        connections.div_ceil(CONNECTIONS_PER_SOURCE).min(250) as u8
    } else {
        args.source_ips
    };
    let sources = if source_ips > 1 {
        (1..=source_ips)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(FleetConfig {
        load: LoadConfig {
            addr,
            path,
            sessions: args.sessions,
            ramp_rate: args.ramp_rate,
            workers: args.workers,
            rate: if args.closed_loop { 0.0 } else { args.rate },
            duration: Duration::from_secs_f64(args.duration),
            era,
            sources,
            tool: args.tool.clone(),
            timeout: Duration::from_secs_f64(args.timeout),
            closed_loop: args.closed_loop,
            call_at,
            calls_per_session: args.calls_per_session,
            progress: args.progress,
        },
        processes,
        label: args.label.clone(),
        server_pid: args.server_pid,
        admin: args.admin,
    })
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1);
    let style = ProgressStyle::with_template(
        "{prefix:>5} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn show(bar: &ProgressBar, s: Snapshot) {
    if s.calling {
        bar.set_prefix("calls");
        // A closed loop has no total ahead of time: the bar then just counts.
        bar.set_length(if s.calls_total > 0 {
            s.calls_total
        } else {
            s.calls_done.max(1)
        });
        bar.set_position(s.calls_done);
        bar.set_message(format!("{} ok, {} errors", s.calls_ok, s.errors));
    } else {
        bar.set_prefix("ramp");
        bar.set_length(s.sessions.max(1));
        bar.set_position(s.held);
        bar.set_message(format!("sessions held, {} errors", s.errors));
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Cmd::Cluster(c)) => std::process::exit(mcp_load::cluster::cli::main(c)?),
        Some(Cmd::Plot { spec, out }) => {
            let text = std::fs::read_to_string(spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let chart: mcp_load::plot::Chart = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a chart", spec.display()))?;
            return mcp_load::plot::chart(&chart, out);
        }
        None => {}
    }
    tokio::runtime::Runtime::new()?.block_on(single(args))
}

async fn single(args: Args) -> anyhow::Result<()> {
    if let Some(shard) = &args.shard {
        let cfg: LoadConfig = serde_json::from_str(shard).context("--shard configuration")?;
        return fleet::shard_main(cfg).await;
    }
    let fc = parse_args(&args)?;
    let exe = std::env::current_exe().context("locating the mcp-load binary")?;
    let bar = progress_bar(args.quiet);
    let shown = bar.clone();
    let report = fleet::run(&exe, &fc, move |s| show(&shown, s)).await;
    bar.finish_and_clear();
    let report = report?;
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(prefix) = &args.plot {
        for file in mcp_load::plot::write(&report, prefix)? {
            println!("plot              {}", file.display());
        }
    }
    Ok(())
}
