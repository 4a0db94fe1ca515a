//! A legacy session as data: the durable state (negotiated version, capabilities, log level,
//! subscriptions, the principal it is bound to, counters) and one bounded event log per SSE
//! stream. This is what replicas hold; what belongs to a connection (readers, pending
//! server→client requests, cancellation handles, rate buckets) stays with the node that owns
//! the session and is not here.
//!
//! The copy protocol lives here too: `SessionData::copy` builds what a replica needs (whole,
//! or the events it has not seen), `SessionData::apply` applies it on the replica and refuses
//! a delta that does not continue the replica's copy exactly ([`Gap`]).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::wire::{StateCopy, StreamCopy};

/// Streams kept per session; finished ones beyond this are dropped oldest first.
pub const MAX_STREAMS: usize = 16;

/// Events that became durable on one stream: `(stream, [(seq, event)], stream ended)`.
pub(crate) type Shown = (u32, Vec<(u32, Bytes)>, bool);

/// A delta did not continue the replica's copy (a lost message): it needs a full copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the copy has a gap; a full copy is needed")]
pub struct Gap;

/// What opened a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The standalone stream of a GET request.
    Standalone,
    /// The response stream of a POST request.
    Response,
}

impl StreamKind {
    fn byte(self) -> u8 {
        match self {
            Self::Standalone => 0,
            Self::Response => 1,
        }
    }
    fn from_byte(b: u8) -> Self {
        if b == 0 {
            Self::Standalone
        } else {
            Self::Response
        }
    }
}

/// One SSE stream: its bounded log and how far it was copied and made durable.
#[derive(Debug, Clone)]
pub struct StreamLog {
    /// Stream number within the session.
    pub id: u32,
    /// GET or POST stream.
    pub kind: StreamKind,
    /// No more events will be added.
    pub finished: bool,
    /// The next event number (1 is the first event; 0 is the unlogged priming event).
    pub(crate) next_seq: u32,
    /// `(seq, JSON message)`, ascending, at most the log capacity.
    pub(crate) log: VecDeque<(u32, Bytes)>,
    /// Owner: the highest event number included in a copy already sent.
    pub(crate) sent: u32,
    /// Owner: the replicas know this stream exists / that it finished.
    pub(crate) sent_known: bool,
    pub(crate) sent_finished: bool,
    /// Owner: events up to this number are held by every replica and may be shown to the
    /// client; `finished` may be shown once `durable_finished`.
    pub(crate) durable: u32,
    pub(crate) durable_finished: bool,
}

impl StreamLog {
    fn new(id: u32, kind: StreamKind) -> Self {
        Self {
            id,
            kind,
            finished: false,
            next_seq: 1,
            log: VecDeque::new(),
            sent: 0,
            sent_known: false,
            sent_finished: false,
            durable: 0,
            durable_finished: false,
        }
    }

    /// The number the next event gets.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// The highest event number that may be shown to a client.
    pub fn durable(&self) -> u32 {
        self.durable
    }

    /// Events after `after` that may be shown, oldest first; `complete` is false when some
    /// of them were already evicted from the log.
    pub fn replay(&self, after: u32) -> Replay {
        let oldest = self.log.front().map_or(self.next_seq, |(s, _)| *s);
        let events = self
            .log
            .iter()
            .filter(|(s, _)| *s > after && *s <= self.durable)
            .cloned()
            .collect();
        Replay {
            events,
            complete: after.saturating_add(1) >= oldest,
            finished: self.finished && self.durable_finished,
        }
    }

    fn push(&mut self, json: Bytes, capacity: usize) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        if self.log.len() >= capacity.max(1) {
            self.log.pop_front();
        }
        self.log.push_back((seq, json));
        seq
    }

    fn bytes(&self) -> usize {
        self.log.iter().map(|(_, e)| e.len() + 16).sum()
    }
}

/// What a reader resuming a stream gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// `(seq, JSON message)` after the reader's last event, that may be shown.
    pub events: Vec<(u32, Bytes)>,
    /// False when events the reader needs were evicted from the log.
    pub complete: bool,
    /// The stream ended (no more events will come).
    pub finished: bool,
}

/// What `initialize` establishes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewSession {
    /// Negotiated protocol version (the node's index of it).
    pub version: u8,
    /// Client capabilities as compact JSON.
    pub caps: Box<str>,
    /// The principal the session is bound to (`issuer` + `subject`), empty without
    /// authentication.
    pub principal: Box<str>,
}

/// The durable part of a session.
#[derive(Debug, Clone)]
pub struct SessionData {
    /// Negotiated protocol version (the node's index of it).
    pub version: u8,
    /// `notifications/initialized` was received.
    pub initialized: bool,
    /// Client capabilities as compact JSON.
    pub caps: Box<str>,
    /// Minimum log level to send.
    pub log_level: u8,
    /// Resource URIs subscribed with `resources/subscribe`.
    pub subscriptions: Vec<Box<str>>,
    /// The principal the session is bound to; empty without authentication.
    pub principal: Box<str>,
    /// The next server→client request id.
    pub next_request: i64,
    pub(crate) next_stream: u32,
    pub(crate) streams: Vec<StreamLog>,
}

impl SessionData {
    /// A session right after `initialize`.
    pub fn new(s: NewSession) -> Self {
        Self {
            version: s.version,
            initialized: false,
            caps: s.caps,
            log_level: 0,
            subscriptions: Vec::new(),
            principal: s.principal,
            next_request: 1,
            next_stream: 1,
            streams: Vec::new(),
        }
    }

    /// The stream numbered `id`.
    pub fn stream(&self, id: u32) -> Option<&StreamLog> {
        self.streams.iter().find(|s| s.id == id)
    }

    /// Its streams.
    pub fn streams(&self) -> &[StreamLog] {
        &self.streams
    }

    pub(crate) fn stream_mut(&mut self, id: u32) -> Option<&mut StreamLog> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// Opens a stream; returns its number. Past [`MAX_STREAMS`] the oldest finished stream is
    /// dropped, else the oldest GET stream a newer one replaced, else the oldest.
    pub(crate) fn open_stream(&mut self, kind: StreamKind) -> u32 {
        let id = self.next_stream;
        self.next_stream = self.next_stream.saturating_add(1);
        if self.streams.len() >= MAX_STREAMS {
            let newest_get = self
                .streams
                .iter()
                .rposition(|s| s.kind == StreamKind::Standalone);
            let victim = self
                .streams
                .iter()
                .position(|s| s.finished)
                .or_else(|| {
                    self.streams.iter().enumerate().position(|(i, s)| {
                        s.kind == StreamKind::Standalone && Some(i) != newest_get
                    })
                })
                .unwrap_or(0);
            self.streams.remove(victim);
        }
        self.streams.push(StreamLog::new(id, kind));
        id
    }

    /// Appends an event to stream `id`; its number, or `None` if the stream is unknown or
    /// finished.
    pub(crate) fn push(&mut self, id: u32, json: Bytes, capacity: usize) -> Option<u32> {
        let s = self.stream_mut(id).filter(|s| !s.finished)?;
        Some(s.push(json, capacity))
    }

    /// The stream a message unrelated to any request goes to: the newest unfinished GET
    /// stream (the node decides whether a live one exists first).
    pub fn standalone(&self) -> Option<u32> {
        self.streams
            .iter()
            .rev()
            .find(|s| s.kind == StreamKind::Standalone && !s.finished)
            .map(|s| s.id)
    }

    /// The durable state as sent to replicas.
    pub(crate) fn state_copy(&self) -> StateCopy {
        StateCopy {
            version: self.version,
            initialized: self.initialized,
            caps: self.caps.to_string(),
            log_level: self.log_level,
            subscriptions: self.subscriptions.iter().map(|s| s.to_string()).collect(),
            next_stream: self.next_stream,
            next_request: self.next_request,
            principal: self.principal.to_string(),
            held_streams: self.streams.iter().map(|s| s.id).collect(),
        }
    }

    /// The streams to send, whole (`full`) or what the replicas have not seen; marks what it
    /// returns as sent. Returns per stream `(id, highest seq included, finished)` too: what
    /// becomes durable once every replica acknowledged this copy.
    pub(crate) fn copy(&mut self, full: bool) -> (Vec<StreamCopy>, Vec<(u32, u32, bool)>) {
        let mut out = Vec::new();
        let mut marks = Vec::new();
        for s in &mut self.streams {
            let last = s.next_seq.saturating_sub(1);
            if full {
                out.push(StreamCopy {
                    id: s.id,
                    kind: s.kind.byte(),
                    finished: s.finished,
                    next_seq: s.next_seq,
                    events: s.log.iter().cloned().collect(),
                });
            } else {
                let news = last > s.sent || !s.sent_known || (s.finished && !s.sent_finished);
                if news {
                    out.push(StreamCopy {
                        id: s.id,
                        kind: s.kind.byte(),
                        finished: s.finished,
                        next_seq: s.next_seq,
                        events: s
                            .log
                            .iter()
                            .filter(|(seq, _)| *seq > s.sent)
                            .cloned()
                            .collect(),
                    });
                }
            }
            s.sent = last;
            s.sent_known = true;
            s.sent_finished = s.finished;
            marks.push((s.id, last, s.finished));
        }
        (out, marks)
    }

    /// Whether making a copy's marks (`(stream, highest event, finished)`) durable would show
    /// anything (an event or a stream's end) that is not shown yet.
    pub(crate) fn would_show(&self, marks: &[(u32, u32, bool)]) -> bool {
        marks.iter().any(|(stream, seq, finished)| {
            self.stream(*stream)
                .is_some_and(|s| *seq > s.durable || (*finished && !s.durable_finished))
        })
    }

    /// Every stream with its whole log (for a replica that needs a full copy while the
    /// others get a delta of the same copy number).
    pub(crate) fn whole_streams(&self) -> Vec<StreamCopy> {
        self.streams
            .iter()
            .map(|s| StreamCopy {
                id: s.id,
                kind: s.kind.byte(),
                finished: s.finished,
                next_seq: s.next_seq,
                events: s.log.iter().cloned().collect(),
            })
            .collect()
    }

    /// Forgets what was sent, so the next copy is whole (new replicas, a resync).
    #[cfg(test)]
    pub(crate) fn reset_sent(&mut self) {
        for s in &mut self.streams {
            s.sent = 0;
            s.sent_known = false;
            s.sent_finished = false;
        }
    }

    /// Marks events up to `seq` of stream `id` (and its end) as durable; returns the events
    /// that became durable, oldest first, and whether the end did.
    pub(crate) fn make_durable(
        &mut self,
        id: u32,
        seq: u32,
        finished: bool,
    ) -> Option<(Vec<(u32, Bytes)>, bool)> {
        let s = self.stream_mut(id)?;
        let from = s.durable;
        let mut events = Vec::new();
        if seq > from {
            events.extend(
                s.log
                    .iter()
                    .filter(|(q, _)| *q > from && *q <= seq)
                    .cloned(),
            );
            s.durable = seq;
        }
        let ended = finished && !s.durable_finished && s.durable >= s.next_seq.saturating_sub(1);
        if ended {
            s.durable_finished = true;
        }
        Some((events, ended))
    }

    /// Everything is durable (no replica to wait for, or durability is off).
    pub(crate) fn all_durable(&mut self) -> Vec<Shown> {
        let marks: Vec<(u32, u32, bool)> = self
            .streams
            .iter()
            .map(|s| (s.id, s.next_seq.saturating_sub(1), s.finished))
            .collect();
        marks
            .into_iter()
            .filter_map(|(id, seq, fin)| {
                self.make_durable(id, seq, fin)
                    .map(|(ev, end)| (id, ev, end))
            })
            .filter(|(_, ev, end)| !ev.is_empty() || *end)
            .collect()
    }

    /// Nothing is durable: a node that just took the session over shows its events only once
    /// its own replicas hold them.
    pub(crate) fn none_durable(&mut self) {
        for s in &mut self.streams {
            s.durable = 0;
            s.durable_finished = false;
        }
    }

    /// A session built from a full copy.
    pub(crate) fn from_copy(state: &StateCopy, streams: &[StreamCopy], capacity: usize) -> Self {
        let mut data = Self::new(NewSession::default());
        data.apply_state(state);
        data.apply_streams(streams, capacity);
        data
    }

    /// Applies a copy on a replica: a full one replaces everything; a delta must continue each
    /// stream exactly where this copy ends (checked whole before anything changes).
    pub(crate) fn apply(
        &mut self,
        full: bool,
        state: &StateCopy,
        streams: &[StreamCopy],
        capacity: usize,
    ) -> Result<(), Gap> {
        if full {
            self.streams.clear();
        } else {
            for c in streams {
                let first = c.events.first().map(|(seq, _)| *seq);
                match (self.stream(c.id), first) {
                    (Some(s), Some(f)) if f != s.next_seq => return Err(Gap),
                    (None, Some(f)) if f != 1 => return Err(Gap),
                    _ => {}
                }
            }
        }
        self.apply_state(state);
        self.streams.retain(|s| state.held_streams.contains(&s.id));
        self.apply_streams(streams, capacity);
        Ok(())
    }

    fn apply_state(&mut self, state: &StateCopy) {
        self.version = state.version;
        self.initialized = state.initialized;
        self.caps = state.caps.clone().into_boxed_str();
        self.log_level = state.log_level;
        self.subscriptions = state
            .subscriptions
            .iter()
            .map(|s| s.clone().into_boxed_str())
            .collect();
        self.next_stream = state.next_stream;
        self.next_request = state.next_request;
        self.principal = state.principal.clone().into_boxed_str();
    }

    fn apply_streams(&mut self, streams: &[StreamCopy], capacity: usize) {
        for c in streams {
            let pos = match self.streams.iter().position(|s| s.id == c.id) {
                Some(p) => p,
                None => {
                    self.streams
                        .push(StreamLog::new(c.id, StreamKind::from_byte(c.kind)));
                    self.streams.len() - 1
                }
            };
            let s = &mut self.streams[pos];
            for (seq, ev) in &c.events {
                if s.log.len() >= capacity.max(1) {
                    s.log.pop_front();
                }
                s.log.push_back((*seq, ev.clone()));
            }
            s.next_seq = c.next_seq;
            s.finished = c.finished;
        }
    }

    /// Approximate heap bytes held beyond the fixed size (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.caps.len()
            + self.principal.len()
            + self
                .subscriptions
                .iter()
                .map(|s| s.len() + 16)
                .sum::<usize>()
            + self.streams.capacity() * std::mem::size_of::<StreamLog>()
            + self.streams.iter().map(StreamLog::bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_session() -> SessionData {
        SessionData::new(NewSession {
            version: 2,
            caps: r#"{"sampling":{}}"#.into(),
            principal: "".into(),
        })
    }

    fn ev(n: u32) -> Bytes {
        Bytes::from(format!("{{\"n\":{n}}}"))
    }

    #[test]
    fn deltas_continue_the_copy_and_a_gap_is_refused() {
        let mut owner = new_session();
        let s = owner.open_stream(StreamKind::Standalone);
        owner.push(s, ev(1), 64);
        let (full, _) = owner.copy(true);
        let mut replica = SessionData::from_copy(&owner.state_copy(), &full, 64);
        owner.push(s, ev(2), 64);
        let (d1, marks) = owner.copy(false);
        assert_eq!(marks, vec![(s, 2, false)]);
        owner.push(s, ev(3), 64);
        let (d2, _) = owner.copy(false);
        // d1 lost: d2 does not continue the replica's stream.
        assert_eq!(replica.apply(false, &owner.state_copy(), &d2, 64), Err(Gap));
        replica
            .apply(false, &owner.state_copy(), &d1, 64)
            .expect("d1 continues");
        replica
            .apply(false, &owner.state_copy(), &d2, 64)
            .expect("d2 continues");
        let events: Vec<u32> = replica
            .stream(s)
            .expect("stream")
            .log
            .iter()
            .map(|(q, _)| *q)
            .collect();
        assert_eq!(events, vec![1, 2, 3]);
    }

    #[test]
    fn only_durable_events_are_replayed() {
        let mut d = new_session();
        let s = d.open_stream(StreamKind::Response);
        for i in 1..=4 {
            d.push(s, ev(i), 64);
        }
        let stream = d.stream(s).expect("stream");
        assert!(stream.replay(0).events.is_empty(), "nothing durable yet");
        let (shown, ended) = d.make_durable(s, 2, false).expect("stream");
        assert_eq!(shown.len(), 2);
        assert!(!ended);
        assert_eq!(d.stream(s).expect("stream").replay(1).events.len(), 1);
        let stream = d.stream_mut(s).expect("stream");
        stream.finished = true;
        let (shown, ended) = d.make_durable(s, 4, true).expect("stream");
        assert_eq!(shown.len(), 2);
        assert!(ended);
        let r = d.stream(s).expect("stream").replay(0);
        assert_eq!(r.events.len(), 4);
        assert!(r.finished && r.complete);
    }

    #[test]
    fn the_log_is_bounded_and_replay_reports_evicted_events() {
        let mut d = new_session();
        let s = d.open_stream(StreamKind::Standalone);
        for i in 1..=10 {
            d.push(s, ev(i), 4);
        }
        d.all_durable();
        let r = d.stream(s).expect("stream").replay(1);
        assert_eq!(r.events.len(), 4);
        assert!(!r.complete, "events 2..6 were evicted");
        assert!(d.stream(s).expect("stream").replay(6).complete);
    }

    #[test]
    fn stream_count_is_bounded_keeping_the_newest_get_stream() {
        let mut d = new_session();
        let get = d.open_stream(StreamKind::Standalone);
        for _ in 0..(MAX_STREAMS + 5) {
            d.open_stream(StreamKind::Response);
        }
        assert_eq!(d.streams.len(), MAX_STREAMS);
        assert!(
            d.stream(get).is_none(),
            "no finished stream: the oldest goes"
        );
        let get2 = d.open_stream(StreamKind::Standalone);
        if let Some(s) = d.stream_mut(get2 - 1) {
            s.finished = true;
        }
        d.open_stream(StreamKind::Response);
        assert!(d.stream(get2).is_some(), "the newest GET stream stays");
    }

    proptest::proptest! {
        /// After every applied copy the replica equals the owner as of that copy; a lost copy
        /// is always noticed (`Gap`) and a full copy repairs it.
        #[test]
        fn replica_follows_owner_through_lost_copies(ops in proptest::collection::vec(0u8..6, 1..120), lose in proptest::collection::vec(proptest::bool::weighted(0.2), 120)) {
            // Copies are numbered as the machine numbers them: a delta applies only as the next
            // number after the last applied (a lost delta that only opened a stream shows no
            // event gap; the number catches it).
            let mut owner = new_session();
            let mut replica: Option<SessionData> = None;
            let (mut sent, mut applied) = (0u64, 0u64);
            for (i, op) in ops.iter().enumerate() {
                match op {
                    0 => { owner.open_stream(if i % 2 == 0 { StreamKind::Standalone } else { StreamKind::Response }); }
                    1 | 2 => {
                        if let Some(id) = owner.streams.iter().rev().find(|s| !s.finished).map(|s| s.id) {
                            owner.push(id, ev(i as u32), 8);
                        }
                    }
                    3 => { if let Some(s) = owner.streams.first_mut() { s.finished = true; } }
                    4 => { owner.log_level = (i % 8) as u8; }
                    _ => { owner.subscriptions.push(format!("file:///{i}").into()); }
                }
                let full = replica.is_none();
                let (streams, _) = owner.copy(full);
                sent += 1;
                let state = owner.state_copy();
                if lose[i] && !full { continue; }
                let ok = match replica.as_mut() {
                    None => { replica = Some(SessionData::from_copy(&state, &streams, 8)); true }
                    Some(_) if sent != applied + 1 => false,
                    Some(r) => r.apply(false, &state, &streams, 8).is_ok(),
                };
                if !ok {
                    owner.reset_sent();
                    let (streams, _) = owner.copy(true);
                    sent += 1;
                    replica = Some(SessionData::from_copy(&owner.state_copy(), &streams, 8));
                }
                applied = sent;
                let r = replica.as_ref().expect("replica");
                proptest::prop_assert_eq!(r.state_copy(), owner.state_copy());
                proptest::prop_assert_eq!(r.streams.len(), owner.streams.len());
                for (a, b) in r.streams.iter().zip(&owner.streams) {
                    proptest::prop_assert_eq!(a.id, b.id);
                    proptest::prop_assert_eq!(a.next_seq, b.next_seq);
                    proptest::prop_assert_eq!(a.finished, b.finished);
                    proptest::prop_assert_eq!(&a.log, &b.log);
                }
            }
        }
    }
}
