//! The session layer's settings, each with its default and the trade-off it makes.

use std::time::Duration;

/// Session layer configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Copies of each session including the owner's (R). Default 2. Higher survives more
    /// simultaneous failures and costs a copy per session per extra replica.
    pub replication_factor: usize,
    /// Show an SSE event (a notification, a request to the client, a response on a stream) to
    /// the client only once every replica holds it. Default true: an event a client saw is
    /// never lost with its owner. False shows events at once (one peer round trip less per
    /// event) and loses the ones not yet copied when the owner dies.
    pub durable_events: bool,
    /// Events kept per SSE stream for `Last-Event-ID` resumption. Default 64.
    pub event_log_capacity: usize,
    /// Most sessions owned here; `initialize` beyond it is refused. Default 200,000.
    pub max_sessions: usize,
    /// Most copies of other nodes' sessions held here; a copy beyond it is refused and its
    /// owner sees no acknowledgement. Default 400,000.
    pub max_copies: usize,
    /// How long a replica must not have heard from an owner, on top of the membership
    /// declaring it down, before it takes the owner's sessions over. Default 1 s. A false
    /// "down" verdict about an owner that keeps talking to its replicas moves nothing.
    pub lease: Duration,
    /// How often every node tells each live peer it is alive on the data link. Default 200 ms
    /// (five per lease).
    pub heartbeat: Duration,
    /// How long an owner waits for a replica's acknowledgement before sending that replica a
    /// full copy again. Default 500 ms.
    pub retransmit: Duration,
    /// How often an owner sends each peer a digest of the copies it should hold. Default 5 s:
    /// a lost `Forget` or a copy taken over during a partition is repaired within it.
    pub digest_period: Duration,
    /// The period of the background work (take-overs, replica set repairs, hand-offs).
    /// Default 50 ms.
    pub tick: Duration,
    /// Sessions taken over per tick in the background (a request for one takes it over at
    /// once). Default 1,000 (20,000/s).
    pub takeovers_per_tick: usize,
    /// Owned sessions whose replica set is checked per tick after the membership changed.
    /// Default 2,000 (40,000/s).
    pub reconcile_per_tick: usize,
    /// Sessions handed to their successor per second while draining. Default 5,000.
    pub drain_rate: f64,
    /// Sessions moved per second to the member that ranks first for them while this node
    /// owns more than its share. Default 500.
    pub rebalance_rate: f64,
    /// How far above its share of the cluster's sessions a node may be before it moves some
    /// (0.05: 5 %). Default 0.05.
    pub rebalance_slack: f64,
    /// `initialize` is refused (503) while the oldest unacknowledged copy is older than this.
    /// Default 1 s.
    pub max_ack_lag: Duration,
    /// `initialize` is refused while more owned sessions than this wait for acknowledgements.
    /// Default 20,000.
    pub max_unacked: usize,
    /// How long a node that has seeds but has met no peer answers 503 instead of 404 for a
    /// session it does not know. Default 10 s.
    pub settle: Duration,
    /// How long after a member went down a session nobody reachable holds is answered 503
    /// (retry) rather than 404: the member may hold it and come back, or its replicas may
    /// still be taking it over. Default 30 s.
    pub unknown_grace: Duration,
    /// How many members the cluster is configured to have (the StatefulSet's replicas).
    /// Default 0: unknown, and a majority is one of the members this node knows. A view can
    /// miss members — a process started while a member was down or stalled never hears of it
    /// — and a majority of a partial view is not one of the cluster: two sides of a partition
    /// could both serve (seed 11271). Set, majorities are counted over at least this many
    /// members, and exactly half decides only when every member is known. A scale-down lowers
    /// it; until then the members that left count as absent.
    pub cluster_size: usize,
    /// Whether seeds were configured (a node without any is a cluster of its own at once).
    pub has_seeds: bool,
    /// How long a hand-off waits for the successor's acknowledgement before sending again.
    /// Default 2 s.
    pub handoff_retry: Duration,
    /// How long a node remembers where it handed a session to (requests still arriving are
    /// forwarded there). Default 60 s.
    pub moved_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replication_factor: 2,
            durable_events: true,
            event_log_capacity: 64,
            max_sessions: 200_000,
            max_copies: 400_000,
            lease: Duration::from_secs(1),
            heartbeat: Duration::from_millis(200),
            retransmit: Duration::from_millis(500),
            digest_period: Duration::from_secs(5),
            tick: Duration::from_millis(50),
            takeovers_per_tick: 1_000,
            reconcile_per_tick: 2_000,
            drain_rate: 5_000.0,
            rebalance_rate: 500.0,
            rebalance_slack: 0.05,
            max_ack_lag: Duration::from_secs(1),
            max_unacked: 20_000,
            settle: Duration::from_secs(10),
            unknown_grace: Duration::from_secs(30),
            cluster_size: 0,
            has_seeds: false,
            handoff_retry: Duration::from_secs(2),
            moved_ttl: Duration::from_secs(60),
        }
    }
}
