//! The `admin` section's flags and `MCP_NODE_*` variables (each overrides the file).

use clap::Args;
use mcpcluster_api::AdminConfig;

/// Flags of the `admin` section; every flag is also an `MCP_NODE_*` variable.
#[derive(Debug, Default, Args)]
pub struct AdminArgs {
    /// File with the bearer token /cluster and /drain require [config: admin.tokenFile]
    #[arg(long, env = "MCP_NODE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<String>,
    /// File with the token's hex SHA-256 instead [config: admin.tokenSha256File]
    #[arg(long, env = "MCP_NODE_ADMIN_TOKEN_SHA256_FILE")]
    pub admin_token_sha256_file: Option<String>,
    /// Allow /cluster and /drain without credentials; loopback adminListen only (true/false)
    /// [config: admin.insecureLocal] [default: false]
    #[arg(long, env = "MCP_NODE_ADMIN_INSECURE_LOCAL", num_args = 0..=1, default_missing_value = "true")]
    pub admin_insecure_local: Option<bool>,
}

impl AdminArgs {
    /// Applies the given flags over `c`.
    pub fn apply(&self, c: &mut AdminConfig) {
        if let Some(v) = &self.admin_token_file {
            c.token_file = v.clone();
        }
        if let Some(v) = &self.admin_token_sha256_file {
            c.token_sha256_file = v.clone();
        }
        if let Some(v) = self.admin_insecure_local {
            c.insecure_local = v;
        }
    }
}
