//! `mcp-load`: a real MCP load generator and the client it is built on.
//!
//! - [`client`]: an MCP client over one HTTP/1.1 connection, both protocol eras.
//! - [`run`]: the load run: hold N sessions with open streams, then send `tools/call` at an
//!   open-loop rate (latency counted from the intended send time) and report percentiles.

pub mod client;
pub mod run;
