//! The NetworkPolicy over the node pods (`spec.networkPolicy`): ingress to the MCP port from
//! anywhere (it is the service), to the peer port (QUIC, UDP) and the gossip port next to it
//! (the failure detector's, UDP, `peer + 1`) only from this cluster's own pods, and to the admin port only from the operator's pods (their namespace and labels) and
//! the configured metrics scrapers. Egress is left alone (tools call out, DNS). Traffic from
//! the pod's own Kubernetes node, the kubelet's probes, is always allowed by NetworkPolicy
//! semantics. A policy takes effect only where the network plugin enforces NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcpcluster_api::McpCluster;

use super::meta;
use crate::names::Names;

/// Label every namespace carries with its own name (Kubernetes sets it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Which pods are the operator: its namespace and pod labels (`--operator-pod-selector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorPods {
    /// The operator's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// Labels its pods carry.
    pub labels: BTreeMap<String, String>,
}

impl OperatorPods {
    /// The peer that selects the operator's pods.
    pub fn peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    self.namespace.clone(),
                )])),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(self.labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(number)),
        ..Default::default()
    }
}

/// The policy, or `None` when the spec disables it (the reconciler then deletes an old one).
pub fn network_policy(
    cluster: &McpCluster,
    names: &Names,
    operator: &OperatorPods,
) -> Option<NetworkPolicy> {
    let spec = &cluster.spec;
    let np = &spec.network_policy;
    if !np.enabled {
        return None;
    }
    let own_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(names.selector()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut admin_from = vec![operator.peer()];
    admin_from.extend(np.metrics_scrapers.iter().cloned());
    Some(NetworkPolicy {
        metadata: meta(cluster, names, &names.cluster),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names.selector()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                // MCP: the service itself, from anywhere.
                NetworkPolicyIngressRule {
                    ports: Some(vec![port("TCP", spec.ports.mcp)]),
                    from: None,
                },
                // Peers (QUIC, and gossip on the next port): this cluster's own pods only.
                NetworkPolicyIngressRule {
                    ports: Some(vec![
                        port("UDP", spec.ports.peer),
                        port("UDP", spec.ports.peer + 1),
                    ]),
                    from: Some(vec![own_pods]),
                },
                // Admin: the operator, and whoever scrapes /metrics.
                NetworkPolicyIngressRule {
                    ports: Some(vec![port("TCP", spec.ports.admin)]),
                    from: Some(admin_from),
                },
            ]),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use mcpcluster_api::McpClusterSpec;

    fn operator() -> OperatorPods {
        OperatorPods {
            namespace: "mcpcluster-system".into(),
            labels: BTreeMap::from([
                ("app.kubernetes.io/component".into(), "operator".into()),
                ("app.kubernetes.io/instance".into(), "mcpcluster".into()),
            ]),
        }
    }

    fn labels(s: &Option<LabelSelector>) -> Option<BTreeMap<String, String>> {
        s.as_ref().and_then(|s| s.match_labels.clone())
    }

    /// The rule for `port`/`protocol`.
    fn rule<'a>(
        spec: &'a NetworkPolicySpec,
        protocol: &str,
        port: i32,
    ) -> &'a NetworkPolicyIngressRule {
        spec.ingress
            .as_ref()
            .expect("ingress rules")
            .iter()
            .find(|r| {
                r.ports.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p.protocol.as_deref() == Some(protocol)
                            && p.port == Some(IntOrString::Int(port))
                    })
                })
            })
            .unwrap_or_else(|| panic!("no rule for {protocol}/{port}"))
    }

    #[test]
    fn mcp_open_peers_from_own_pods_admin_from_the_operator() {
        let mut spec = McpClusterSpec::default();
        spec.ports.mcp = 8000;
        spec.ports.admin = 9000;
        spec.ports.peer = 7000;
        let c = cluster(spec);
        let names = Names::of(&c);
        let np = network_policy(&c, &names, &operator()).expect("on by default");
        assert_eq!(np.metadata.name.as_deref(), Some("demo"));
        assert_eq!(np.metadata.namespace.as_deref(), Some("ns"));
        let owner = &np.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.controller, Some(true));
        let s = np.spec.as_ref().expect("spec");
        assert_eq!(labels(&s.pod_selector), Some(names.selector()));
        assert_eq!(s.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]));
        assert!(s.egress.is_none(), "egress is left alone");
        assert_eq!(
            s.ingress.as_ref().expect("rules").len(),
            3,
            "nothing else is open"
        );

        // MCP: from anywhere.
        assert!(rule(s, "TCP", 8000).from.is_none());
        // Peer: UDP, this cluster's pods only (no namespace selector: the policy's namespace).
        let peer = rule(s, "UDP", 7000).from.as_ref().expect("restricted");
        assert_eq!(peer.len(), 1);
        assert_eq!(labels(&peer[0].pod_selector), Some(names.selector()));
        assert!(peer[0].namespace_selector.is_none() && peer[0].ip_block.is_none());
        // Gossip: the next port, UDP, the same peers.
        assert_eq!(rule(s, "UDP", 7001).from.as_ref(), Some(peer));
        // Admin: the operator's pods in the operator's namespace, nobody else.
        let admin = rule(s, "TCP", 9000).from.as_ref().expect("restricted");
        assert_eq!(admin.len(), 1);
        assert_eq!(
            labels(&admin[0].namespace_selector),
            Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_owned(),
                "mcpcluster-system".to_owned()
            )]))
        );
        assert_eq!(labels(&admin[0].pod_selector), Some(operator().labels));
        // The peer port is not open over TCP, nor the admin port over UDP.
        assert!(
            s.ingress
                .as_ref()
                .expect("rules")
                .iter()
                .flat_map(|r| r.ports.iter().flatten())
                .all(|p| p.port != Some(IntOrString::Int(7000))
                    || p.protocol.as_deref() == Some("UDP"))
        );
    }

    #[test]
    fn metrics_scrapers_join_the_operator_on_the_admin_port_only() {
        let scraper = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    "monitoring".to_owned(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut spec = McpClusterSpec::default();
        spec.network_policy.metrics_scrapers = vec![scraper.clone()];
        let c = cluster(spec);
        let np = network_policy(&c, &Names::of(&c), &operator()).expect("on");
        let s = np.spec.as_ref().expect("spec");
        let admin = rule(s, "TCP", 9090).from.as_ref().expect("restricted");
        assert_eq!(admin, &vec![operator().peer(), scraper]);
        assert_eq!(rule(s, "UDP", 7946).from.as_ref().expect("peers").len(), 1);
    }

    #[test]
    fn disabled_means_none() {
        let mut spec = McpClusterSpec::default();
        spec.network_policy.enabled = false;
        let c = cluster(spec);
        assert!(network_policy(&c, &Names::of(&c), &operator()).is_none());
    }
}
