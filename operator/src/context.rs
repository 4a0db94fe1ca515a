//! What every reconcile shares: the API client, the event recorder, the node admin client, the
//! metrics, and per-cluster memory (autoscaler history, drain in progress, cached load).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Recorder;

use crate::autoscale::Autoscaler;
use crate::children::network_policy::OperatorPods;
use crate::nodes::{AdminAddress, Load, NodeClient};
use crate::server::Health;

/// A scale-down waiting for its departing nodes to drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Replicas after the scale-down.
    pub to: i32,
    /// Replicas before it: ordinals `to..from` were asked to drain.
    pub from: i32,
    /// When the first `POST /drain` went out.
    pub since: Instant,
}

/// What the operator remembers about one cluster between reconciles. It is lost on restart or
/// failover: the autoscaler then waits out a full window again before moving, and a drain
/// starts over (the nodes answer `POST /drain` idempotently).
#[derive(Debug, Default)]
pub struct ClusterMemory {
    /// Stabilization history and last scale.
    pub autoscaler: Autoscaler,
    /// The scale-down in progress.
    pub drain: Option<Drain>,
    /// The last load reading and when it was taken (`None` inside: no node answered).
    pub load: Option<(Instant, Option<Load>)>,
    /// Consecutive failed reconciles (for the backoff).
    pub failures: u32,
    /// Consecutive load readings in which the nodes disagreed on membership, and the last
    /// disagreement.
    pub divergence: (u32, Option<String>),
    /// What the nodes of the last reading said about their upstreams.
    pub upstreams: crate::upstreams::Reports,
}

/// Shared by all reconciles.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes API client.
    pub client: Client,
    /// Publishes Events about McpClusters.
    pub recorder: Recorder,
    /// Admin API client for the nodes.
    pub nodes: NodeClient,
    /// Where the nodes' admin endpoints are.
    pub admin: AdminAddress,
    /// Metrics and readiness.
    pub health: Arc<Health>,
    /// How often load is read while autoscaling.
    pub poll_interval: Duration,
    /// Longest wait for departing nodes to drain.
    pub drain_timeout: Duration,
    /// This operator's pods, which the NetworkPolicies let reach the nodes' admin port.
    pub operator_pods: OperatorPods,
    memory: Arc<Mutex<HashMap<String, ClusterMemory>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("admin", &self.admin)
            .field("poll_interval", &self.poll_interval)
            .field("drain_timeout", &self.drain_timeout)
            .field("operator_pods", &self.operator_pods)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with empty memory; `operator_pods` is the default selector in the
    /// `default` namespace until the caller sets it.
    pub fn new(
        client: Client,
        recorder: Recorder,
        nodes: NodeClient,
        admin: AdminAddress,
        health: Arc<Health>,
        poll_interval: Duration,
        drain_timeout: Duration,
    ) -> Self {
        Self {
            client,
            recorder,
            nodes,
            admin,
            health,
            poll_interval,
            drain_timeout,
            operator_pods: OperatorPods {
                namespace: "default".into(),
                labels: Default::default(),
            },
            memory: Arc::default(),
        }
    }

    /// Runs `f` on the memory of the cluster `key` (`namespace/name`). Never held across an await.
    pub fn remember<R>(&self, key: &str, f: impl FnOnce(&mut ClusterMemory) -> R) -> R {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(key.to_owned()).or_default())
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, key: &str) {
        let mut map = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}
