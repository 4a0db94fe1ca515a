//! The `upstreams` section of [`crate::NodeConfig`]: MCP servers the node puts behind itself.
//! Each upstream's tools are served under `<name>__<tool>`; the node forwards their calls.
//! An upstream is reached at a `url` or through a Kubernetes Service ([`ServiceRef`]); its
//! headers are plain values or keys of Secrets ([`HeaderValue`]). The checks that need no
//! network live here ([`UpstreamConfig::validate`]), so the node and the operator refuse the
//! same things.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::header_value::HeaderValue;

/// Separator between an upstream's name and its tool's name in the names the node serves.
pub const UPSTREAM_SEPARATOR: &str = "__";

/// One upstream MCP server, reached over Streamable HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The upstream's name: a DNS label (1-63 of `a-z 0-9 -`, starting and ending with a
    /// letter or digit), unique among upstreams. Its tools are served as `<name>__<tool>`.
    pub name: String,
    /// Its Streamable HTTP endpoint, `http://` or `https://` (e.g.
    /// `http://everything.tools.svc:3001/mcp`). Exactly one of `url` and `service`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// A Kubernetes Service in front of it instead of a `url`: reached at
    /// `http://<name>.<namespace>.svc:<port><path>`. Exactly one of `url` and `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// The protocol era it speaks: `legacy` (2025-11-25 sessions: `initialize`,
    /// `Mcp-Session-Id`), `2026-07-28` (stateless: `server/discover`, no session), or `auto`
    /// (asked `server/discover` as a 2026-07-28 request whenever a session would be opened:
    /// a result listing `2026-07-28` in `supportedVersions` makes it 2026-07-28, any other
    /// answer legacy). Default `legacy`.
    #[serde(default = "default_era")]
    pub era: String,
    /// Whose sessions the node holds with a session-based (legacy) upstream: `perClient`
    /// (default) — each client session gets its own upstream session the first time it uses
    /// the upstream, declaring that client's capabilities and carrying its logging level and
    /// resource subscriptions (with a standalone stream, held by the node that owns the client
    /// session, while it has a subscription or set a level), kept in the replicated session
    /// state so the node that takes the client session over continues it, ended when the
    /// client session ends; 2026-07-28 clients (no session) share one per set of declared
    /// capabilities — or `shared`: one session per node for every client (fewest upstream
    /// sessions; the upstream sees the node's capabilities and one logging level, and keeps
    /// any per-session state for all clients together). Lists, pings and list changes use the
    /// node's own session either way; a 2026-07-28 upstream has no sessions.
    #[serde(default = "default_sessions")]
    pub sessions: String,
    /// What the names of its tools and prompts are served under: `<prefix><tool>`. Default
    /// `<name>__`. Empty serves them under their own names (an upstream that is the cluster's
    /// whole content); 0-64 of `A-Z a-z 0-9 _ - .`, unique among upstreams. Where prefixes
    /// overlap, a name goes to the upstream that lists it, else to the longest prefix; a
    /// built-in tool of the same name wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Milliseconds one exchange with the upstream may take (connect, send, the whole answer)
    /// before the call fails with an error naming the upstream. Default 30000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests this node sends to the upstream at once. Default 64.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Requests that wait for one of the `maxConcurrency` slots when all are taken, each
    /// within its own `timeoutMs`; one more is refused at once with a JSON-RPC error naming
    /// the upstream (`reason: busy`). Default 0: refused at once as soon as the slots are
    /// taken, never queued.
    #[serde(default)]
    pub max_queued: u32,
    /// Failures in a row (unreachable, `timeoutMs` passed, an HTTP error status, an answer
    /// that is not JSON-RPC) after which the upstream is marked down: its requests are refused
    /// at once (`reason: down`) until a probe after `breakerOpenMs` succeeds. 0: never marked
    /// down. Default 5.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// Milliseconds an upstream marked down stays down before one request (a client's or the
    /// health check's) probes it; doubled after each failed probe, up to 16 times this.
    /// Default 5000.
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
    /// Milliseconds between two health checks (a JSON-RPC `ping`; any JSON-RPC answer is
    /// healthy): they find an upstream down without client traffic and probe it back up. 0:
    /// none. Default 10000.
    #[serde(default = "default_health_check_ms")]
    pub health_check_ms: u64,
    /// Seconds between two fetches of the upstream's lists (tools, resources, templates, prompts;
    /// all are also fetched again when the upstream sends a `list_changed`). Default 60.
    #[serde(default = "default_refresh_secs")]
    pub tools_refresh_secs: u64,
    /// Whether a client session's own standalone stream with this upstream (`sessions:
    /// perClient`) is resumed with `Last-Event-ID` where it stopped — after the session moved
    /// to another node, or after the stream ended —, so what the upstream said meanwhile is
    /// not missed: the id of the last event delivered is kept in the replicated session state.
    /// Set it only for an upstream whose event store replays the events of that stream and
    /// keeps the resumed one as the session's standalone stream, as the MCP specification
    /// asks (`@modelcontextprotocol/server-everything` 2026.8.31 does not: its store replays
    /// every stream's events and maps the resumed stream under an event id, so the
    /// notifications after it are never sent). Default false: streams open afresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume_streams: bool,
    /// Headers sent with every request to the upstream (e.g. `Authorization`): each a plain
    /// value or `valueFrom: {secretKeyRef: {name, key}}`, a key of a Secret (the operator
    /// mounts it into the pods; a node reads it from `<secretsDir>/<name>/<key>`, again every
    /// 10 s). Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
}

/// A Kubernetes Service an upstream is reached through (plain HTTP, cluster DNS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// The Service's name (a DNS label starting with a letter).
    pub name: String,
    /// Its namespace. Default: the `McpCluster`'s (a node outside Kubernetes takes
    /// `POD_NAMESPACE`, and without it this is required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The Service port (1-65535).
    #[schemars(range(min = 1))]
    pub port: u16,
    /// The MCP endpoint's path. Default `/mcp`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// The path of a [`ServiceRef`] without one.
pub const DEFAULT_SERVICE_PATH: &str = "/mcp";

impl ServiceRef {
    /// Checks the reference: `Err((field, problem))`, `field` relative to the upstream entry.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("service.{f}"), m));
        if !is_dns_label(&self.name) || !self.name.as_bytes()[0].is_ascii_lowercase() {
            return err(
                "name",
                format!(
                    "`{}` is not a Service name (a DNS label starting with a letter)",
                    self.name
                ),
            );
        }
        if !self.namespace.is_empty() && !is_dns_label(&self.namespace) {
            return err(
                "namespace",
                format!("`{}` is not a namespace name (a DNS label)", self.namespace),
            );
        }
        if self.port == 0 {
            return err("port", "must be between 1 and 65535".into());
        }
        if !self.path.is_empty()
            && (!self.path.starts_with('/')
                || self
                    .path
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'#'))
        {
            return err(
                "path",
                format!(
                    "`{}` is not a URL path (it starts with `/`; no spaces, no `#`)",
                    self.path
                ),
            );
        }
        Ok(())
    }

    /// `http://<name>.<namespace>.svc:<port><path>`, with `namespace` when the reference
    /// names none; `None` when neither names one.
    pub fn url(&self, namespace: Option<&str>) -> Option<String> {
        let ns = match self.namespace.as_str() {
            "" => namespace.filter(|n| !n.is_empty())?,
            ns => ns,
        };
        let path = match self.path.as_str() {
            "" => DEFAULT_SERVICE_PATH,
            p => p,
        };
        Some(format!("http://{}.{ns}.svc:{}{path}", self.name, self.port))
    }
}

fn default_era() -> String {
    "legacy".into()
}
fn default_sessions() -> String {
    UpstreamConfig::PER_CLIENT.into()
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_max_concurrency() -> u32 {
    64
}
fn default_refresh_secs() -> u64 {
    60
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    5_000
}
fn default_health_check_ms() -> u64 {
    10_000
}

impl UpstreamConfig {
    /// Longest `prefix` accepted.
    pub const MAX_PREFIX: usize = 64;
    /// Longest `timeoutMs` accepted (one hour).
    pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
    /// Largest `maxConcurrency` accepted.
    pub const MAX_CONCURRENCY: u32 = 100_000;
    /// Longest `toolsRefreshSecs` accepted (one day).
    pub const MAX_REFRESH_SECS: u64 = 86_400;
    /// `sessions: perClient`: an upstream session per client session (the default).
    pub const PER_CLIENT: &'static str = "perClient";
    /// `sessions: shared`: one upstream session per node.
    pub const SHARED: &'static str = "shared";
    /// Largest `maxQueued` accepted.
    pub const MAX_QUEUED: u32 = 100_000;
    /// Largest `breakerFailures` accepted.
    pub const MAX_BREAKER_FAILURES: u32 = 10_000;
    /// Longest `breakerOpenMs` accepted (one hour).
    pub const MAX_BREAKER_OPEN_MS: u64 = 3_600_000;
    /// Shortest and longest `healthCheckMs` accepted (other than 0: off).
    pub const HEALTH_CHECK_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

    /// An upstream with the defaults.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            service: None,
            era: default_era(),
            sessions: default_sessions(),
            prefix: None,
            timeout_ms: default_timeout_ms(),
            max_concurrency: default_max_concurrency(),
            tools_refresh_secs: default_refresh_secs(),
            resume_streams: false,
            max_queued: 0,
            breaker_failures: default_breaker_failures(),
            breaker_open_ms: default_breaker_open_ms(),
            health_check_ms: default_health_check_ms(),
            headers: BTreeMap::new(),
        }
    }

    /// The prefix its tool and prompt names are served under (`prefix`, or `<name>__`).
    pub fn served_prefix(&self) -> String {
        match &self.prefix {
            Some(p) => p.clone(),
            None => format!("{}{UPSTREAM_SEPARATOR}", self.name),
        }
    }

    /// Checks one entry on its own: `Err((field, problem))`, `field` relative to the entry
    /// (`url`, `headers.X-Key`, ...).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_owned(), m));
        if !is_dns_label(&self.name) {
            return err(
                "name",
                format!(
                    "`{}` is not a DNS label (1-63 of a-z, 0-9 and `-`, starting and ending with a letter or digit)",
                    self.name
                ),
            );
        }
        match (&self.service, self.url.is_empty()) {
            (Some(_), false) => {
                return err("service", "give `url` or `service`, not both".into());
            }
            (None, true) => {
                return err(
                    "url",
                    "required (or `service`: a Kubernetes Service)".into(),
                );
            }
            (Some(service), true) => service.validate()?,
            (None, false) => match self.url.split_once("://") {
                Some(("http" | "https", rest))
                    if !rest.is_empty()
                        && !rest.starts_with('/')
                        && !rest.contains(char::is_whitespace) => {}
                _ => {
                    return err(
                        "url",
                        format!("`{}` is not an http:// or https:// URL", self.url),
                    );
                }
            },
        }
        if let Some(p) = &self.prefix
            && (p.len() > Self::MAX_PREFIX
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)))
        {
            return err(
                "prefix",
                format!(
                    "`{p}` is not 0-{} of A-Z, a-z, 0-9, `_`, `-` and `.` (tool name characters)",
                    Self::MAX_PREFIX
                ),
            );
        }
        match self.era.as_str() {
            "legacy" | "2026-07-28" | "auto" => {}
            other => {
                return err(
                    "era",
                    format!("`{other}` is not `legacy`, `2026-07-28` or `auto`"),
                );
            }
        }
        match self.sessions.as_str() {
            Self::PER_CLIENT | Self::SHARED => {}
            other => {
                return err(
                    "sessions",
                    format!("`{other}` is not `perClient` or `shared`"),
                );
            }
        }
        if !(1..=Self::MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return err(
                "timeoutMs",
                format!("must be between 1 and {}", Self::MAX_TIMEOUT_MS),
            );
        }
        if !(1..=Self::MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return err(
                "maxConcurrency",
                format!("must be between 1 and {}", Self::MAX_CONCURRENCY),
            );
        }
        if !(1..=Self::MAX_REFRESH_SECS).contains(&self.tools_refresh_secs) {
            return err(
                "toolsRefreshSecs",
                format!("must be between 1 and {}", Self::MAX_REFRESH_SECS),
            );
        }
        if self.max_queued > Self::MAX_QUEUED {
            return err(
                "maxQueued",
                format!("must be between 0 and {}", Self::MAX_QUEUED),
            );
        }
        if self.breaker_failures > Self::MAX_BREAKER_FAILURES {
            return err(
                "breakerFailures",
                format!(
                    "must be between 0 (never marked down) and {}",
                    Self::MAX_BREAKER_FAILURES
                ),
            );
        }
        if !(1..=Self::MAX_BREAKER_OPEN_MS).contains(&self.breaker_open_ms) {
            return err(
                "breakerOpenMs",
                format!("must be between 1 and {}", Self::MAX_BREAKER_OPEN_MS),
            );
        }
        if self.health_check_ms != 0 && !Self::HEALTH_CHECK_MS.contains(&self.health_check_ms) {
            return err(
                "healthCheckMs",
                format!(
                    "must be 0 (no health checks) or between {} and {}",
                    Self::HEALTH_CHECK_MS.start(),
                    Self::HEALTH_CHECK_MS.end()
                ),
            );
        }
        for (k, v) in &self.headers {
            let token = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return err("headers", format!("`{k}` is not a header name"));
            }
            let lower = k.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&lower.as_str()) {
                return err(
                    &format!("headers.{k}"),
                    "is set by the node and cannot be configured".into(),
                );
            }
            match v {
                HeaderValue::Plain(v) => {
                    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                        return err(
                            &format!("headers.{k}"),
                            "the value holds a line break or NUL".into(),
                        );
                    }
                }
                HeaderValue::Secret(r) => r
                    .validate()
                    .map_err(|(f, m)| (format!("headers.{k}.{f}"), m))?,
                HeaderValue::Invalid { why, .. } => {
                    return err(&format!("headers.{k}"), why.clone());
                }
            }
        }
        Ok(())
    }

    /// Where the upstream is reached: `url`, or the Service's cluster DNS name, its namespace
    /// defaulting to `namespace`. `Err((field, problem))` when a Service names no namespace
    /// and `namespace` is `None`.
    pub fn endpoint(&self, namespace: Option<&str>) -> Result<String, (String, String)> {
        match &self.service {
            None => Ok(self.url.clone()),
            Some(s) => s.url(namespace).ok_or_else(|| {
                (
                    "service.namespace".into(),
                    "required here (no namespace to default to: POD_NAMESPACE is not set)".into(),
                )
            }),
        }
    }

    /// The Secret keys its headers name.
    pub fn secret_refs(&self) -> impl Iterator<Item = &crate::header_value::SecretKeyRef> {
        self.headers.values().filter_map(|v| match v {
            HeaderValue::Secret(r) => Some(r),
            _ => None,
        })
    }
}

/// Headers the node's upstream client sets itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "accept",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
];

/// Checks the whole list: each entry, then that names are unique. `Err((field, problem))` with
/// `field` like `upstreams[1].url`.
pub fn validate_upstreams(list: &[UpstreamConfig]) -> Result<(), (String, String)> {
    for (i, u) in list.iter().enumerate() {
        u.validate()
            .map_err(|(f, m)| (format!("upstreams[{i}].{f}"), m))?;
        if let Some(j) = list[..i].iter().position(|o| o.name == u.name) {
            return Err((
                format!("upstreams[{i}].name"),
                format!("`{}` is already the name of upstreams[{j}]", u.name),
            ));
        }
        let prefix = u.served_prefix();
        if let Some(j) = list[..i].iter().position(|o| o.served_prefix() == prefix) {
            return Err((
                format!("upstreams[{i}].prefix"),
                format!("`{prefix}` is already the prefix of upstreams[{j}]"),
            ));
        }
    }
    Ok(())
}

/// Whether `s` is an RFC 1123 DNS label in lower case.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header_value::SecretKeyRef;

    fn refused(edit: impl FnOnce(&mut UpstreamConfig), field: &str, says: &str) {
        let mut u = UpstreamConfig::new("everything", "http://127.0.0.1:3001/mcp");
        edit(&mut u);
        let (f, m) = validate_upstreams(&[UpstreamConfig::new("a", "https://a/mcp"), u])
            .expect_err("refused");
        assert_eq!(f, field, "{m}");
        assert!(m.contains(says), "{f}: {m}");
    }

    #[test]
    fn defaults_are_valid_and_parse_from_yaml() {
        let parsed: Vec<UpstreamConfig> =
            serde_yaml_ng::from_str("- name: fs\n  url: https://fs.example/mcp\n").expect("parses");
        assert_eq!(
            parsed[0],
            UpstreamConfig::new("fs", "https://fs.example/mcp")
        );
        assert!(validate_upstreams(&parsed).is_ok());
    }

    #[test]
    fn problems_name_the_entry_and_field() {
        refused(
            |u| u.name = "Everything".into(),
            "upstreams[1].name",
            "DNS label",
        );
        refused(|u| u.name = "-a".into(), "upstreams[1].name", "DNS label");
        refused(|u| u.name = "a".into(), "upstreams[1].name", "upstreams[0]");
        refused(|u| u.url = "ftp://x/mcp".into(), "upstreams[1].url", "http");
        refused(|u| u.url = "http:///mcp".into(), "upstreams[1].url", "http");
        refused(
            |u| u.era = "modern".into(),
            "upstreams[1].era",
            "not `legacy`, `2026-07-28` or `auto`",
        );
        refused(
            |u| u.sessions = "per-client".into(),
            "upstreams[1].sessions",
            "is not `perClient` or `shared`",
        );
        refused(
            |u| u.era = "2025-11-25".into(),
            "upstreams[1].era",
            "not `legacy`, `2026-07-28` or `auto`",
        );
        refused(
            |u| u.prefix = Some("tools/".into()),
            "upstreams[1].prefix",
            "tool name characters",
        );
        refused(
            |u| u.prefix = Some("x".repeat(65)),
            "upstreams[1].prefix",
            "0-64",
        );
        // `a`'s default prefix is `a__`: taken.
        refused(
            |u| u.prefix = Some("a__".into()),
            "upstreams[1].prefix",
            "already the prefix of upstreams[0]",
        );
        refused(|u| u.timeout_ms = 0, "upstreams[1].timeoutMs", "between");
        refused(
            |u| u.max_concurrency = 0,
            "upstreams[1].maxConcurrency",
            "between",
        );
        refused(
            |u| u.tools_refresh_secs = 0,
            "upstreams[1].toolsRefreshSecs",
            "between",
        );
        refused(
            |u| u.max_queued = 100_001,
            "upstreams[1].maxQueued",
            "between 0 and 100000",
        );
        refused(
            |u| u.breaker_failures = 10_001,
            "upstreams[1].breakerFailures",
            "between 0",
        );
        refused(
            |u| u.breaker_open_ms = 0,
            "upstreams[1].breakerOpenMs",
            "between 1",
        );
        refused(
            |u| u.health_check_ms = 50,
            "upstreams[1].healthCheckMs",
            "0 (no health checks) or between 100",
        );
        refused(
            |u| {
                u.headers.insert("Mcp-Session-Id".into(), "x".into());
            },
            "upstreams[1].headers.Mcp-Session-Id",
            "set by the node",
        );
        refused(
            |u| {
                u.headers.insert("X-Key".into(), "a\r\nb".into());
            },
            "upstreams[1].headers.X-Key",
            "line break",
        );
        refused(
            |u| {
                u.headers.insert("bad name".into(), "x".into());
            },
            "upstreams[1].headers",
            "not a header name",
        );
        refused(
            |u| {
                u.headers.insert(
                    "Authorization".into(),
                    HeaderValue::Secret(SecretKeyRef {
                        name: "Creds".into(),
                        key: "token".into(),
                    }),
                );
            },
            "upstreams[1].headers.Authorization.valueFrom.secretKeyRef.name",
            "not a Secret name",
        );
        let shapeless: BTreeMap<String, HeaderValue> =
            serde_yaml_ng::from_str("X-Key: {valueFrom: {configMapKeyRef: {name: a, key: b}}}")
                .expect("parses");
        refused(
            |u| u.headers = shapeless,
            "upstreams[1].headers.X-Key",
            "configMapKeyRef",
        );
        let service = ServiceRef {
            name: "everything".into(),
            namespace: String::new(),
            port: 3001,
            path: String::new(),
        };
        refused(
            |u| u.service = Some(service.clone()),
            "upstreams[1].service",
            "not both",
        );
        refused(|u| u.url.clear(), "upstreams[1].url", "required");
        let only = |edit: fn(&mut ServiceRef)| {
            let mut s = service.clone();
            edit(&mut s);
            move |u: &mut UpstreamConfig| {
                u.url.clear();
                u.service = Some(s);
            }
        };
        refused(
            only(|s| s.name = "1abc".into()),
            "upstreams[1].service.name",
            "starting with a letter",
        );
        refused(
            only(|s| s.namespace = "Tools".into()),
            "upstreams[1].service.namespace",
            "DNS label",
        );
        refused(only(|s| s.port = 0), "upstreams[1].service.port", "65535");
        refused(
            only(|s| s.path = "mcp".into()),
            "upstreams[1].service.path",
            "starts with `/`",
        );
    }

    #[test]
    fn a_service_reference_resolves_to_its_cluster_dns_name() {
        let parsed: Vec<UpstreamConfig> = serde_yaml_ng::from_str(
            "- name: everything\n  service: {name: everything, port: 3001}\n- name: fs\n  service: {name: fs, namespace: tools, port: 80, path: /v1/mcp}\n  headers:\n    Authorization: {valueFrom: {secretKeyRef: {name: fs-creds, key: token}}}\n    X-Plain: p\n",
        )
        .expect("parses");
        assert!(validate_upstreams(&parsed).is_ok());
        assert_eq!(
            parsed[0].endpoint(Some("ns")).expect("resolves"),
            "http://everything.ns.svc:3001/mcp"
        );
        assert_eq!(
            parsed[0].endpoint(None).expect_err("no namespace").0,
            "service.namespace"
        );
        assert_eq!(
            parsed[1].endpoint(None).expect("its own namespace"),
            "http://fs.tools.svc:80/v1/mcp"
        );
        let refs: Vec<_> = parsed[1]
            .secret_refs()
            .map(SecretKeyRef::relative_path)
            .collect();
        assert_eq!(refs, ["fs-creds/token"]);
        assert_eq!(
            UpstreamConfig::new("a", "http://a/mcp")
                .endpoint(None)
                .expect("url"),
            "http://a/mcp"
        );
    }

    #[test]
    fn prefixes_default_to_the_name_and_may_be_empty() {
        let mut u = UpstreamConfig::new("fs", "https://fs.example/mcp");
        assert_eq!(u.served_prefix(), "fs__");
        u.prefix = Some(String::new());
        assert_eq!(u.served_prefix(), "");
        let other = UpstreamConfig::new("db", "https://db.example/mcp");
        assert!(validate_upstreams(&[u.clone(), other]).is_ok());
        let mut second = UpstreamConfig::new("db", "https://db.example/mcp");
        second.name = "db2".into();
        second.prefix = Some(String::new());
        let (f, m) = validate_upstreams(&[u, second]).expect_err("two empty prefixes");
        assert_eq!(f, "upstreams[1].prefix", "{m}");
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("my-server-2"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
