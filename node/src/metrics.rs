//! Prometheus metrics of one node (prefix `mcp_`), encoded by `prometheus-client`.
//!
//! Label values come from closed enums (method, outcome, rejection reason), so cardinality is
//! bounded whatever clients send.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The JSON-RPC methods we count separately; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum MethodLabel {
    initialize,
    ping,
    tools_list,
    tools_call,
    resources_list,
    resources_templates_list,
    resources_read,
    resources_subscribe,
    resources_unsubscribe,
    prompts_list,
    prompts_get,
    completion_complete,
    logging_setLevel,
    server_discover,
    subscriptions_listen,
    notification,
    response,
    other,
}

impl MethodLabel {
    /// Maps a method name to its label.
    pub fn of(method: &str) -> Self {
        match method {
            "initialize" => Self::initialize,
            "ping" => Self::ping,
            "tools/list" => Self::tools_list,
            "tools/call" => Self::tools_call,
            "resources/list" => Self::resources_list,
            "resources/templates/list" => Self::resources_templates_list,
            "resources/read" => Self::resources_read,
            "resources/subscribe" => Self::resources_subscribe,
            "resources/unsubscribe" => Self::resources_unsubscribe,
            "prompts/list" => Self::prompts_list,
            "prompts/get" => Self::prompts_get,
            "completion/complete" => Self::completion_complete,
            "logging/setLevel" => Self::logging_setLevel,
            "server/discover" => Self::server_discover,
            "subscriptions/listen" => Self::subscriptions_listen,
            _ => Self::other,
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Outcome {
    ok,
    error,
    tool_error,
    input_required,
}

/// Why a request or connection was refused before it was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum Reason {
    connection_cap,
    overload,
    session_cap,
    rate_limited,
    body_too_large,
    bad_host,
    bad_origin,
    bad_request,
    unknown_session,
    not_acceptable,
    unsupported_media_type,
    method_not_allowed,
    /// A stream opened on a draining node by a client (503: open it on another node).
    draining,
    /// A stream relayed to a draining node for a session still owned there, not yet handed
    /// off (503).
    draining_owner,
    /// A request for a session being handed off (or taken over) that did not settle within
    /// the wait (503).
    session_moving,
    /// The session left this node (hand-off, newer owner) between the routing of the request
    /// and its lookup (503).
    session_moved,
    /// The node's budget for buffered request bytes was spent (503).
    body_budget,
    /// The request head or body did not arrive in time (408).
    request_timeout,
}

/// Why the node closed a client connection (one the client closed counts as `client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, missing_docs)]
pub enum CloseReason {
    /// The client closed or reset it, or left during a streamed answer.
    client,
    /// Idle between requests for `limits.idleTimeoutSecs`.
    idle_timeout,
    /// The node is draining (after a last answer, or idle past the drain grace).
    drain,
    /// After an answer with `Connection: close` the client asked for (or HTTP/1.0).
    finished,
    /// After refusing a request that could not be read (400/408/413/431/501/503).
    refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: MethodLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CloseLabels {
    reason: CloseReason,
}

/// All metrics of a node.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Open client TCP connections.
    pub connections: Gauge,
    /// Client TCP connections accepted since start.
    pub connections_accepted: Counter,
    /// Connection tasks and tasks spawned for one request (its work once the answer streams,
    /// a request a peer forwarded, a listen stream) that panicked: a bug; the connection or
    /// request was ended and its resources released.
    pub connection_panics: Counter,
    /// Live legacy sessions.
    pub sessions: Gauge,
    /// Open SSE streams (GET streams, SSE responses, subscriptions/listen).
    pub streams: Gauge,
    /// Requests being handled now.
    pub inflight: Gauge,
    /// Bytes held by request buffers (heads and bodies being read or handled).
    pub buffered_request_bytes: Gauge,
    closes: Family<CloseLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    /// Membership metrics (`mcp_cluster_*`); registered whether or not clustering is on.
    pub cluster: crate::cluster::ClusterMetrics,
    /// Client authentication (`mcp_auth_*`); registered whether or not auth is on.
    pub auth: crate::auth::AuthMetrics,
    /// Upstream MCP servers (`mcp_upstream_*`); registered whether or not any is configured.
    pub upstream: crate::upstream::UpstreamMetrics,
    /// Admin endpoint metrics (`mcp_admin_*`).
    pub admin: crate::admin::AdminMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp");
        let connections = Gauge::default();
        let connections_accepted = Counter::default();
        let connection_panics = Counter::default();
        let sessions = Gauge::default();
        let streams = Gauge::default();
        let inflight = Gauge::default();
        let buffered_request_bytes = Gauge::default();
        let closes = Family::<CloseLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 5.0,
            ])
        });
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        registry.register(
            "connection_panics",
            "Connection and request tasks that panicked (a bug: the connection or request was ended and its resources released)",
            connection_panics.clone(),
        );
        registry.register(
            "sessions",
            "Live legacy (2025-11-25 and earlier) sessions",
            sessions.clone(),
        );
        registry.register("streams", "Open SSE streams", streams.clone());
        registry.register(
            "inflight_requests",
            "Requests being handled",
            inflight.clone(),
        );
        registry.register(
            "buffered_request_bytes",
            "Bytes held by request buffers (limits.maxBufferedRequestBytes bounds them)",
            buffered_request_bytes.clone(),
        );
        registry.register(
            "connections_closed",
            "Client connections closed, by reason",
            closes.clone(),
        );
        registry.register(
            "requests",
            "JSON-RPC messages handled, by method and outcome",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to handle a JSON-RPC request, by method",
            latency.clone(),
        );
        registry.register(
            "rejections",
            "Requests or connections refused, by reason",
            rejections.clone(),
        );
        let cluster = crate::cluster::ClusterMetrics::register(&mut registry);
        let auth = crate::auth::AuthMetrics::register(&mut registry);
        let admin = crate::admin::AdminMetrics::register(&mut registry);
        let upstream = crate::upstream::UpstreamMetrics::register(&mut registry);
        Self {
            upstream,
            registry,
            cluster,
            auth,
            admin,
            connections,
            connections_accepted,
            connection_panics,
            sessions,
            streams,
            inflight,
            buffered_request_bytes,
            closes,
            requests,
            latency,
            rejections,
        }
    }

    /// Counts one handled message and its latency.
    pub fn observe(&self, method: MethodLabel, outcome: Outcome, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { method, outcome })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { method })
            .observe(seconds);
    }

    /// Counts one refusal.
    pub fn reject(&self, reason: Reason) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one connection closed for `reason`.
    pub fn closed(&self, reason: CloseReason) {
        self.closes.get_or_create(&CloseLabels { reason }).inc();
    }

    /// Number of refusals for `reason` so far (used by tests and the admin view).
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
