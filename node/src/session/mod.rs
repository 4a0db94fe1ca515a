//! Legacy (2025-11-25 and earlier) sessions: the registry, the per-session record and the
//! per-stream event logs used for `Last-Event-ID` resumption.
//!
//! A session is data, not a task: nothing runs for an idle session, and its record is what
//! the cluster will replicate.

mod copy;
mod id;
pub mod layer;
mod record;
mod registry;
mod stream;

pub use copy::{
    Gap, StateCopy, StreamCopy, UPSTREAM_SESSIONS_KEY, caps_with_upstreams, split_caps,
};
pub use id::SessionId;
pub use record::{ProtocolEra, ReplicaOf, Session, SessionState, UpstreamSession};
pub use registry::{Registry, RegistryFull};
pub use stream::{EventId, SSE_KEEPALIVE, StreamKind, StreamState};
