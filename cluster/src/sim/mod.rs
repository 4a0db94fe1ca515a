//! A deterministic simulator for membership: an in-memory network with
//! per-link drop and delay, partitions, virtual time, and a scripted list of
//! [`Operation`]s (after chitchat's simulator).
//!
//! Nothing here reads a clock: time advances from one event (a packet
//! arrival or a node's timer) to the next, so a 60 s scenario runs in a
//! fraction of a second and timed assertions are exact and repeatable.

mod net;
mod script;

pub use net::{Idx, Link, Network};
pub use script::{Expect, Operation, Outcome, Sim, addr};
