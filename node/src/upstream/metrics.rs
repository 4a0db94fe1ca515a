//! Upstream metrics (`mcp_upstream_*`), labelled by the upstream's configured name (a closed
//! set: the configuration's), the error kind ([`ErrorKind`]) where there is one.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::breaker::State;
use super::error::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    upstream: String,
    kind: ErrorKind,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// The `mcp_upstream_*` families, registered whether or not upstreams are configured (cheap
/// to clone: shared).
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    requests: Family<UpstreamLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    seconds: Family<UpstreamLabels, Histogram>,
    initializations: Family<UpstreamLabels, Counter>,
    ended: Family<UpstreamLabels, Counter>,
    tools: Family<UpstreamLabels, Gauge>,
    in_flight: Family<UpstreamLabels, Gauge>,
    queued: Family<UpstreamLabels, Gauge>,
    state: Family<UpstreamLabels, Gauge>,
    opened: Family<UpstreamLabels, Counter>,
    client_streams: Family<UpstreamLabels, Gauge>,
}

impl UpstreamMetrics {
    /// Creates the families and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            errors: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
            initializations: Family::default(),
            ended: Family::default(),
            tools: Family::default(),
            in_flight: Family::default(),
            queued: Family::default(),
            state: Family::default(),
            opened: Family::default(),
            client_streams: Family::default(),
        };
        registry.register(
            "upstream_requests",
            "Requests sent to an upstream MCP server (refused ones included)",
            m.requests.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests to an upstream that failed, by kind",
            m.errors.clone(),
        );
        registry.register(
            "upstream_request_seconds",
            "Time from a request to an upstream to its answer (re-initialization included)",
            m.seconds.clone(),
        );
        registry.register(
            "upstream_initializations",
            "Sessions opened with an upstream (the first and every re-initialization)",
            m.initializations.clone(),
        );
        registry.register(
            "upstream_sessions_ended",
            "Upstream sessions this node ended with a DELETE the upstream answered (its own at shutdown, client sessions' own when they ended, a duplicate two requests opened at once); opened minus ended, summed over the nodes, is about the sessions open",
            m.ended.clone(),
        );
        registry.register(
            "upstream_tools",
            "Tools of an upstream as last listed",
            m.tools.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Requests to an upstream holding one of its maxConcurrency slots",
            m.in_flight.clone(),
        );
        registry.register(
            "upstream_queued",
            "Requests waiting for one of an upstream's slots (at most maxQueued)",
            m.queued.clone(),
        );
        registry.register(
            "upstream_state",
            "An upstream's circuit breaker: 0 up, 1 probing, 2 marked down",
            m.state.clone(),
        );
        registry.register(
            "upstream_breaker_opened",
            "Times an upstream was marked down by its circuit breaker (a failed probe included)",
            m.opened.clone(),
        );
        registry.register(
            "upstream_client_streams",
            "Standalone streams this node holds with an upstream for client sessions' own upstream sessions (sessions: perClient: those that subscribed there or set a logging level)",
            m.client_streams.clone(),
        );
        m
    }

    /// The handle of one upstream.
    pub fn of(&self, upstream: &str) -> Handle {
        let u = UpstreamLabels {
            upstream: upstream.to_owned(),
        };
        Handle {
            requests: self.requests.get_or_create(&u).clone(),
            seconds: self.seconds.get_or_create(&u).clone(),
            initializations: self.initializations.get_or_create(&u).clone(),
            ended: self.ended.get_or_create(&u).clone(),
            tools: self.tools.get_or_create(&u).clone(),
            in_flight: self.in_flight.get_or_create(&u).clone(),
            queued: self.queued.get_or_create(&u).clone(),
            state: self.state.get_or_create(&u).clone(),
            opened: self.opened.get_or_create(&u).clone(),
            client_streams: self.client_streams.get_or_create(&u).clone(),
            errors: self.errors.clone(),
            name: upstream.to_owned(),
        }
    }
}

/// One upstream's metrics.
#[derive(Debug, Clone)]
pub struct Handle {
    requests: Counter,
    seconds: Histogram,
    initializations: Counter,
    ended: Counter,
    tools: Gauge,
    in_flight: Gauge,
    queued: Gauge,
    state: Gauge,
    opened: Counter,
    client_streams: Gauge,
    errors: Family<ErrorLabels, Counter>,
    name: String,
}

impl Handle {
    /// Counts one request, its latency and its error, if any.
    pub fn request(&self, seconds: f64, error: Option<ErrorKind>) {
        self.requests.inc();
        self.seconds.observe(seconds);
        if let Some(kind) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    upstream: self.name.clone(),
                    kind,
                })
                .inc();
        }
    }

    /// Counts a session opened with the upstream.
    pub fn initialized(&self) {
        self.initializations.inc();
    }

    /// Counts a session ended with a DELETE the upstream answered.
    pub fn ended(&self) {
        self.ended.inc();
    }

    /// Sets the number of client sessions' standalone streams held with the upstream.
    pub fn client_streams(&self, n: usize) {
        self.client_streams.set(n as i64);
    }

    /// Sets the number of tools last listed.
    pub fn tools(&self, n: usize) {
        self.tools.set(n as i64);
    }

    /// Adds `d` to the requests holding a slot.
    pub fn in_flight(&self, d: i64) {
        self.in_flight.inc_by(d);
    }

    /// Adds `d` to the requests waiting for a slot.
    pub fn queued(&self, d: i64) {
        self.queued.inc_by(d);
    }

    /// Sets the breaker's state.
    pub fn state(&self, s: State) {
        self.state.set(s as i64);
    }

    /// Counts the breaker opening.
    pub fn breaker_opened(&self) {
        self.opened.inc();
    }
}
