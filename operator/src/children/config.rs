//! The ConfigMap with the node's `config.yaml`: `spec.node` (the node's own `NodeConfig` type,
//! so there is no second definition) with what the operator owns filled in: `listen` /
//! `adminListen` from `spec.ports`, the `admin` section (the admin token's digest from the
//! mounted Secret `NAME-admin-token`), and the `cluster` section: clustering on, the peer port,
//! seeds from the headless Service's DNS name, the certificates from the mounted TLS Secret,
//! and the name peer certificates are verified against; `auth` is `spec.auth`; upstream Service
//! references without a namespace get the cluster's, and `secretsDir` is where the pods mount
//! the Secrets upstream headers name (`statefulset.rs`). The node takes its name
//! (`MCP_NODE_NAME`) and its advertised address (`POD_IP`) from the pod's environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use mcpcluster_api::{AdminConfig, ClusterTlsConfig, McpCluster, McpClusterSpec};

use super::admin_secret::{ADMIN_DIR, DIGEST_KEY};
use super::meta;
use super::secret::TLS_DIR;
use crate::names::Names;

/// Key of the node config in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// Where the pods mount the ConfigMap.
pub const CONFIG_DIR: &str = "/etc/mcp-node";

/// The node config as YAML: `spec.node` listening on every interface on the spec's ports,
/// clustered with its peers through the headless Service.
pub fn render(spec: &McpClusterSpec, names: &Names) -> Result<String, serde_yaml_ng::Error> {
    let mut node = spec.node.clone();
    node.auth = spec.auth.clone();
    node.listen = format!("0.0.0.0:{}", spec.ports.mcp);
    node.admin_listen = format!("0.0.0.0:{}", spec.ports.admin);
    node.secrets_dir = mcpcluster_api::DEFAULT_SECRETS_DIR.into();
    for u in &mut node.upstreams {
        if let Some(service) = &mut u.service
            && service.namespace.is_empty()
        {
            service.namespace = names.namespace.clone();
        }
    }
    node.admin = AdminConfig {
        token_sha256_file: format!("{ADMIN_DIR}/{DIGEST_KEY}"),
        ..AdminConfig::default()
    };
    let peers_domain = format!("{}.{}.svc", names.peers, names.namespace);
    let c = &mut node.cluster;
    c.enabled = true;
    c.peer_listen = format!("0.0.0.0:{}", spec.ports.peer);
    if c.seed_dns.is_empty() {
        c.seed_dns = peers_domain.clone();
    }
    let user_server_name = c.tls.server_name != ClusterTlsConfig::default().server_name;
    c.tls = ClusterTlsConfig {
        ca_file: format!("{TLS_DIR}/ca.crt"),
        cert_file: format!("{TLS_DIR}/tls.crt"),
        key_file: format!("{TLS_DIR}/tls.key"),
        // The generated certificate names the headless Service's domain; a user's Secret
        // (cert-manager) for that Service does too, unless the spec names another.
        server_name: if user_server_name {
            c.tls.server_name.clone()
        } else {
            peers_domain
        },
    };
    serde_yaml_ng::to_string(&node)
}

/// A stable hash of the rendered config (FNV-1a, 64 bit, hex) for the pod template
/// annotation that rolls the pods when the config changes. Stable across Rust releases,
/// unlike `DefaultHasher`.
pub fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The ConfigMap holding `rendered`.
pub fn config_map(cluster: &McpCluster, names: &Names, rendered: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(cluster, names, &names.config),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            rendered.to_owned(),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use mcpcluster_api::NodeConfig;

    #[test]
    fn renders_the_node_config_with_listen_addresses_from_the_ports() {
        let mut spec = McpClusterSpec::default();
        spec.ports.mcp = 8000;
        spec.ports.admin = 9000;
        spec.node.limits.max_sessions = 1234;
        spec.ports.peer = 7000;
        spec.node.cluster.membership.probe_period_ms = 500;
        spec.auth.enabled = true;
        spec.auth.issuer = "https://as.example.com".into();
        spec.auth.resource = "https://mcp.example.com/mcp".into();
        spec.auth.required_scopes = vec!["mcp:tools".into()];
        let c = cluster(spec.clone());
        let text = render(&spec, &Names::of(&c)).expect("renders");
        let parsed: NodeConfig = serde_yaml_ng::from_str(&text).expect("the node's type parses it");
        assert_eq!(parsed.listen, "0.0.0.0:8000");
        assert_eq!(parsed.admin_listen, "0.0.0.0:9000");
        assert_eq!(
            parsed.admin.token_sha256_file,
            "/etc/mcp-node/admin/token.sha256"
        );
        assert!(parsed.admin.token_file.is_empty() && !parsed.admin.insecure_local);
        assert_eq!(parsed.limits.max_sessions, 1234);
        assert_eq!(
            parsed.auth, spec.auth,
            "spec.auth becomes the node's auth section"
        );
        let cl = &parsed.cluster;
        assert!(cl.enabled);
        assert_eq!(cl.peer_listen, "0.0.0.0:7000");
        assert_eq!(cl.seed_dns, "demo-peers.ns.svc");
        assert_eq!(cl.tls.ca_file, "/etc/mcp-node/tls/ca.crt");
        assert_eq!(cl.tls.key_file, "/etc/mcp-node/tls/tls.key");
        assert_eq!(cl.tls.server_name, "demo-peers.ns.svc");
        assert_eq!(
            cl.membership.probe_period_ms, 500,
            "the user's timers are kept"
        );
        assert!(
            cl.node_name.is_empty() && cl.advertise.is_empty(),
            "from the pod's env"
        );

        let cm = config_map(&c, &Names::of(&c), &text);
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-config"));
        assert_eq!(cm.data.expect("data")[CONFIG_KEY], text);
        let owner = &cm.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("McpCluster", Some(true))
        );
    }

    #[test]
    fn upstream_services_get_the_namespace_and_secrets_stay_references() {
        let mut spec = McpClusterSpec::default();
        spec.node.upstreams = serde_yaml_ng::from_str(
            "- name: everything\n  service: {name: everything, port: 3001}\n  headers:\n    Authorization: {valueFrom: {secretKeyRef: {name: creds, key: token}}}\n- name: fs\n  service: {name: fs, namespace: tools, port: 80}\n",
        )
        .expect("parses");
        let c = cluster(spec.clone());
        let text = render(&spec, &Names::of(&c)).expect("renders");
        let parsed: NodeConfig = serde_yaml_ng::from_str(&text).expect("the node's type parses it");
        assert_eq!(
            parsed.upstreams[0].endpoint(None).expect("resolved"),
            "http://everything.ns.svc:3001/mcp"
        );
        assert_eq!(
            parsed.upstreams[1].endpoint(None).expect("resolved"),
            "http://fs.tools.svc:80/mcp"
        );
        assert_eq!(parsed.secrets_dir, "/etc/mcp-node/secrets");
        assert!(
            text.contains("secretKeyRef") && text.contains("name: creds"),
            "the reference, not a value: {text}"
        );
    }

    #[test]
    fn the_hash_is_stable_and_sensitive() {
        assert_eq!(hash(""), "cbf29ce484222325");
        assert_ne!(hash("a: 1"), hash("a: 2"));
    }
}
