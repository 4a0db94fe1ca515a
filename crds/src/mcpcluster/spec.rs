//! `McpClusterSpec`: what the user asks for. Every optional field has a default that the API
//! server applies (it is in the CRD's OpenAPI schema as `default:`) and that serde applies when a
//! spec is deserialized in Rust, so the operator and `kubectl get -o yaml` see the same values.

// `KubeSchema` re-declares each struct (as `pub`) inside a function to derive its schema;
// that private copy trips `unreachable_pub`, which `#[allow]` on the struct cannot reach.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::{auth_config_schema, node_config_schema};
use super::status::McpClusterStatus;
use crate::{AuthConfig, NodeConfig};

/// Image used when `spec.image` is not set: the node built from the same release as these types.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/mcpcluster/mcp-node:", env!("CARGO_PKG_VERSION"));
/// Replicas run when `spec.replicas` is unset and autoscaling is off (raised to
/// `replicationFactor` if that is larger, so every session can have its copies).
pub const DEFAULT_REPLICAS: i32 = 3;
/// Default of `spec.replicationFactor`: copies of each session (the owner's included).
pub const DEFAULT_REPLICATION_FACTOR: i32 = 2;
/// Default of `spec.autoscaling.targetConnectionsPerNode`.
pub const DEFAULT_TARGET_CONNECTIONS_PER_NODE: i32 = 25_000;
/// Default of `spec.ports.mcp`.
pub const DEFAULT_MCP_PORT: i32 = 8080;
/// Default of `spec.ports.admin`.
pub const DEFAULT_ADMIN_PORT: i32 = 9090;
/// Default of `spec.ports.peer`.
pub const DEFAULT_PEER_PORT: i32 = 7946;

/// A horizontally scaled MCP server cluster: a StatefulSet of `mcp-node` pods that share
/// sessions over QUIC, with its Services, ConfigMap, PodDisruptionBudget and cluster TLS.
///
/// Cross-field rules (CEL, enforced by the API server):
/// - with autoscaling enabled, `replicas` (when set) lies in `[minReplicas, maxReplicas]` and
///   `replicationFactor <= maxReplicas`;
/// - `node.listen` / `node.adminListen` are unset: the operator derives them from `ports`;
/// - `node.admin` is unset: the operator sets it (the admin token's digest from the Secret
///   `NAME-admin-token`).
// Several `printcolumn(...)` share keys such as `type_ = "integer"`, which clippy mistakes for
// repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "mcpcluster.dev",
    version = "v1alpha1",
    kind = "McpCluster",
    plural = "mcpclusters",
    shortname = "mcpc",
    category = "mcpcluster",
    namespaced,
    status = "McpClusterStatus",
    derive = "PartialEq",
    doc = "A horizontally scaled MCP (Model Context Protocol) server cluster.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Node pods that exist"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Node pods that are ready"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas",
        description = "Replicas the operator is converging to",
        priority = 1
    ),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections",
        description = "Open client connections, all nodes together"
    ),
    printcolumn(
        name = "Sessions",
        type_ = "integer",
        json_path = ".status.sessions",
        description = "Live legacy sessions, all nodes together",
        priority = 1
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status",
        description = "Whether the cluster serves clients"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.replicas) || !has(self.autoscaling) || !self.autoscaling.enabled || \
     (self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)"
).message("replicas must lie within [autoscaling.minReplicas, autoscaling.maxReplicas] while autoscaling is enabled").field_path(".replicas"))]
#[x_kube(validation = Rule::new(
    "!has(self.autoscaling) || !self.autoscaling.enabled || self.replicationFactor <= self.autoscaling.maxReplicas"
).message("replicationFactor must not exceed autoscaling.maxReplicas").field_path(".replicationFactor"))]
#[x_kube(validation = Rule::new(
    "!has(self.node) || (!has(self.node.listen) && !has(self.node.adminListen))"
).message("node.listen and node.adminListen are set by the operator from spec.ports; set the ports there").field_path(".node"))]
#[x_kube(validation = Rule::new(
    "!has(self.node) || !has(self.node.auth)"
).message("client authentication is configured in spec.auth, not spec.node.auth").field_path(".node.auth"))]
#[x_kube(validation = Rule::new(
    "!has(self.node) || !has(self.node.admin)"
).message("node.admin is set by the operator (the admin token in Secret NAME-admin-token); leave it unset").field_path(".node.admin"))]
#[serde(rename_all = "camelCase")]
pub struct McpClusterSpec {
    /// Desired number of node pods; the scale subresource reads and writes it (`kubectl scale`).
    /// Unset: `autoscaling.minReplicas` when autoscaling is enabled, otherwise 3 (or
    /// `replicationFactor` if larger). With autoscaling enabled the operator's autoscaler owns
    /// this field and writes it through the scale subresource, like a HorizontalPodAutoscaler;
    /// a value set by hand must lie within `[minReplicas, maxReplicas]` and is where the
    /// autoscaler starts. Scaling below `replicationFactor` is allowed (maintenance, scale to
    /// zero) and reported as `Degraded`. The operator writes the default here when the field is
    /// unset, because the API server answers a GET of the scale subresource with an error
    /// while it is absent (`kubectl scale`, a PATCH, works either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// Sizing toward a per-node connection target. Off by default.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// Container image of the node.
    #[serde(default = "default_image")]
    pub image: String,

    /// Pull policy of the node image. Unset: Kubernetes' default (`Always` for `:latest`,
    /// otherwise `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU and memory of the node container. Unset: none requested. A node holds about 4 KB per
    /// open idle connection with its session, so memory scales with `targetConnectionsPerNode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Copies of each legacy session kept in the cluster, the owner's included (rendezvous
    /// hashing over live members). 1 keeps no replica: a node loss ends its sessions.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 5))]
    pub replication_factor: i32,

    /// Container ports (and the Services' target ports).
    #[serde(default)]
    pub ports: PortsSpec,

    /// Peer (QUIC, mutual TLS) certificates.
    #[serde(default)]
    pub tls: TlsSpec,

    /// Node configuration rendered into the ConfigMap the nodes read: the same type (and
    /// fields) as the node's configuration file. Fields left out keep the node's own defaults
    /// (documented on each field); `listen` and `adminListen` come from `ports` and `admin` from
    /// the operator's admin token, and must be unset.
    // Skipped when default so that no `default:` lands in the schema (see `schema.rs`).
    #[serde(default, skip_serializing_if = "is_default_node")]
    #[schemars(schema_with = "node_config_schema")]
    pub node: NodeConfig,

    /// OAuth 2.1 client authentication (MCP's authorization specification): the node's `auth`
    /// section, rendered into its configuration. Off by default. With it on, every MCP request
    /// needs an access token from `issuer` whose audience is `resource` (the URL clients use for
    /// the MCP endpoint, behind whatever Ingress or load balancer exposes it).
    #[serde(default, skip_serializing_if = "is_default_auth")]
    #[schemars(schema_with = "auth_config_schema")]
    pub auth: AuthConfig,

    /// Additions to the node pods' template.
    #[serde(default)]
    pub pod_template: PodTemplateOverrides,

    /// The PodDisruptionBudget that keeps voluntary evictions from taking too many nodes at once.
    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,

    /// The client-facing Service (the peer Service is always headless).
    #[serde(default)]
    pub service: ServiceSpec,

    /// The NetworkPolicy over the node pods: who may reach which port.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

impl Default for McpClusterSpec {
    fn default() -> Self {
        Self {
            replicas: None,
            autoscaling: AutoscalingSpec::default(),
            image: default_image(),
            image_pull_policy: None,
            resources: None,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            ports: PortsSpec::default(),
            tls: TlsSpec::default(),
            node: NodeConfig::default(),
            auth: AuthConfig::default(),
            pod_template: PodTemplateOverrides::default(),
            pod_disruption_budget: PodDisruptionBudgetSpec::default(),
            service: ServiceSpec::default(),
            network_policy: NetworkPolicySpec::default(),
        }
    }
}

impl McpClusterSpec {
    /// The replica count this spec asks for before any autoscaling decision: `replicas`, or
    /// the documented default when it is unset; with autoscaling enabled, clamped into
    /// `[minReplicas, maxReplicas]` (the schema already refuses values outside it, this guards
    /// objects built in code).
    pub fn requested_replicas(&self) -> i32 {
        let a = &self.autoscaling;
        if a.enabled {
            let (min, max) = (a.min_replicas, a.max_replicas.max(a.min_replicas));
            self.replicas.unwrap_or(min).clamp(min, max)
        } else {
            self.replicas
                .unwrap_or(DEFAULT_REPLICAS.max(self.replication_factor))
                .max(0)
        }
    }
}

fn is_default_auth(auth: &AuthConfig) -> bool {
    *auth == AuthConfig::default()
}

fn is_default_node(node: &NodeConfig) -> bool {
    *node == NodeConfig::default()
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

fn default_replication_factor() -> i32 {
    DEFAULT_REPLICATION_FACTOR
}

/// When to pull the node image (the container's `imagePullPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the node has no copy.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

/// Sizing toward a per-node connection target. The operator reads the load from the nodes'
/// admin endpoint, computes `ceil(connections / targetConnectionsPerNode)` within
/// `[minReplicas, maxReplicas]`, waits out the stabilization window of the direction, moves at
/// most `maxStepReplicas` per step, and drains nodes before removing them.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("minReplicas must not exceed maxReplicas").field_path(".minReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Whether the operator sizes the cluster itself. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Fewest replicas the autoscaler keeps. Default 2.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most replicas the autoscaler creates. Default 10.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Open client connections per node the autoscaler sizes for. Default 25000 (a node's
    /// capacity where its file-descriptor limit allows; lower it for headroom).
    #[serde(default = "default_target_connections")]
    #[schemars(range(min = 1))]
    pub target_connections_per_node: i32,
    /// Seconds a higher recommendation must persist before scaling up. Default 30.
    #[serde(default = "default_scale_up_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Seconds a lower recommendation must persist before scaling down (scale-down drains
    /// sessions, so it should not flap). Default 300.
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// Most replicas added or removed in one scaling step. Default 4.
    #[serde(default = "default_max_step_replicas")]
    #[schemars(range(min = 1))]
    pub max_step_replicas: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_connections_per_node: default_target_connections(),
            scale_up_stabilization_seconds: default_scale_up_stabilization(),
            scale_down_stabilization_seconds: default_scale_down_stabilization(),
            max_step_replicas: default_max_step_replicas(),
        }
    }
}

fn default_min_replicas() -> i32 {
    2
}
fn default_max_replicas() -> i32 {
    10
}
fn default_target_connections() -> i32 {
    DEFAULT_TARGET_CONNECTIONS_PER_NODE
}
fn default_scale_up_stabilization() -> i32 {
    30
}
fn default_scale_down_stabilization() -> i32 {
    300
}
fn default_max_step_replicas() -> i32 {
    4
}

/// Ports of the node container. They must be distinct, and `peer + 1` (gossip) too.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.mcp != self.admin && self.mcp != self.peer && self.admin != self.peer && self.mcp != self.peer + 1 && self.admin != self.peer + 1")
    .message("ports.mcp, ports.admin, ports.peer and the gossip port (ports.peer + 1) must be distinct"))]
#[serde(rename_all = "camelCase")]
pub struct PortsSpec {
    /// MCP Streamable HTTP (`/mcp`), TCP; the client Service's target. Default 8080.
    #[serde(default = "default_mcp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub mcp: i32,
    /// Admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/cluster`), TCP; probes and the
    /// operator use it. Default 9090.
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin: i32,
    /// Peer traffic (QUIC over UDP) between nodes, through the headless peer Service; the
    /// failure detector's gossip uses the next port (UDP, `peer + 1`). Default 7946.
    #[serde(default = "default_peer_port")]
    #[schemars(range(min = 1, max = 65534))]
    pub peer: i32,
}

impl Default for PortsSpec {
    fn default() -> Self {
        Self {
            mcp: DEFAULT_MCP_PORT,
            admin: DEFAULT_ADMIN_PORT,
            peer: DEFAULT_PEER_PORT,
        }
    }
}

fn default_mcp_port() -> i32 {
    DEFAULT_MCP_PORT
}
fn default_admin_port() -> i32 {
    DEFAULT_ADMIN_PORT
}
fn default_peer_port() -> i32 {
    DEFAULT_PEER_PORT
}

/// Certificates for the nodes' mutual-TLS peer links.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret in the cluster's namespace with `tls.crt`, `tls.key` and `ca.crt` (the layout
    /// cert-manager writes), valid for the peer Service's names. Unset: the operator generates
    /// a cluster CA and node certificates and keeps them in a Secret it owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// What may be added to the node pods' template. Deliberately a subset of a PodSpec: scheduling
/// and identity only; containers, volumes, probes and security context stay the operator's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod labels. The operator's own labels (the selector) win on conflict.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels a pod's node must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling affinity. Unset: the operator prefers spreading pods over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount the pods run as. Unset: the namespace's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The PodDisruptionBudget over the node pods.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
// `string()` of an int is its decimal form, so one regex covers both shapes (and refuses
// negative numbers and null); `type()` would say it more directly but not every CEL runtime
// (kube's client-side one, which the tests use) has it.
#[x_kube(validation = Rule::new("string(self.maxUnavailable).matches('^[0-9]+%?$')")
    .message("maxUnavailable must be a non-negative integer or a percentage such as \"25%\"")
    .field_path(".maxUnavailable"))]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Whether the operator creates the PodDisruptionBudget. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Node pods that may be unavailable during voluntary disruptions (a number or a
    /// percentage; a string of digits alone counts as that number). Default 1: nodes drain one
    /// at a time.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: default_max_unavailable(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

/// The client-facing Service in front of all nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type. Default `ClusterIP`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations on the Service (cloud load-balancer settings, for example).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How the client Service is exposed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// ClusterIP plus a port on every Kubernetes node.
    NodePort,
    /// NodePort plus a cloud load balancer.
    LoadBalancer,
}

/// The NetworkPolicy the operator keeps over the node pods (ingress only; egress is left
/// alone, since tools and upstreams call out). It allows the MCP port from anywhere (it is the
/// service), the peer port (QUIC, UDP) only from this cluster's own pods, and the admin port
/// only from the operator's pods and `metricsScrapers`. Traffic from a pod's own Kubernetes
/// node (the kubelet's probes) is always allowed by NetworkPolicy semantics. It has an effect
/// only where the network plugin enforces NetworkPolicy (Calico, Cilium, ...).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new(
    "!has(self.metricsScrapers) || self.metricsScrapers.all(p, has(p.podSelector) || has(p.namespaceSelector) || has(p.ipBlock))"
).message("each of metricsScrapers needs podSelector, namespaceSelector or ipBlock").field_path(".metricsScrapers"))]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Whether the operator creates the NetworkPolicy. Default true. Turn it off when the
    /// operator runs outside the cluster (it could not reach the admin port) or when you
    /// manage the policies yourself.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who else may reach the admin port (for `/metrics`), besides the operator: NetworkPolicy
    /// peers, e.g. `{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name:
    /// monitoring}}, podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}}`.
    /// Default none. They reach `/cluster` and `/drain` only with the admin token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub metrics_scrapers: Vec<NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            metrics_scrapers: Vec::new(),
        }
    }
}
