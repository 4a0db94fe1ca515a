//! What the CRD's schema and CEL rules cannot refuse, checked before anything is applied. A
//! problem becomes `Degraded=True, reason InvalidSpec` and a Warning event naming the field;
//! nothing is changed until the spec is fixed (no crash loop, no half-applied cluster).
//!
//! The node-config checks mirror the machine-independent part of the node's own validation
//! (`mcp_node::settings::Settings::validate`), so a spec the operator accepts does not leave
//! pods crash-looping on a config the node refuses.

use mcpcluster_api::{AdminConfig, ClusterConfig, McpCluster, NodeConfig};

use crate::names::MAX_NAME_LEN;

/// Built-in packs the node knows (`mcp_node::content::packs::KNOWN`).
pub const KNOWN_PACKS: &[&str] = &["echo", "conformance"];

/// The first problem found, as `field: why`.
pub fn check(cluster: &McpCluster, name: &str) -> Result<(), String> {
    check_name(name)?;
    check_node(&cluster.spec.node).map_err(|m| format!("spec.node.{m}"))?;
    if cluster.spec.node.auth != mcpcluster_api::AuthConfig::default() {
        return Err("spec.node.auth: client authentication is configured in spec.auth".into());
    }
    cluster
        .spec
        .auth
        .validate()
        .map_err(|(field, why)| format!("spec.auth.{field}: {why}"))
}

/// Children are named after the cluster: Service names must be DNS-1035 labels (a letter
/// first, no dots) and the StatefulSet's revision label caps the length.
fn check_name(name: &str) -> Result<(), String> {
    let dns1035 = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !dns1035 {
        return Err(format!(
            "metadata.name: `{name}` must be a DNS-1035 label (lowercase letters, digits, '-', \
             starting with a letter): the Services are named after it"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "metadata.name: `{name}` is {} characters, at most {MAX_NAME_LEN} fit the \
             StatefulSet's pod labels",
            name.len()
        ));
    }
    Ok(())
}

/// The parts of `node.cluster` the operator sets itself: a value there would be overwritten, so
/// it is refused rather than silently ignored (like `listen`, which CEL refuses).
fn check_cluster(c: &ClusterConfig) -> Result<(), String> {
    let d = ClusterConfig::default();
    let owned = [
        (
            "peerListen",
            c.peer_listen != d.peer_listen,
            "from spec.ports.peer",
        ),
        ("advertise", !c.advertise.is_empty(), "from the pod IP"),
        ("nodeName", !c.node_name.is_empty(), "from the pod name"),
        (
            "tls.caFile",
            !(c.tls.ca_file.is_empty() && c.tls.cert_file.is_empty() && c.tls.key_file.is_empty()),
            "from the TLS Secret (spec.tls)",
        ),
    ];
    match owned.iter().find(|(_, set, _)| *set) {
        Some((field, _, from)) => Err(format!(
            "cluster.{field}: set by the operator ({from}); leave it unset"
        )),
        None => Ok(()),
    }
}

fn check_node(c: &NodeConfig) -> Result<(), String> {
    check_cluster(&c.cluster)?;
    if c.admin != AdminConfig::default() {
        // A token file the pod does not have would crash-loop the node, and insecureLocal is
        // refused on the pod's 0.0.0.0 admin address.
        return Err(
            "admin: set by the operator (the token in Secret NAME-admin-token); leave it unset"
                .into(),
        );
    }
    if c.secrets_dir != mcpcluster_api::DEFAULT_SECRETS_DIR {
        return Err(format!(
            "secretsDir: set by the operator (the Secrets upstream headers name are mounted at {}); leave it unset",
            mcpcluster_api::DEFAULT_SECRETS_DIR
        ));
    }
    if !c.mcp_path.starts_with('/') {
        return Err("mcpPath: must start with `/`".into());
    }
    if let Some(p) = c.packs.iter().find(|p| !KNOWN_PACKS.contains(&p.as_str())) {
        return Err(format!(
            "packs: unknown pack `{p}` (known: {})",
            KNOWN_PACKS.join(", ")
        ));
    }
    let l = &c.limits;
    let at_least_one = [
        ("limits.maxSessions", u64::from(l.max_sessions)),
        ("limits.sessionBurst", u64::from(l.session_burst)),
        ("limits.eventLogCapacity", u64::from(l.event_log_capacity)),
        ("limits.outboundQueue", u64::from(l.outbound_queue)),
        (
            "limits.maxInflightRequests",
            u64::from(l.max_inflight_requests),
        ),
        ("limits.sessionIdleTtlSecs", l.session_idle_ttl_secs),
    ];
    if let Some((f, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{f}: must be at least 1"));
    }
    if l.max_body_bytes < 1024 {
        return Err("limits.maxBodyBytes: must be at least 1024".into());
    }
    if !(l.session_rate_per_sec.is_finite() && l.session_rate_per_sec > 0.0) {
        return Err("limits.sessionRatePerSec: must be a positive number".into());
    }
    l.validate_edge()
        .map_err(|(field, problem)| format!("{field}: {problem}"))?;
    for (i, r) in c.content.resources.iter().enumerate() {
        if !r.uri.contains(':') {
            return Err(format!(
                "content.resources[{i}].uri: must be an absolute URI"
            ));
        }
    }
    for (i, t) in c.content.tools.iter().enumerate() {
        if !t.url.starts_with("http://") {
            return Err(format!(
                "content.tools[{i}].url: must be http://host:port/path"
            ));
        }
    }
    for (i, p) in c.content.prompts.iter().enumerate() {
        if p.name.is_empty() {
            return Err(format!("content.prompts[{i}].name: is empty"));
        }
    }
    mcpcluster_api::validate_upstreams(&c.upstreams)
        .map_err(|(field, problem)| format!("{field}: {problem}"))?;
    Ok(())
}

/// The first header whose Secret is missing, or lacks the key: `field: why`. `keys_of` gives
/// the keys a Secret of the cluster's namespace holds (`None`: no such Secret).
pub fn upstream_secret_problem(
    node: &NodeConfig,
    mut keys_of: impl FnMut(&str) -> Option<Vec<String>>,
) -> Option<String> {
    for (i, u) in node.upstreams.iter().enumerate() {
        for (header, v) in &u.headers {
            let mcpcluster_api::HeaderValue::Secret(r) = v else {
                continue;
            };
            let field = format!("spec.node.upstreams[{i}].headers.{header}.valueFrom.secretKeyRef");
            match keys_of(&r.name) {
                None => return Some(format!("{field}: Secret `{}` does not exist", r.name)),
                Some(keys) if !keys.contains(&r.key) => {
                    return Some(format!(
                        "{field}: Secret `{}` has no key `{}`",
                        r.name, r.key
                    ));
                }
                Some(_) => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpcluster_api::McpClusterSpec;

    #[test]
    fn a_header_secret_must_exist_with_its_key() {
        let mut c = cluster();
        c.spec.node.upstreams = serde_yaml_ng::from_str(
            "- name: a\n  service: {name: a, port: 80}\n  headers:\n    Authorization: {valueFrom: {secretKeyRef: {name: creds, key: token}}}\n",
        )
        .expect("parses");
        assert_eq!(check(&c, "demo"), Ok(()));
        let node = &c.spec.node;
        assert_eq!(
            upstream_secret_problem(node, |_| None).as_deref(),
            Some(
                "spec.node.upstreams[0].headers.Authorization.valueFrom.secretKeyRef: Secret `creds` does not exist"
            )
        );
        assert_eq!(
            upstream_secret_problem(node, |_| Some(vec!["other".into()])).as_deref(),
            Some(
                "spec.node.upstreams[0].headers.Authorization.valueFrom.secretKeyRef: Secret `creds` has no key `token`"
            )
        );
        assert_eq!(
            upstream_secret_problem(node, |n| (n == "creds").then(|| vec!["token".into()])),
            None
        );
        c.spec.node.secrets_dir = "/tmp".into();
        assert!(
            check(&c, "demo")
                .expect_err("owned")
                .starts_with("spec.node.secretsDir: set by the operator")
        );
    }

    fn cluster() -> McpCluster {
        McpCluster::new("demo", McpClusterSpec::default())
    }

    #[test]
    fn the_default_spec_is_valid() {
        assert_eq!(check(&cluster(), "demo"), Ok(()));
    }

    #[test]
    fn names_that_cannot_name_services_are_refused() {
        for bad in ["1abc", "a.b", "a-", &"a".repeat(53)] {
            let err = check(&cluster(), bad).expect_err(bad);
            assert!(err.starts_with("metadata.name"), "{err}");
        }
        assert_eq!(check(&cluster(), &"a".repeat(52)), Ok(()));
    }

    #[test]
    fn node_config_problems_name_the_field() {
        let mut c = cluster();
        c.spec.node.packs = vec!["echo".into(), "nope".into()];
        let err = check(&c, "demo").expect_err("unknown pack");
        assert!(
            err.starts_with("spec.node.packs: unknown pack `nope`"),
            "{err}"
        );

        let mut c = cluster();
        c.spec.node.limits.max_sessions = 0;
        assert_eq!(
            check(&c, "demo"),
            Err("spec.node.limits.maxSessions: must be at least 1".into())
        );

        let mut c = cluster();
        c.spec.node.cluster.peer_listen = "0.0.0.0:1".into();
        assert_eq!(
            check(&c, "demo"),
            Err("spec.node.cluster.peerListen: set by the operator (from spec.ports.peer); leave it unset".into())
        );
        let mut c = cluster();
        c.spec.node.cluster.tls.key_file = "/k".into();
        assert!(check(&c, "demo").expect_err("tls").contains("cluster.tls"));
        let mut c = cluster();
        c.spec.node.cluster.seeds = vec!["10.0.0.1:7946".into()];
        c.spec.node.cluster.membership.suspect_to_down_ms = 1000;
        assert_eq!(check(&c, "demo"), Ok(()), "seeds and timers are the user's");

        let mut c = cluster();
        c.spec.node.admin.insecure_local = true;
        assert_eq!(
            check(&c, "demo"),
            Err("spec.node.admin: set by the operator (the token in Secret NAME-admin-token); leave it unset".into())
        );

        let mut c = cluster();
        c.spec.node.mcp_path = "mcp".into();
        assert!(check(&c, "demo").expect_err("path").contains("mcpPath"));
    }

    #[test]
    fn upstream_problems_name_the_entry() {
        let mut c = cluster();
        c.spec.node.upstreams = vec![
            mcpcluster_api::UpstreamConfig::new("fs", "http://fs.tools.svc:3001/mcp"),
            mcpcluster_api::UpstreamConfig::new("fs", "http://other/mcp"),
        ];
        let err = check(&c, "demo").expect_err("duplicate name");
        assert!(err.starts_with("spec.node.upstreams[1].name: "), "{err}");
        c.spec.node.upstreams.pop();
        assert_eq!(check(&c, "demo"), Ok(()));
    }

    #[test]
    fn auth_problems_name_the_field() {
        let mut c = cluster();
        c.spec.auth.enabled = true;
        c.spec.auth.issuer = "https://as.example.com/realms/mcp".into();
        let err = check(&c, "demo").expect_err("no resource");
        assert!(err.starts_with("spec.auth.resource: required"), "{err}");
        c.spec.auth.resource = "https://mcp.example.com/mcp".into();
        assert_eq!(check(&c, "demo"), Ok(()));
        c.spec.auth.issuer = "http://keycloak.auth.svc/realms/mcp".into();
        let err = check(&c, "demo").expect_err("plain http");
        assert!(err.starts_with("spec.auth.issuer: "), "{err}");
        let mut c = cluster();
        c.spec.node.auth.enabled = true;
        let err = check(&c, "demo").expect_err("node.auth");
        assert!(err.starts_with("spec.node.auth"), "{err}");
    }
}
