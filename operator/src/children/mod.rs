//! The objects the operator owns for one `McpCluster`, built by pure functions (tested
//! without an API server) and written by server-side apply with a controller owner reference,
//! so deleting the `McpCluster` garbage-collects them.

pub mod admin_secret;
pub mod config;
pub mod network_policy;
pub mod pdb;
pub mod secret;
pub mod services;
pub mod statefulset;

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use mcpcluster_api::McpCluster;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::names::{MANAGER, Names};

/// Metadata of a child: name, namespace, the operator's labels, the controller owner reference.
pub fn meta(cluster: &McpCluster, names: &Names, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels()),
        owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The ServiceAccount the node pods run as; nodes do not call the Kubernetes API, so no token
/// is mounted.
pub fn service_account(cluster: &McpCluster, names: &Names) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(cluster, names, &names.service_account),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// Server-side applies `obj` as the field manager `mcp-operator` (forcing conflicts: the
/// operator owns these objects).
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    let params = PatchParams::apply(MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| Error::kube("apply", kind_of::<K>(), &name, e))
}

/// The kind of `K` as a static string (for error messages and labels).
pub fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "StatefulSet" => "StatefulSet",
        "Service" => "Service",
        "ConfigMap" => "ConfigMap",
        "Secret" => "Secret",
        "ServiceAccount" => "ServiceAccount",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "NetworkPolicy" => "NetworkPolicy",
        "McpCluster" => "McpCluster",
        "Pod" => "Pod",
        _ => "object",
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use mcpcluster_api::{McpCluster, McpClusterSpec};

    /// A cluster as the API server would hand it over (namespace, uid, generation).
    pub(crate) fn cluster(spec: McpClusterSpec) -> McpCluster {
        let mut c = McpCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("0000-uid".into());
        c.metadata.generation = Some(1);
        c
    }
}
