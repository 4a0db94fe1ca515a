//! The admin endpoint: `/metrics` (OpenMetrics text), `/healthz` (the process runs),
//! `/readyz` (the node accepts new clients; false while draining), `/status`, and, with
//! credentials ([`auth`]), `GET /cluster` (the membership and load the operator sizes the
//! cluster by) and `POST`/`GET`/`DELETE /drain` (start a drain, report its progress, call it
//! off). Shapes: "Admin API" in `docs/ARCHITECTURE.md`.
//!
//! - [`auth`]: which paths need credentials and the decision for one request (pure).
//! - [`config`]: the `admin` section validated, the token file; [`args`]: its flags.
//! - [`metrics`]: the refusal counters, `mcp_admin_refused_total{reason}` and
//!   `mcp_admin_connections_refused_total`.
//! - [`server`]: the port's connections: a cap, the request-head timeout (which also closes
//!   idle connections), TCP keepalive; [`routes`]: what each path answers.

pub mod args;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod routes;
pub mod server;

pub use args::AdminArgs;
pub use config::AdminSettings;
pub use metrics::AdminMetrics;
pub use server::serve;
