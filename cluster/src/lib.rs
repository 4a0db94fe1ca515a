//! The peer layer of an mcpcluster node, written sans-IO first.
//!
//! - [`membership`]: SWIM gossip (foca) with per-member metadata; entry point
//!   [`membership::Membership`], driven by `handle_*` calls that take `now`.
//!
//! - [`sim`]: a deterministic simulator (virtual time, lossy links, partitions)
//!   that drives [`membership::Membership`] nodes through a scripted scenario.
//!
//! See `docs/PROTOCOL.md` for the wire format and the invariants.

pub mod membership;
pub mod sim;
