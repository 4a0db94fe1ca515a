//! The gossip socket: plain UDP, apart from the QUIC endpoint, owned by the membership's
//! thread, every packet sealed with the cluster's gossip key ([`super::seal`]).
//!
//! Why not QUIC datagrams: a datagram on a peer connection is sent and received by that
//! connection's tasks in the node's runtime, behind the client connections' tasks, and shares
//! the connection's congestion window and packet scheduling with the frames. A probe must
//! not wait for either (`docs/PROTOCOL.md`, "The failure detector under load").
//!
//! A node's gossip socket is at its peer address's port + [`GOSSIP_PORT_OFFSET`] (same IP),
//! so a peer's gossip address follows from its identity and no new field goes on the wire.

use std::net::{SocketAddr, UdpSocket};

use super::seal::{GossipKey, OVERHEAD};
use super::{Config, PeerTls, Receivers, Transport, TransportError};

/// A node's gossip port is its peer (QUIC) port plus this.
pub const GOSSIP_PORT_OFFSET: u16 = 1;
/// Largest datagram read (a foca packet is at most `max_packet_size`, ≤ 1400 by default).
pub(crate) const MAX_DATAGRAM: usize = 65_535;
/// Port pairs tried when the peer port is 0 (any free pair).
const PAIR_ATTEMPTS: usize = 32;

/// Where a member's gossip socket is, given its identity's address; `None` past port 65535.
pub fn gossip_addr(peer: SocketAddr) -> Option<SocketAddr> {
    let port = peer.port().checked_add(GOSSIP_PORT_OFFSET)?;
    Some(SocketAddr::new(peer.ip(), port))
}

/// A bound gossip socket and its key, not yet attached to a runtime (the membership's
/// driver does that on its own thread).
#[derive(Debug)]
pub struct GossipSocket {
    pub(crate) socket: UdpSocket,
    pub(crate) key: GossipKey,
    local: SocketAddr,
}

impl GossipSocket {
    /// Binds `addr` (non-blocking), asking the kernel for `buffer_bytes` of send and
    /// receive buffer.
    pub fn bind(
        addr: SocketAddr,
        key: GossipKey,
        buffer_bytes: usize,
    ) -> Result<Self, TransportError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let io = |what| move |e| TransportError::Io(what, e);
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(io("gossip socket"))?;
        let _ = s.set_recv_buffer_size(buffer_bytes);
        let _ = s.set_send_buffer_size(buffer_bytes);
        s.bind(&addr.into()).map_err(io("gossip bind"))?;
        s.set_nonblocking(true).map_err(io("gossip socket"))?;
        let socket: UdpSocket = s.into();
        let local = socket.local_addr().map_err(io("gossip local address"))?;
        Ok(Self { socket, key, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The largest payload a gossip packet can carry here.
    pub fn max_payload(&self) -> usize {
        MAX_DATAGRAM - OVERHEAD
    }
}

/// Binds the QUIC endpoint at `config.bind` and the gossip socket beside it (port +
/// [`GOSSIP_PORT_OFFSET`]). With port 0, free pairs of ports are tried until both bind.
/// Must run inside a tokio runtime (the endpoint's tasks run there).
pub fn bind_with_gossip(
    config: Config,
    tls: &PeerTls,
    key: GossipKey,
) -> Result<(Transport, Receivers, GossipSocket), TransportError> {
    let buffer = config.udp_buffer_bytes;
    if config.bind.port() != 0 {
        let at = gossip_addr(config.bind).ok_or(TransportError::Config(
            "the peer port must be below 65535 (gossip uses the next port)",
        ))?;
        let gossip = GossipSocket::bind(at, key, buffer)?;
        let (t, rx) = Transport::bind(config, tls)?;
        return Ok((t, rx, gossip));
    }
    let mut last = None;
    for _ in 0..PAIR_ATTEMPTS {
        let gossip = GossipSocket::bind(SocketAddr::new(config.bind.ip(), 0), key.clone(), buffer)?;
        let Some(port) = gossip.local_addr().port().checked_sub(GOSSIP_PORT_OFFSET) else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let c = Config {
            bind: SocketAddr::new(config.bind.ip(), port),
            ..config.clone()
        };
        match Transport::bind(c, tls) {
            Ok((t, rx)) => return Ok((t, rx, gossip)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or(TransportError::Config(
        "no free pair of ports for the peer endpoint and its gossip socket",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gossip_port_follows_the_peer_port() {
        let a: SocketAddr = "10.0.0.1:7946".parse().expect("addr");
        assert_eq!(gossip_addr(a), Some("10.0.0.1:7947".parse().expect("addr")));
        assert_eq!(gossip_addr("10.0.0.1:65535".parse().expect("addr")), None);
    }
}
