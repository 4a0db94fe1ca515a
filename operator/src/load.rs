//! Reading the cluster's load: every running pod's `GET /cluster`, merged so each member
//! counts once; whether the nodes' views of the membership agree; and what each says of its
//! upstreams (`upstreams.rs` aggregates it). A reading is cached for half the poll interval, so the reconcile that our own
//! status write triggers reuses it instead of polling again (no write → watch → write loop).

use std::time::Instant;

use futures_util::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use crate::admin_token::AdminToken;
use crate::context::Context;
use crate::error::Error;
use crate::names::Names;
use crate::nodes::{Load, NodeError, divergence, total};

/// Names of the cluster's pods that run and are not being deleted.
pub async fn running_pods(ctx: &Context, names: &Names) -> Result<Vec<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let list = pods
        .list(&ListParams::default().labels(&names.selector_string()))
        .await
        .map_err(|e| Error::kube("list", "Pod", &names.cluster, e))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| p.name_any())
        .collect())
}

/// The load, from the cache when fresh. `None`: no node answered.
pub async fn read(
    ctx: &Context,
    key: &str,
    names: &Names,
    admin_port: i32,
    token: &AdminToken,
) -> Result<Option<Load>, Error> {
    let fresh = ctx.poll_interval / 2;
    if let Some(cached) = ctx.remember(key, |m| {
        m.load
            .filter(|(at, _)| at.elapsed() < fresh)
            .map(|(_, l)| l)
    }) {
        return Ok(cached);
    }
    let pods = running_pods(ctx, names).await?;
    let asks = pods.iter().filter_map(|pod| {
        let addr = ctx.admin.resolve(pod, names, admin_port)?;
        Some(async move { (pod, ctx.nodes.cluster(&addr, token).await) })
    });
    let mut views = Vec::new();
    for (pod, answer) in join_all(asks).await {
        match answer {
            Ok(v) => views.push(v),
            Err(err @ NodeError::Refused(..)) => {
                tracing::warn!(%pod, error = %err, "node refused the admin token; no load from it")
            }
            Err(err) => tracing::debug!(%pod, error = %err, "no load from node"),
        }
    }
    let load = (!views.is_empty()).then(|| total(&views));
    let diverged = divergence(&views);
    let upstreams = crate::upstreams::Reports::of(&views);
    ctx.remember(key, |m| {
        m.load = Some((Instant::now(), load));
        m.upstreams = upstreams;
        m.divergence = match diverged {
            Some(why) => (m.divergence.0.saturating_add(1), Some(why)),
            None => (0, None),
        };
    });
    Ok(load)
}

/// What the nodes of the last reading said about their upstreams.
pub fn upstreams(ctx: &Context, key: &str) -> crate::upstreams::Reports {
    ctx.remember(key, |m| m.upstreams.clone())
}

/// Readings in a row that must disagree before `Degraded=MembershipDiverged`: gossip
/// converges in well under a second, so a short disagreement while a node joins or leaves
/// is not reported.
pub const DIVERGED_READINGS: u32 = 3;

/// The membership disagreement to report, if it persisted for [`DIVERGED_READINGS`].
pub fn diverged(ctx: &Context, key: &str) -> Option<String> {
    ctx.remember(key, |m| match &m.divergence {
        (n, Some(why)) if *n >= DIVERGED_READINGS => Some(why.clone()),
        _ => None,
    })
}
