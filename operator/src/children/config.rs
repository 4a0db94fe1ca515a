//! The ConfigMap with the node's `config.yaml`: `spec.node` (the node's own `NodeConfig` type,
//! so there is no second definition) with `listen` / `adminListen` derived from `spec.ports`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use mcpcluster_api::{McpCluster, McpClusterSpec};

use super::meta;
use crate::names::Names;

/// Key of the node config in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// Where the pods mount the ConfigMap.
pub const CONFIG_DIR: &str = "/etc/mcp-node";

/// The node config as YAML: `spec.node` listening on every interface on the spec's ports.
pub fn render(spec: &McpClusterSpec) -> Result<String, serde_yaml_ng::Error> {
    let mut node = spec.node.clone();
    node.listen = format!("0.0.0.0:{}", spec.ports.mcp);
    node.admin_listen = format!("0.0.0.0:{}", spec.ports.admin);
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
        let text = render(&spec).expect("renders");
        let parsed: NodeConfig = serde_yaml_ng::from_str(&text).expect("the node's type parses it");
        assert_eq!(parsed.listen, "0.0.0.0:8000");
        assert_eq!(parsed.admin_listen, "0.0.0.0:9000");
        assert_eq!(parsed.limits.max_sessions, 1234);

        let c = cluster(spec);
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
    fn the_hash_is_stable_and_sensitive() {
        assert_eq!(hash(""), "cbf29ce484222325");
        assert_ne!(hash("a: 1"), hash("a: 2"));
    }
}
