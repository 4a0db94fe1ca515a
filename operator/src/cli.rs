//! The command line (the Helm chart relies on these flags and variables).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let n: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|e| format!("`{s}` is not a number of seconds: {e}"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(n))
}

/// Default of `--operator-pod-selector`: labels every pod of the chart's operator Deployment
/// carries, whatever the release is called.
pub const DEFAULT_OPERATOR_POD_SELECTOR: &str =
    "app.kubernetes.io/part-of=mcpcluster,app.kubernetes.io/component=operator";

fn label_map(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let ok = |t: &str, max: usize| {
            t.len() <= max
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        };
        if k.is_empty() || !ok(k, 316) || !ok(v, 63) {
            return Err(format!("`{pair}` is not a Kubernetes label key=value"));
        }
        map.insert(k.to_owned(), v.to_owned());
    }
    if map.is_empty() {
        return Err(
            "at least one label is needed (an empty selector would match every pod)".into(),
        );
    }
    Ok(map)
}

/// `mcp-operator`: reconciles `McpCluster` resources.
#[derive(Debug, Clone, Parser)]
#[command(name = "mcp-operator", version, about)]
pub struct Cli {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "MCP_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Namespace to watch; empty watches all namespaces.
    #[arg(long, env = "MCP_OPERATOR_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Name of the coordination.k8s.io Lease used for leader election (in POD_NAMESPACE).
    #[arg(
        long,
        env = "MCP_OPERATOR_LEADER_ELECTION_LEASE",
        default_value = "mcp-operator"
    )]
    pub leader_election_lease: String,
    /// Reconcile without leader election (one replica only, e.g. local development).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Namespace of the operator's pod (the Lease lives there). Unset: the watch namespace,
    /// else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Name of the operator's pod: its identity in the Lease and in Events. Unset: the host
    /// name plus the process id.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Log format.
    #[arg(
        long,
        env = "MCP_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Where to reach a pod's admin endpoint: a template with {pod} {ordinal} {service}
    /// {namespace} {port}, or a file of `POD HOST:PORT` lines. Default: the pod's DNS name
    /// under the headless Service.
    #[arg(long, env = "MCP_OPERATOR_NODE_ADMIN_OVERRIDE")]
    pub node_admin_override: Option<String>,
    /// How often the nodes' load is read while autoscaling (seconds).
    #[arg(long, default_value = "15", value_parser = seconds)]
    pub poll_interval: Duration,
    /// How long a scale-down waits for departing nodes to drain before removing them anyway
    /// (seconds).
    #[arg(long, default_value = "120", value_parser = seconds)]
    pub drain_timeout: Duration,
    /// Timeout of one admin request to a node (seconds).
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub node_timeout: Duration,
    /// Labels of this operator's pods, `k=v,k=v`: the NetworkPolicy of each McpCluster lets
    /// pods with these labels in POD_NAMESPACE reach the nodes' admin port.
    #[arg(
        long,
        env = "MCP_OPERATOR_POD_SELECTOR",
        default_value = DEFAULT_OPERATOR_POD_SELECTOR,
        value_parser = label_map
    )]
    pub operator_pod_selector: BTreeMap<String, String>,
}

impl Cli {
    /// This replica's identity.
    pub fn identity(&self) -> String {
        self.pod_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "mcp-operator".into());
                format!("{host}-{}", std::process::id())
            })
    }

    /// Namespace of the Lease.
    pub fn lease_namespace(&self) -> String {
        [
            self.pod_namespace.as_deref(),
            Some(self.watch_namespace.as_str()),
        ]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .unwrap_or("default")
        .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helm_contract_parses() {
        let cli = Cli::try_parse_from([
            "mcp-operator",
            "--listen",
            "0.0.0.0:8081",
            "--watch-namespace",
            "",
            "--leader-election-lease",
            "mcp-operator",
            "--log-format",
            "json",
            "--poll-interval",
            "2s",
        ])
        .expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(cli.poll_interval, Duration::from_secs(2));
        assert_eq!(cli.watch_namespace, "");
        assert!(Cli::try_parse_from(["mcp-operator", "--poll-interval", "0"]).is_err());
    }

    #[test]
    fn the_operator_pod_selector_parses_and_refuses_nonsense() {
        let cli = Cli::try_parse_from(["mcp-operator"]).expect("parses");
        assert_eq!(
            cli.operator_pod_selector,
            BTreeMap::from([
                ("app.kubernetes.io/part-of".into(), "mcpcluster".into()),
                ("app.kubernetes.io/component".into(), "operator".into()),
            ])
        );
        let cli = Cli::try_parse_from(["mcp-operator", "--operator-pod-selector", "a=b, c.d/e=f"])
            .expect("parses");
        assert_eq!(cli.operator_pod_selector.len(), 2);
        for bad in ["", "a", "a=b c", "=b"] {
            let err = Cli::try_parse_from(["mcp-operator", "--operator-pod-selector", bad])
                .expect_err(bad);
            assert!(err.to_string().contains("operator-pod-selector"), "{err}");
        }
    }

    #[test]
    fn lease_namespace_falls_back() {
        let mut cli = Cli::try_parse_from(["mcp-operator"]).expect("parses");
        cli.pod_namespace = None;
        assert_eq!(cli.lease_namespace(), "default");
        cli.watch_namespace = "w".into();
        assert_eq!(cli.lease_namespace(), "w");
        cli.pod_namespace = Some("p".into());
        assert_eq!(cli.lease_namespace(), "p");
    }
}
