//! What the session layer asks its driver to do, and its answers to local questions.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::id::SessionId;
use crate::wire::CustodyMsg;

/// Names a change that waits for its replicas (a new session, a state change): the driver
/// learns of it in [`Action::Settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Where a request for a session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Served here (owned, or just taken over).
    Local,
    /// Forwarded to this peer.
    Forward(SocketAddr),
    /// Nobody holds it: 404.
    NotFound,
    /// Ask again shortly: this node will take it over once its owner's lease ends, or it is
    /// being handed off.
    Wait,
    /// This node cannot reach a majority of its cluster: 503 (another node may serve it).
    NoQuorum,
    /// This node has not met its cluster yet: 503 rather than a wrong 404.
    Joining,
}

/// Why `initialize` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node drains.
    #[error("node is draining")]
    Draining,
    /// No majority: a session opened here could be a second owner's.
    #[error("this node cannot reach most of its cluster")]
    NoQuorum,
    /// `max_sessions`.
    #[error("session limit reached")]
    Full,
    /// Replication lags: acknowledgements are late or too many are outstanding.
    #[error("replication is behind")]
    Busy,
}

/// Why a session stopped being owned here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Another node owns a newer version (a take-over while this node was thought dead).
    Superseded,
    /// Handed to the successor (drain or rebalancing).
    HandedOff,
}

/// Why a session started being owned here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Its owner is gone and this node was its successor.
    TakenOver,
    /// Its owner handed it here.
    HandedIn,
}

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message to a peer.
    Send {
        /// The peer.
        to: SocketAddr,
        /// The message.
        msg: CustodyMsg,
    },
    /// An event may now be shown: write it to the stream's reader, if one is attached here.
    Deliver {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: u32,
        /// The event number.
        seq: u32,
        /// The JSON message.
        json: Bytes,
    },
    /// The stream ended and every event on it may be shown: end its reader after them.
    StreamEnded {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: u32,
    },
    /// A change named by a [`Ticket`] is held by every replica (`ok`), or never will be
    /// (the session was deleted or lost here).
    Settled {
        /// The ticket.
        ticket: Ticket,
        /// Whether it is durable.
        ok: bool,
    },
    /// The session is no longer owned here: end its readers (clients resume elsewhere) and
    /// drop its connection-bound state.
    Released {
        /// The session.
        session: SessionId,
        /// Who owns it now, when known.
        to: Option<SocketAddr>,
        /// Why.
        why: Release,
    },
    /// The session is owned here now.
    Acquired {
        /// The session.
        session: SessionId,
        /// Why.
        why: Acquire,
    },
    /// Tell this node's subscribers about a change (see [`crate::wire::CustodyMsg::Notify`]).
    Announce {
        /// Which change.
        event: u8,
        /// The resource URI for event 0.
        uri: String,
    },
}

/// Counters for metrics (monotonic, except the gauges named so).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Copies sent (one per replica).
    pub copies_sent: u64,
    /// Full copies among them.
    pub full_copies_sent: u64,
    /// Copies applied as a replica.
    pub copies_applied: u64,
    /// Deltas refused for a gap (then a `Resync` was sent).
    pub gaps: u64,
    /// Full copies sent again after a replica stayed silent (`retransmit`).
    pub retransmits: u64,
    /// Sessions taken over from a gone owner.
    pub takeovers: u64,
    /// Sessions handed off (drain or rebalancing), and received.
    pub handoffs_sent: u64,
    /// Sessions received by hand-off.
    pub handoffs_received: u64,
    /// Hand-offs that were rebalancing, not draining.
    pub rebalanced: u64,
    /// Sessions given up because another owner had a newer version.
    pub superseded: u64,
    /// `initialize` refused: busy (replication behind).
    pub refused_busy: u64,
    /// `initialize` refused: no quorum.
    pub refused_no_quorum: u64,
    /// Digests that did not match (an inventory followed).
    pub digest_mismatches: u64,
    /// Copies dropped by an inventory, a `Forget` or staleness.
    pub copies_dropped: u64,
    /// Copies refused because `max_copies` was reached.
    pub copies_refused: u64,
    /// Gauge: sessions owned here.
    pub owned: u64,
    /// Gauge: copies of other nodes' sessions held here.
    pub copies: u64,
    /// Gauge: owned sessions with copies not yet acknowledged by every replica.
    pub unacked: u64,
}
