//! One SSE stream of a session: a bounded log of the events sent on it (for resumption) and
//! the live connection reading it, if any.
//!
//! Sending never blocks: the event goes into the log, then to the live reader if its queue has
//! room. A reader that falls behind is cut off; it resumes with `Last-Event-ID` and the log
//! replays what it missed — bounded memory, no silent loss while the log holds the events.
//!
//! Durable before shown (`cluster.durableEvents`, docs/PROTOCOL.md "Durable events"): while
//! the session has live replicas an event is appended *held* ([`StreamState::append`]): it
//! waits in the log — no other copy of it is made — until the session layer says every
//! replica its copy went to acknowledged it ([`StreamState::release`]). The stream's `shown`
//! watermark is the highest event number the reader may have: a reader (attached or resumed)
//! is never given an event past it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stream_queue;
use bytes::Bytes;

/// The SSE comment that keeps intermediaries from closing an idle stream (never logged; a
/// relayed stream gets it from the node its client is connected to, not over the peer link).
pub const SSE_KEEPALIVE: &[u8] = b":\n\n";

/// What opened the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The standalone stream of a GET request.
    Standalone,
    /// The response stream of a POST request.
    Response,
}

/// An SSE event id: `<stream>-<seq>`. Unique within a session and names its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId {
    /// Stream number within the session.
    pub stream: u32,
    /// Sequence number within the stream (0 is the priming event).
    pub seq: u32,
}

impl EventId {
    /// Parses a `Last-Event-ID` value.
    pub fn parse(text: &str) -> Option<Self> {
        let (s, q) = text.trim().split_once('-')?;
        Some(Self {
            stream: s.parse().ok()?,
            seq: q.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.stream, self.seq)
    }
}

/// Formats one SSE event carrying a JSON message.
pub(super) fn sse_event(id: EventId, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 32);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// How far past its log a resuming reader's `Last-Event-ID` may move a stream's next id
/// ([`StreamState::resume`]): an owner dies with at most a replication batch of events its
/// replicas lack; an id further out is the client's invention and moves nothing.
pub(super) const MAX_ID_SKIP: u32 = 10_000;

/// State of one stream.
#[derive(Debug)]
pub struct StreamState {
    /// Stream number.
    pub id: u32,
    /// GET or POST stream.
    pub kind: StreamKind,
    pub(super) next_seq: u32,
    pub(super) log: VecDeque<(u32, Bytes)>,
    live: Option<stream_queue::Sender>,
    /// The reader is a peer relaying the stream to its client (`Relays`): the peer writes
    /// the client's keep-alives itself, so none is queued here.
    reader_remote: bool,
    /// When the live reader was last written to (attached, an event, a keep-alive): a
    /// keep-alive goes only to a stream quiet for a while.
    last_write: Option<Instant>,
    /// Highest event number the reader may see ("durable up to"): events after it are held
    /// in the log until [`Self::release`] passes them.
    pub(super) shown: u32,
    /// Held events the log evicted before they were released, written to the reader then
    /// (the log had no room left to hold them); the session layer counts and clears them.
    pub(super) forced: u32,
    /// Highest event number already sent to the replicas.
    pub(super) repl_seq: u32,
    /// The replicas know this stream exists.
    pub(super) repl_known: bool,
    /// The replicas know it finished.
    pub(super) repl_finished: bool,
    /// No more events will be added (the POST's response was sent).
    pub finished: bool,
}

impl StreamState {
    /// A new stream with an optional live reader.
    pub fn new(id: u32, kind: StreamKind, live: Option<stream_queue::Sender>) -> Self {
        Self {
            id,
            kind,
            next_seq: 1,
            log: VecDeque::new(),
            last_write: live.as_ref().map(|_| Instant::now()),
            live,
            reader_remote: false,
            shown: 0,
            forced: 0,
            repl_seq: 0,
            repl_known: false,
            repl_finished: false,
            finished: false,
        }
    }

    /// Whether a reader is attached.
    pub fn is_live(&self) -> bool {
        self.live.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Appends a message (logged, then offered to the live reader).
    pub fn push(&mut self, json: &[u8], log_capacity: usize) -> EventId {
        self.append(json, log_capacity, false)
    }

    /// Appends a message to the log; `hold`: the reader gets it only once [`Self::release`]
    /// passes it (its replicas must hold it first), else at once — after any held before it.
    /// A held event the full log must evict is written to the reader as it leaves (counted
    /// in `forced`): the log is the only place it waits.
    pub fn append(&mut self, json: &[u8], log_capacity: usize, hold: bool) -> EventId {
        let id = EventId {
            stream: self.id,
            seq: self.next_seq,
        };
        self.next_seq = self.next_seq.saturating_add(1);
        let event = sse_event(id, json);
        if self.log.len() >= log_capacity
            && let Some((seq, old)) = self.log.pop_front()
            && seq > self.shown
        {
            // Every event after it is held too (`shown` is a prefix): order is kept.
            self.shown = seq;
            if self.offer(&old) {
                self.forced = self.forced.saturating_add(1);
            }
        }
        self.log.push_back((id.seq, event));
        if !hold {
            self.release(id.seq);
        }
        id
    }

    /// Writes `event` to the live reader, if any; `false` when there was none or it was cut
    /// off (full queue: a slow reader; it resumes from the log).
    fn offer(&mut self, event: &Bytes) -> bool {
        let Some(tx) = &self.live else {
            return false;
        };
        if tx.try_send(event.clone()).is_err() {
            self.live = None;
            return false;
        }
        self.last_write = Some(Instant::now());
        true
    }

    /// Lets the reader have the events up to `upto` (their replicas hold them, or the wait
    /// for them ended): the held ones the log still has go to the live reader, in order.
    /// Returns how many were written to a reader. A finished stream lets its reader go once
    /// nothing is held any more.
    pub fn release(&mut self, upto: u32) -> u32 {
        let upto = upto.min(self.next_seq.saturating_sub(1));
        let mut written = 0;
        if upto > self.shown {
            let shown = self.shown;
            let held = self
                .log
                .iter()
                .rev()
                .take_while(|(s, _)| *s > shown)
                .count();
            let from = self.log.len() - held;
            for i in from..self.log.len() {
                let (seq, event) = &self.log[i];
                if *seq > upto {
                    break;
                }
                let event = event.clone();
                if self.offer(&event) {
                    written += 1;
                }
            }
            self.shown = upto;
        }
        if self.finished && !self.holds() {
            self.live = None;
        }
        written
    }

    /// Whether events wait to be released.
    pub fn holds(&self) -> bool {
        self.shown < self.next_seq.saturating_sub(1)
    }

    /// Held events written because the log evicted them, since the last call.
    pub fn take_forced(&mut self) -> u32 {
        std::mem::take(&mut self.forced)
    }

    /// Attaches a new reader and replays the events after `after_seq` to it. Returns `false`
    /// when events the reader needs were already evicted from the log.
    ///
    /// A reader that saw ids this log never had (`after_seq` at or past the next id, by at
    /// most `MAX_ID_SKIP`) got events from an owner that died before its replicas held
    /// them: the next id moves past what it saw, so the next event is not sent under an id
    /// the client already has (one `Last-Event-ID` duplicate after a kill -9).
    pub fn resume(&mut self, after_seq: u32, tx: stream_queue::Sender) -> bool {
        let oldest = self.log.front().map(|(s, _)| *s).unwrap_or(self.next_seq);
        // `after_seq` comes from the client's header: any u32.
        let complete = after_seq.saturating_add(1) >= oldest;
        if after_seq >= self.next_seq && after_seq - self.next_seq < MAX_ID_SKIP {
            self.next_seq = after_seq.saturating_add(1);
            self.shown = self.shown.max(after_seq);
        }
        for (seq, event) in &self.log {
            // Held events follow when they are released.
            if *seq > self.shown {
                break;
            }
            if *seq > after_seq && tx.try_send(event.clone()).is_err() {
                break;
            }
        }
        if self.finished && !self.holds() {
            self.live = None; // dropping our sender ends the reader's stream after the replay
        } else {
            self.live = Some(tx);
            self.last_write = Some(Instant::now());
        }
        complete
    }

    /// Marks the stream finished and releases the live reader (its stream ends once drained)
    /// — once no event is held any more: the last release lets it go.
    pub fn finish(&mut self) {
        self.finished = true;
        if !self.holds() {
            self.live = None;
        }
    }

    /// Ends the stream now (its session is deleted: nothing will resume it): the events still
    /// held go to the reader first, then it is let go.
    pub fn close(&mut self) {
        self.finished = true;
        self.release(u32::MAX);
        self.live = None;
    }

    /// Whether a client connected to this node reads the stream (not a peer relaying it).
    pub fn has_local_reader(&self) -> bool {
        self.live.is_some() && !self.reader_remote
    }

    /// Detaches the reader without finishing (server-initiated disconnect, drain).
    pub fn detach(&mut self) {
        self.live = None;
    }

    /// Detaches the reader to move its client to another node (drain, shedding): as
    /// [`Self::detach`], and the client's connection closes once the stream's end is written,
    /// so its reconnect goes through the Service rather than back here on the same connection.
    pub fn detach_to_move(&mut self) {
        if let Some(tx) = self.live.take() {
            tx.close_connection_after();
        }
    }

    /// Says whether the attached reader is a peer relaying the stream (no keep-alives here).
    pub fn set_reader_remote(&mut self, remote: bool) {
        self.reader_remote = remote;
    }

    /// Sends an SSE comment to keep intermediaries from closing an idle stream (not logged),
    /// unless something was written to it less than `quiet_for` ago (a new stream, an
    /// event); not to a peer relaying the stream, which keeps its client's connection alive
    /// itself.
    pub fn keepalive(&mut self, quiet_for: Duration) {
        if self.reader_remote || self.last_write.is_some_and(|t| t.elapsed() < quiet_for) {
            return;
        }
        if let Some(tx) = &self.live {
            if tx.try_send(Bytes::from_static(SSE_KEEPALIVE)).is_err() {
                self.live = None;
            } else {
                self.last_write = Some(Instant::now());
            }
        }
    }

    /// Bytes held by the log (for memory accounting).
    pub fn log_bytes(&self) -> usize {
        self.log.iter().map(|(_, e)| e.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_reader_is_cut_off_and_resumes_without_loss() {
        let (tx, mut rx) = stream_queue::channel(2);
        let mut s = StreamState::new(3, StreamKind::Standalone, Some(tx));
        for i in 0..5 {
            s.push(format!("{{\"n\":{i}}}").as_bytes(), 16);
        }
        assert!(!s.is_live(), "queue of 2 overflowed");
        let first = rx.recv().await.expect("event");
        assert!(first.starts_with(b"id: 3-1\n"));
        let _second = rx.recv().await.expect("event");
        assert!(rx.recv().await.is_none(), "sender dropped after overflow");
        let (tx2, mut rx2) = stream_queue::channel(16);
        assert!(s.resume(2, tx2));
        let mut seqs = Vec::new();
        while let Some(ev) = rx2.try_recv() {
            seqs.push(String::from_utf8_lossy(&ev[..8]).to_string());
        }
        assert_eq!(seqs.len(), 3);
        assert!(seqs[0].starts_with("id: 3-3"));
    }

    #[test]
    fn keepalives_go_to_local_readers_only() {
        let (tx, mut rx) = stream_queue::channel(4);
        let mut s = StreamState::new(2, StreamKind::Standalone, Some(tx));
        s.keepalive(Duration::ZERO);
        assert_eq!(
            rx.try_recv().as_deref(),
            Some(SSE_KEEPALIVE),
            "a local reader"
        );
        let (tx, mut relay) = stream_queue::channel(4);
        assert!(s.resume(0, tx));
        s.set_reader_remote(true);
        s.keepalive(Duration::ZERO);
        assert!(
            relay.try_recv().is_none(),
            "the relaying peer keeps its client alive"
        );
        s.push(b"{}", 4);
        assert!(relay.try_recv().is_some(), "events still reach it");
    }

    #[test]
    fn log_is_bounded_and_reports_gaps() {
        let mut s = StreamState::new(1, StreamKind::Response, None);
        for _ in 0..10 {
            s.push(b"{}", 4);
        }
        assert_eq!(s.log.len(), 4);
        let (tx, _rx) = stream_queue::channel(16);
        assert!(!s.resume(1, tx), "events 2..6 were evicted");
        assert_eq!(EventId::parse("7-12"), Some(EventId { stream: 7, seq: 12 }));
        assert_eq!(EventId::parse("bogus"), None);
    }

    #[test]
    fn a_reader_that_saw_ids_the_log_lacks_gets_new_ids_after_them() {
        // A replica's copy that lacks the owner's last two events (ids 3 and 4).
        let mut s = StreamState::new(1, StreamKind::Standalone, None);
        s.push(b"{}", 16);
        s.push(b"{}", 16);
        let (tx, mut rx) = stream_queue::channel(16);
        assert!(s.resume(4, tx));
        assert!(rx.try_recv().is_none(), "nothing to replay");
        assert_eq!(s.push(b"{}", 16), EventId { stream: 1, seq: 5 });
        // An id far past the log is not believed; the largest one panics nothing.
        let (tx, _rx) = stream_queue::channel(16);
        assert!(s.resume(6 + MAX_ID_SKIP, tx));
        assert_eq!(s.push(b"{}", 16).seq, 6);
        let (tx, _rx) = stream_queue::channel(16);
        assert!(s.resume(u32::MAX, tx));
        assert_eq!(s.push(b"{}", 16).seq, 7);
    }

    #[test]
    fn ids_at_the_top_of_the_range_panic_nothing() {
        // A copy's next id is a peer's number: any u32. A client then resumes at the largest.
        let mut s = StreamState::new(1, StreamKind::Standalone, None);
        s.next_seq = u32::MAX - 1;
        let (tx, _rx) = stream_queue::channel(16);
        assert!(s.resume(u32::MAX, tx));
        assert_eq!(s.next_seq, u32::MAX);
        s.push(b"{}", 16);
        s.push(b"{}", 16);
    }

    /// The events a reader got so far, as their ids.
    fn got(rx: &mut stream_queue::Receiver) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(ev) = rx.try_recv() {
            let text = String::from_utf8_lossy(&ev).to_string();
            let id = text.lines().next().unwrap_or_default().to_owned();
            ids.push(id.trim_start_matches("id: ").to_owned());
        }
        ids
    }

    #[test]
    fn held_events_reach_the_reader_only_when_released_in_order() {
        let (tx, mut rx) = stream_queue::channel(16);
        let mut s = StreamState::new(1, StreamKind::Standalone, Some(tx));
        s.append(b"{}", 16, true);
        s.append(b"{}", 16, true);
        assert!(got(&mut rx).is_empty(), "held until the replicas hold them");
        assert!(s.holds());
        assert_eq!(s.release(1), 1);
        assert_eq!(got(&mut rx), ["1-1"]);
        // An event not held (no live replica any more) goes after those held before it.
        s.append(b"{}", 16, false);
        assert_eq!(got(&mut rx), ["1-2", "1-3"]);
        assert!(!s.holds());
        // A release below the watermark, or past the last event, writes nothing twice.
        assert_eq!(s.release(2), 0);
        assert_eq!(s.release(u32::MAX), 0);
        assert!(got(&mut rx).is_empty());
    }

    #[test]
    fn a_resumed_reader_gets_held_events_only_once_released() {
        let mut s = StreamState::new(2, StreamKind::Standalone, None);
        s.append(b"{}", 16, false);
        s.append(b"{}", 16, true);
        s.append(b"{}", 16, true);
        let (tx, mut rx) = stream_queue::channel(16);
        assert!(s.resume(0, tx));
        assert_eq!(got(&mut rx), ["2-1"], "the held ones are not replayed");
        s.release(3);
        assert_eq!(got(&mut rx), ["2-2", "2-3"]);
    }

    #[test]
    fn a_finished_stream_ends_after_its_held_events() {
        let (tx, mut rx) = stream_queue::channel(16);
        let mut s = StreamState::new(3, StreamKind::Response, Some(tx));
        s.append(b"{\"result\":{}}", 16, true);
        s.finish();
        assert!(s.is_live(), "the reader waits for the held answer");
        assert!(rx.try_recv().is_none());
        s.release(1);
        assert_eq!(got(&mut rx), ["3-1"]);
        assert!(!s.is_live(), "let go after the last held event");
        // Closing (a deleted session) writes what is held, then ends.
        let (tx, mut rx) = stream_queue::channel(16);
        let mut s = StreamState::new(4, StreamKind::Response, Some(tx));
        s.append(b"{}", 16, true);
        s.close();
        assert_eq!(got(&mut rx), ["4-1"]);
        assert!(!s.is_live());
    }

    #[test]
    fn a_held_event_the_log_evicts_is_written_as_it_leaves_and_counted() {
        let (tx, mut rx) = stream_queue::channel(16);
        let mut s = StreamState::new(5, StreamKind::Standalone, Some(tx));
        for _ in 0..3 {
            s.append(b"{}", 2, true);
        }
        assert_eq!(got(&mut rx), ["5-1"], "evicted, so written now");
        assert_eq!(s.take_forced(), 1);
        assert_eq!(s.take_forced(), 0);
        s.release(3);
        assert_eq!(got(&mut rx), ["5-2", "5-3"]);
    }

    proptest::proptest! {
        #[test]
        fn event_ids_round_trip(stream in proptest::prelude::any::<u32>(), seq in proptest::prelude::any::<u32>()) {
            let id = EventId { stream, seq };
            proptest::prop_assert_eq!(EventId::parse(&id.to_string()), Some(id));
        }

        #[test]
        fn resume_replays_exactly_the_missed_events(total in 1u32..40, seen in 0u32..40, cap in 1usize..16) {
            let mut s = StreamState::new(1, StreamKind::Response, None);
            for i in 0..total {
                s.push(format!("{i}").as_bytes(), cap);
            }
            let (tx, mut rx) = stream_queue::channel(64);
            let complete = s.resume(seen, tx);
            let mut got = Vec::new();
            while let Some(ev) = rx.try_recv() {
                got.push(ev);
            }
            let oldest = total.saturating_sub(cap as u32) + 1;
            let expected = total.saturating_sub(seen.max(oldest - 1));
            proptest::prop_assert_eq!(got.len() as u32, expected);
            proptest::prop_assert_eq!(complete, seen + 1 >= oldest);
        }
    }
}
