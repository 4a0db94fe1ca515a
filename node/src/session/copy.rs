//! A session as it travels to replicas: the durable state (version, capabilities, log level,
//! subscriptions, counters) and the SSE event logs, whole or as what changed since the last
//! copy. Live parts (readers, pending server→client requests, in-flight cancellation) stay on
//! the owner: they belong to connections, which do not survive the owner anyway.
//!
//! [`StateCopy`] and [`StreamCopy`] are plain data; their binary form is the peer wire's
//! (`cluster::wire`), which depends on this module, never the other way.

use bytes::Bytes;

use super::id::SessionId;
use super::record::{ProtocolEra, Session, SessionState, UpstreamSession};
use super::stream::{StreamKind, StreamState};

/// The durable state of a legacy session, as replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCopy {
    /// Negotiated version (`ProtocolEra` as its index).
    pub version: u8,
    /// `notifications/initialized` was received.
    pub initialized: bool,
    /// Client capabilities (compact JSON).
    pub caps: String,
    /// Log level index.
    pub log_level: u8,
    /// Subscribed resource URIs.
    pub subscriptions: Vec<String>,
    /// Next stream number.
    pub next_stream: u32,
    /// Next server→client request id.
    pub next_request: i64,
    /// The principal the session is bound to (`auth.enabled`): SHA-256 of issuer and
    /// subject. Encoded only when set (flag bit 2 of the `Replicate` flags), so without auth
    /// the bytes are those of nodes that predate it, and a copy from such a node reads as
    /// unbound.
    pub principal: Option<[u8; 32]>,
    /// The streams the owner holds (flag bit 3): a replica drops the others, so a stream the
    /// owner evicted to open another (past `MAX_STREAMS`) goes on the replica too. Absent in
    /// a copy from a node that predates it.
    pub held_streams: Option<Vec<u32>>,
    /// The session's own upstream sessions (`sessions: perClient`). On the wire they travel
    /// inside `caps` ([`caps_with_upstreams`]), so a node that predates them keeps and passes
    /// them on unread.
    pub upstreams: Vec<UpstreamSession>,
}

/// The key under which a copy's `caps` carries the session's upstream sessions (a node strips
/// it from what a client declares in `initialize`, so no client can set it).
pub const UPSTREAM_SESSIONS_KEY: &str = "mcpcluster.dev/upstreamSessions";

/// `caps` (a JSON object) with `upstreams` under [`UPSTREAM_SESSIONS_KEY`] (any such key in
/// `caps` replaced); `caps` as it is when there are none. Caps that are not an object cannot
/// carry them (never the case: `initialize` refuses those), and are returned as they are.
pub fn caps_with_upstreams(caps: &str, upstreams: &[UpstreamSession]) -> String {
    if upstreams.is_empty() {
        return caps.to_owned();
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(caps) else {
        return caps.to_owned();
    };
    let list = upstreams
        .iter()
        .map(|u| {
            let mut e = serde_json::json!({
                "upstream": &*u.upstream,
                "id": &*u.id,
                "version": &*u.version,
            });
            if let Some(level) = u.level {
                e["level"] = level.into();
            }
            if let Some(last) = &u.last_event {
                e["lastEventId"] = (&**last).into();
            }
            e
        })
        .collect();
    map.insert(UPSTREAM_SESSIONS_KEY.into(), serde_json::Value::Array(list));
    serde_json::Value::Object(map).to_string()
}

/// Splits what [`caps_with_upstreams`] joined: the client capabilities without the key, and
/// the upstream sessions. A malformed entry is an error naming what is wrong.
pub fn split_caps(caps: String) -> Result<(String, Vec<UpstreamSession>), String> {
    if !caps.contains(UPSTREAM_SESSIONS_KEY) {
        return Ok((caps, Vec::new()));
    }
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(&caps) else {
        return Ok((caps, Vec::new()));
    };
    let Some(list) = map.remove(UPSTREAM_SESSIONS_KEY) else {
        return Ok((caps, Vec::new()));
    };
    let serde_json::Value::Array(list) = list else {
        return Err(format!("`{UPSTREAM_SESSIONS_KEY}` is not an array"));
    };
    if list.len() > UpstreamSession::MAX_PER_SESSION {
        return Err(format!(
            "{} upstream sessions (at most {})",
            list.len(),
            UpstreamSession::MAX_PER_SESSION
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let field = |name: &str| -> Result<Box<str>, String> {
            match e.get(name).and_then(serde_json::Value::as_str) {
                Some(s) if !s.is_empty() && s.len() <= UpstreamSession::MAX_FIELD => Ok(s.into()),
                _ => Err(format!(
                    "upstream session {i}: `{name}` is not a string of 1-{} bytes",
                    UpstreamSession::MAX_FIELD
                )),
            }
        };
        let level = match e.get("level") {
            None => None,
            Some(l) => match l.as_u64() {
                Some(l) if l < 8 => Some(l as u8),
                _ => return Err(format!("upstream session {i}: `level` is not 0-7")),
            },
        };
        let last_event = match e.get("lastEventId") {
            None => None,
            Some(_) => Some(field("lastEventId")?),
        };
        out.push(UpstreamSession {
            upstream: field("upstream")?,
            id: field("id")?,
            version: field("version")?,
            level,
            last_event,
        });
    }
    Ok((serde_json::Value::Object(map).to_string(), out))
}

/// One stream's replicated part: its identity and the events not yet sent to this replica
/// (all of its log in a full copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCopy {
    /// Stream number.
    pub id: u32,
    /// 0 standalone (GET), 1 response (POST).
    pub kind: u8,
    /// No more events will come.
    pub finished: bool,
    /// The owner's next event number after these events.
    pub next_seq: u32,
    /// `(seq, SSE event bytes)`, ascending.
    pub events: Vec<(u32, Bytes)>,
}

/// A delta did not continue the replica's copy (a lost message): it needs a full copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the copy has a gap; a full copy is needed")]
pub struct Gap;

fn kind_byte(k: StreamKind) -> u8 {
    match k {
        StreamKind::Standalone => 0,
        StreamKind::Response => 1,
    }
}

fn kind_of(b: u8) -> StreamKind {
    if b == 0 {
        StreamKind::Standalone
    } else {
        StreamKind::Response
    }
}

impl SessionState {
    /// The durable state.
    pub fn state_copy(&self) -> StateCopy {
        StateCopy {
            version: self.version.index(),
            initialized: self.initialized,
            caps: self.client_capabilities.to_string(),
            log_level: self.log_level,
            subscriptions: self.subscriptions.iter().map(|s| s.to_string()).collect(),
            next_stream: self.next_stream,
            next_request: self.next_request,
            principal: self.principal.as_ref().map(|p| p.0),
            held_streams: Some(self.streams.iter().map(|s| s.id).collect()),
            upstreams: self.upstream_sessions().to_vec(),
        }
    }

    /// The streams to send: all of them with their whole logs (`full`), else those with events
    /// or a state the replicas have not seen. Marks what it returns as sent.
    pub fn take_stream_copies(&mut self, full: bool) -> Vec<StreamCopy> {
        let mut out = Vec::new();
        for s in &mut self.streams {
            let new_events = s.next_seq.saturating_sub(1) > s.repl_seq;
            let news = full || new_events || !s.repl_known || (s.finished && !s.repl_finished);
            if !news {
                continue;
            }
            let after = if full { 0 } else { s.repl_seq };
            out.push(StreamCopy {
                id: s.id,
                kind: kind_byte(s.kind),
                finished: s.finished,
                next_seq: s.next_seq,
                events: s
                    .log
                    .iter()
                    .filter(|(seq, _)| *seq > after)
                    .cloned()
                    .collect(),
            });
            s.repl_seq = s.next_seq.saturating_sub(1);
            s.repl_known = true;
            s.repl_finished = s.finished;
        }
        out
    }

    /// Forgets what was sent, so the next copy is whole (new replicas, a resync).
    pub fn reset_replication(&mut self) {
        for s in &mut self.streams {
            s.repl_seq = 0;
            s.repl_known = false;
            s.repl_finished = false;
        }
    }

    /// Numbers the next copy (the owner's side).
    pub fn next_copy_seq(&mut self) -> u64 {
        // Wraps only after a copy numbered u64::MAX (a faulty peer's): the replica then sees
        // a gap and is sent a full copy.
        self.copy_seq = self.copy_seq.wrapping_add(1);
        self.copy_seq
    }

    /// Applies copy number `seq` from the owner: a full one replaces everything; a delta must
    /// be the next copy after the last one applied and continue each stream exactly where
    /// this copy ends.
    pub fn apply_copy(
        &mut self,
        full: bool,
        seq: u64,
        state: &StateCopy,
        streams: &[StreamCopy],
        log_capacity: usize,
    ) -> Result<(), Gap> {
        if full {
            self.streams.clear();
        } else {
            if self.copy_seq.checked_add(1) != Some(seq) {
                return Err(Gap);
            }
            // Check every stream first: a delta is applied whole or not at all.
            for c in streams {
                let first = c.events.first().map(|(seq, _)| *seq);
                match (self.streams.iter().find(|s| s.id == c.id), first) {
                    (Some(s), Some(f)) if f != s.next_seq => return Err(Gap),
                    (None, Some(f)) if f != 1 => return Err(Gap),
                    _ => {}
                }
            }
        }
        self.copy_seq = seq;
        self.version = ProtocolEra::from_index(state.version).unwrap_or(ProtocolEra::V2025_11_25);
        self.initialized = state.initialized;
        self.client_capabilities = state.caps.clone().into_boxed_str();
        self.log_level = state.log_level;
        self.subscriptions = state
            .subscriptions
            .iter()
            .map(|s| s.clone().into_boxed_str())
            .collect();
        self.next_stream = state.next_stream;
        self.next_request = state.next_request;
        self.principal = state
            .principal
            .map(|p| Box::new(crate::auth::PrincipalId(p)));
        self.upstreams = (!state.upstreams.is_empty()).then(|| Box::new(state.upstreams.clone()));
        // The owner's list of streams says which it dropped; a copy from a node that does not
        // send it falls back to dropping the oldest finished one.
        if let Some(held) = &state.held_streams {
            self.streams.retain(|s| held.contains(&s.id));
        }
        for c in streams {
            let pos = match self.streams.iter().position(|s| s.id == c.id) {
                Some(p) => p,
                None => {
                    if state.held_streams.is_none()
                        && self.streams.len() >= super::record::MAX_STREAMS
                        && let Some(old) = self.streams.iter().position(|s| s.finished)
                    {
                        self.streams.remove(old);
                    }
                    self.streams
                        .push(StreamState::new(c.id, kind_of(c.kind), None));
                    self.streams.len() - 1
                }
            };
            let s = &mut self.streams[pos];
            for (seq, ev) in &c.events {
                if s.log.len() >= log_capacity {
                    s.log.pop_front();
                }
                s.log.push_back((*seq, ev.clone()));
            }
            s.next_seq = c.next_seq;
            // A copy holds what it was sent: after a take-over all of it may be shown.
            s.shown = c.next_seq.saturating_sub(1);
            s.finished = c.finished;
        }
        Ok(())
    }
}

impl Session {
    /// A replica's (or successor's) record built from a full copy.
    pub fn from_copy(
        id: SessionId,
        seq: u64,
        state: &StateCopy,
        streams: &[StreamCopy],
        burst: u32,
        now_ms: u64,
        log_capacity: usize,
    ) -> Self {
        let session = Session::new(
            id,
            ProtocolEra::from_index(state.version).unwrap_or(ProtocolEra::V2025_11_25),
            &serde_json::Value::Null,
            burst,
            now_ms,
        );
        // A full copy always applies.
        let _ = session
            .state
            .lock()
            .apply_copy(true, seq, state, streams, log_capacity);
        session
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn owner() -> Session {
        Session::new(
            SessionId(7),
            ProtocolEra::V2025_11_25,
            &serde_json::json!({"sampling": {}}),
            10,
            0,
        )
    }

    #[test]
    fn upstream_sessions_travel_with_the_copy_and_cost_nothing_until_used() {
        let s = owner();
        let mut st = s.state.lock();
        assert!(st.upstreams.is_none(), "no allocation before one is used");
        let bare = st.heap_bytes();
        let entry = UpstreamSession {
            upstream: "up".into(),
            id: "abc".into(),
            version: "2025-11-25".into(),
            level: Some(4),
            last_event: Some("0_17".into()),
        };
        st.set_upstream_session(entry.clone());
        st.set_upstream_session(UpstreamSession {
            id: "def".into(),
            ..entry.clone()
        });
        assert_eq!(
            st.upstream_sessions().len(),
            1,
            "one per upstream, replaced"
        );
        assert!(st.heap_bytes() > bare);
        let copy = st.state_copy();
        let replica = Session::from_copy(SessionId(7), 1, &copy, &[], 10, 0, 8);
        assert_eq!(
            replica.state.lock().upstream_session("up").map(|u| &*u.id),
            Some("def")
        );
        // The caps string carries them and gives them back; the client's own are intact.
        let joined = caps_with_upstreams(&copy.caps, &copy.upstreams);
        let (caps, ups) = split_caps(joined).expect("splits");
        assert_eq!(caps, copy.caps);
        assert_eq!(ups, copy.upstreams);
        assert_eq!(caps_with_upstreams(&copy.caps, &[]), copy.caps);
        // Bounded and checked: a name too long, a level out of range.
        let long = format!(
            r#"{{"{UPSTREAM_SESSIONS_KEY}":[{{"upstream":"{}","id":"a","version":"v"}}]}}"#,
            "x".repeat(UpstreamSession::MAX_FIELD + 1)
        );
        assert!(split_caps(long).is_err());
        let last = format!(
            r#"{{"{UPSTREAM_SESSIONS_KEY}":[{{"upstream":"u","id":"a","version":"v","lastEventId":"{}"}}]}}"#,
            "x".repeat(UpstreamSession::MAX_FIELD + 1)
        );
        assert!(split_caps(last).is_err());
        let level = format!(
            r#"{{"{UPSTREAM_SESSIONS_KEY}":[{{"upstream":"u","id":"a","version":"v","level":8}}]}}"#
        );
        assert!(split_caps(level).is_err());
        assert_eq!(st.take_upstream_sessions().len(), 1);
        assert!(st.upstreams.is_none());
    }

    #[test]
    fn held_events_wait_for_the_copy_that_carried_them() {
        // The gating decision: with `hold` (live replicas), an event is shown once the copy
        // that carried it is acknowledged; a copy's replica holds all it was sent.
        let s = owner();
        let (tx, mut rx) = crate::stream_queue::channel(16);
        let mut st = s.state.lock();
        let id = st.open_stream(StreamKind::Standalone, Some(tx));
        st.hold = true;
        st.push(id, b"{\"n\":1}", 8);
        assert!(rx.try_recv().is_none(), "held");
        let copies = st.take_stream_copies(true);
        let carried = st.held_in_copy();
        assert_eq!(carried, [(id, 1)]);
        st.push(id, b"{\"n\":2}", 8);
        assert_eq!(st.held_in_copy(), [(id, 1)], "event 2 is in no copy yet");
        // The replica's copy shows everything it holds once it takes over.
        let replica = Session::from_copy(SessionId(7), 1, &st.state_copy(), &copies, 10, 0, 8);
        assert!(!replica.state.lock().streams[0].holds());
        // The acknowledgement of the copy releases event 1 only.
        assert_eq!(st.release(&carried), 1);
        assert!(rx.try_recv().is_some_and(|e| e.starts_with(b"id: 1-1\n")));
        assert!(rx.try_recv().is_none());
        // No live replica left: everything held is shown, and nothing is held from now on.
        assert_eq!(st.release_all(), 1);
        assert!(!st.hold);
        st.push(id, b"{}", 8);
        assert!(rx.try_recv().is_some_and(|e| e.starts_with(b"id: 1-2\n")));
        assert!(rx.try_recv().is_some_and(|e| e.starts_with(b"id: 1-3\n")));
    }

    #[test]
    fn a_finished_stream_whose_reader_waits_for_its_held_answer_is_not_evicted() {
        let s = owner();
        let mut st = s.state.lock();
        st.hold = true;
        let (tx, mut rx) = crate::stream_queue::channel(16);
        let waiting = st.open_stream(StreamKind::Response, Some(tx));
        st.push(waiting, b"{\"result\":{}}", 8);
        st.stream_mut(waiting).expect("open").finish();
        for _ in 0..super::super::record::MAX_STREAMS + 2 {
            st.open_stream(StreamKind::Response, None);
        }
        assert!(
            st.stream_mut(waiting).is_some(),
            "kept while its answer is held"
        );
        st.release(&[(waiting, 1)]);
        assert!(rx.try_recv().is_some_and(|e| e.starts_with(b"id: 1-1\n")));
    }

    #[test]
    fn a_stream_the_owner_evicts_goes_on_the_replica_too() {
        // Past MAX_STREAMS the owner drops a stream no reader holds, finished or not; the
        // replica cannot tell which from the deltas alone (the property test below once
        // ended with 17 streams on the replica and 16 on the owner).
        let o = owner();
        let mut st = o.state.lock();
        let full = st.take_stream_copies(true);
        let seq = st.next_copy_seq();
        let r = Session::from_copy(SessionId(7), seq, &st.state_copy(), &full, 10, 0, 8);
        let mut rs = r.state.lock();
        for i in 0..(super::super::record::MAX_STREAMS + 4) {
            let id = st.open_stream(StreamKind::Response, None);
            if i % 3 == 0 {
                st.stream_mut(id).expect("just opened").finish();
            }
            let delta = st.take_stream_copies(false);
            let seq = st.next_copy_seq();
            rs.apply_copy(false, seq, &st.state_copy(), &delta, 8)
                .expect("continues");
            let ids = |s: &SessionState| s.streams.iter().map(|s| s.id).collect::<Vec<_>>();
            assert_eq!(ids(&rs), ids(&st), "after opening stream {id}");
        }
    }

    #[test]
    fn deltas_rebuild_the_owners_logs_and_a_gap_is_refused() {
        let o = owner();
        let mut st = o.state.lock();
        st.initialized = true;
        st.principal = Some(Box::new(crate::auth::PrincipalId::of(
            "https://as",
            "alice",
        )));
        let a = st.open_stream(StreamKind::Standalone, None);
        st.push(a, b"{\"n\":1}", 8);
        let full = st.take_stream_copies(true);
        let seq = st.next_copy_seq();
        let r = Session::from_copy(SessionId(7), seq, &st.state_copy(), &full, 10, 0, 8);
        let b = st.open_stream(StreamKind::Response, None);
        st.push(a, b"{\"n\":2}", 8);
        st.push(b, b"{\"n\":3}", 8);
        st.stream_mut(b).expect("b").finish();
        let delta = st.take_stream_copies(false);
        assert_eq!(delta.len(), 2, "both streams changed");
        let mut rs = r.state.lock();
        let seq = st.next_copy_seq();
        rs.apply_copy(false, seq, &st.state_copy(), &delta, 8)
            .expect("continues");
        assert!(rs.initialized);
        assert_eq!(
            rs.principal, st.principal,
            "the binding travels with the session"
        );
        assert_eq!(
            rs.client_capabilities(),
            serde_json::json!({"sampling": {}})
        );
        for id in [a, b] {
            let (o, c) = (st.stream_mut(id).expect("o"), rs.stream_mut(id).expect("c"));
            assert_eq!(o.log, c.log);
            assert_eq!((o.next_seq, o.finished), (c.next_seq, c.finished));
        }
        assert!(st.take_stream_copies(false).is_empty(), "nothing new");
        // A lost delta: the next one does not continue the copy.
        st.push(a, b"{\"n\":4}", 8);
        let _lost = (st.take_stream_copies(false), st.next_copy_seq());
        st.push(a, b"{\"n\":5}", 8);
        let next = st.take_stream_copies(false);
        let seq = st.next_copy_seq();
        assert_eq!(
            rs.apply_copy(false, seq, &st.state_copy(), &next, 8),
            Err(Gap)
        );
        st.reset_replication();
        let whole = st.take_stream_copies(true);
        let seq = st.next_copy_seq();
        rs.apply_copy(true, seq, &st.state_copy(), &whole, 8)
            .expect("full");
        assert_eq!(
            rs.stream_mut(a).expect("a").log,
            st.stream_mut(a).expect("a").log
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// An event on stream `i % open streams` (a new stream when none).
        Event(usize),
        Open,
        Finish(usize),
        SetLevel(u8),
        /// A copy sent; `delivered` false: lost with a failed connection.
        Copy {
            delivered: bool,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => any::<usize>().prop_map(Op::Event),
            1 => Just(Op::Open),
            1 => any::<usize>().prop_map(Op::Finish),
            1 => any::<u8>().prop_map(|l| Op::SetLevel(l % 8)),
            3 => any::<bool>().prop_map(|d| Op::Copy { delivered: d }),
        ]
    }

    fn same(o: &SessionState, r: &SessionState) -> bool {
        o.state_copy() == r.state_copy()
            && o.streams.len() == r.streams.len()
            && o.streams.iter().zip(&r.streams).all(|(a, b)| {
                a.id == b.id
                    && a.log == b.log
                    && a.next_seq == b.next_seq
                    && a.finished == b.finished
            })
    }

    proptest::proptest! {
        /// The owner/replica protocol over a FIFO link that may lose copies: a replica applies
        /// a delta only when it continues its copy (else it asks for a full one), so after any
        /// applied copy it equals the owner as of that copy, and it never applies a delta out
        /// of step.
        #[test]
        fn a_replica_is_always_the_owners_state_as_of_the_last_applied_copy(
            ops in proptest::collection::vec(op(), 1..80)
        ) {
            const CAP: usize = 6;
            let o = owner();
            let mut st = o.state.lock();
            let full = st.take_stream_copies(true);
            let seq = st.next_copy_seq();
            let r = Session::from_copy(SessionId(7), seq, &st.state_copy(), &full, 10, 0, CAP);
            let mut rs = r.state.lock();
            for op in ops {
                match op {
                    Op::Event(i) => {
                        if st.streams.is_empty() {
                            st.open_stream(StreamKind::Standalone, None);
                        }
                        let id = st.streams[i % st.streams.len()].id;
                        st.push(id, b"{\"e\":1}", CAP);
                    }
                    Op::Open => {
                        st.open_stream(StreamKind::Response, None);
                    }
                    Op::Finish(i) => {
                        if !st.streams.is_empty() {
                            let n = st.streams.len();
                            st.streams[i % n].finish();
                        }
                    }
                    Op::SetLevel(l) => st.log_level = l,
                    Op::Copy { delivered } => {
                        let delta = st.take_stream_copies(false);
                        let seq = st.next_copy_seq();
                        if !delivered {
                            continue;
                        }
                        match rs.apply_copy(false, seq, &st.state_copy(), &delta, CAP) {
                            Ok(()) => {}
                            Err(Gap) => {
                                // Resync: the owner starts over with a full copy.
                                st.reset_replication();
                                let whole = st.take_stream_copies(true);
                                let seq = st.next_copy_seq();
                                rs.apply_copy(true, seq, &st.state_copy(), &whole, CAP).expect("full");
                            }
                        }
                        proptest::prop_assert!(same(&st, &rs), "owner {:?}\nreplica {:?}", st.streams, rs.streams);
                    }
                }
            }
        }
    }
}
