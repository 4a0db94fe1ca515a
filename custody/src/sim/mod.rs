//! A deterministic simulator of the session layer: N nodes, each a [`Membership`] (the real
//! SWIM state machine) and a [`Custody`](crate::Custody) (the real session layer), over a simulated gossip
//! network and simulated data links, in virtual time, with thousands of clients checking the
//! invariants as they go. One seed fixes every choice, so a failure replays exactly.
//!
//! - [`World`]: the nodes, the networks, the clock, the clients; [`Op`]: what a scenario does
//!   (kill, restart, stall, partition, heal, drain, link failures, message faults, waits and
//!   assertions).
//! - [`random`]: a random scenario from a seed (the `sim_random` test and `make sim` run
//!   thousands of them).
//!
//! Invariants checked (docs/PROTOCOL.md, "The simulator's contract"):
//! 1. No event a client saw is lost or changed: a stream resumed anywhere continues after the
//!    client's last event id, its log holds what the client saw, and events arrive in order.
//! 2. No acknowledged session is lost while fewer than R of its holders died (a session whose
//!    every holder was dead at some instant may be lost; that is counted, not failed).
//! 3. No acknowledged state change is undone.
//! 4. At most one node owns a session at any epoch.
//! 5. After a heal, every session has one owner and its R − 1 replicas hold its latest copy,
//!    within a bound (`Op::AssertConverged`); every session is served again
//!    (`Op::AssertServed`).
//!
//! [`Membership`]: mcp_cluster::membership::Membership

pub mod client;
pub mod links;
pub mod random;
mod world;

pub use links::{Faults, Idx};
pub use world::{Op, Report, SimConfig, World, addr};
