//! `mcp-load`: a real MCP load generator and the client it is built on.
//!
//! - [`client`]: an MCP client over one HTTP/1.1 connection, both protocol eras, with
//!   [`client::resume`] for reconnection with backoff and legacy session resumption.
//! - [`run`]: one process's load: hold N sessions with open streams, then send `tools/call` at an
//!   open-loop rate released by [`pacer`] (latency counted from the intended send time).
//! - [`fleet`]: several processes as one run (past `RLIMIT_NOFILE`), merged into a [`report`].
//! - [`cluster`]: `mcp-load cluster`, legacy sessions held across a cluster's nodes through
//!   failures (shared call pools per node, resumed streams, lost sessions and missed events
//!   counted per second), cheaper per session and per call than the node it loads.
//! - [`stats`]: HDR histograms and the per-second timeline; [`probe`]: the server's RSS and
//!   gauges; [`plot`]: PNG plots.

pub mod client;
pub mod cluster;
pub mod failover;
pub mod fleet;
pub mod pacer;
pub mod plot;
pub mod probe;
pub mod report;
pub mod run;
pub mod stats;
