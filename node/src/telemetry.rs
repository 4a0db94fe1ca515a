//! Structured logging setup.

use mcpcluster_api::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber (text or JSON lines on stderr).
pub fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
