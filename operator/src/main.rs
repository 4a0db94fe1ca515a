//! `mcp-operator`: parses the command line, sets up logging, hands over to
//! [`mcp_operator::run`]. Exits 1 on failure (including lost leadership, so a standby
//! restarts clean).

use std::process::ExitCode;

use clap::Parser;
use mcp_operator::Cli;
use mcp_operator::cli::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("mcp-operator: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mcp_operator::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "mcp-operator stopped");
            eprintln!("mcp-operator: {err}");
            ExitCode::FAILURE
        }
    }
}
