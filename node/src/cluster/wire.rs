//! Peer messages of the session layer and their binary form: the body of one
//! `mcp_cluster::frame::Message` (its `kind` byte says which message).
//!
//! Integers are big-endian, lengths LEB128 varints. Decoding checks every length against what
//! is left and returns a [`WireError`] for anything malformed: it never panics (fuzzed by the
//! property test below). The layout is in docs/PROTOCOL.md, "Sessions across the cluster".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use crate::session::{StateCopy, StreamCopy};

/// Message kinds (the frame message's `kind`).
pub mod kind {
    /// [`super::Replicate`]: owner → replicas (and leaving owner → successor on hand-off).
    pub const REPLICATE: u8 = 1;
    /// [`super::PeerMsg::ReplicaAck`].
    pub const REPLICA_ACK: u8 = 2;
    /// [`super::Forward`]: a client request for a session held elsewhere.
    pub const FORWARD: u8 = 3;
    /// [`super::ForwardHead`]: status, headers and (for a complete body) the body.
    pub const FORWARD_HEAD: u8 = 4;
    /// [`super::PeerMsg::ForwardChunk`]: the next piece of a streamed (SSE) body.
    pub const FORWARD_CHUNK: u8 = 5;
    /// [`super::PeerMsg::ForwardCancel`]: the client went away.
    pub const FORWARD_CANCEL: u8 = 6;
    /// [`super::PeerMsg::Resync`]: a replica saw a gap and asks for a full copy.
    pub const RESYNC: u8 = 7;
    /// [`super::PeerMsg::Notify`]: a change announced to every node's subscribers.
    pub const NOTIFY: u8 = 8;
    /// [`super::PeerMsg::Forget`]: the session was deleted.
    pub const FORGET: u8 = 9;
    /// [`super::PeerMsg::Superseded`]: another node owns a newer version of the session.
    pub const SUPERSEDED: u8 = 10;
    /// [`super::PeerMsg::Digest`]: owner → every live peer, what it should hold.
    pub const DIGEST: u8 = 12;
    /// [`super::PeerMsg::InventoryRequest`]: a replica whose digest differs asks for the list.
    pub const INVENTORY_REQUEST: u8 = 13;
    /// [`super::PeerMsg::Inventory`]: part of that list.
    pub const INVENTORY: u8 = 14;
    /// [`super::PeerMsg::HandoffDeclined`]: a rebalancing hand-off the receiver did not take.
    /// (32-63 are the custody layer's, `mcp_custody::wire::kind`; docs/PROTOCOL.md.)
    pub const HANDOFF_DECLINED: u8 = 22;
    /// [`super::PeerMsg::ForwardStarted`]: owner → forwarding node, before running what may
    /// not run twice.
    pub const FORWARD_STARTED: u8 = 23;
    /// [`super::PeerMsg::ForwardGo`]: forwarding node → owner, the answer to it.
    pub const FORWARD_GO: u8 = 24;
}

/// Whether a [`PeerMsg::ForwardChunk`] ends its stream, and why: one byte, 0 (more follows),
/// 1 (ended: the client sees the end) or 2 (ended because the session moved: the relaying node
/// re-attaches the stream to the new owner). A node that knows only 0 and 1 reads 2 as an
/// end, so mixed versions during a rolling upgrade still end streams properly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEnd {
    /// More chunks follow.
    More,
    /// The stream ends.
    Ended,
    /// The stream ends because its session moved to another node.
    Moved,
}

impl ChunkEnd {
    fn to_byte(self) -> u8 {
        match self {
            Self::More => 0,
            Self::Ended => 1,
            Self::Moved => 2,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::More,
            2 => Self::Moved,
            _ => Self::Ended,
        }
    }

    /// Whether the stream ends here.
    pub fn is_end(self) -> bool {
        self != Self::More
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer message kind {kind}: {what}")]
pub struct WireError {
    /// The message kind.
    pub kind: u8,
    /// What was wrong.
    pub what: &'static str,
}

/// A session's copy sent to a replica (or to the successor on hand-off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicate {
    /// The session id.
    pub session: u128,
    /// Bumped at each change of owner; a copy with an older epoch is ignored.
    pub epoch: u32,
    /// The owner's copy number for this session: a delta must be the next after the last
    /// copy the replica applied, else it is a gap (a lost copy) and a full one is needed.
    pub seq: u64,
    /// The owner's peer address and generation.
    pub owner: SocketAddr,
    /// The owner's generation.
    pub owner_generation: u64,
    /// The replicas the owner chose, in order (the first live one takes over).
    pub replicas: Vec<SocketAddr>,
    /// Nonzero: answer with a `ReplicaAck` carrying it.
    pub token: u64,
    /// The receiver becomes the owner (drain hand-off).
    pub handoff: bool,
    /// A hand-off for balance (`balance.rs`), not a drain's: the receiver may decline it
    /// ([`PeerMsg::HandoffDeclined`]) when it owns its share already. Flag bit 4; an older
    /// node ignores it and takes every hand-off.
    pub rebalance: bool,
    /// The whole session (replace any copy) rather than what changed.
    pub full: bool,
    /// The durable state (always whole: it is small).
    pub state: StateCopy,
    /// Streams with events to add.
    pub streams: Vec<StreamCopy>,
}

/// A client request relayed to the node holding its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Chosen by the forwarding node; names the answer.
    pub req: u64,
    /// How many nodes forwarded it already (bounded).
    pub hop: u8,
    /// HTTP method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Request headers (hop-by-hop ones removed).
    pub headers: Vec<(String, Bytes)>,
    /// The body.
    pub body: Bytes,
}

/// The start of the answer to a [`Forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardHead {
    /// The request it answers.
    pub req: u64,
    /// HTTP status.
    pub status: u16,
    /// Response headers (hop-by-hop ones removed).
    pub headers: Vec<(String, Bytes)>,
    /// `true`: chunks follow, ended by one with `end`; `false`: `body` is all of it.
    pub streaming: bool,
    /// The whole body when not streaming.
    pub body: Bytes,
}

/// One peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    /// Session copy.
    Replicate(Box<Replicate>),
    /// A replica stored the copy carrying `token`.
    ReplicaAck {
        /// The session.
        session: u128,
        /// The copy's token.
        token: u64,
    },
    /// The receiver of a rebalancing hand-off (`Replicate` with `rebalance`) did not take it:
    /// it owns its share already. The sender keeps the session.
    HandoffDeclined {
        /// The session.
        session: u128,
        /// The hand-off's token.
        token: u64,
    },
    /// A relayed request.
    Forward(Box<Forward>),
    /// Its answer's head.
    ForwardHead(Box<ForwardHead>),
    /// A body chunk of a streamed answer; `end` closes it.
    ForwardChunk {
        /// The request.
        req: u64,
        /// Chunk number, from 0: a gap (chunks lost with a failed connection) ends the
        /// relay, which re-attaches the stream with `Last-Event-ID` (`http/reattach.rs`).
        seq: u32,
        /// Whether this is the last chunk, and why.
        end: ChunkEnd,
        /// Bytes (may be empty when `end`).
        data: Bytes,
    },
    /// The forwarding node's client went away: stop the answer.
    ForwardCancel {
        /// The request.
        req: u64,
    },
    /// The owner is about to run something in the request that must not run twice (a
    /// `tools/call` of a tool not marked safe to repeat, `http/repeat.rs`) and waits for
    /// [`PeerMsg::ForwardGo`]: from then on the forwarding node does not send the request
    /// again if the owner dies, it tells the client the outcome is unknown.
    ForwardStarted {
        /// The request.
        req: u64,
    },
    /// The forwarding node noted [`PeerMsg::ForwardStarted`]: run it.
    ForwardGo {
        /// The request.
        req: u64,
    },
    /// Send a full copy of this session.
    Resync {
        /// The session.
        session: u128,
    },
    /// Announce a change to local subscribers (0 resource updated, 1 tools, 2 prompts, 3
    /// resources list changed).
    Notify {
        /// Which change.
        event: u8,
        /// The resource URI for event 0.
        uri: String,
    },
    /// The session ended (DELETE): drop the copy.
    Forget {
        /// The session.
        session: u128,
    },
    /// The sender owns the session at `epoch`, newer than the receiver's claim: the receiver
    /// stops owning it.
    Superseded {
        /// The session.
        session: u128,
        /// The sender's epoch.
        epoch: u32,
    },
    /// What the receiver should hold of the sender's sessions: how many copies, and an XOR
    /// of a hash of `(session, epoch)` over them (`super::digest`). Sent every digest
    /// period instead of refreshing each session, so idle sessions cost no peer traffic.
    Digest {
        /// The sender's generation (copies of an earlier process at its address differ).
        generation: u64,
        /// Copies.
        count: u64,
        /// XOR of their hashes.
        hash: u64,
    },
    /// The receiver's digest differs from the sender's: list what the sender should hold.
    InventoryRequest,
    /// Part of that list: `(session, epoch)` of each session the receiver owns and copies to
    /// the sender; `last` ends it.
    Inventory {
        /// The sender's generation.
        generation: u64,
        /// `(session, epoch)`.
        entries: Vec<(u128, u32)>,
        /// The last part.
        last: bool,
    },
}

impl PeerMsg {
    /// The frame message kind.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Replicate(_) => kind::REPLICATE,
            Self::ReplicaAck { .. } => kind::REPLICA_ACK,
            Self::HandoffDeclined { .. } => kind::HANDOFF_DECLINED,
            Self::Forward(_) => kind::FORWARD,
            Self::ForwardHead(_) => kind::FORWARD_HEAD,
            Self::ForwardChunk { .. } => kind::FORWARD_CHUNK,
            Self::ForwardCancel { .. } => kind::FORWARD_CANCEL,
            Self::ForwardStarted { .. } => kind::FORWARD_STARTED,
            Self::ForwardGo { .. } => kind::FORWARD_GO,
            Self::Resync { .. } => kind::RESYNC,
            Self::Notify { .. } => kind::NOTIFY,
            Self::Forget { .. } => kind::FORGET,
            Self::Superseded { .. } => kind::SUPERSEDED,
            Self::Digest { .. } => kind::DIGEST,
            Self::InventoryRequest => kind::INVENTORY_REQUEST,
            Self::Inventory { .. } => kind::INVENTORY,
        }
    }

    /// The frame message.
    pub fn to_message(&self) -> mcp_cluster::frame::Message {
        mcp_cluster::frame::Message::new(self.kind(), self.encode())
    }

    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        match self {
            Self::Replicate(r) => {
                w.u128(r.session);
                w.u32(r.epoch);
                w.u64(r.seq);
                w.addr(r.owner);
                w.u64(r.owner_generation);
                w.len(r.replicas.len());
                for a in &r.replicas {
                    w.addr(*a);
                }
                w.u64(r.token);
                w.u8(u8::from(r.handoff)
                    | (u8::from(r.full) << 1)
                    | (u8::from(r.state.principal.is_some()) << 2)
                    | (u8::from(r.state.held_streams.is_some()) << 3)
                    | (u8::from(r.rebalance) << 4));
                let s = &r.state;
                w.u8(s.version);
                w.u8(u8::from(s.initialized));
                // Upstream sessions ride in the capabilities (session::caps_with_upstreams), so
                // a node that predates them keeps them unread.
                w.str(&crate::session::caps_with_upstreams(&s.caps, &s.upstreams));
                w.u8(s.log_level);
                w.len(s.subscriptions.len());
                for sub in &s.subscriptions {
                    w.str(sub);
                }
                w.u32(s.next_stream);
                w.u64(s.next_request as u64);
                if let Some(p) = &s.principal {
                    w.0.extend_from_slice(p);
                }
                if let Some(held) = &s.held_streams {
                    w.len(held.len());
                    for id in held {
                        w.u32(*id);
                    }
                }
                w.len(r.streams.len());
                for st in &r.streams {
                    w.u32(st.id);
                    w.u8(st.kind | (u8::from(st.finished) << 1));
                    w.u32(st.next_seq);
                    w.len(st.events.len());
                    for (seq, ev) in &st.events {
                        w.u32(*seq);
                        w.bytes(ev);
                    }
                }
            }
            Self::ReplicaAck { session, token } | Self::HandoffDeclined { session, token } => {
                w.u128(*session);
                w.u64(*token);
            }
            Self::Forward(f) => {
                w.u64(f.req);
                w.u8(f.hop);
                w.str(&f.method);
                w.str(&f.target);
                w.headers(&f.headers);
                w.bytes(&f.body);
            }
            Self::ForwardHead(h) => {
                w.u64(h.req);
                w.u16(h.status);
                w.headers(&h.headers);
                w.u8(u8::from(h.streaming));
                w.bytes(&h.body);
            }
            Self::ForwardChunk {
                req,
                seq,
                end,
                data,
            } => {
                w.u64(*req);
                w.u32(*seq);
                w.u8(end.to_byte());
                w.bytes(data);
            }
            Self::ForwardCancel { req }
            | Self::ForwardStarted { req }
            | Self::ForwardGo { req } => w.u64(*req),
            Self::Resync { session } | Self::Forget { session } => w.u128(*session),
            Self::Notify { event, uri } => {
                w.u8(*event);
                w.str(uri);
            }
            Self::Superseded { session, epoch } => {
                w.u128(*session);
                w.u32(*epoch);
            }
            Self::Digest {
                generation,
                count,
                hash,
            } => {
                w.u64(*generation);
                w.u64(*count);
                w.u64(*hash);
            }
            Self::InventoryRequest => {}
            Self::Inventory {
                generation,
                entries,
                last,
            } => {
                w.u64(*generation);
                w.u8(u8::from(*last));
                w.len(entries.len());
                for (session, epoch) in entries {
                    w.u128(*session);
                    w.u32(*epoch);
                }
            }
        }
        w.0
    }

    /// Decodes a message of `kind` from `body`.
    pub fn decode(kind: u8, body: &Bytes) -> Result<Self, WireError> {
        let mut r = Reader {
            buf: body,
            pos: 0,
            kind,
        };
        let msg = match kind {
            kind::REPLICATE => {
                let session = r.u128()?;
                let epoch = r.u32()?;
                let seq = r.u64()?;
                let owner = r.addr()?;
                let owner_generation = r.u64()?;
                let n = r.count(7)?;
                let mut replicas = Vec::with_capacity(n);
                for _ in 0..n {
                    replicas.push(r.addr()?);
                }
                let token = r.u64()?;
                let flags = r.u8()?;
                let version = r.u8()?;
                let initialized = r.u8()? != 0;
                let (caps, upstreams) = crate::session::split_caps(r.string()?).map_err(|e| {
                    tracing::debug!(error = %e, "a copy's upstream sessions are malformed");
                    r.err("malformed upstream sessions")
                })?;
                let mut state = StateCopy {
                    version,
                    initialized,
                    caps,
                    upstreams,
                    log_level: r.u8()?,
                    subscriptions: {
                        let n = r.count(1)?;
                        let mut v = Vec::with_capacity(n);
                        for _ in 0..n {
                            v.push(r.string()?);
                        }
                        v
                    },
                    next_stream: r.u32()?,
                    next_request: r.u64()? as i64,
                    principal: None,
                    held_streams: None,
                };
                if flags & 4 != 0 {
                    state.principal = Some(r.array::<32>()?);
                }
                if flags & 8 != 0 {
                    let n = r.count(4)?;
                    let mut held = Vec::with_capacity(n);
                    for _ in 0..n {
                        held.push(r.u32()?);
                    }
                    state.held_streams = Some(held);
                }
                let n = r.count(10)?;
                let mut streams = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.u32()?;
                    let k = r.u8()?;
                    let next_seq = r.u32()?;
                    let m = r.count(5)?;
                    let mut events = Vec::with_capacity(m);
                    for _ in 0..m {
                        events.push((r.u32()?, r.bytes()?));
                    }
                    streams.push(StreamCopy {
                        id,
                        kind: k & 1,
                        finished: k & 2 != 0,
                        next_seq,
                        events,
                    });
                }
                Self::Replicate(Box::new(Replicate {
                    session,
                    epoch,
                    seq,
                    owner,
                    owner_generation,
                    replicas,
                    token,
                    handoff: flags & 1 != 0,
                    rebalance: flags & 16 != 0,
                    full: flags & 2 != 0,
                    state,
                    streams,
                }))
            }
            kind::REPLICA_ACK => Self::ReplicaAck {
                session: r.u128()?,
                token: r.u64()?,
            },
            kind::HANDOFF_DECLINED => Self::HandoffDeclined {
                session: r.u128()?,
                token: r.u64()?,
            },
            kind::FORWARD => Self::Forward(Box::new(Forward {
                req: r.u64()?,
                hop: r.u8()?,
                method: r.string()?,
                target: r.string()?,
                headers: r.headers()?,
                body: r.bytes()?,
            })),
            kind::FORWARD_HEAD => Self::ForwardHead(Box::new(ForwardHead {
                req: r.u64()?,
                status: r.u16()?,
                headers: r.headers()?,
                streaming: r.u8()? != 0,
                body: r.bytes()?,
            })),
            kind::FORWARD_CHUNK => Self::ForwardChunk {
                req: r.u64()?,
                seq: r.u32()?,
                end: ChunkEnd::from_byte(r.u8()?),
                data: r.bytes()?,
            },
            kind::FORWARD_CANCEL => Self::ForwardCancel { req: r.u64()? },
            kind::FORWARD_STARTED => Self::ForwardStarted { req: r.u64()? },
            kind::FORWARD_GO => Self::ForwardGo { req: r.u64()? },
            kind::RESYNC => Self::Resync { session: r.u128()? },
            kind::NOTIFY => Self::Notify {
                event: r.u8()?,
                uri: r.string()?,
            },
            kind::FORGET => Self::Forget { session: r.u128()? },
            kind::SUPERSEDED => Self::Superseded {
                session: r.u128()?,
                epoch: r.u32()?,
            },
            kind::DIGEST => Self::Digest {
                generation: r.u64()?,
                count: r.u64()?,
                hash: r.u64()?,
            },
            kind::INVENTORY_REQUEST => Self::InventoryRequest,
            kind::INVENTORY => {
                let generation = r.u64()?;
                let last = r.u8()? != 0;
                let n = r.count(20)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((r.u128()?, r.u32()?));
                }
                Self::Inventory {
                    generation,
                    entries,
                    last,
                }
            }
            _ => return Err(r.err("unknown kind")),
        };
        if r.pos != body.len() {
            return Err(r.err("trailing bytes"));
        }
        Ok(msg)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, mut n: usize) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn addr(&mut self, a: SocketAddr) {
        match a.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.0.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.0.extend_from_slice(&ip.octets());
            }
        }
        self.u16(a.port());
    }
    fn headers(&mut self, h: &[(String, Bytes)]) {
        self.len(h.len());
        for (k, v) in h {
            self.str(k);
            self.bytes(v);
        }
    }
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    kind: u8,
}

impl Reader<'_> {
    fn err(&self, what: &'static str) -> WireError {
        WireError {
            kind: self.kind,
            what,
        }
    }
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_be_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, WireError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| self.err("length too large"));
            }
        }
        Err(self.err("length varint too long"))
    }
    /// A count of items each at least `min_item` bytes long: refused when the rest of the
    /// message cannot hold them (no allocation from a forged count).
    fn count(&mut self, min_item: usize) -> Result<usize, WireError> {
        let n = self.len()?;
        if n.saturating_mul(min_item) > self.buf.len() - self.pos {
            return Err(self.err("count exceeds the message"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Bytes, WireError> {
        let n = self.len()?;
        if self.buf.len() - self.pos < n {
            return Err(self.err("truncated"));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }
    fn string(&mut self) -> Result<String, WireError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }
    fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(self.err("bad address family")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    fn headers(&mut self) -> Result<Vec<(String, Bytes)>, WireError> {
        let n = self.count(2)?;
        let mut h = Vec::with_capacity(n);
        for _ in 0..n {
            h.push((self.string()?, self.bytes()?));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<PeerMsg> {
        vec![
            PeerMsg::Replicate(Box::new(Replicate {
                session: u128::MAX - 7,
                epoch: 3,
                seq: 12,
                owner: "10.0.0.1:7946".parse().expect("addr"),
                owner_generation: 1_700_000_000_000,
                replicas: vec!["[::1]:7000".parse().expect("addr")],
                token: 9,
                handoff: true,
                rebalance: true,
                full: true,
                state: StateCopy {
                    version: 2,
                    initialized: true,
                    caps: "{\"sampling\":{}}".into(),
                    log_level: 4,
                    subscriptions: vec!["file:///a".into(), "file:///b".into()],
                    next_stream: 5,
                    next_request: -2,
                    principal: Some([7; 32]),
                    held_streams: Some(vec![4]),
                    upstreams: vec![crate::session::UpstreamSession {
                        upstream: "everything".into(),
                        id: "7f9c-session".into(),
                        version: "2025-11-25".into(),
                        level: Some(3),
                        last_event: Some("ev-9".into()),
                    }],
                },
                streams: vec![StreamCopy {
                    id: 4,
                    kind: 1,
                    finished: true,
                    next_seq: 3,
                    events: vec![(1, Bytes::from_static(b"id: 4-1\ndata: {}\n\n"))],
                }],
            })),
            PeerMsg::HandoffDeclined {
                session: 7,
                token: u64::MAX,
            },
            PeerMsg::ReplicaAck {
                session: 1,
                token: 2,
            },
            PeerMsg::Forward(Box::new(Forward {
                req: 77,
                hop: 1,
                method: "POST".into(),
                target: "/mcp".into(),
                headers: vec![("mcp-session-id".into(), Bytes::from_static(b"ab"))],
                body: Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}"),
            })),
            PeerMsg::ForwardHead(Box::new(ForwardHead {
                req: 77,
                status: 200,
                headers: vec![(
                    "content-type".into(),
                    Bytes::from_static(b"text/event-stream"),
                )],
                streaming: true,
                body: Bytes::new(),
            })),
            PeerMsg::ForwardChunk {
                req: 77,
                seq: 4,
                end: ChunkEnd::More,
                data: Bytes::from_static(b"data: x\n\n"),
            },
            PeerMsg::ForwardChunk {
                req: 77,
                seq: 5,
                end: ChunkEnd::Moved,
                data: Bytes::new(),
            },
            PeerMsg::ForwardChunk {
                req: 77,
                seq: 6,
                end: ChunkEnd::Ended,
                data: Bytes::new(),
            },
            PeerMsg::ForwardCancel { req: 77 },
            PeerMsg::ForwardStarted { req: 78 },
            PeerMsg::ForwardGo { req: u64::MAX },
            PeerMsg::Resync { session: 5 },
            PeerMsg::Notify {
                event: 0,
                uri: "test://r".into(),
            },
            PeerMsg::Forget { session: 6 },
            PeerMsg::Superseded {
                session: 7,
                epoch: 2,
            },
            PeerMsg::Digest {
                generation: 1_700_000_000_000,
                count: 3,
                hash: u64::MAX - 1,
            },
            PeerMsg::InventoryRequest,
            PeerMsg::Inventory {
                generation: 9,
                entries: vec![(u128::MAX, 4), (1, 0)],
                last: true,
            },
        ]
    }

    #[test]
    fn a_chunk_end_byte_reads_as_an_end_unless_zero() {
        // Old nodes read `end != 0`: "moved" (2) still ends the stream there.
        assert_eq!(ChunkEnd::from_byte(0), ChunkEnd::More);
        assert_eq!(ChunkEnd::from_byte(1), ChunkEnd::Ended);
        assert_eq!(ChunkEnd::from_byte(2), ChunkEnd::Moved);
        assert_eq!(ChunkEnd::from_byte(200), ChunkEnd::Ended);
        for end in [ChunkEnd::More, ChunkEnd::Ended, ChunkEnd::Moved] {
            assert_eq!(ChunkEnd::from_byte(end.to_byte()), end);
            assert_eq!(end.to_byte() != 0, end.is_end());
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let body = Bytes::from(m.encode());
            assert_eq!(PeerMsg::decode(m.kind(), &body), Ok(m));
        }
    }

    /// The session layer that is to replace `peers.rs` (`mcp-custody`, docs/ARCHITECTURE.md
    /// "Custody into the node: the plan") speaks on the same links, and during a rolling
    /// upgrade a node of one layer receives the other's messages: none of its messages may
    /// decode as one of the node's (before its kinds moved to 32-63, its `Resync` was the
    /// node's byte for byte), and none of the node's kinds may be routed to it.
    #[test]
    fn custody_messages_are_never_read_as_the_nodes() {
        use mcp_custody::wire::{CustodyMsg, kind::is_custody};
        for m in mcp_custody::wire::samples() {
            let body = Bytes::from(m.encode());
            match PeerMsg::decode(m.kind(), &body) {
                Err(e) => assert_eq!(e.what, "unknown kind", "{m:?}"),
                Ok(ours) => panic!("custody's {m:?} decoded as the node's {ours:?}"),
            }
        }
        for k in (0..=u8::MAX).filter(|k| is_custody(*k)) {
            assert!(PeerMsg::decode(k, &Bytes::new()).is_err(), "kind {k}");
        }
        for m in samples() {
            assert!(!is_custody(m.kind()), "{m:?}");
            let body = Bytes::from(m.encode());
            assert!(
                CustodyMsg::decode(m.kind(), &body).is_err(),
                "the node's {m:?} decoded as custody's"
            );
        }
    }

    #[test]
    fn upstream_sessions_ride_in_the_capabilities_so_older_nodes_read_the_copy() {
        let Some(PeerMsg::Replicate(mut r)) = samples().into_iter().next() else {
            panic!("the first sample is a Replicate");
        };
        let with = PeerMsg::Replicate(r.clone()).encode();
        let ups = std::mem::take(&mut r.state.upstreams);
        // Byte for byte the copy a node without upstream sessions sends when the client's
        // capabilities are that string: no new flag bit, no new field.
        let caps = crate::session::caps_with_upstreams(&r.state.caps, &ups);
        let mut old = r.clone();
        old.state.caps = caps.clone();
        assert_eq!(PeerMsg::Replicate(old).encode(), with);
        // What an older node reads as the client capabilities is still a JSON object with
        // the client's own.
        let seen: serde_json::Value = serde_json::from_str(&caps).expect("JSON");
        assert_eq!(seen["sampling"], serde_json::json!({}));
        assert_eq!(
            seen[crate::session::UPSTREAM_SESSIONS_KEY][0]["id"],
            "7f9c-session"
        );
        // A malformed entry (an older node cannot make one, a peer bug could) is an error.
        r.state.caps = format!(
            r#"{{"{}":[{{"upstream":"u","id":""}}]}}"#,
            crate::session::UPSTREAM_SESSIONS_KEY
        );
        let bad = PeerMsg::Replicate(r).encode();
        assert!(PeerMsg::decode(kind::REPLICATE, &Bytes::from(bad)).is_err());
    }

    #[test]
    fn an_unbound_copy_is_encoded_as_before_principals_existed() {
        let Some(PeerMsg::Replicate(mut r)) = samples().into_iter().next() else {
            panic!("the first sample is a Replicate");
        };
        r.state.principal = None;
        r.state.held_streams = None;
        r.state.upstreams.clear();
        r.rebalance = false;
        let unbound = PeerMsg::Replicate(r.clone());
        let bytes = unbound.encode();
        // session 16, epoch 4, seq 8, owner 7, generation 8, one replica ([::1]) 1 + 19, token 8
        assert_eq!(bytes[71], 0b11, "handoff | full, no principal flag");
        // Layout of a node without auth: the flags byte has only bits 0-1, no principal bytes.
        r.state.principal = Some([1; 32]);
        let bound = PeerMsg::Replicate(r).encode();
        assert_eq!(bound.len(), bytes.len() + 32);
        let back = PeerMsg::decode(kind::REPLICATE, &Bytes::from(bytes)).expect("decodes");
        assert_eq!(back, unbound);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        for m in samples() {
            let body = m.encode();
            for cut in 0..body.len() {
                assert!(PeerMsg::decode(m.kind(), &Bytes::from(body[..cut].to_vec())).is_err());
            }
            let mut long = body.clone();
            long.push(0);
            assert!(PeerMsg::decode(m.kind(), &Bytes::from(long)).is_err());
        }
        assert!(PeerMsg::decode(200, &Bytes::new()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(kind in 0u8..32, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = PeerMsg::decode(kind, &Bytes::from(body));
        }

        #[test]
        fn corrupted_messages_never_panic(which in 0usize..10, at in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let m = &samples()[which];
            let mut body = m.encode();
            let i = at % body.len().max(1);
            if let Some(b) = body.get_mut(i) { *b = byte; }
            let _ = PeerMsg::decode(m.kind(), &Bytes::from(body));
        }
    }
}
