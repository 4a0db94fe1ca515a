//! SWIM membership: who is in the cluster, who is alive, and what each
//! member says about itself (load, draining).
//!
//! Built on [foca](https://docs.rs/foca) (sans-IO SWIM with the
//! infection-style dissemination and suspicion extensions); this module adds
//! our identity ([`NodeId`]: address + generation), a hand-written wire
//! codec, versioned per-member metadata as custom broadcasts, a timer queue,
//! and LAN timers that detect a failure in under a second. Why foca and not
//! chitchat: `docs/PROTOCOL.md`, "Membership".

mod codec;
mod config;
mod health;
mod id;
mod meta;
mod node;
mod observe;
mod runtime;

pub use codec::{CodecError, GossipCodec};
pub use config::{Config, ConfigError};
pub use id::NodeId;
pub use meta::{MAX_NAME_LEN, MetaKey, MetaStore, NodeMeta};
pub use node::{MemberState, MemberView, Membership};
pub use observe::Observation;
pub use runtime::{Event, Transmit};

/// Why a membership call failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// foca refused a packet or a call (malformed packet, packet from
    /// ourselves, not connected, ...). Packets from the network may always
    /// produce this; the driver logs and goes on.
    #[error("swim: {0}")]
    Swim(#[from] foca::Error),
}
