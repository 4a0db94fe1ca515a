//! `mcp-operator`: a kube-rs controller for the `McpCluster` custom resource. It sizes,
//! configures and reports on a StatefulSet of `mcp-node` pods. Entry point: [`run`];
//! per-object logic: [`reconcile::reconcile`]. Codemap: `docs/ARCHITECTURE.md`.
//!
//! - [`reconcile`]: one reconcile (validate → TLS → load → size → apply → drain gate → status).
//! - [`children`]: the owned objects as pure builders, written by server-side apply.
//! - [`autoscale`]: the pure autoscaling decision; [`scaler`]: writing it, draining first.
//! - [`conditions`], [`status`]: status conditions by the API conventions.
//! - [`nodes`], [`load`]: the nodes' admin API (`/cluster`, `/drain`), with the
//!   [`admin_token`] from the Secret `NAME-admin-token`; [`upstreams`]: the nodes' upstream
//!   reports as `status.upstreams`, the `UpstreamsReady` condition and Events.
//! - [`leader`]: Lease-based leader election; [`server`], [`metrics`]: `/metrics`, health.

pub mod admin_token;
pub mod autoscale;
pub mod certs;
pub mod children;
pub mod cli;
pub mod conditions;
pub mod context;
pub mod error;
pub mod leader;
pub mod load;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod reconcile;
mod run;
pub mod scaler;
pub mod server;
pub mod status;
pub mod upstreams;
pub mod validate;

pub use cli::Cli;
pub use run::{RunError, run};
