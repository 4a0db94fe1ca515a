//! `mcp-node`: parses the command line, loads and validates the configuration, then hands over
//! to [`mcp_node::run`]. Bad configuration exits with status 64 and names the field.

use std::process::ExitCode;

use clap::Parser;
use mcp_node::settings::{Cli, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", mcp_node::settings::default_config_yaml());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(&cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("mcp-node: invalid configuration: {err}");
            return ExitCode::from(64);
        }
    };
    mcp_node::telemetry::init_logging(&settings.config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("mcp-node: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mcp_node::run(settings, mcp_node::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "node failed");
            eprintln!("mcp-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}
