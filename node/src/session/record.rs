//! The session record: everything a legacy session needs between requests, kept compact (it
//! is held for every connected client and will be replicated to peers).

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::stream_queue;

use super::id::SessionId;
use super::stream::{EventId, StreamKind, StreamState};
use crate::jsonrpc::RequestId;
use crate::ratelimit::TokenBucket;

/// Negotiated legacy protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProtocolEra {
    /// 2025-03-26 (batches allowed, no priming events).
    V2025_03_26,
    /// 2025-06-18.
    V2025_06_18,
    /// 2025-11-25 (priming events, polling SSE).
    V2025_11_25,
}

impl ProtocolEra {
    /// Its index on the peer wire (oldest first).
    pub fn index(self) -> u8 {
        self as u8
    }
    /// From [`Self::index`].
    pub fn from_index(i: u8) -> Option<Self> {
        [Self::V2025_03_26, Self::V2025_06_18, Self::V2025_11_25]
            .get(usize::from(i))
            .copied()
    }
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
        }
    }
    /// Parses a legacy version string.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2025-03-26" => Some(Self::V2025_03_26),
            "2025-06-18" => Some(Self::V2025_06_18),
            "2025-11-25" => Some(Self::V2025_11_25),
            _ => None,
        }
    }
}

/// Mutable state of a session, behind its mutex.
#[derive(Debug)]
pub struct SessionState {
    /// Negotiated version.
    pub version: ProtocolEra,
    /// `notifications/initialized` was received.
    pub initialized: bool,
    /// Client capabilities from `initialize`, as compact JSON.
    pub client_capabilities: Box<str>,
    /// Minimum log level to send (index into the MCP level list).
    pub log_level: u8,
    /// Resource URIs subscribed with `resources/subscribe`.
    pub subscriptions: Vec<Box<str>>,
    /// Per-session rate limit.
    pub bucket: TokenBucket,
    /// Last request or stream activity, ms since node start.
    pub last_seen_ms: u64,
    /// Open and recently finished streams.
    pub streams: Vec<StreamState>,
    pub(super) next_stream: u32,
    pub(super) next_request: i64,
    /// Server→client requests awaiting the client's response.
    pending: Vec<(i64, oneshot::Sender<Result<Value, Value>>)>,
    /// Client requests in progress that `notifications/cancelled` may cancel.
    inflight: Vec<(RequestId, oneshot::Sender<()>)>,
    /// Bumped at each change of owner (failover, hand-off); peers ignore older copies.
    pub epoch: u32,
    /// Owner: the number of the last copy sent; replica: of the last copy applied.
    pub copy_seq: u64,
    /// The replicas the last copy went to; a different set gets a full copy.
    pub repl_to: Vec<std::net::SocketAddr>,
    /// Set on a replica's copy: who owns the session and whom it replicates to.
    pub replica_of: Option<Box<ReplicaOf>>,
    /// Events on this session's streams are held until its replicas acknowledge them
    /// (`cluster.durableEvents` with live replicas; set by the session layer at each copy).
    pub hold: bool,
    /// With `auth.enabled`: the principal (issuer + subject) that sent `initialize`; only its
    /// tokens may use the session. Durable: replicated with the session.
    pub principal: Option<Box<crate::auth::PrincipalId>>,
    /// The session's own sessions with upstreams (`sessions: perClient`), one per upstream it
    /// used; `None` (no allocation) until it uses one. Durable: replicated with the session.
    pub upstreams: Option<Box<Vec<UpstreamSession>>>,
}

/// A client session's own session with one session-based upstream (`sessions: perClient`):
/// what another node needs to continue it with the same `Mcp-Session-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSession {
    /// The upstream's configured name.
    pub upstream: Box<str>,
    /// The `Mcp-Session-Id` the upstream gave.
    pub id: Box<str>,
    /// The protocol version `initialize` negotiated (sent as `MCP-Protocol-Version`).
    pub version: Box<str>,
    /// The logging level set in it (index in the MCP level list), to set again in a new
    /// session when the upstream lost this one.
    pub level: Option<u8>,
    /// The id of the last event its standalone stream delivered (the upstream's `id:`, when it
    /// gives them: it can resume), sent as `Last-Event-ID` when the stream is opened again —
    /// by whichever node owns the client session then.
    pub last_event: Option<Box<str>>,
}

impl UpstreamSession {
    /// Longest upstream name, session id or version accepted from a peer.
    pub const MAX_FIELD: usize = 255;
    /// Most upstream sessions one client session holds (upstreams a node may configure are
    /// fewer in practice; a copy with more is refused).
    pub const MAX_PER_SESSION: usize = 256;
}

/// Where a replica's copy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOf {
    /// The owner's peer address.
    pub owner: std::net::SocketAddr,
    /// The owner's process generation (a restart at the same address is another owner).
    pub owner_generation: u64,
    /// The replicas the owner chose, in order: the first live one takes over.
    pub replicas: Vec<std::net::SocketAddr>,
}

/// Streams kept per session; finished ones beyond this are dropped oldest first.
pub(super) const MAX_STREAMS: usize = 16;

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The id.
    pub id: SessionId,
    /// The state.
    pub state: Mutex<SessionState>,
    /// Queued for replication (set by whoever changes the state, cleared by the replicator).
    pub dirty: std::sync::atomic::AtomicBool,
}

impl Session {
    /// A new session right after `initialize`.
    pub fn new(
        id: SessionId,
        version: ProtocolEra,
        client_capabilities: &Value,
        burst: u32,
        now_ms: u64,
    ) -> Self {
        let caps = serde_json::to_string(client_capabilities).unwrap_or_else(|_| "{}".into());
        Self {
            id,
            state: Mutex::new(SessionState {
                version,
                initialized: false,
                client_capabilities: caps.into_boxed_str(),
                log_level: 0,
                subscriptions: Vec::new(),
                bucket: TokenBucket::full(burst, now_ms),
                last_seen_ms: now_ms,
                streams: Vec::new(),
                next_stream: 1,
                next_request: 1,
                pending: Vec::new(),
                inflight: Vec::new(),
                epoch: 0,
                copy_seq: 0,
                repl_to: Vec::new(),
                replica_of: None,
                hold: false,
                principal: None,
                upstreams: None,
            }),
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl SessionState {
    /// The session's own session with upstream `name`, if it has one.
    pub fn upstream_session(&self, name: &str) -> Option<&UpstreamSession> {
        self.upstreams
            .as_ref()?
            .iter()
            .find(|u| &*u.upstream == name)
    }

    /// Keeps `entry` as the session's session with its upstream (replacing one held before).
    pub fn set_upstream_session(&mut self, entry: UpstreamSession) {
        let list = self.upstreams.get_or_insert_with(Default::default);
        match list.iter_mut().find(|u| u.upstream == entry.upstream) {
            Some(old) => *old = entry,
            None => list.push(entry),
        }
    }

    /// The session's upstream sessions, forgotten here (the session ended: they are ended
    /// upstream).
    pub fn take_upstream_sessions(&mut self) -> Vec<UpstreamSession> {
        self.upstreams.take().map(|b| *b).unwrap_or_default()
    }

    /// The session's upstream sessions, as a slice.
    pub fn upstream_sessions(&self) -> &[UpstreamSession] {
        self.upstreams.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Client capabilities as JSON.
    pub fn client_capabilities(&self) -> Value {
        serde_json::from_str(&self.client_capabilities).unwrap_or(Value::Null)
    }

    /// Opens a stream; returns its number.
    pub fn open_stream(&mut self, kind: StreamKind, live: Option<stream_queue::Sender>) -> u32 {
        let id = self.next_stream;
        self.next_stream = self.next_stream.saturating_add(1); // from a copy: any u32
        if self.streams.len() >= MAX_STREAMS
            // No reader: finished (its reader let go once nothing was held), or gone. A
            // finished stream whose reader still waits for its held answer stays.
            && let Some(pos) = self.streams.iter().position(|s| !s.is_live())
        {
            self.streams.remove(pos);
        }
        self.streams.push(StreamState::new(id, kind, live));
        id
    }

    /// The stream numbered `id`.
    pub fn stream_mut(&mut self, id: u32) -> Option<&mut StreamState> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// Sends a message on stream `id`.
    pub fn push(&mut self, id: u32, json: &[u8], log_capacity: usize) -> Option<EventId> {
        let hold = self.hold;
        self.stream_mut(id)
            .map(|s| s.append(json, log_capacity, hold))
    }

    /// Sends a message unrelated to any request on the session's standalone (GET) stream: the
    /// live one, else the newest unfinished one whose reader went away, where it is logged for
    /// a reconnect with `Last-Event-ID` to replay. Returns `false` if the client never opened a
    /// GET stream (the message is then dropped, as the transport allows).
    pub fn push_standalone(&mut self, json: &[u8], log_capacity: usize) -> bool {
        let hold = self.hold;
        let standalone = |s: &&mut StreamState| s.kind == StreamKind::Standalone && !s.finished;
        let live = self
            .streams
            .iter()
            .rposition(|s| s.kind == StreamKind::Standalone && s.is_live());
        let target = match live {
            Some(i) => self.streams.get_mut(i),
            None => self.streams.iter_mut().rev().find(standalone),
        };
        match target {
            Some(s) => {
                s.append(json, log_capacity, hold);
                true
            }
            None => false,
        }
    }

    /// Stops holding events: every held one goes to its reader now (no live replica is left
    /// to wait for). Returns how many were written.
    pub fn release_all(&mut self) -> u32 {
        self.hold = false;
        self.streams
            .iter_mut()
            .map(|s| s.release(u32::MAX))
            .fold(0, u32::saturating_add)
    }

    /// Releases the events up to `upto` on each listed stream (`(stream, upto)`: what a
    /// copy its replicas acknowledged carried). Returns how many were written to readers.
    pub fn release(&mut self, upto: &[(u32, u32)]) -> u32 {
        let mut written = 0u32;
        for &(id, seq) in upto {
            if let Some(s) = self.stream_mut(id) {
                written = written.saturating_add(s.release(seq));
            }
        }
        written
    }

    /// `(stream, highest event sent to the replicas)` of each stream holding events its
    /// replicas were sent: what the acknowledgement of the copy just taken releases.
    pub fn held_in_copy(&self) -> Vec<(u32, u32)> {
        self.streams
            .iter()
            .filter(|s| s.shown < s.repl_seq)
            .map(|s| (s.id, s.repl_seq))
            .collect()
    }

    /// Held events the logs evicted before their release (written then), since the last call.
    pub fn take_forced(&mut self) -> u32 {
        self.streams
            .iter_mut()
            .map(StreamState::take_forced)
            .fold(0, u32::saturating_add)
    }

    /// Whether any stream has a reader attached.
    pub fn has_live_stream(&self) -> bool {
        self.streams.iter().any(StreamState::is_live)
    }

    /// Registers a server→client request; returns its id and the receiver of the answer.
    pub fn new_client_request(&mut self) -> (i64, oneshot::Receiver<Result<Value, Value>>) {
        let id = self.next_request;
        self.next_request = self.next_request.saturating_add(1); // from a copy: any value
        let (tx, rx) = oneshot::channel();
        self.pending.retain(|(_, tx)| !tx.is_closed());
        self.pending.push((id, tx));
        (id, rx)
    }

    /// Delivers the client's answer to a server→client request; `false` if none was waiting.
    pub fn complete_client_request(
        &mut self,
        id: &RequestId,
        outcome: Result<Value, Value>,
    ) -> bool {
        let RequestId::Number(n) = id else {
            return false;
        };
        match self.pending.iter().position(|(pid, _)| pid == n) {
            Some(pos) => {
                let (_, tx) = self.pending.swap_remove(pos);
                tx.send(outcome).is_ok()
            }
            None => false,
        }
    }

    /// Registers a cancellable request.
    pub fn track_inflight(&mut self, id: RequestId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.inflight.retain(|(_, tx)| !tx.is_closed());
        self.inflight.push((id, tx));
        rx
    }

    /// Whether a cancellable request is in progress.
    pub fn has_inflight(&self) -> bool {
        self.inflight.iter().any(|(_, tx)| !tx.is_closed())
    }

    /// Forgets a finished request.
    pub fn untrack_inflight(&mut self, id: &RequestId) {
        self.inflight.retain(|(rid, _)| rid != id);
    }

    /// Cancels a request in progress (for `notifications/cancelled`).
    pub fn cancel_inflight(&mut self, id: &RequestId) -> bool {
        match self.inflight.iter().position(|(rid, _)| rid == id) {
            Some(pos) => {
                let (_, tx) = self.inflight.swap_remove(pos);
                tx.send(()).is_ok()
            }
            None => false,
        }
    }

    /// Approximate heap bytes held by this record beyond its fixed size.
    pub fn heap_bytes(&self) -> usize {
        self.client_capabilities.len()
            + self
                .subscriptions
                .iter()
                .map(|s| s.len() + 16)
                .sum::<usize>()
            + self.streams.capacity() * std::mem::size_of::<StreamState>()
            + self
                .streams
                .iter()
                .map(StreamState::log_bytes)
                .sum::<usize>()
            + self.pending.capacity() * 16
            + self.inflight.capacity() * 40
            + self.upstreams.as_ref().map_or(0, |list| {
                std::mem::size_of::<Vec<UpstreamSession>>()
                    + list.capacity() * std::mem::size_of::<UpstreamSession>()
                    + list
                        .iter()
                        .map(|u| u.upstream.len() + u.id.len() + u.version.len())
                        .sum::<usize>()
            })
    }
}
