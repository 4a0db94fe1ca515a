//! The StatefulSet of node pods: stable identities (`<name>-<ordinal>` under the headless
//! Service) for peers, the config from the ConfigMap, the certificates from the TLS Secret,
//! the admin token's digest (only that key) from `NAME-admin-token`, the keys of the Secrets
//! upstream headers name (only those keys, at `<secretsDir>/<name>/<key>`), probes on the
//! admin port, and a termination grace long enough for the node to drain.
//!
//! Secret volumes are root-owned: the pod's `fsGroup` (the node's group, 65532) makes the
//! kubelet give the files to that group, and mode 0440 lets the node (and no other user) read
//! them; 0400 would leave them readable by root only.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext, SleepAction, Volume,
    VolumeMount, VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcpcluster_api::McpCluster;
use mcpcluster_api::mcpcluster::ImagePullPolicy;

use super::admin_secret::{ADMIN_DIR, DIGEST_KEY};
use super::config::{CONFIG_DIR, CONFIG_KEY};
use super::meta;
use super::secret::TLS_DIR;
use crate::names::{CONFIG_HASH_ANNOTATION, Names};

/// Seconds the pod waits in `preStop` before SIGTERM, so endpoints stop routing to it first.
pub const PRE_STOP_SLEEP_SECS: i64 = 5;

/// Seconds the pod's grace period leaves after the node's overall stop bound.
pub const STOP_MARGIN_SECS: i64 = 5;
/// The node's user and group in the image (distroless `nonroot`).
pub const NODE_UID: i64 = 65532;
/// Mode of the mounted Secret files: owner and group (`fsGroup`) read.
pub const SECRET_MODE: i32 = 0o440;

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn default_affinity(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names.selector()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The volume of the Secret keys upstream headers name (`valueFrom.secretKeyRef`): one
/// projection per Secret holding only the keys named, each at `<name>/<key>`; `None` when no
/// header names one.
pub fn upstream_secrets(cluster: &McpCluster) -> Option<Volume> {
    let mut keys: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for r in cluster
        .spec
        .node
        .upstreams
        .iter()
        .flat_map(|u| u.secret_refs())
    {
        keys.entry(&r.name).or_default().insert(&r.key);
    }
    if keys.is_empty() {
        return None;
    }
    let sources = keys
        .into_iter()
        .map(|(name, keys)| VolumeProjection {
            secret: Some(SecretProjection {
                name: name.to_owned(),
                items: Some(
                    keys.into_iter()
                        .map(|key| KeyToPath {
                            key: key.to_owned(),
                            path: format!("{name}/{key}"),
                            ..Default::default()
                        })
                        .collect(),
                ),
                optional: Some(false),
            }),
            ..Default::default()
        })
        .collect();
    Some(Volume {
        name: UPSTREAM_SECRETS_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            default_mode: Some(SECRET_MODE),
        }),
        ..Default::default()
    })
}

/// Name of the volume [`upstream_secrets`] builds.
pub const UPSTREAM_SECRETS_VOLUME: &str = "upstream-secrets";

fn container(cluster: &McpCluster, names: &Names) -> Container {
    let s = &cluster.spec;
    let port = |name: &str, n: i32, proto: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: n,
        protocol: Some(proto.to_owned()),
        ..Default::default()
    };
    Container {
        name: "node".into(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.map(|p| {
            match p {
                ImagePullPolicy::Always => "Always",
                ImagePullPolicy::IfNotPresent => "IfNotPresent",
                ImagePullPolicy::Never => "Never",
            }
            .to_owned()
        }),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(vec![
            env_field("MCP_NODE_NAME", "metadata.name"),
            env_field("POD_NAMESPACE", "metadata.namespace"),
            env_field("POD_IP", "status.podIP"),
            env("MCP_CLUSTER_NAME", &names.cluster),
            env("MCP_PEER_SERVICE", &names.peers),
            env(
                "MCP_PEER_DOMAIN",
                format!("{}.{}.svc", names.peers, names.namespace),
            ),
            env("MCP_PEER_PORT", s.ports.peer.to_string()),
            env(
                "MCP_NODE_CLUSTER_REPLICATION_FACTOR",
                s.replication_factor.to_string(),
            ),
            env("MCP_TLS_DIR", TLS_DIR),
        ]),
        ports: Some(vec![
            port("mcp", s.ports.mcp, "TCP"),
            port("admin", s.ports.admin, "TCP"),
            port("peer", s.ports.peer, "UDP"),
            port("gossip", s.ports.peer + 1, "UDP"),
        ]),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: s.resources.clone(),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "tls".into(),
                    mount_path: TLS_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                VolumeMount {
                    name: "admin-token".into(),
                    mount_path: ADMIN_DIR.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(upstream_secrets(cluster).map(|_| VolumeMount {
                name: UPSTREAM_SECRETS_VOLUME.into(),
                mount_path: mcpcluster_api::DEFAULT_SECRETS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The StatefulSet with `replicas` pods whose config hashes to `config_hash`.
pub fn statefulset(
    cluster: &McpCluster,
    names: &Names,
    replicas: i32,
    config_hash: &str,
) -> StatefulSet {
    let o = &cluster.spec.pod_template;
    let mut labels: BTreeMap<String, String> = o.labels.clone();
    labels.extend(names.selector()); // the selector wins
    let mut annotations = o.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());
    // The preStop sleep, then the node's whole stop (its overall bound: the grace, the last
    // hand-offs, leaving the cluster), then a margin before the kubelet kills it.
    let grace = i64::try_from(cluster.spec.node.shutdown_grace_secs).unwrap_or(3600)
        + PRE_STOP_SLEEP_SECS
        + i64::try_from(mcpcluster_api::node_config::STOP_BEYOND_GRACE_SECS).unwrap_or(15)
        + STOP_MARGIN_SECS;
    let pod = PodSpec {
        containers: vec![container(cluster, names)],
        service_account_name: Some(
            o.service_account_name
                .clone()
                .unwrap_or_else(|| names.service_account.clone()),
        ),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(grace),
        node_selector: (!o.node_selector.is_empty()).then(|| o.node_selector.clone()),
        tolerations: (!o.tolerations.is_empty()).then(|| o.tolerations.clone()),
        affinity: Some(
            o.affinity
                .clone()
                .unwrap_or_else(|| default_affinity(names)),
        ),
        priority_class_name: o.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NODE_UID),
            run_as_group: Some(NODE_UID),
            fs_group: Some(NODE_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volumes: Some(
            vec![
                Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names.config.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "tls".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(names.tls_secret.clone()),
                        default_mode: Some(SECRET_MODE),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "admin-token".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(names.admin_secret.clone()),
                        // The digest only: the token itself stays with the operator.
                        items: Some(vec![KeyToPath {
                            key: DIGEST_KEY.into(),
                            path: DIGEST_KEY.into(),
                            ..Default::default()
                        }]),
                        default_mode: Some(SECRET_MODE),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(upstream_secrets(cluster))
            .collect(),
        ),
        ..Default::default()
    };
    StatefulSet {
        metadata: meta(cluster, names, &names.cluster),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.peers.clone()),
            selector: LabelSelector {
                match_labels: Some(names.selector()),
                ..Default::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
