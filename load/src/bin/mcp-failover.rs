//! `mcp-failover`: a bounded session-survival driver for an mcp-node cluster. Opens N legacy
//! sessions over the given nodes, holds a GET stream per session and calls a tool through the
//! nodes round-robin while the nodes are killed or restarted; retries the same session on the
//! next node (never re-initializing) and reports the sessions lost, calls, retries, latency and
//! the longest outage. Exits 1 when more than `--max-lost` sessions were lost (or a session could
//! not be opened, or the `--until-file` did not appear in time). See `mcp_load::failover`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mcp_load::client::parse_url;
use mcp_load::failover::{self, FailoverConfig, Target};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-failover",
    version,
    about = "Legacy MCP sessions that must survive node failures: hold, call, retry elsewhere, report"
)]
struct Args {
    /// The nodes' MCP endpoints, comma-separated (http://IP:PORT/mcp or IP:PORT)
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Sessions to open (initialize round-robin over the targets)
    #[arg(long, default_value_t = 200)]
    sessions: u32,
    /// tools/call per second, all sessions together (0: only the final check's calls)
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of calls; with --until-file, the longest wait for the file (at most 3600)
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Tool to call with {"text": ...}
    #[arg(long, default_value = "echo")]
    tool: String,
    /// Seconds one attempt may take (connect + answer, or connect + stream head)
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    /// Seconds a session may stay unable to complete a call or reopen its stream before it
    /// counts as lost
    #[arg(long, default_value_t = 15.0)]
    deadline: f64,
    /// Most attempts for one call
    #[arg(long, default_value_t = 64)]
    attempts: u32,
    /// Run until this file exists, then do the final check (every session must complete one
    /// more call and reopen its stream)
    #[arg(long)]
    until_file: Option<PathBuf>,
    /// Write this file (Unix time) once every session is open and its stream is up
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// No GET streams, calls only
    #[arg(long)]
    no_streams: bool,
    /// Concurrent initialize exchanges while opening
    #[arg(long, default_value_t = 32)]
    open_concurrency: usize,
    /// Sessions that may be lost without failing the run
    #[arg(long, default_value_t = 0)]
    max_lost: u64,
    /// Also write the report as JSON to this file (`-`: stdout, instead of the text)
    #[arg(long)]
    json: Option<PathBuf>,
    /// Milliseconds from which an answered attempt (first or retry) is listed as slow
    #[arg(long, default_value_t = 200)]
    slow_ms: u64,
    /// No progress lines on stderr
    #[arg(long)]
    quiet: bool,
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    let url = if s.starts_with("http://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let (addr, path) = parse_url(&url)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--targets: `{s}`"))?;
    Ok(Target { addr, path })
}

fn config(args: &Args) -> anyhow::Result<FailoverConfig> {
    let targets = args
        .targets
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_target(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if targets.is_empty() {
        bail!("--targets: at least one endpoint");
    }
    let secs = |name: &str, v: f64, max: f64| -> anyhow::Result<Duration> {
        if !(v.is_finite() && v > 0.0 && v <= max) {
            bail!("--{name} must be in (0, {max}] seconds");
        }
        Ok(Duration::from_secs_f64(v))
    };
    if args.sessions == 0 || args.sessions > 100_000 {
        bail!("--sessions must be 1..=100000");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be >= 0");
    }
    if args.attempts == 0 {
        bail!("--attempts must be at least 1");
    }
    Ok(FailoverConfig {
        targets,
        sessions: args.sessions,
        rate: args.rate,
        duration: secs("duration", args.duration, 3600.0)?,
        tool: args.tool.clone(),
        timeout: secs("timeout", args.timeout, 60.0)?,
        deadline: secs("deadline", args.deadline, 600.0)?,
        attempts: args.attempts,
        until_file: args.until_file.clone(),
        ready_file: args.ready_file.clone(),
        streams: !args.no_streams,
        open_concurrency: args.open_concurrency.clamp(1, 1024),
        progress: !args.quiet,
        slow: Duration::from_millis(args.slow_ms),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcp-failover: {e:#}");
            std::process::exit(64);
        }
    };
    let report = failover::run(cfg).await?;
    let json = serde_json::to_string_pretty(&report)?;
    match args.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            std::fs::write(p, format!("{json}\n"))
                .with_context(|| format!("writing {}", p.display()))?;
            print!("{}", report.text());
        }
        None => print!("{}", report.text()),
    }
    let passed = report.passed(args.max_lost);
    eprintln!(
        "mcp-failover: {} ({} lost, --max-lost {})",
        if passed { "PASSED" } else { "FAILED" },
        report.lost,
        args.max_lost
    );
    std::process::exit(if passed { 0 } else { 1 });
}
