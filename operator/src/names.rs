//! Names and labels of everything the operator creates for one `McpCluster`. One place, so
//! the builders, the selector in the status and the e2e agree.

use std::collections::BTreeMap;

use kube::ResourceExt;
use mcpcluster_api::McpCluster;

/// Field manager of every server-side apply, and the `managed-by` label value.
pub const MANAGER: &str = "mcp-operator";
/// Label naming the application (`mcp-node`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label naming the `McpCluster` a pod belongs to.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label naming the operator as the manager of an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Pod annotation carrying a hash of the rendered node config: a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "mcpcluster.dev/config-hash";
/// Longest `McpCluster` name: the StatefulSet's `controller-revision-hash` label is the name,
/// a dash and 10 characters, and label values stop at 63.
pub const MAX_NAME_LEN: usize = 52;

/// The names of one cluster's children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The `McpCluster`'s name: also the StatefulSet, the client Service and the PDB.
    pub cluster: String,
    /// Namespace of the cluster and every child.
    pub namespace: String,
    /// Headless Service giving each pod a stable DNS name for peers.
    pub peers: String,
    /// ConfigMap with `config.yaml`.
    pub config: String,
    /// Secret with the peer certificates (generated, or `spec.tls.secretName`).
    pub tls_secret: String,
    /// ServiceAccount the pods run as (unless overridden).
    pub service_account: String,
    /// Secret with the admin token the operator sends to the nodes.
    pub admin_secret: String,
}

impl Names {
    /// Names for `cluster` (its namespace defaults to `default` for objects built in code).
    pub fn of(cluster: &McpCluster) -> Self {
        let name = cluster.name_any();
        Self {
            namespace: cluster.namespace().unwrap_or_else(|| "default".into()),
            peers: format!("{name}-peers"),
            config: format!("{name}-config"),
            tls_secret: cluster
                .spec
                .tls
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{name}-tls")),
            service_account: format!("{name}-node"),
            admin_secret: format!("{name}-admin-token"),
            cluster: name,
        }
    }

    /// Name of the pod with this ordinal.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// Labels that select this cluster's pods (the StatefulSet's selector).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "mcp-node".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.cluster.clone()),
        ])
    }

    /// The selector as `a=b,c=d` (the status field the scale subresource reads).
    pub fn selector_string(&self) -> String {
        self.selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Labels on every child: the selector plus `managed-by`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector();
        labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned());
        labels
    }
}

/// The ordinal of a StatefulSet pod name (`demo-3` → 3), if it has one.
pub fn ordinal(pod: &str) -> Option<i32> {
    pod.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_cluster() {
        let mut c = McpCluster::new("demo", Default::default());
        c.metadata.namespace = Some("ns".into());
        let n = Names::of(&c);
        assert_eq!(n.peers, "demo-peers");
        assert_eq!(n.tls_secret, "demo-tls");
        assert_eq!(n.admin_secret, "demo-admin-token");
        assert_eq!(n.pod(2), "demo-2");
        assert_eq!(
            n.selector_string(),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/name=mcp-node"
        );
        c.spec.tls.secret_name = Some("mine".into());
        assert_eq!(Names::of(&c).tls_secret, "mine");
        assert_eq!(ordinal("demo-web-12"), Some(12));
        assert_eq!(ordinal("demo"), None);
    }
}
