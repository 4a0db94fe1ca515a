//! What the failure detector measures about itself: how late its timers run, how long a
//! probe waits for its ack, who it suspects, and who suspects it. The driver turns these
//! into metrics; the local health score ([`super::health`]) is fed from the same facts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Buf;
use foca::{Codec, Header, Message, State};

use super::NodeId;
use super::codec::GossipCodec;

/// One measurement, drained with [`super::Membership::poll_observation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A timer ran `late` after it was due (the earliest of those fired at once): how long
    /// this node's membership loop waited for the CPU.
    TimerLate(Duration),
    /// A direct probe's ack arrived `rtt` after the ping was queued (ping queued → ack
    /// handled: both nodes' loops and the network both ways). `in_time`: before the
    /// indirect probes would be sent.
    ProbeAck {
        /// Ping queued → ack handled.
        rtt: Duration,
        /// Within the (scaled) `probe_rtt`.
        in_time: bool,
    },
    /// This node's probe of `member` failed (no ack, direct or indirect): it is now
    /// suspected by this node, which will declare it down unless it refutes.
    Suspected(NodeId),
    /// A packet said this node is suspect (once per suspected incarnation): someone's probe
    /// of this node failed; foca refutes by raising the incarnation.
    SuspectedHere,
    /// A suspicion timer fired while this node was not healthy enough to trust its own
    /// verdict; the verdict was put off by `by`.
    VerdictDeferred {
        /// Who would have been declared down.
        member: NodeId,
        /// How much longer it has to refute.
        by: Duration,
    },
    /// The local health score changed (0 = healthy).
    Health(u32),
    /// A received packet waited this long between the socket (or connection) and the
    /// membership loop. Measured by the driver, not by [`super::Membership`].
    PacketWaited(Duration),
}

/// Observations not yet drained are dropped past this many (oldest first).
const MAX_QUEUED: usize = 4096;
/// Pings remembered while waiting for their ack (one probe at a time, plus stragglers).
const MAX_PINGS: usize = 16;

/// The observations waiting for the driver, and the pings waiting for their acks.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    queue: VecDeque<Observation>,
    pings: VecDeque<(SocketAddr, u8, Instant)>,
    /// The highest incarnation of this node that a packet said was suspect.
    suspected_at: Option<(NodeId, u16)>,
}

impl Observer {
    pub(crate) fn push(&mut self, o: Observation) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
        }
        self.queue.push_back(o);
    }

    pub(crate) fn pop(&mut self) -> Option<Observation> {
        self.queue.pop_front()
    }

    /// A packet is leaving at `now`: remember pings.
    pub(crate) fn sent(&mut self, data: &[u8], now: Instant) {
        if let Ok(h) = GossipCodec.decode_header(data)
            && let Message::Ping(probe) = h.message
        {
            if self.pings.len() >= MAX_PINGS {
                self.pings.pop_front();
            }
            self.pings.push_back((h.dst.addr, probe, now));
        }
    }

    /// A packet arrived at `now` for `me`. Returns the direct ack's RTT if it is one, and
    /// whether the packet says `me` is suspect (the first time for that incarnation).
    pub(crate) fn received(
        &mut self,
        data: &[u8],
        me: NodeId,
        now: Instant,
    ) -> (Option<Duration>, bool) {
        let mut buf = data;
        let Ok(h) = GossipCodec.decode_header(&mut buf) else {
            return (None, false);
        };
        let rtt = match h.message {
            Message::Ack(probe) => self.ack(h.src.addr, probe, now),
            _ => None,
        };
        (rtt, self.suspects_me(&h, buf, me))
    }

    fn ack(&mut self, from: SocketAddr, probe: u8, now: Instant) -> Option<Duration> {
        let at = self
            .pings
            .iter()
            .position(|(a, p, _)| *a == from && *p == probe)?;
        let (_, _, sent) = self.pings.remove(at)?;
        Some(now.saturating_duration_since(sent))
    }

    /// Whether the updates carried after `h` say `me` is suspect at an incarnation not
    /// seen suspected before.
    fn suspects_me(&mut self, h: &Header<NodeId>, mut buf: &[u8], me: NodeId) -> bool {
        if matches!(h.message, Message::Broadcast) || buf.remaining() < 2 {
            return false;
        }
        let count = buf.get_u16();
        for _ in 0..count {
            let Ok(m) = GossipCodec.decode_member(&mut buf) else {
                return false;
            };
            if *m.id() == me && m.state() == State::Suspect {
                let inc = m.incarnation();
                let new = match self.suspected_at {
                    Some((id, seen)) if id == me => inc > seen,
                    _ => true,
                };
                if new {
                    self.suspected_at = Some((me, inc));
                }
                return new;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use foca::Member;

    fn id(port: u16) -> NodeId {
        NodeId::new(SocketAddr::from(([10, 0, 0, 1], port)), 1)
    }

    fn packet(
        src: NodeId,
        dst: NodeId,
        message: Message<NodeId>,
        updates: &[Member<NodeId>],
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let h = Header {
            src,
            src_incarnation: 0,
            dst,
            message,
        };
        GossipCodec.encode_header(&h, &mut buf).expect("header");
        buf.put_u16(updates.len() as u16);
        for m in updates {
            GossipCodec.encode_member(m, &mut buf).expect("member");
        }
        buf
    }

    #[test]
    fn an_ack_is_matched_to_its_ping() {
        let (me, peer) = (id(1), id(2));
        let t0 = Instant::now();
        let mut o = Observer::default();
        o.sent(&packet(me, peer, Message::Ping(7), &[]), t0);
        let other = packet(peer, me, Message::Ack(6), &[]);
        assert_eq!(o.received(&other, me, t0), (None, false), "another probe");
        let ack = packet(peer, me, Message::Ack(7), &[]);
        let later = t0 + Duration::from_millis(3);
        assert_eq!(
            o.received(&ack, me, later),
            (Some(Duration::from_millis(3)), false)
        );
        assert_eq!(o.received(&ack, me, later), (None, false), "counted once");
    }

    #[test]
    fn a_suspicion_of_this_node_counts_once_per_incarnation() {
        let (me, peer) = (id(1), id(2));
        let now = Instant::now();
        let mut o = Observer::default();
        let s0 = packet(
            peer,
            me,
            Message::Gossip,
            &[Member::new(me, 0, State::Suspect)],
        );
        assert!(o.received(&s0, me, now).1);
        assert!(!o.received(&s0, me, now).1, "the same suspicion relayed");
        let alive = packet(
            peer,
            me,
            Message::Gossip,
            &[Member::new(me, 1, State::Alive)],
        );
        assert!(!o.received(&alive, me, now).1);
        let s1 = packet(
            peer,
            me,
            Message::Ping(1),
            &[
                Member::new(peer, 0, State::Alive),
                Member::new(me, 1, State::Suspect),
            ],
        );
        assert!(o.received(&s1, me, now).1);
        assert_eq!(o.received(b"garbage", me, now), (None, false));
    }
}
