//! Building and writing `McpCluster.status` (through the status subresource; skipped when
//! nothing changed, so a reconcile does not trigger itself).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use mcpcluster_api::mcpcluster::condition::UPSTREAMS_READY;
use mcpcluster_api::{McpCluster, McpClusterStatus};
use serde_json::json;

use crate::conditions::{Observed, Report, merge, reports};
use crate::context::Context;
use crate::error::Error;
use crate::names::Names;
use crate::nodes::Load;

/// What the StatefulSet says, as [`Observed`] fields (everything zero when it does not exist).
pub fn observe(sts: Option<&StatefulSet>, desired: i32, replication_factor: i32) -> Observed {
    let status = sts.and_then(|s| s.status.as_ref());
    let generation = sts.and_then(|s| s.metadata.generation).unwrap_or(0);
    let rollout_complete = status.is_some_and(|s| {
        s.observed_generation.unwrap_or(0) >= generation
            && s.update_revision.is_some()
            && s.current_revision == s.update_revision
    });
    Observed {
        desired,
        replicas: status.map_or(0, |s| s.replicas),
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        rollout_complete: rollout_complete || (sts.is_none() && desired == 0),
        replication_factor,
        ..Default::default()
    }
}

/// The status for `observed` and `load`, with conditions merged into the previous ones.
pub fn build(
    cluster: &McpCluster,
    names: &Names,
    observed: &Observed,
    load: Option<Load>,
    now: Timestamp,
) -> McpClusterStatus {
    let mut old = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation.unwrap_or(0);
    let load = load.unwrap_or_default();
    let mut reports = reports(observed);
    let upstreams = match &observed.upstreams {
        None => old.upstreams.clone(),
        Some((list, condition)) => {
            match condition {
                Some(c) => reports.push(c.clone()),
                None => old.conditions.retain(|c| c.type_ != UPSTREAMS_READY),
            }
            list.clone()
        }
    };
    McpClusterStatus {
        observed_generation: Some(generation),
        replicas: observed.replicas,
        ready_replicas: observed.ready,
        desired_replicas: observed.desired,
        connections: load.connections,
        sessions: load.sessions,
        members: load.members,
        selector: Some(names.selector_string()),
        upstreams,
        conditions: merge(&old.conditions, reports, generation, now),
    }
}

/// Writes `status` unless the object already has it.
pub async fn write(
    ctx: &Context,
    cluster: &McpCluster,
    status: &McpClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(status) {
        return Ok(());
    }
    let name = cluster.name_any();
    let api: Api<McpCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map_err(|e| Error::kube("patch-status", "McpCluster", &name, e))?;
    Ok(())
}

/// After a failed reconcile: `Degraded=True, ReconcileFailed` with the error, other
/// conditions untouched. Best effort (the API may be what failed).
pub async fn write_failure(ctx: &Context, cluster: &McpCluster, error: &Error) {
    let mut status = cluster.status.clone().unwrap_or_default();
    let report = Report::new(
        mcpcluster_api::mcpcluster::condition::DEGRADED,
        true,
        mcpcluster_api::mcpcluster::condition::reason::RECONCILE_FAILED,
        error.to_string(),
    );
    let generation = cluster.metadata.generation.unwrap_or(0);
    status.conditions = merge(
        &status.conditions,
        vec![report],
        generation,
        Timestamp::now(),
    );
    if let Err(err) = write(ctx, cluster, &status).await {
        tracing::debug!(error = %err, "cannot report the failure in status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;

    #[test]
    fn a_finished_rollout_needs_the_latest_generation_and_one_revision() {
        let mut sts = StatefulSet::default();
        sts.metadata.generation = Some(2);
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(2),
            replicas: 3,
            ready_replicas: Some(2),
            updated_replicas: Some(3),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..Default::default()
        });
        let o = observe(Some(&sts), 3, 2);
        assert!(o.rollout_complete);
        assert_eq!((o.replicas, o.ready, o.updated), (3, 2, 3));
        if let Some(s) = sts.status.as_mut() {
            s.update_revision = Some("r2".into());
        }
        assert!(!observe(Some(&sts), 3, 2).rollout_complete);
        assert!(!observe(None, 3, 2).rollout_complete);
    }
}
