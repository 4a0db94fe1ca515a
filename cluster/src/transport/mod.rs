//! The async shell: QUIC (quinn + rustls, mutual TLS from the cluster CA)
//! between peers, moving frames and gossip for the sans-IO parts.
//!
//! - One QUIC connection per peer pair carries frames. The node with the
//!   lower address decides which (the first one up; a later one is closed);
//!   the other node writes frames only on a connection the lower one has
//!   confirmed by opening its frame stream on it, so no frame is ever
//!   written on a connection that is then closed as a duplicate. That holds
//!   because a node dials only when it has no open connection to the peer,
//!   checked while it holds the peer's dial flag (`Peer::start_dialing`): the
//!   lower node replaces a connection the other dialed with a newer one it
//!   dialed, taking the newer one as proof that the older is dead there.
//! - One long-lived unidirectional stream per direction carries frames
//!   ([`crate::frame`]): a per-peer bounded [`crate::frame::Batcher`] feeds a
//!   sender task that writes whole frames and never waits for ACK-based
//!   completion (`stopped()`, `finish().await`), so a frame costs no ACK
//!   delay (25 ms by default) on the hot path.
//! - Gossip rides on QUIC datagrams (unreliable, like SWIM expects, and
//!   authenticated by the same mutual TLS); [`spawn_membership`] drives a
//!   [`crate::membership::Membership`] over them.
//!
//! Entry point: [`Transport::bind`].

mod config;
mod driver;
mod endpoint;
mod gossip_socket;
mod peer;
mod seal;
mod seeds;
mod tls;

pub use config::Config;
pub use driver::{
    DriverOptions, DriverThread, GossipLink, MembershipHandle, ObserveFn, spawn_membership,
};
pub use endpoint::{GossipPacket, Incoming, PeerStats, Receivers, Transport};
pub use gossip_socket::{GOSSIP_PORT_OFFSET, GossipSocket, bind_with_gossip, gossip_addr};
pub use seal::{GossipKey, SealError};
pub use seeds::Seeds;
pub use tls::{ALPN, LOCAL_SERVER_NAME, LocalCa, PeerTls};

/// Why the transport could not start or reach a peer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A PEM file did not parse (the file's role is named).
    #[error("{0}: {1}")]
    Pem(&'static str, String),
    /// A file or socket operation failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// rustls refused the certificates or settings.
    #[error("tls: {0}")]
    Tls(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The QUIC handshake or connection failed.
    #[error("quic connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A connection could not even be attempted (bad address, endpoint closed).
    #[error("quic connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The peer did not answer within `Config::dial_timeout`.
    #[error("peer did not answer in time")]
    Timeout,
    /// The settings cannot work.
    #[error("transport config: {0}")]
    Config(&'static str),
    /// Frame encoding state could not be created.
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
}

impl From<rustls::Error> for TransportError {
    fn from(e: rustls::Error) -> Self {
        Self::Tls(e.to_string())
    }
}
