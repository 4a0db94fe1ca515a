//! Where the configuration comes from: the YAML file, then `MCP_NODE_*` environment variables,
//! then flags (each later source wins), validated before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use mcpcluster_api::NodeConfig;

pub use crate::config_error::ConfigError;
use crate::fdlimit;

/// Command line of `mcp-node`. Every flag is also an `MCP_NODE_*` variable and a config field.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-node",
    version,
    about = "MCP server node (Streamable HTTP, both protocol eras)"
)]
pub struct Cli {
    /// MCP listen address [config: listen] [default: 127.0.0.1:8080]
    #[arg(long, env = "MCP_NODE_LISTEN")]
    pub listen: Option<String>,
    /// Admin listen address for /metrics /healthz /readyz /status /cluster /drain [config: adminListen] [default: 127.0.0.1:9090]
    #[arg(long, env = "MCP_NODE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// YAML configuration file
    #[arg(long, env = "MCP_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Comma-separated built-in packs: echo, conformance [config: packs]
    #[arg(long, env = "MCP_NODE_PACKS", value_delimiter = ',')]
    pub packs: Option<Vec<String>>,
    /// Maximum client connections, 0 = derive from RLIMIT_NOFILE [config: limits.maxConnections]
    #[arg(long, env = "MCP_NODE_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Maximum live sessions [config: limits.maxSessions]
    #[arg(long, env = "MCP_NODE_MAX_SESSIONS")]
    pub max_sessions: Option<u32>,
    /// Requests handled at once before 503 [config: limits.maxInflightRequests]
    #[arg(long, env = "MCP_NODE_MAX_INFLIGHT_REQUESTS")]
    pub max_inflight_requests: Option<u32>,
    /// Per-session sustained request rate [config: limits.sessionRatePerSec]
    #[arg(long, env = "MCP_NODE_SESSION_RATE_PER_SEC")]
    pub session_rate_per_sec: Option<f64>,
    /// Per-session burst [config: limits.sessionBurst]
    #[arg(long, env = "MCP_NODE_SESSION_BURST")]
    pub session_burst: Option<u32>,
    /// Comma-separated accepted Host names, `*` for any [config: security.allowedHosts]
    #[arg(long, env = "MCP_NODE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    /// Log filter, e.g. info or mcp_node=debug [config: log.level]
    #[arg(long, env = "MCP_NODE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [config: log.format]
    #[arg(long, env = "MCP_NODE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Directory of the Secret files upstream headers name (`<dir>/<secret>/<key>`)
    /// [config: secretsDir]
    #[arg(long, env = "MCP_NODE_SECRETS_DIR")]
    pub secrets_dir: Option<String>,
    /// Print the default configuration as YAML and exit
    #[arg(long)]
    pub print_default_config: bool,
    /// Write a dev cluster CA and one peer certificate (ca.crt, tls.crt, tls.key) into DIR and
    /// exit; give the three files to every local node (cluster.tls.*)
    #[arg(long, value_name = "DIR")]
    pub write_dev_certs: Option<PathBuf>,
    /// The `admin` section.
    #[command(flatten)]
    pub admin: crate::admin::AdminArgs,
    /// The `cluster` section.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

/// A validated configuration plus what was derived from the machine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The merged configuration.
    pub config: NodeConfig,
    /// Parsed MCP listen address.
    pub listen: SocketAddr,
    /// Parsed admin listen address.
    pub admin_listen: SocketAddr,
    /// Who may use `/cluster` and `/drain`.
    pub admin: crate::admin::AdminSettings,
    /// Effective connection cap (configured or derived from `RLIMIT_NOFILE`).
    pub max_connections: u32,
    /// The validated `cluster` section; `None` when clustering is off.
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// The validated `auth` section; `None` when client authentication is off.
    pub auth: Option<std::sync::Arc<crate::auth::AuthSettings>>,
}

fn field(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field,
        message: message.into(),
    }
}

/// The default configuration, as the YAML a user would start editing from.
pub fn default_config_yaml() -> String {
    serde_yaml_ng::to_string(&NodeConfig::default()).unwrap_or_default()
}

impl Settings {
    /// Reads the file named by `--config` (if any), applies environment and flags, validates.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                Some((shown, text))
            }
            None => None,
        };
        Self::from_text(file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), cli)
    }

    /// [`Settings::load`] with the configuration file already read: `file` is its name (for
    /// messages) and text. Parses it, applies environment and flags from `cli`, validates.
    pub fn from_text(file: Option<(&str, &str)>, cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some((path, text)) => parse_config(text).map_err(|message| ConfigError::Parse {
                path: path.to_owned(),
                message,
            })?,
            None => NodeConfig::default(),
        };
        apply_overrides(&mut config, cli)?;
        Self::validate(config)
    }

    /// Validates a configuration and derives the effective limits.
    pub fn validate(mut config: NodeConfig) -> Result<Self, ConfigError> {
        let listen: SocketAddr = config.listen.parse().map_err(|e| {
            field(
                "listen",
                format!("`{}` is not IP:PORT ({e})", config.listen),
            )
        })?;
        let admin_listen: SocketAddr = config.admin_listen.parse().map_err(|e| {
            field(
                "adminListen",
                format!("`{}` is not IP:PORT ({e})", config.admin_listen),
            )
        })?;
        if listen.port() != 0 && listen == admin_listen {
            return Err(field("adminListen", "must differ from `listen`"));
        }
        let admin = crate::admin::AdminSettings::validate(&config.admin, admin_listen)?;
        if !config.mcp_path.starts_with('/') {
            return Err(field("mcpPath", "must start with `/`"));
        }
        if config.shutdown_grace_secs > MAX_SHUTDOWN_GRACE_SECS {
            return Err(field(
                "shutdownGraceSecs",
                format!(
                    "{} is more than {MAX_SHUTDOWN_GRACE_SECS} (a day); a stop is bounded by it",
                    config.shutdown_grace_secs
                ),
            ));
        }
        for pack in &config.packs {
            if !crate::content::packs::KNOWN.contains(&pack.as_str()) {
                return Err(field(
                    "packs",
                    format!(
                        "unknown pack `{pack}` (known: {})",
                        crate::content::packs::KNOWN.join(", ")
                    ),
                ));
            }
        }
        let limits = &config.limits;
        let max_connections = fdlimit::connection_cap(limits.max_connections, limits.fd_reserve)
            .map_err(|m| field("limits.maxConnections", m))?;
        if limits.max_sessions == 0 {
            return Err(field("limits.maxSessions", "must be at least 1"));
        }
        if limits.max_body_bytes < 1024 {
            return Err(field("limits.maxBodyBytes", "must be at least 1024"));
        }
        if !(limits.session_rate_per_sec.is_finite() && limits.session_rate_per_sec > 0.0) {
            return Err(field(
                "limits.sessionRatePerSec",
                "must be a positive number",
            ));
        }
        if limits.session_burst == 0 {
            return Err(field("limits.sessionBurst", "must be at least 1"));
        }
        if limits.event_log_capacity == 0 {
            return Err(field("limits.eventLogCapacity", "must be at least 1"));
        }
        if limits.outbound_queue == 0 {
            return Err(field("limits.outboundQueue", "must be at least 1"));
        }
        if limits.max_inflight_requests == 0 {
            return Err(field("limits.maxInflightRequests", "must be at least 1"));
        }
        if limits.session_idle_ttl_secs == 0 {
            return Err(field("limits.sessionIdleTtlSecs", "must be at least 1"));
        }
        limits
            .validate_edge()
            .map_err(|(name, message)| field(name, message))?;
        for (i, r) in config.content.resources.iter().enumerate() {
            if r.uri.is_empty() || !r.uri.contains(':') {
                return Err(field(
                    "content.resources",
                    format!("entry {i}: `uri` must be an absolute URI"),
                ));
            }
        }
        for (i, t) in config.content.tools.iter().enumerate() {
            crate::content::http_tool::validate(t)
                .map_err(|m| field("content.tools", format!("entry {i} (`{}`): {m}", t.name)))?;
        }
        for (i, p) in config.content.prompts.iter().enumerate() {
            if p.name.is_empty() {
                return Err(field(
                    "content.prompts",
                    format!("entry {i}: `name` is empty"),
                ));
            }
        }
        mcpcluster_api::validate_upstreams(&config.upstreams)
            .map_err(|(field, message)| ConfigError::Entry { field, message })?;
        let namespace = std::env::var("POD_NAMESPACE").ok();
        let secrets_dir = std::path::PathBuf::from(&config.secrets_dir);
        for (i, u) in config.upstreams.iter_mut().enumerate() {
            let entry = |(f, message): (String, String)| ConfigError::Entry {
                field: format!("upstreams[{i}].{f}"),
                message,
            };
            // A Service reference becomes its cluster DNS URL here, once.
            let field = if u.service.is_some() {
                "service"
            } else {
                "url"
            };
            let url = u.endpoint(namespace.as_deref()).map_err(entry)?;
            url.parse::<http::Uri>()
                .map_err(|e| entry((field.into(), format!("`{url}` is not a URL: {e}"))))?;
            u.url = url;
            u.service = None;
            // Secret-held values must be readable now (read again while running).
            crate::upstream::headers::Headers::new(u, &secrets_dir).map_err(entry)?;
        }
        if tracing_subscriber::EnvFilter::try_new(&config.log.level).is_err() {
            return Err(field(
                "log.level",
                format!("`{}` is not a valid filter", config.log.level),
            ));
        }
        let cluster = crate::cluster::ClusterSettings::validate(
            &config.cluster,
            std::env::var("POD_IP").ok(),
        )?;
        let auth = match config.auth.enabled {
            false => None,
            true => Some(std::sync::Arc::new(
                crate::auth::AuthSettings::new(&config.auth).map_err(|(f, m)| {
                    ConfigError::Field {
                        field: auth_field(f),
                        message: m,
                    }
                })?,
            )),
        };
        Ok(Self {
            config,
            listen,
            admin_listen,
            admin,
            max_connections,
            cluster,
            auth,
        })
    }
}

/// `auth.<field>` for a field of the `auth` section (the names are a closed set).
fn auth_field(f: &'static str) -> &'static str {
    match f {
        "issuer" => "auth.issuer",
        "resource" => "auth.resource",
        "jwksUrl" => "auth.jwksUrl",
        "discoveryUrl" => "auth.discoveryUrl",
        "algorithms" => "auth.algorithms",
        "requiredScopes" => "auth.requiredScopes",
        "scopes" => "auth.scopes",
        "jwksRefreshMinSecs" => "auth.jwksRefreshMinSecs",
        "jwksMaxAgeSecs" => "auth.jwksMaxAgeSecs",
        "clockSkewSecs" => "auth.clockSkewSecs",
        _ => "auth",
    }
}

/// Parses YAML into a [`NodeConfig`]; the message names the offending field and line.
pub fn parse_config(text: &str) -> Result<NodeConfig, String> {
    if text.trim().is_empty() {
        return Ok(NodeConfig::default());
    }
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

fn apply_overrides(config: &mut NodeConfig, cli: &Cli) -> Result<(), ConfigError> {
    if let Some(v) = &cli.listen {
        config.listen = v.clone();
    }
    if let Some(v) = &cli.admin_listen {
        config.admin_listen = v.clone();
    }
    if let Some(v) = &cli.packs {
        config.packs = v
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(v) = cli.max_connections {
        config.limits.max_connections = v;
    }
    if let Some(v) = cli.max_sessions {
        config.limits.max_sessions = v;
    }
    if let Some(v) = cli.max_inflight_requests {
        config.limits.max_inflight_requests = v;
    }
    if let Some(v) = cli.session_rate_per_sec {
        config.limits.session_rate_per_sec = v;
    }
    if let Some(v) = cli.session_burst {
        config.limits.session_burst = v;
    }
    if let Some(v) = &cli.allowed_hosts {
        config.security.allowed_hosts = v.clone();
    }
    if let Some(v) = &cli.log_level {
        config.log.level = v.clone();
    }
    if let Some(v) = &cli.secrets_dir {
        config.secrets_dir = v.clone();
    }
    cli.admin.apply(&mut config.admin);
    cli.cluster.apply(&mut config.cluster)?;
    if let Some(v) = &cli.log_format {
        config.log.format = match v.as_str() {
            "text" => mcpcluster_api::LogFormat::Text,
            "json" => mcpcluster_api::LogFormat::Json,
            other => {
                return Err(field(
                    "log.format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
    }
    Ok(())
}

/// The longest `shutdownGraceSecs` accepted: a stop's deadlines are computed from it
/// (`node/drain.rs`'s `stop_bound`), and a value near `u64::MAX` seconds overflows them. The
/// CRD's schema says the same (`mcpcluster_api::node_config`).
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = mcpcluster_api::node_config::MAX_SHUTDOWN_GRACE_SECS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_grace_past_a_day_names_the_field() {
        let c = NodeConfig {
            shutdown_grace_secs: u64::MAX,
            ..Default::default()
        };
        let err = Settings::validate(c).expect_err("invalid");
        assert!(err.to_string().contains("`shutdownGraceSecs`"), "{err}");
        let c = NodeConfig {
            shutdown_grace_secs: MAX_SHUTDOWN_GRACE_SECS,
            ..Default::default()
        };
        assert!(Settings::validate(c).is_ok());
    }

    #[test]
    fn default_validates() {
        let s = Settings::validate(NodeConfig::default()).expect("default is valid");
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.admin_listen.port(), 9090);
        assert!(s.max_connections > 0);
    }

    #[test]
    fn bad_listen_names_the_field() {
        let c = NodeConfig {
            listen: "nope".into(),
            ..Default::default()
        };
        let err = Settings::validate(c).expect_err("invalid");
        assert!(err.to_string().contains("`listen`"), "{err}");
    }

    #[test]
    fn unknown_pack_is_refused() {
        let c = NodeConfig {
            packs: vec!["nonsense".into()],
            ..Default::default()
        };
        let err = Settings::validate(c).expect_err("invalid");
        assert!(err.to_string().contains("packs"), "{err}");
    }

    #[test]
    fn connection_cap_above_fd_limit_is_refused() {
        let mut c = NodeConfig::default();
        c.limits.max_connections = u32::MAX;
        let err = Settings::validate(c).expect_err("invalid");
        assert!(err.to_string().contains("limits.maxConnections"), "{err}");
    }

    #[test]
    fn auth_is_off_by_default_and_its_problems_name_the_field() {
        assert!(
            Settings::validate(NodeConfig::default())
                .expect("valid")
                .auth
                .is_none()
        );
        let mut c = NodeConfig::default();
        c.auth.enabled = true;
        c.auth.issuer = "https://as.example.com".into();
        let err = Settings::validate(c.clone()).expect_err("no resource");
        assert!(err.to_string().contains("`auth.resource`"), "{err}");
        c.auth.resource = "http://127.0.0.1:8080/mcp".into();
        c.auth.algorithms = vec!["HS256".into()];
        let err = Settings::validate(c.clone()).expect_err("hmac");
        assert!(err.to_string().contains("`auth.algorithms`"), "{err}");
        c.auth.algorithms = vec![];
        assert!(Settings::validate(c).expect("valid").auth.is_some());
    }

    #[test]
    fn edge_limits_are_validated_with_the_field_named() {
        let refused = |edit: fn(&mut NodeConfig), field: &str| {
            let mut c = NodeConfig::default();
            edit(&mut c);
            let err = Settings::validate(c).expect_err("invalid").to_string();
            assert!(err.contains(field), "{field}: {err}");
        };
        refused(|c| c.limits.idle_timeout_secs = 0, "limits.idleTimeoutSecs");
        refused(
            |c| c.limits.request_head_timeout_secs = u64::MAX,
            "limits.requestHeadTimeoutSecs",
        );
        refused(
            |c| c.limits.request_timeout_secs = 5,
            "limits.requestTimeoutSecs",
        );
        refused(
            |c| c.limits.max_buffered_request_bytes = 4 * 1024 * 1024,
            "limits.maxBufferedRequestBytes",
        );
        refused(
            |c| c.limits.tcp_keepalive_secs = 40_000,
            "limits.tcpKeepaliveSecs",
        );
        refused(
            |c| c.limits.sse_keepalive_secs = 0,
            "limits.sseKeepaliveSecs",
        );
        refused(
            |c| c.limits.sse_keepalive_secs = 86_401,
            "limits.sseKeepaliveSecs",
        );
        let parsed = parse_config(
            "limits:\n  idleTimeoutSecs: 5\n  maxBufferedRequestBytes: 8000000\n  tcpKeepaliveSecs: 0\n  sseKeepaliveSecs: 20\n",
        )
        .expect("parses");
        let s = Settings::validate(parsed).expect("valid");
        assert_eq!(s.config.limits.idle_timeout_secs, 5);
        assert_eq!(s.config.limits.tcp_keepalive_secs, 0);
        assert_eq!(s.config.limits.sse_keepalive_secs, 20);
    }

    #[test]
    fn upstream_problems_name_the_entry_and_field() {
        let parsed = parse_config(
            "upstreams:\n  - name: everything\n    url: http://127.0.0.1:3001/mcp\n  - name: fs\n    url: ftp://fs/mcp\n",
        )
        .expect("parses");
        let err = Settings::validate(parsed).expect_err("ftp").to_string();
        assert!(err.contains("`upstreams[1].url`"), "{err}");
        let parsed = parse_config(
            "upstreams:\n  - name: everything\n    url: http://127.0.0.1:3001/mcp\n    era: modern\n",
        )
        .expect("parses");
        let err = Settings::validate(parsed).expect_err("modern").to_string();
        assert!(
            err.contains("`upstreams[0].era`") && err.contains("`2026-07-28` or `auto`"),
            "{err}"
        );
        for era in ["auto", "2026-07-28", "legacy"] {
            let parsed = parse_config(&format!(
                "upstreams:\n  - name: everything\n    url: http://127.0.0.1:3001/mcp\n    era: {era}\n"
            ))
            .expect("parses");
            Settings::validate(parsed).unwrap_or_else(|e| panic!("{era}: {e}"));
        }
        let parsed = parse_config(
            "upstreams:\n  - name: everything\n    url: http://127.0.0.1:3001/mcp\n    timeoutMs: 500\n    headers: {X-Key: k}\n",
        )
        .expect("parses");
        let s = Settings::validate(parsed).expect("valid");
        assert_eq!(s.config.upstreams[0].timeout_ms, 500);
        assert_eq!(s.config.upstreams[0].max_concurrency, 64);
        let err = parse_config("upstreams:\n  - name: a\n    url: http://a\n    timeout: 5\n")
            .expect_err("unknown field");
        assert!(err.contains("timeout"), "{err}");
    }

    #[test]
    fn a_service_reference_resolves_and_secret_headers_must_be_readable() {
        let dir = std::env::temp_dir().join(format!("mcp-settings-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "secretsDir: {}\nupstreams:\n  - name: fs\n    service: {{name: fs, namespace: tools, port: 3001}}\n    headers:\n      Authorization: {{valueFrom: {{secretKeyRef: {{name: fs-creds, key: token}}}}}}\n",
            dir.display()
        );
        let err = Settings::validate(parse_config(&text).expect("parses"))
            .expect_err("no Secret file")
            .to_string();
        assert!(
            err.contains("`upstreams[0].headers.Authorization.valueFrom.secretKeyRef`")
                && err.contains("Secret `fs-creds`"),
            "{err}"
        );
        std::fs::create_dir_all(dir.join("fs-creds")).expect("mkdir");
        std::fs::write(dir.join("fs-creds/token"), "Bearer s3cret\n").expect("write");
        let s = Settings::validate(parse_config(&text).expect("parses")).expect("valid");
        assert_eq!(s.config.upstreams[0].url, "http://fs.tools.svc:3001/mcp");
        let both =
            "upstreams:\n  - name: fs\n    url: http://a/mcp\n    service: {name: fs, port: 80}\n";
        let err = Settings::validate(parse_config(both).expect("parses"))
            .expect_err("both")
            .to_string();
        assert!(
            err.contains("`upstreams[0].service`") && err.contains("not both"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn yaml_type_error_mentions_field() {
        let err = parse_config("limits:\n  maxSessions: lots\n").expect_err("invalid");
        assert!(err.contains("maxSessions"), "{err}");
    }
}
