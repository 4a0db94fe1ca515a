//! `mcp-load`: holds N MCP sessions open and sends `tools/call` at an open-loop rate; prints
//! throughput, latency percentiles (from the intended send time) and errors by kind, as text
//! and optionally JSON. Bounded in count and time.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mcp_load::client::parse_url;
use mcp_load::run::{LoadConfig, Progress, run};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-load",
    version,
    about = "Real MCP load: held sessions + open-loop tools/call"
)]
struct Args {
    /// MCP endpoint, http://IP:PORT/mcp
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp")]
    url: String,
    /// Sessions to open and hold (legacy: each with its GET stream; one connection each)
    #[arg(long, default_value_t = 0)]
    sessions: u32,
    /// Sessions opened per second during the ramp (0 = as fast as possible)
    #[arg(long, default_value_t = 2000.0)]
    ramp_rate: f64,
    /// Connections sending tools/call
    #[arg(long, default_value_t = 32)]
    workers: u32,
    /// tools/call per second, open loop (0 = no call phase)
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of calls (at most 600)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Era: legacy (2025-11-25 sessions) or modern (2026-07-28 stateless)
    #[arg(long, default_value = "legacy")]
    era: String,
    /// Spread connections over 127.0.0.1 .. 127.0.0.N
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// Tool to call with {"text": ...}
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Also write the report as JSON to this file
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// No progress line on stderr
    #[arg(long)]
    quiet: bool,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (addr, path) = parse_url(&args.url)
        .map_err(anyhow::Error::msg)
        .context("--url")?;
    let modern = match args.era.as_str() {
        "legacy" => false,
        "modern" => true,
        other => bail!("--era: `{other}` is not legacy or modern"),
    };
    if !(0.0..=600.0).contains(&args.duration) {
        bail!("--duration must be between 0 and 600 seconds");
    }
    let needed = u64::from(args.sessions) + u64::from(args.workers) + 64;
    let limit = nofile_limit();
    if needed > limit {
        bail!(
            "--sessions + --workers need {needed} file descriptors but RLIMIT_NOFILE is {limit}; \
             run several mcp-load processes (multi-process mode is not built yet)"
        );
    }
    let sources: Vec<IpAddr> = if args.source_ips > 1 {
        (1..=args.source_ips)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    } else {
        Vec::new()
    };
    let cfg = LoadConfig {
        addr,
        path,
        sessions: args.sessions,
        ramp_rate: args.ramp_rate,
        workers: args.workers,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        modern,
        sources,
        tool: args.tool.clone(),
    };
    let quiet = args.quiet;
    let report = run(cfg, move |p| {
        if quiet {
            return;
        }
        match p {
            Progress::Ramp(n, total) => eprint!("\rramp  {n}/{total} sessions        "),
            Progress::Calls(n, total) => eprint!("\rcalls {n}/{total}        "),
        }
    })
    .await;
    if !quiet {
        eprintln!();
    }
    println!(
        "sessions held     {} (ramp {:.2} s)",
        report.sessions_held, report.ramp_seconds
    );
    println!(
        "calls             {} due, {} ok, {:.0}/s",
        report.calls_due, report.calls_ok, report.throughput_per_sec
    );
    let l = &report.latency;
    println!(
        "latency (us)      p50 {} p95 {} p99 {} p99.9 {} max {}  (from the due time)",
        l.p50_us, l.p95_us, l.p99_us, l.p999_us, l.max_us
    );
    let s = &report.service;
    println!(
        "service (us)      p50 {} p95 {} p99 {} p99.9 {} max {}  (from the actual send)",
        s.p50_us, s.p95_us, s.p99_us, s.p999_us, s.max_us
    );
    if report.errors.is_empty() {
        println!("errors            none");
    } else {
        for (kind, n) in &report.errors {
            println!("errors            {kind}: {n}");
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
