//! Cluster mode (`mcp-load cluster`): legacy sessions held across every node of a cluster, as
//! clients behind a Kubernetes Service would hold them, while nodes fail and restart.
//!
//! - Sessions are opened round-robin over the nodes (`initialize` over the call pool of the
//!   node it is sent to); each holds its GET stream on its own connection, most of them
//!   (`relay_fraction`) through another node than the one that created the session.
//! - Calls (`tools/call`, open loop: call *i* is due at `start + i / rate`, latency from the
//!   due time) go to the nodes round-robin over a **shared pool of keep-alive connections per
//!   node** ([`pool`]): no connection per session for calls.
//! - On failure a call is retried on the next node and a broken stream reopened on another
//!   node picked at random (as a Service spreads reconnects) with the same `Mcp-Session-Id` and `Last-Event-ID`; a session is **never
//!   re-initialized**. It is lost on a 404 after it was established, or when it gets no
//!   success within the deadline.
//! - Every stream's event ids are checked ([`sse`]): gaps, duplicates, and streams the node
//!   forgot (reset). Events come from `test_trigger_tool_change` calls (the node's
//!   `conformance` pack), which send `notifications/tools/list_changed` on every GET stream
//!   in the cluster.
//! - Everything is counted per second ([`second`]): sessions held, streams up, sessions in an
//!   outage, errors by kind, latency bins, CPU of the load processes.
//!
//! One process ([`shard`]) runs on one current-thread runtime: no timer per idle connection,
//! one read per event into one scratch buffer ([`sock`]), calls released by the runtime's own
//! timer in batches; past `RLIMIT_NOFILE` several shard processes run as one ([`fleet`]), each
//! from its own loopback source addresses (at most 4,000 connections per address). Every phase
//! has a deadline: a stalled ramp ends the ramp and the run still ends with a report.

pub mod cli;
pub mod fleet;
pub mod pool;
pub mod report;
pub mod second;
pub mod session;
pub mod shard;
pub mod sock;
pub mod sse;
pub mod stream;
pub mod wire;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::run::Target;

/// What one shard process runs (the parent's share of the whole run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardConfig {
    /// This shard's number, from 0.
    pub shard: u32,
    /// Shards in the run.
    pub shards: u32,
    /// The run's start, Unix milliseconds: every shard counts seconds from it.
    pub t0_unix_ms: u64,
    /// The nodes' MCP endpoints.
    pub nodes: Vec<Target>,
    /// Local source addresses (round-robin per connection; empty: the OS picks).
    pub sources: Vec<IpAddr>,
    /// Call connections per node.
    pub pool: u32,
    /// Share of streams opened on another node than the one that created the session.
    pub relay_fraction: f64,
    /// Sessions opened per second (this shard; 0: as fast as `open_concurrency` allows).
    pub ramp_rate: f64,
    /// Most `initialize` exchanges in flight.
    pub open_concurrency: u32,
    /// `tools/call` per second (this shard), open loop.
    pub rate: f64,
    /// Tool called with `{"text": ...}` (`echo` answers are checked to carry the text).
    pub tool: String,
    /// Longest wait for one exchange (connect + answer, or connect + stream head).
    pub timeout: Duration,
    /// Longest a session may go without a success (a call answered, a stream reopened, the
    /// `initialize` answered) before it counts as lost.
    pub deadline: Duration,
    /// A stream with no byte for this long is closed and reopened (the node sends a
    /// keep-alive every `limits.sseKeepaliveSecs`, 30 s by default).
    pub stream_idle: Duration,
    /// Send `test_trigger_tool_change` this often (one shard does); `None`: no events.
    pub announce_every: Option<Duration>,
    /// Final check: calls per second (this shard).
    pub final_rate: f64,
    /// Longest the shard runs at all; past it, it ends with what it has.
    pub max_run: Duration,
    /// Seed of the shard's random choices (relay node).
    pub seed: u64,
}

/// A command from the parent (one JSON line on the shard's stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Hold this many sessions (opening more at the ramp rate).
    Target {
        /// Sessions, this shard.
        sessions: u32,
    },
    /// Open no more sessions (the stage's deadline passed).
    StopRamp,
    /// Start the paced calls at this instant.
    Calls {
        /// Unix milliseconds.
        start_unix_ms: u64,
    },
    /// Stop calling, run the final check, report and exit.
    Finish,
}

/// A message to the parent (one JSON line on the shard's stdout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShardMsg {
    /// One second's figures.
    Second(Box<second::Second>),
    /// Every open asked for so far has ended.
    RampDone {
        /// The target it was for.
        target: u32,
        /// Sessions held.
        held: u64,
        /// Opens that failed (all so far).
        failed: u64,
        /// Sessions opened (all so far).
        #[serde(default)]
        opened: u64,
    },
    /// The final check is over; the shard exits.
    Done(ShardDone),
}

/// A lost session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostSession {
    /// Shard.
    pub shard: u32,
    /// Index in the shard.
    pub index: u32,
    /// `Mcp-Session-Id`.
    pub session: String,
    /// Node (index in `nodes`) that answered its `initialize`.
    pub home: u32,
    /// `call_404`, `call_deadline`, `stream_404`, `stream_deadline`, `final_*`.
    pub reason: String,
    /// When (ms since the run's start).
    pub at_ms: u64,
    /// The last failure, `KIND@NODE`.
    pub last_error: String,
}

/// What a shard says at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardDone {
    /// Shard.
    pub shard: u32,
    /// Sessions opened in all.
    pub opened: u64,
    /// Sessions held at the end.
    pub held: u64,
    /// Sessions lost in all.
    pub lost: u64,
    /// The first lost sessions (at most [`LOST_LISTED`]).
    pub lost_sessions: Vec<LostSession>,
    /// Sessions the final check called.
    pub checked: u64,
    /// Sessions that passed it (call answered, stream up).
    pub final_ok: u64,
    /// The final check ran to its end (not cut by `max_run`).
    pub complete: bool,
}

/// Lost sessions a shard lists by id.
pub const LOST_LISTED: usize = 100;
