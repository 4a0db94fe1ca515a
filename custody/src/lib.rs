//! The session layer of an mcpcluster node: who owns each legacy (2025-11-25) MCP session,
//! which peers hold its copies, when an event may be shown to the client, where a request for
//! it goes, and how custody passes when an owner dies, drains or holds more than its share.
//!
//! Entry point: [`Custody`], a sans-IO state machine (no clock, socket, task or runtime
//! inside): the driver feeds it the membership view ([`Custody::set_view`]), peer messages
//! ([`Custody::handle_message`]), local changes ([`Custody::create`], [`Custody::append`], …),
//! route queries ([`Custody::route`]) and time ([`Custody::handle_timeout`]), and carries out
//! the [`Action`]s [`Custody::poll_action`] returns. [`sim`] runs many of them with the
//! membership state machines over a simulated network, with faults, and checks the invariants
//! after every step.
//!
//! - [`data`]: a session as data (durable state, event logs) and the copy protocol.
//! - [`wire`], [`codec`]: the peer messages and their binary form.
//! - [`members`]: the membership view, quorum, and direct contact (leases).
//! - `owner.rs`, `replica.rs`, `failover.rs`, `handoff.rs`, `digest.rs`, `route.rs`: the
//!   decisions, one concern per file. Rules: docs/PROTOCOL.md, "Sessions across the cluster".

pub mod action;
pub mod codec;
pub mod config;
pub mod data;
pub mod digest;
pub mod id;
pub mod machine;
pub mod members;
pub mod sim;
pub mod wire;

mod claim;
mod det;
mod failover;
mod handoff;
mod owner;
mod recovery;
mod replica;
mod route;

pub use action::{Acquire, Action, Refusal, Release, Route, Stats, Ticket};
pub use config::Config;
pub use data::{NewSession, Replay, SessionData, StreamKind, StreamLog};
pub use id::SessionId;
pub use machine::Custody;
pub use route::MAX_HOPS;
pub use wire::CustodyMsg;
