//! Wiring: API client, health/metrics endpoint, leader election, the controller.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};
use mcpcluster_api::McpCluster;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::children::network_policy::OperatorPods;
use crate::cli::Cli;
use crate::context::Context;
use crate::leader::Elector;
use crate::names::{LABEL_MANAGED_BY, MANAGER};
use crate::nodes::{AdminAddress, NodeClient};
use crate::reconcile::{error_policy, reconcile};
use crate::server::{self, Health};

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The `--listen` address could not be bound.
    #[error("cannot listen on {0} (--listen): {1}")]
    Listen(std::net::SocketAddr, #[source] std::io::Error),
    /// Another replica took the Lease, or it could not be renewed: exit so that two replicas
    /// never reconcile at once (the Deployment restarts this one as a follower).
    #[error("lost leadership of Lease {0}")]
    LostLeadership(String),
}

fn scoped<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    }
}

/// Runs the operator until SIGTERM/Ctrl-C (returns `Ok`) or lost leadership (returns `Err`).
pub async fn run(cli: Cli) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let identity = cli.identity();
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| RunError::Listen(cli.listen, e))?;
    tracing::info!(listen = %cli.listen, %identity, namespace = %cli.watch_namespace, "mcp-operator starting");
    tokio::spawn(server::serve(
        listener,
        health.clone(),
        std::future::pending(),
    ));
    tokio::spawn(mark_ready(
        scoped::<McpCluster>(&client, &cli.watch_namespace),
        health.clone(),
    ));

    let (leading_tx, mut leading) = watch::channel(cli.no_leader_election);
    let mut election = None;
    if !cli.no_leader_election {
        let elector = Elector {
            api: Api::<Lease>::namespaced(client.clone(), &cli.lease_namespace()),
            name: cli.leader_election_lease.clone(),
            me: identity.clone(),
            lease_duration: Duration::from_secs(15),
            retry: Duration::from_secs(3),
        };
        election = Some((elector.clone(), tokio::spawn(elector.run(leading_tx))));
        tracing::info!(lease = %cli.leader_election_lease, "waiting for leadership");
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate() => return Ok(()),
        }
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(identity),
        },
    );
    let mut ctx = Context::new(
        client.clone(),
        recorder,
        NodeClient::new(cli.node_timeout),
        AdminAddress::from_arg(cli.node_admin_override.as_deref()),
        health,
        cli.poll_interval,
        cli.drain_timeout,
    );
    ctx.operator_pods = OperatorPods {
        namespace: cli.lease_namespace(),
        labels: cli.operator_pod_selector.clone(),
    };
    tracing::info!(operator_pods = ?ctx.operator_pods, "NetworkPolicies let these pods reach the nodes' admin port");
    let ctx = Arc::new(ctx);
    let ns = cli.watch_namespace.as_str();
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let controller = Controller::new(
        scoped::<McpCluster>(&client, ns),
        watcher::Config::default(),
    )
    .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
    .owns(scoped::<Service>(&client, ns), owned.clone())
    .owns(scoped::<ConfigMap>(&client, ns), owned.clone())
    .owns(scoped::<Secret>(&client, ns), owned.clone())
    .owns(scoped::<ServiceAccount>(&client, ns), owned.clone())
    .owns(scoped::<PodDisruptionBudget>(&client, ns), owned.clone())
    .owns(scoped::<NetworkPolicy>(&client, ns), owned)
    .with_config(controller::Config::default().debounce(Duration::from_millis(500)))
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
            Err(err) => tracing::debug!(error = %err, "controller event"),
        }
    });
    tracing::info!("leading: reconciling");
    let Some((elector, campaign)) = election else {
        controller.await;
        return Ok(());
    };
    tokio::select! {
        _ = controller => {
            // Shut down by a signal: stop renewing, then hand the Lease over.
            campaign.abort();
            if let Err(err) = elector.release().await {
                tracing::warn!(error = %err, "cannot release the Lease; a standby takes over when it expires");
            }
            Ok(())
        }
        _ = leading.wait_for(|l| !*l) => Err(RunError::LostLeadership(cli.leader_election_lease.clone())),
    }
}

/// Sets `/readyz` once the API server lists McpClusters (CRD installed, RBAC granted).
async fn mark_ready(api: Api<McpCluster>, health: Arc<Health>) {
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => {
                health.ready.store(true, Ordering::Release);
                return;
            }
            Err(err) => tracing::warn!(error = %err, "cannot list McpClusters yet"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn terminate() {
    #[cfg(unix)]
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
        return;
    }
    std::future::pending::<()>().await;
}
