//! Moving replicas: the autoscaler's number written through the scale subresource (so
//! `kubectl scale` and the autoscaler edit the same field), and the drain gate that keeps a
//! scale-down from lowering the StatefulSet before the departing pods (the highest ordinals)
//! have drained, or `--drain-timeout` has passed.

use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use mcpcluster_api::McpCluster;
use mcpcluster_api::mcpcluster::condition::{SCALING, reason};
use serde_json::json;

use crate::admin_token::AdminToken;
use crate::conditions::Report;
use crate::context::{Context, Drain};
use crate::error::Error;
use crate::names::{MANAGER, Names};
use crate::nodes::NodeError;

/// Writes `spec.replicas` through the scale subresource.
pub async fn write_replicas(
    ctx: &Context,
    cluster: &McpCluster,
    replicas: i32,
) -> Result<(), Error> {
    let name = cluster.name_any();
    let api: Api<McpCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = json!({ "spec": { "replicas": replicas } });
    api.patch_scale(&name, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube("patch-scale", "McpCluster", &name, e))?;
    Ok(())
}

/// Publishes an event about `cluster`, logging (not failing) when that is impossible.
pub async fn event(ctx: &Context, cluster: &McpCluster, warning: bool, reason: &str, note: String) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&ev, &cluster.object_ref(&())).await {
        tracing::warn!(error = %err, reason, "cannot publish event");
    }
}

/// The StatefulSet size to apply while going from `current` down to `desired`: `desired`
/// once every departing node reports its drain done (or cannot be reached, or the drain
/// timed out), else `current` and a `Scaling` report saying what it waits for. A node that
/// refuses the admin token is reachable but undrained: it is waited for (until the timeout),
/// never removed as if it were gone.
pub async fn drain_gate(
    ctx: &Context,
    cluster: &McpCluster,
    key: &str,
    names: &Names,
    current: i32,
    desired: i32,
    token: &AdminToken,
) -> (i32, Option<Report>) {
    let (since, replaced) = ctx.remember(key, |m| match m.drain {
        Some(d) if d.to == desired => (d.since, None),
        old => {
            let d = Drain {
                to: desired,
                from: current,
                since: Instant::now(),
            };
            m.drain = Some(d);
            (d.since, old)
        }
    });
    if let Some(old) = replaced {
        // A deeper or shallower scale-down replaced an earlier one: pods that stay get their
        // drain called off.
        cancel(ctx, cluster, names, old.to..desired.min(old.from), token).await;
    }
    let port = cluster.spec.ports.admin;
    let mut waiting = Vec::new();
    for ordinal in desired..current {
        let pod = names.pod(ordinal);
        let Some(addr) = ctx.admin.resolve(&pod, names, port) else {
            continue;
        };
        // POST is idempotent: it starts the drain the first time and reports progress after.
        match ctx.nodes.drain(&addr, true, token).await {
            Ok(p) if p.done => {}
            Ok(p) => waiting.push(format!("{pod} ({} sessions)", p.sessions)),
            Err(err @ NodeError::Refused(..)) => {
                tracing::warn!(%pod, error = %err, "departing node refused the admin token");
                waiting.push(format!("{pod} (admin token refused)"));
            }
            Err(err) => {
                tracing::info!(%pod, error = %err, "departing node unreachable; nothing to drain")
            }
        }
    }
    if waiting.is_empty() {
        tracing::info!(from = current, to = desired, "departing nodes drained");
        ctx.remember(key, |m| m.drain = None);
        return (desired, None);
    }
    if since.elapsed() >= ctx.drain_timeout {
        let note = format!(
            "drain timed out after {:?}; removing {} anyway",
            ctx.drain_timeout,
            waiting.join(", ")
        );
        event(ctx, cluster, true, "DrainTimeout", note).await;
        ctx.remember(key, |m| m.drain = None);
        return (desired, None);
    }
    let report = Report::new(
        SCALING,
        true,
        reason::SCALING_DOWN,
        format!(
            "{current} to {desired} replicas: draining {}",
            waiting.join(", ")
        ),
    );
    (current, Some(report))
}

/// Called when no scale-down is pending: a drain that was in progress (the scale-down was
/// called off by `kubectl scale` or the autoscaler) is cancelled on the pods that stay.
pub async fn call_off(
    ctx: &Context,
    cluster: &McpCluster,
    key: &str,
    names: &Names,
    desired: i32,
    token: &AdminToken,
) {
    if let Some(old) = ctx.remember(key, |m| m.drain.take()) {
        cancel(ctx, cluster, names, old.to..desired.min(old.from), token).await;
    }
}

async fn cancel(
    ctx: &Context,
    cluster: &McpCluster,
    names: &Names,
    ordinals: std::ops::Range<i32>,
    token: &AdminToken,
) {
    for ordinal in ordinals {
        let pod = names.pod(ordinal);
        let Some(addr) = ctx.admin.resolve(&pod, names, cluster.spec.ports.admin) else {
            continue;
        };
        match ctx.nodes.cancel_drain(&addr, token).await {
            Ok(_) => tracing::info!(%pod, "scale-down called off: drain cancelled"),
            Err(err) => tracing::warn!(%pod, error = %err, "cannot cancel the drain"),
        }
    }
}
