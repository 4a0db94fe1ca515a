//! The peer layer of an mcpcluster node, written sans-IO first.
//!
//! - [`membership`]: SWIM gossip (foca) with per-member metadata; entry point
//!   [`membership::Membership`], driven by `handle_*` calls that take `now`.
//!
//! - [`sim`]: a deterministic simulator (virtual time, lossy links, partitions)
//!   that drives [`membership::Membership`] nodes through a scripted scenario.
//!
//! - [`ownership`]: rendezvous hashing of a session id over live members →
//!   owner and replicas (pure functions).
//!
//! - [`frame`]: batched, zstd-streamed, length-prefixed peer frames with a
//!   bounded send queue.
//!
//! - [`transport`]: the async shell — QUIC with mutual TLS, one connection
//!   per peer, frames on a uni stream per direction, gossip on datagrams.
//!
//! See `docs/PROTOCOL.md` for the wire format and the invariants.

pub mod frame;
pub mod membership;
pub mod ownership;
pub mod sim;
pub mod transport;
