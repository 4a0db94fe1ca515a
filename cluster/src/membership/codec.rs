//! The gossip wire codec: foca's headers and member updates, big-endian.
//!
//! Layout (see `docs/PROTOCOL.md`, "Gossip packets"):
//! - `NodeId`: `family: u8` (4 or 6), IP (4 or 16 bytes), `port: u16`, `generation: u64`.
//! - `Header`: `src: NodeId`, `src_incarnation: u16`, `dst: NodeId`, `kind: u8`, then the
//!   kind's fields (`probe: u8`, and a `NodeId` for the indirect kinds).
//! - `Member`: `NodeId`, `incarnation: u16`, `state: u8` (0 alive, 1 suspect, 2 down).
//!
//! Decoding checks every length first: arbitrary bytes give an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};

use super::NodeId;

/// Why a gossip packet could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The packet ended inside a field.
    #[error("gossip packet truncated")]
    Truncated,
    /// The buffer given to the encoder was too small.
    #[error("gossip packet buffer full")]
    BufferFull,
    /// An address family other than 4 or 6.
    #[error("unknown address family {0}")]
    Family(u8),
    /// A message kind we do not know.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// A member state we do not know.
    #[error("unknown member state {0}")]
    State(u8),
}

/// foca's `Codec` for [`NodeId`] identities.
#[derive(Debug, Default, Clone, Copy)]
pub struct GossipCodec;

const NODE_ID_V6: usize = 1 + 16 + 2 + 8;

fn ensure(buf: &impl Buf, n: usize) -> Result<(), CodecError> {
    if buf.remaining() < n {
        Err(CodecError::Truncated)
    } else {
        Ok(())
    }
}

/// Writes a [`NodeId`]; also used by the metadata broadcasts.
pub(crate) fn put_id(id: &NodeId, buf: &mut impl BufMut) {
    match id.addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(id.addr.port());
    buf.put_u64(id.generation);
}

/// Reads a [`NodeId`] written by [`put_id`].
pub(crate) fn get_id(buf: &mut impl Buf) -> Result<NodeId, CodecError> {
    ensure(buf, 1)?;
    let ip = match buf.get_u8() {
        4 => {
            ensure(buf, 4 + 2 + 8)?;
            let mut o = [0u8; 4];
            buf.copy_to_slice(&mut o);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            ensure(buf, 16 + 2 + 8)?;
            let mut o = [0u8; 16];
            buf.copy_to_slice(&mut o);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        f => return Err(CodecError::Family(f)),
    };
    let port = buf.get_u16();
    let generation = buf.get_u64();
    Ok(NodeId::new(SocketAddr::new(ip, port), generation))
}

fn put_probe_with_id(buf: &mut impl BufMut, kind: u8, id: &NodeId, probe: u8) {
    buf.put_u8(kind);
    buf.put_u8(probe);
    put_id(id, buf);
}

impl foca::Codec<NodeId> for GossipCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        h: &Header<NodeId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        // The worst case: two ids, incarnation, kind, probe, a third id.
        if buf.remaining_mut() < 3 * NODE_ID_V6 + 2 + 2 {
            return Err(CodecError::BufferFull);
        }
        put_id(&h.src, &mut buf);
        buf.put_u16(h.src_incarnation);
        put_id(&h.dst, &mut buf);
        match &h.message {
            Message::Ping(p) => {
                buf.put_u8(0);
                buf.put_u8(*p);
            }
            Message::Ack(p) => {
                buf.put_u8(1);
                buf.put_u8(*p);
            }
            Message::PingReq {
                target,
                probe_number,
            } => {
                put_probe_with_id(&mut buf, 2, target, *probe_number);
            }
            Message::IndirectPing {
                origin,
                probe_number,
            } => {
                put_probe_with_id(&mut buf, 3, origin, *probe_number);
            }
            Message::IndirectAck {
                target,
                probe_number,
            } => {
                put_probe_with_id(&mut buf, 4, target, *probe_number);
            }
            Message::ForwardedAck {
                origin,
                probe_number,
            } => {
                put_probe_with_id(&mut buf, 5, origin, *probe_number);
            }
            Message::Announce => buf.put_u8(6),
            Message::Feed => buf.put_u8(7),
            Message::Gossip => buf.put_u8(8),
            Message::Broadcast => buf.put_u8(9),
            Message::TurnUndead => buf.put_u8(10),
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let src = get_id(&mut buf)?;
        ensure(&buf, 2)?;
        let src_incarnation = buf.get_u16();
        let dst = get_id(&mut buf)?;
        ensure(&buf, 1)?;
        let kind = buf.get_u8();
        let probe = |buf: &mut dyn Buf| -> Result<u8, CodecError> {
            if buf.remaining() < 1 {
                return Err(CodecError::Truncated);
            }
            Ok(buf.get_u8())
        };
        let message = match kind {
            0 => Message::Ping(probe(&mut buf)?),
            1 => Message::Ack(probe(&mut buf)?),
            2..=5 => {
                let probe_number = probe(&mut buf)?;
                let id = get_id(&mut buf)?;
                match kind {
                    2 => Message::PingReq {
                        target: id,
                        probe_number,
                    },
                    3 => Message::IndirectPing {
                        origin: id,
                        probe_number,
                    },
                    4 => Message::IndirectAck {
                        target: id,
                        probe_number,
                    },
                    _ => Message::ForwardedAck {
                        origin: id,
                        probe_number,
                    },
                }
            }
            6 => Message::Announce,
            7 => Message::Feed,
            8 => Message::Gossip,
            9 => Message::Broadcast,
            10 => Message::TurnUndead,
            k => return Err(CodecError::Kind(k)),
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        m: &Member<NodeId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        if buf.remaining_mut() < NODE_ID_V6 + 3 {
            return Err(CodecError::BufferFull);
        }
        put_id(m.id(), &mut buf);
        buf.put_u16(m.incarnation());
        buf.put_u8(match m.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let id = get_id(&mut buf)?;
        ensure(&buf, 3)?;
        let incarnation = buf.get_u16();
        let state = match buf.get_u8() {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            s => return Err(CodecError::State(s)),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;
    use proptest::prelude::*;

    fn id(port: u16, generation: u64) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, 1], port)), generation)
    }

    #[test]
    fn header_round_trips_every_kind() {
        let t = id(3, 9);
        let kinds = [
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: t,
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: t,
                probe_number: 4,
            },
            Message::IndirectAck {
                target: t,
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: t,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in kinds {
            let h = Header {
                src: id(1, 7),
                src_incarnation: 42,
                dst: id(2, 8),
                message,
            };
            let mut buf = Vec::new();
            GossipCodec.encode_header(&h, &mut buf).expect("encodes");
            let back = GossipCodec.decode_header(&buf[..]).expect("decodes");
            assert_eq!(back, h);
        }
    }

    #[test]
    fn member_round_trips_v6() {
        let m = Member::new(
            NodeId::new("[::1]:9".parse().expect("addr"), 1),
            3,
            State::Suspect,
        );
        let mut buf = Vec::new();
        GossipCodec.encode_member(&m, &mut buf).expect("encodes");
        assert_eq!(GossipCodec.decode_member(&buf[..]).expect("decodes"), m);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = GossipCodec.decode_header(&bytes[..]);
            let _ = GossipCodec.decode_member(&bytes[..]);
        }
    }
}
