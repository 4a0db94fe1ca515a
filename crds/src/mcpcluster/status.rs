//! `McpClusterStatus`: what the operator observed, and the condition vocabulary it reports.

// `KubeSchema` re-declares each struct (as `pub`) inside a function to derive its schema;
// that private copy trips `unreachable_pub`, which `#[allow]` on the struct cannot reach.
#![allow(unreachable_pub)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of an `McpCluster`, written by the operator through the status subresource.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpClusterStatus {
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Node pods that exist (the scale subresource's `status.replicas`).
    #[serde(default)]
    pub replicas: i32,
    /// Node pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replica count the operator is converging the StatefulSet to: `spec.replicas` (or its
    /// default) when autoscaling is off, the stabilized recommendation when it is on.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Open client connections, all nodes together, at the last observation.
    #[serde(default)]
    pub connections: i64,
    /// Live legacy sessions (owned copies, not replicas), all nodes together.
    #[serde(default)]
    pub sessions: i64,
    /// Nodes the cluster's membership counts as alive (from the nodes' `/cluster`).
    #[serde(default)]
    pub members: i32,
    /// Label selector of the node pods in string form (`a=b,c=d`), for the scale
    /// subresource's `labelSelectorPath` (what a HorizontalPodAutoscaler reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Each upstream MCP server of `spec.node.upstreams` as the nodes reach it (from their
    /// admin API), in configuration order; empty without upstreams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub upstreams: Vec<UpstreamStatus>,
    /// Latest observations of the cluster's state, one per type: `Available`, `Progressing`,
    /// `Degraded`, `Scaling`, and `UpstreamsReady` with upstreams (constants in
    /// `mcpcluster_api::mcpcluster::condition`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// One upstream MCP server as the cluster's nodes reach it.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    /// The upstream's name (`spec.node.upstreams[].name`).
    pub name: String,
    /// Nodes that reported an exchange with it (they answered the operator, run a config
    /// naming it, and have tried it at least once).
    #[serde(default)]
    pub nodes: i32,
    /// Of those, the nodes whose last exchange with it was answered and whose circuit breaker
    /// does not hold it down.
    #[serde(default)]
    pub reachable_nodes: i32,
    /// Its tools as listed (the largest count a node reports).
    #[serde(default)]
    pub tools: i64,
    /// The era the nodes speak to it in (`legacy` or `2026-07-28`), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub era: Option<String>,
    /// Why a node cannot reach it: `NODE: error`, from the first such node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl UpstreamStatus {
    /// Whether every node that reported it reaches it (and at least one did).
    pub fn ready(&self) -> bool {
        self.nodes > 0 && self.reachable_nodes == self.nodes
    }
}

impl McpClusterStatus {
    /// The condition of the given type, if reported.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is reported with status `"True"`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

/// Condition types of `McpClusterStatus::conditions` and the reasons each is reported with.
/// Status values are the Kubernetes strings `"True"`, `"False"`, `"Unknown"`.
pub mod condition {
    /// The cluster serves clients: at least one node is ready and, with `replicationFactor`
    /// > 1, enough are ready to hold every session's copies.
    pub const AVAILABLE: &str = "Available";
    /// The operator is rolling the StatefulSet toward the spec (new image, config, size).
    pub const PROGRESSING: &str = "Progressing";
    /// Something needs attention although the cluster may still serve: too few members for
    /// the replication factor, nodes not ready, or the last reconcile failed.
    pub const DEGRADED: &str = "Degraded";
    /// A replica change is in progress (up, or down with draining).
    pub const SCALING: &str = "Scaling";

    /// Every configured upstream MCP server is reachable from every node that answered
    /// (reported only when `spec.node.upstreams` names some).
    pub const UPSTREAMS_READY: &str = "UpstreamsReady";

    /// All condition types, in the order the operator reports them.
    pub const ALL: [&str; 5] = [AVAILABLE, PROGRESSING, DEGRADED, SCALING, UPSTREAMS_READY];

    /// Reasons (`CamelCase`, as Kubernetes requires) for the conditions above.
    pub mod reason {
        /// `Available=True`: enough ready nodes.
        pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
        /// `Available=False`: no ready node, or fewer than the replication factor.
        pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
        /// `Available=False`: scaled to zero on purpose.
        pub const SCALED_TO_ZERO: &str = "ScaledToZero";

        /// `Progressing=True`: pods are being replaced or created.
        pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
        /// `Progressing=False`: every pod runs the current revision.
        pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";

        /// `Degraded=False`.
        pub const AS_EXPECTED: &str = "AsExpected";
        /// `Degraded=True`: fewer members than `replicationFactor`, so some sessions have
        /// fewer copies than asked.
        pub const BELOW_REPLICATION_FACTOR: &str = "BelowReplicationFactor";
        /// `Degraded=True`: some desired pods are not ready.
        pub const REPLICAS_UNAVAILABLE: &str = "ReplicasUnavailable";
        /// `Degraded=True`: the nodes disagree on membership (a partition).
        pub const MEMBERSHIP_DIVERGED: &str = "MembershipDiverged";
        /// `Degraded=True`: the last reconcile failed (the message says which object).
        pub const RECONCILE_FAILED: &str = "ReconcileFailed";
        /// `Degraded=True`: the spec passed the schema but cannot be applied (the message says
        /// which field and why; a Warning event says the same). Nothing is changed until the
        /// spec is fixed.
        pub const INVALID_SPEC: &str = "InvalidSpec";

        /// `Scaling=True`: adding replicas.
        pub const SCALING_UP: &str = "ScalingUp";
        /// `Scaling=True`: draining and removing replicas.
        pub const SCALING_DOWN: &str = "ScalingDown";
        /// `Scaling=False`: at the desired size.
        pub const STABLE: &str = "Stable";
        /// `Scaling=False`: the autoscaler wants more but `maxReplicas` is reached.
        pub const AT_MAX_REPLICAS: &str = "AtMaxReplicas";
        /// `Scaling=False`: the autoscaler wants fewer but `minReplicas` is reached.
        pub const AT_MIN_REPLICAS: &str = "AtMinReplicas";
        /// `Scaling=False`: a recommendation is waiting out its stabilization window.
        pub const STABILIZING: &str = "Stabilizing";

        /// `UpstreamsReady=True`: every node reaches every upstream.
        pub const UPSTREAMS_REACHABLE: &str = "UpstreamsReachable";
        /// `UpstreamsReady=False`: some node cannot reach an upstream, or none reports it (the
        /// message names the upstream, the nodes and the error). Also the reason of the
        /// Warning event when an upstream becomes unreachable; `UpstreamReachable` (Normal)
        /// when it is back.
        pub const UPSTREAM_UNREACHABLE: &str = "UpstreamUnreachable";
        /// `UpstreamsReady=False`: no node answered the operator, so nothing is known.
        pub const NO_NODE_ANSWERED: &str = "NoNodeAnswered";
    }
}
