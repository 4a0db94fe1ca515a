//! One reconcile of one `McpCluster`: validate, make sure the TLS and admin-token Secrets
//! exist, read the load, decide the size, apply every child, gate a scale-down on the drain,
//! report status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use mcpcluster_api::McpCluster;
use mcpcluster_api::mcpcluster::condition::{SCALING, reason};
use tracing::instrument;

use crate::admin_token::AdminToken;
use crate::autoscale::Reason;
use crate::children::{
    self, admin_secret, apply, config, network_policy, pdb, secret, services, statefulset,
};
use crate::conditions::Report;
use crate::context::Context;
use crate::error::Error;
use crate::metrics::Outcome;
use crate::names::Names;
use crate::{certs, load, scaler, status, upstreams, validate};

/// Requeue while a drain is in progress.
const DRAIN_POLL: Duration = Duration::from_secs(2);
/// Requeue when nothing is moving (watches bring every change sooner).
const IDLE_RESYNC: Duration = Duration::from_secs(300);
/// Requeue an invalid spec: what made it invalid may be an object the operator does not
/// watch (a Secret an upstream header or `spec.tls` names, created after the cluster).
const INVALID_RECHECK: Duration = Duration::from_secs(30);

/// Reconciles one `McpCluster`; the controller calls it on every change of the cluster or a
/// child, and on requeue.
#[instrument(skip(ctx, cluster), fields(namespace = cluster.namespace().unwrap_or_default(), name = %cluster.name_any()))]
pub async fn reconcile(cluster: Arc<McpCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    let seconds = started.elapsed().as_secs_f64();
    let key = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    match &result {
        Ok((_, outcome)) => {
            ctx.health.metrics.reconciled(*outcome, seconds, None);
            ctx.remember(&key, |m| m.failures = 0);
        }
        Err(err) => {
            ctx.health
                .metrics
                .reconciled(Outcome::error, seconds, Some(err.kind()));
            status::write_failure(&ctx, &cluster, err).await;
        }
    }
    result.map(|(action, _)| action)
}

/// Requeue with exponential backoff (1 s doubling to 5 min) after a failed reconcile.
pub fn error_policy(cluster: Arc<McpCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    let failures = ctx.remember(&key, |m| {
        m.failures = m.failures.saturating_add(1);
        m.failures
    });
    let backoff = Duration::from_secs(1u64 << failures.min(9)).min(IDLE_RESYNC);
    tracing::warn!(cluster = %key, error = %err, kind = ?err.kind(), ?backoff, "reconcile failed");
    Action::requeue(backoff)
}

async fn reconcile_inner(cluster: &McpCluster, ctx: &Context) -> Result<(Action, Outcome), Error> {
    let ns = cluster
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    if cluster.uid().is_none() {
        return Err(Error::MissingField("uid"));
    }
    let name = cluster.name_any();
    let key = format!("{ns}/{name}");
    if cluster.metadata.deletion_timestamp.is_some() {
        ctx.forget(&key);
        ctx.health.metrics.forget(&ns, &name);
        return Ok((Action::await_change(), Outcome::success));
    }
    let names = Names::of(cluster);
    let now = Timestamp::now();
    let spec = &cluster.spec;
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = sts_api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube("get", "StatefulSet", &name, e))?;
    let current = existing.as_ref().and_then(|s| s.spec.as_ref()?.replicas);

    // 1. Refuse what the schema could not, before touching anything.
    let mut invalid = validate::check(cluster, &name).err();
    if invalid.is_none() {
        invalid = ensure_tls(ctx, cluster, &names).await?;
    }
    if invalid.is_none() {
        invalid = check_upstream_secrets(ctx, cluster, &names).await?;
    }
    let mut token = None;
    if invalid.is_none() {
        match ensure_admin_token(ctx, cluster, &names).await? {
            Ok(t) => token = Some(t),
            Err(why) => invalid = Some(why),
        }
    }
    let (None, Some(token)) = (&invalid, token) else {
        let why = invalid.unwrap_or_default();
        tracing::warn!(%why, "invalid spec");
        scaler::event(ctx, cluster, true, reason::INVALID_SPEC, why.clone()).await;
        let mut observed = status::observe(
            existing.as_ref(),
            current.unwrap_or(0),
            spec.replication_factor,
        );
        observed.invalid = Some(why);
        let st = status::build(cluster, &names, &observed, None, now);
        status::write(ctx, cluster, &st).await?;
        return Ok((Action::requeue(INVALID_RECHECK), Outcome::invalid));
    };

    // 2. Size: spec.replicas (written back when unset), moved by the autoscaler.
    let requested = spec.requested_replicas();
    if spec.replicas != Some(requested) {
        scaler::write_replicas(ctx, cluster, requested).await?;
    }
    let load = load::read(ctx, &key, &names, spec.ports.admin, &token).await?;
    let mut autoscaled = None;
    let desired = if spec.autoscaling.enabled {
        let d = ctx.remember(&key, |m| {
            m.autoscaler.decide(
                &spec.autoscaling,
                requested,
                load.map(|l| l.connections),
                now,
            )
        });
        if d.desired != requested {
            scaler::write_replicas(ctx, cluster, d.desired).await?;
            let note = format!(
                "autoscaled from {requested} to {} replicas: {} connections, target {} per node",
                d.desired,
                load.map_or(0, |l| l.connections),
                spec.autoscaling.target_connections_per_node
            );
            tracing::info!(from = requested, to = d.desired, "{note}");
            let reason = if d.desired > requested {
                "ScaledUp"
            } else {
                "ScaledDown"
            };
            scaler::event(ctx, cluster, false, reason, note).await;
        }
        autoscaled = Some(d);
        d.desired
    } else {
        requested
    };
    ctx.health.metrics.set_desired(&ns, &name, desired);

    // 3. Children. The StatefulSet last: its pods need the rest.
    apply(
        &Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns),
        &children::service_account(cluster, &names),
    )
    .await?;
    let rendered = config::render(spec, &names)?;
    apply(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
        &config::config_map(cluster, &names, &rendered),
    )
    .await?;
    let svc_api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    apply(&svc_api, &services::peers(cluster, &names)).await?;
    apply(&svc_api, &services::client(cluster, &names)).await?;
    ensure_pdb(ctx, cluster, &names).await?;
    ensure_network_policy(ctx, cluster, &names).await?;

    let (replicas, draining) = match current {
        Some(cur) if desired < cur => {
            scaler::drain_gate(ctx, cluster, &key, &names, cur, desired, &token).await
        }
        _ => {
            scaler::call_off(ctx, cluster, &key, &names, desired, &token).await;
            (desired, None)
        }
    };
    let sts = statefulset::statefulset(cluster, &names, replicas, &config::hash(&rendered));
    let applied = apply(&sts_api, &sts).await?;

    // 4. Status.
    let mut observed = status::observe(Some(&applied), desired, spec.replication_factor);
    observed.diverged = load::diverged(ctx, &key);
    observed.scaling = draining.clone().or_else(|| {
        let d = autoscaled?;
        let settled = observed.replicas == desired;
        (settled && d.reason != Reason::Stable).then(|| {
            Report::new(
                SCALING,
                false,
                d.reason.condition_reason(),
                format!("recommendation {} replicas", d.recommendation),
            )
        })
    });
    observed.upstreams = Some(observe_upstreams(ctx, cluster, &key).await);
    let st = status::build(cluster, &names, &observed, load, now);
    status::write(ctx, cluster, &st).await?;

    let action = if draining.is_some() {
        Action::requeue(DRAIN_POLL)
    } else if spec.autoscaling.enabled || !spec.node.upstreams.is_empty() {
        Action::requeue(ctx.poll_interval)
    } else {
        Action::requeue(IDLE_RESYNC)
    };
    Ok((action, Outcome::success))
}

/// `status.upstreams` and `UpstreamsReady` from the last reading of the nodes, with an Event
/// for each upstream whose readiness changed since the status the object holds.
async fn observe_upstreams(
    ctx: &Context,
    cluster: &McpCluster,
    key: &str,
) -> (Vec<mcpcluster_api::UpstreamStatus>, Option<Report>) {
    let configured: Vec<&str> = cluster
        .spec
        .node
        .upstreams
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    let reports = load::upstreams(ctx, key);
    let list = upstreams::aggregate(&configured, &reports);
    let condition = upstreams::condition(&list, reports.answered);
    // Nothing is known without an answer: no event claims a change.
    if reports.answered > 0 {
        let old = cluster
            .status
            .as_ref()
            .map(|s| s.upstreams.as_slice())
            .unwrap_or_default();
        for (warning, reason, note) in upstreams::events(old, &list) {
            tracing::info!(reason, %note, "upstream readiness changed");
            scaler::event(ctx, cluster, warning, reason, note).await;
        }
    }
    (list, condition)
}

/// The TLS Secret: a user's (`spec.tls.secretName`) must exist with the three keys (else the
/// spec is invalid: returns why); a generated one is created once and never regenerated.
async fn ensure_tls(
    ctx: &Context,
    cluster: &McpCluster,
    names: &Names,
) -> Result<Option<String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let found = api
        .get_opt(&names.tls_secret)
        .await
        .map_err(|e| Error::kube("get", "Secret", &names.tls_secret, e))?;
    if cluster.spec.tls.secret_name.is_some() {
        let problem = match &found {
            None => Some("does not exist".to_owned()),
            Some(s) => {
                let missing = secret::missing_keys(s);
                (!missing.is_empty()).then(|| format!("lacks {}", missing.join(", ")))
            }
        };
        return Ok(
            problem.map(|p| format!("spec.tls.secretName: Secret `{}` {p}", names.tls_secret))
        );
    }
    if found.is_none() {
        let bundle = certs::generate(names, Timestamp::now())?;
        let s = secret::secret(cluster, names, &bundle);
        match api.create(&PostParams::default(), &s).await {
            Ok(_) => {
                tracing::info!(secret = %names.tls_secret, "generated the cluster CA and node certificate")
            }
            // Created meanwhile (a previous leader): keep that one.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::kube("create", "Secret", &names.tls_secret, e)),
        }
    }
    Ok(None)
}

/// The Secrets upstream headers name (`valueFrom.secretKeyRef`) must exist with their keys,
/// else the spec is invalid (returns why): the pods would not start without them. Only the
/// keys are looked at; the values are the nodes' to read.
async fn check_upstream_secrets(
    ctx: &Context,
    cluster: &McpCluster,
    names: &Names,
) -> Result<Option<String>, Error> {
    let node = &cluster.spec.node;
    let wanted: std::collections::BTreeSet<&str> = node
        .upstreams
        .iter()
        .flat_map(|u| u.secret_refs())
        .map(|r| r.name.as_str())
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut keys = std::collections::BTreeMap::new();
    for name in wanted {
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube("get", "Secret", name, e))?;
        keys.insert(name, found.map(|s| secret::keys_of(&s)));
    }
    Ok(validate::upstream_secret_problem(node, |n| {
        keys.get(n).cloned().flatten()
    }))
}

/// The admin token from the Secret `NAME-admin-token`, created with a fresh token when it does
/// not exist (once: never regenerated while it exists). A token written there by hand is used,
/// and `token.sha256` (what the pods mount) is rewritten when it does not match. A Secret
/// without a usable `token` makes the cluster invalid (returns why) rather than being
/// overwritten.
async fn ensure_admin_token(
    ctx: &Context,
    cluster: &McpCluster,
    names: &Names,
) -> Result<Result<AdminToken, String>, Error> {
    let name = &names.admin_secret;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut found = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube("get", "Secret", name, e))?;
    if found.is_none() {
        let token = AdminToken::generate();
        let s = admin_secret::secret(cluster, names, &token);
        match api.create(&PostParams::default(), &s).await {
            Ok(_) => {
                tracing::info!(secret = %name, "generated the admin token");
                return Ok(Ok(token));
            }
            // Created meanwhile (a previous leader): use that one.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                found = api
                    .get_opt(name)
                    .await
                    .map_err(|e| Error::kube("get", "Secret", name, e))?;
            }
            Err(e) => return Err(Error::kube("create", "Secret", name, e)),
        }
    }
    let Some(found) = found else {
        return Ok(Err(format!(
            "Secret `{name}` vanished while it was created"
        )));
    };
    let token = match admin_secret::token_of(&found) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Ok(Err(format!(
                "Secret `{name}` has no key `{}` (delete the Secret: the operator generates a new token)",
                admin_secret::TOKEN_KEY
            )));
        }
        Err(why) => {
            return Ok(Err(format!(
                "Secret `{name}`: key `{}` is {why}",
                admin_secret::TOKEN_KEY
            )));
        }
    };
    if !admin_secret::digest_matches(&found, &token) {
        let patch =
            serde_json::json!({ "stringData": { admin_secret::DIGEST_KEY: token.sha256_hex() } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube("patch", "Secret", name, e))?;
        tracing::info!(secret = %name, "admin token changed by hand: its digest for the nodes rewritten");
    }
    Ok(Ok(token))
}

/// Applies the NetworkPolicy, or deletes ours when the spec disables it.
async fn ensure_network_policy(
    ctx: &Context,
    cluster: &McpCluster,
    names: &Names,
) -> Result<(), Error> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &names.namespace);
    match network_policy::network_policy(cluster, names, &ctx.operator_pods) {
        Some(p) => apply(&api, &p).await.map(drop),
        None => match api.delete(&names.cluster, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube("delete", "NetworkPolicy", &names.cluster, e)),
        },
    }
}

/// Applies the PDB, or deletes ours when the spec disables it.
async fn ensure_pdb(ctx: &Context, cluster: &McpCluster, names: &Names) -> Result<(), Error> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &names.namespace);
    match pdb::pdb(cluster, names) {
        Some(p) => apply(&api, &p).await.map(drop),
        None => match api.delete(&names.cluster, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(
                "delete",
                "PodDisruptionBudget",
                &names.cluster,
                e,
            )),
        },
    }
}
