//! The node configuration: one file (YAML), overridable by `MCP_NODE_*` environment variables
//! and command-line flags. Every field has a documented default so that an empty file is a
//! working configuration for a node on localhost.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a node reads Secret keys by default (and where the operator mounts them).
pub const DEFAULT_SECRETS_DIR: &str = "/etc/mcp-node/secrets";

/// The longest `shutdownGraceSecs` a node accepts (it refuses more at start, naming the field).
pub const MAX_SHUTDOWN_GRACE_SECS: u64 = 86_400;

/// How long a node's stop may take beyond `shutdownGraceSecs`: the last hand-offs (10 s) and
/// the rest of the stop — leaving the cluster, ending upstream sessions, the runtime (5 s).
/// The node's overall bound is `shutdownGraceSecs` plus this; the operator's pod grace period
/// covers it (after the preStop sleep).
pub const STOP_BEYOND_GRACE_SECS: u64 = 15;

/// Configuration of one `mcp-node` process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address the MCP endpoint listens on. Default `127.0.0.1:8080`: loopback only, so a
    /// node started by hand is not reachable from the network until asked.
    pub listen: String,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`, and the
    /// protected `/cluster` and `/drain`). Default `127.0.0.1:9090`. Keep it off the
    /// client-facing port so load cannot starve probes.
    pub admin_listen: String,
    /// Credentials for the admin endpoint's protected requests (`/cluster`, `/drain`). Default
    /// none: they are refused to everyone.
    pub admin: crate::AdminConfig,
    /// HTTP path of the MCP endpoint. Default `/mcp`.
    pub mcp_path: String,
    /// Built-in content packs to serve: `echo` (one `echo` tool, what benchmarks call) and
    /// `conformance` (the names the official conformance suite expects). Default both.
    pub packs: Vec<String>,
    /// Name reported in `serverInfo`. Default `mcpcluster`.
    pub server_name: String,
    /// Resource limits and backpressure.
    pub limits: LimitsConfig,
    /// Host/Origin allow-lists (DNS-rebinding protection).
    pub security: SecurityConfig,
    /// Declarative content: static resources, prompt templates, HTTP-backed tools.
    pub content: ContentConfig,
    /// Logging.
    pub log: LogConfig,
    /// Seconds a shutdown waits for open requests and streams before closing them. Default 10,
    /// at most 86,400 (a day). A stop may take 15 s more: the last hand-offs and leaving the
    /// cluster.
    #[schemars(range(max = 86_400))]
    pub shutdown_grace_secs: u64,
    /// Clustering with peer nodes (off by default).
    pub cluster: crate::ClusterConfig,
    /// OAuth 2.1 client authentication (off by default).
    pub auth: crate::AuthConfig,
    /// MCP servers behind this node: their tools are served as `<name>__<tool>` and their
    /// calls forwarded. Default none.
    pub upstreams: Vec<crate::UpstreamConfig>,
    /// Directory holding the Secrets that `valueFrom.secretKeyRef` values name: key `k` of
    /// Secret `s` is the file `<secretsDir>/s/k`, the layout the operator mounts them in.
    /// Default `/etc/mcp-node/secrets`.
    pub secrets_dir: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            admin: crate::AdminConfig::default(),
            mcp_path: "/mcp".into(),
            packs: vec!["echo".into(), "conformance".into()],
            server_name: "mcpcluster".into(),
            limits: LimitsConfig::default(),
            security: SecurityConfig::default(),
            content: ContentConfig::default(),
            log: LogConfig::default(),
            shutdown_grace_secs: 10,
            cluster: crate::ClusterConfig::default(),
            auth: crate::AuthConfig::default(),
            upstreams: Vec::new(),
            secrets_dir: DEFAULT_SECRETS_DIR.into(),
        }
    }
}

/// Limits that keep a node bounded under any load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Maximum concurrent client connections. `0` (default) derives it from the process's
    /// `RLIMIT_NOFILE` minus a reserve for listeners, peers and files; a value above that bound
    /// is rejected at start, because the kernel would refuse the sockets anyway.
    pub max_connections: u32,
    /// File descriptors kept free for everything that is not a client connection. Default 256.
    pub fd_reserve: u32,
    /// Maximum live legacy sessions; `initialize` beyond it gets 503. Default 200000.
    pub max_sessions: u32,
    /// Seconds without any request or open stream after which a session is dropped. Default 1800.
    pub session_idle_ttl_secs: u64,
    /// Largest accepted request body in bytes; larger gets 413. Default 4 MiB.
    pub max_body_bytes: u32,
    /// Sustained requests per second allowed per session (token bucket refill). Default 200.
    pub session_rate_per_sec: f64,
    /// Burst size of the per-session token bucket. Default 400.
    pub session_burst: u32,
    /// Events kept per SSE stream for `Last-Event-ID` resumption. Default 64.
    pub event_log_capacity: u32,
    /// Messages queued per outbound stream before a slow reader is cut off. Default 64.
    pub outbound_queue: u32,
    /// Requests being handled at once on this node before new ones get 503. Default 10000.
    pub max_inflight_requests: u32,
    /// Seconds a client is told to wait (`Retry-After`) when refused for overload. Default 1.
    pub retry_after_secs: u32,
    /// Seconds a server→client request (sampling, elicitation) waits for its answer. Default 60.
    pub client_request_timeout_secs: u64,
    /// Bytes all connections together may hold in request buffers (heads and bodies being read
    /// or handled); a request that would exceed it gets 503 + `Retry-After` before its body is
    /// read. Bounds the memory slow or stalled uploads can take. Default 64 MiB: 16 bodies of
    /// the default `maxBodyBytes`, or ~60,000 requests of 1 KiB at once. At least
    /// `maxBodyBytes` + 128 KiB, so one request of the largest size always fits.
    pub max_buffered_request_bytes: u64,
    /// Seconds a keep-alive connection may stay idle between requests before the node closes
    /// it (SSE streams are not idle). Default 75: longer than the 60 s after which common
    /// proxies and load balancers (nginx upstream keep-alive, AWS ALB) drop an idle backend
    /// connection, so they close first and never send into a closing one; short enough that
    /// clients that vanish give their connection slot back within a minute or two.
    pub idle_timeout_secs: u64,
    /// Seconds from a request's first byte until its head (request line and headers) is
    /// complete; 408 after that (slow-header clients, "slowloris"). Default 10.
    pub request_head_timeout_secs: u64,
    /// Seconds from a request's first byte until its body is complete; 408 after that.
    /// Default 30.
    pub request_timeout_secs: u64,
    /// Seconds a client connection is silent before TCP keepalive probes start (then every
    /// 10 s, 3 probes), and, with 30 s added, how long sent data may stay unacknowledged
    /// (`TCP_USER_TIMEOUT`): a client that vanished is noticed on idle and on streaming
    /// connections. 0 turns both off. Default 60.
    pub tcp_keepalive_secs: u64,
    /// Seconds between the SSE keep-alive comments (`:`) the node writes on every open stream
    /// whose client is connected to it (GET, POST response and `subscriptions/listen`
    /// streams), events or not. Default 30: half the 60 s after which common proxies and load
    /// balancers close a response that sends nothing (nginx `proxy_read_timeout`, AWS ALB idle
    /// timeout), so the longest silence leaves them a 30 s margin for delays. Each is one
    /// small write per stream and period, the largest part of what an idle stream costs: a
    /// shorter period costs CPU in proportion (16K idle streams every 15 s: about 1.3 % of a
    /// core on the 2-core test machine, most of it the kernel's TCP send; `make bench-idle`).
    /// Clients that close silent streams (`mcp-load --stream-idle`) must wait longer than this.
    pub sse_keepalive_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            fd_reserve: 256,
            max_sessions: 200_000,
            session_idle_ttl_secs: 1800,
            max_body_bytes: 4 * 1024 * 1024,
            session_rate_per_sec: 200.0,
            session_burst: 400,
            event_log_capacity: 64,
            outbound_queue: 64,
            max_inflight_requests: 10_000,
            retry_after_secs: 1,
            client_request_timeout_secs: 60,
            max_buffered_request_bytes: 64 * 1024 * 1024,
            idle_timeout_secs: 75,
            request_head_timeout_secs: 10,
            request_timeout_secs: 30,
            tcp_keepalive_secs: 60,
            sse_keepalive_secs: 30,
        }
    }
}

impl LimitsConfig {
    /// Longest timeout the edge limits accept (one day), so deadlines never overflow.
    pub const MAX_TIMEOUT_SECS: u64 = 86_400;
    /// Head room `maxBufferedRequestBytes` needs above `maxBodyBytes` (a request head and its
    /// read buffer).
    pub const BUFFERED_HEAD_ROOM: u64 = 128 * 1024;

    /// Checks the HTTP edge limits (timeouts, the SSE keep-alive period, the buffered-request
    /// budget, TCP keepalive), shared by the node and the operator: `Err((field, problem))`.
    pub fn validate_edge(&self) -> Result<(), (&'static str, String)> {
        let timeouts = [
            ("limits.idleTimeoutSecs", self.idle_timeout_secs),
            (
                "limits.requestHeadTimeoutSecs",
                self.request_head_timeout_secs,
            ),
            ("limits.requestTimeoutSecs", self.request_timeout_secs),
            ("limits.sseKeepaliveSecs", self.sse_keepalive_secs),
        ];
        for (field, secs) in timeouts {
            if !(1..=Self::MAX_TIMEOUT_SECS).contains(&secs) {
                return Err((
                    field,
                    format!("must be between 1 and {} seconds", Self::MAX_TIMEOUT_SECS),
                ));
            }
        }
        if self.request_timeout_secs < self.request_head_timeout_secs {
            return Err((
                "limits.requestTimeoutSecs",
                "must be at least limits.requestHeadTimeoutSecs".into(),
            ));
        }
        let needed = u64::from(self.max_body_bytes) + Self::BUFFERED_HEAD_ROOM;
        if self.max_buffered_request_bytes < needed {
            return Err((
                "limits.maxBufferedRequestBytes",
                format!(
                    "must be at least limits.maxBodyBytes + 128 KiB ({needed}), so one request of the largest size fits"
                ),
            ));
        }
        // Linux caps TCP_KEEPIDLE at 32767 s.
        if self.tcp_keepalive_secs > 32_767 {
            return Err((
                "limits.tcpKeepaliveSecs",
                "must be at most 32767 (0 turns keepalive off)".into(),
            ));
        }
        Ok(())
    }
}

/// DNS-rebinding protection: which `Host` and `Origin` headers the MCP endpoint accepts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Accepted `Host` names (without port; `*` accepts any). Empty (default): when the node
    /// listens on loopback only `localhost`, `127.0.0.1` and `::1`; otherwise any host.
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values (`scheme://host[:port]`, or `*`). Requests without `Origin`
    /// (non-browser clients) are always accepted. Empty (default): origins on localhost only.
    pub allowed_origins: Vec<String>,
}

/// Content declared in the configuration file rather than in code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Static resources served by `resources/read`.
    pub resources: Vec<ResourceConfig>,
    /// Prompt templates; `{{name}}` in the text is replaced by the argument `name`.
    pub prompts: Vec<PromptConfig>,
    /// Tools that POST their arguments as JSON to an HTTP endpoint and return its answer.
    pub tools: Vec<HttpToolConfig>,
}

/// A static resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource URI, e.g. `file:///docs/readme.md`.
    pub uri: String,
    /// Short name shown to users.
    pub name: String,
    /// What the resource is.
    #[serde(default)]
    pub description: Option<String>,
    /// MIME type. Default `text/plain`.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// The text content.
    pub text: String,
}

/// A prompt template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptConfig {
    /// Prompt name.
    pub name: String,
    /// What the prompt is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Arguments the template uses.
    #[serde(default)]
    pub arguments: Vec<PromptArgConfig>,
    /// The user message text, with `{{argument}}` placeholders.
    pub template: String,
}

/// One argument of a prompt template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptArgConfig {
    /// Argument name.
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether `prompts/get` must supply it. Default false.
    #[serde(default)]
    pub required: bool,
    /// Values offered by `completion/complete` for this argument.
    #[serde(default)]
    pub completions: Vec<String>,
}

/// A tool backed by an HTTP endpoint: the arguments are POSTed as JSON, the response body
/// becomes the tool's text result (a non-2xx status becomes a tool error).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpToolConfig {
    /// Tool name.
    pub name: String,
    /// What the tool does.
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema). Default: any object.
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
    /// `http://host:port/path` to POST to (plain HTTP; put TLS termination in a sidecar).
    pub url: String,
    /// Seconds before the call is abandoned with a tool error. Default 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Whether POSTing the same arguments twice does no more than once (the tool is listed
    /// with `idempotentHint: true`). A call whose node dies before answering is then sent
    /// again to the session's new owner; otherwise the client is told the outcome is unknown.
    /// Default false.
    #[serde(default)]
    pub idempotent: bool,
}

/// Logging output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `mcp_node=debug`. Default `info`.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_default() {
        let parsed: NodeConfig = serde_yaml_ng::from_str("{}").expect("parses");
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn unknown_field_is_named_in_the_error() {
        let err = serde_yaml_ng::from_str::<NodeConfig>("limits:\n  maxConection: 5\n")
            .expect_err("typo must be refused");
        assert!(err.to_string().contains("maxConection"), "{err}");
    }

    #[test]
    fn round_trips_through_yaml() {
        let mut c = NodeConfig::default();
        c.limits.max_connections = 1234;
        c.content.resources.push(ResourceConfig {
            uri: "file:///a".into(),
            name: "a".into(),
            text: "hello".into(),
            ..Default::default()
        });
        let text = serde_yaml_ng::to_string(&c).expect("serializes");
        let back: NodeConfig = serde_yaml_ng::from_str(&text).expect("parses");
        assert_eq!(back, c);
    }
}
