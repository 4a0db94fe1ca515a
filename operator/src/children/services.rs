//! The two Services: the headless peer Service (stable per-pod DNS names for discovery,
//! not-ready pods included so a starting node finds its peers) and the client Service.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcpcluster_api::McpCluster;
use mcpcluster_api::mcpcluster::ServiceType;

use super::meta;
use crate::names::Names;

fn port(name: &str, number: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some(protocol.to_owned()),
        ..Default::default()
    }
}

/// The headless Service behind the StatefulSet (`<pod>.<name>-peers.<ns>.svc`).
pub fn peers(cluster: &McpCluster, names: &Names) -> Service {
    let p = &cluster.spec.ports;
    Service {
        metadata: meta(cluster, names, &names.peers),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector()),
            ports: Some(vec![
                port("peer", p.peer, "UDP"),
                port("gossip", p.peer + 1, "UDP"),
                port("admin", p.admin, "TCP"),
                port("mcp", p.mcp, "TCP"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The client Service (`spec.service`): MCP only, ready pods only.
pub fn client(cluster: &McpCluster, names: &Names) -> Service {
    let s = &cluster.spec.service;
    let mut metadata = meta(cluster, names, &names.cluster);
    if !s.annotations.is_empty() {
        metadata.annotations = Some(s.annotations.clone());
    }
    let type_ = match s.type_ {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(names.selector()),
            ports: Some(vec![port("mcp", cluster.spec.ports.mcp, "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use mcpcluster_api::McpClusterSpec;

    #[test]
    fn peers_is_headless_and_publishes_not_ready_pods() {
        let c = cluster(McpClusterSpec::default());
        let s = peers(&c, &Names::of(&c));
        assert_eq!(s.metadata.name.as_deref(), Some("demo-peers"));
        let spec = s.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports = spec.ports.expect("ports");
        assert_eq!(ports[0].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[0].port, 7946);
        assert_eq!(ports[1].name.as_deref(), Some("gossip"));
        assert_eq!(ports[1].protocol.as_deref(), Some("UDP"));
        assert_eq!(ports[1].port, 7947);
    }

    #[test]
    fn client_follows_spec_service() {
        let mut spec = McpClusterSpec::default();
        spec.service.type_ = ServiceType::LoadBalancer;
        spec.service
            .annotations
            .insert("lb".into(), "internal".into());
        let c = cluster(spec);
        let s = client(&c, &Names::of(&c));
        assert_eq!(s.metadata.name.as_deref(), Some("demo"));
        assert_eq!(
            s.metadata.annotations.expect("annotations")["lb"],
            "internal"
        );
        let spec = s.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.ports.expect("ports")[0].port, 8080);
    }
}
