//! Types shared by `mcp-node` and the operator.
//!
//! The node's configuration lives here, as one Rust type, so the operator can embed it in the
//! `McpCluster` resource and render it into a ConfigMap without a second definition drifting
//! from the one the node parses. Entry points: [`NodeConfig`]; with the `resource` feature, the
//! custom resource [`McpCluster`] (module [`mcpcluster`]) and the `crdgen` binary that prints
//! its CustomResourceDefinition.

pub mod admin_config;
pub mod auth_config;
pub mod cluster_config;
pub mod header_value;
#[cfg(feature = "resource")]
pub mod mcpcluster;
pub mod node_config;
pub mod upstream_config;

pub use admin_config::{AdminConfig, MAX_ADMIN_TOKEN_LEN, MIN_ADMIN_TOKEN_LEN, valid_admin_token};
pub use auth_config::{AuthConfig, ScopeMap};
pub use cluster_config::{
    ClusterConfig, ClusterTlsConfig, GossipTransport, MembershipThread, MembershipTimers,
};
pub use header_value::{HeaderValue, SecretKeyRef};
#[cfg(feature = "resource")]
pub use mcpcluster::{McpCluster, McpClusterSpec, McpClusterStatus, UpstreamStatus};
pub use node_config::{
    ContentConfig, DEFAULT_SECRETS_DIR, HttpToolConfig, LimitsConfig, LogConfig, LogFormat,
    NodeConfig, PromptArgConfig, PromptConfig, ResourceConfig, SecurityConfig,
};
pub use upstream_config::{ServiceRef, UPSTREAM_SEPARATOR, UpstreamConfig, validate_upstreams};
