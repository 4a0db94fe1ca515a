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
    if let Some(dir) = &cli.write_dev_certs {
        let name = cli
            .cluster
            .cluster_server_name
            .as_deref()
            .unwrap_or(mcp_cluster_default_server_name());
        return match mcp_node::cluster::tls::write_dev_certs(dir, name) {
            Ok(()) => {
                println!("wrote {0}/ca.crt {0}/tls.crt {0}/tls.key", dir.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("mcp-node: cannot write dev certificates: {err:#}");
                ExitCode::FAILURE
            }
        };
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
        Ok(watch) => {
            // Tasks still running (connections past the grace period) are dropped here; a
            // blocking task is not waited for. The watchdog bounds this too.
            runtime.shutdown_timeout(mcp_node::node::drain::RUNTIME_STOP);
            drop(watch);
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "node failed");
            eprintln!("mcp-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The peer name generated certificates are issued for (`cluster.tls.serverName`'s default).
fn mcp_cluster_default_server_name() -> &'static str {
    mcp_node::cluster::tls::DEFAULT_SERVER_NAME
}
