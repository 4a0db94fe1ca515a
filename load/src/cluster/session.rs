//! One held session as a shard tracks it: its id, where it was created, its stream's last
//! event id, and whether it is in an outage — kept in `Cell`s (a shard is one thread), a
//! little over 100 bytes each.

use std::cell::{Cell, OnceCell};

use tokio::sync::Notify;

use super::LostSession;
use super::shard::Shard;
use super::sse::Found;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `initialize` not answered yet.
    Opening,
    /// Established.
    Held,
    /// Could not be opened within the deadline.
    Failed,
    /// Lost after being established.
    Lost,
}

/// A session.
#[derive(Debug)]
pub struct Sess {
    /// Index in the shard.
    pub index: u32,
    /// `Mcp-Session-Id`, once established.
    pub id: OnceCell<Box<str>>,
    /// Node that answered `initialize`.
    pub home: Cell<u8>,
    /// Life stage.
    pub state: Cell<State>,
    /// The GET stream is open.
    pub stream_up: Cell<bool>,
    /// The stream has been open at least once.
    pub stream_ever: Cell<bool>,
    /// Since when (ms) the stream is broken or not yet open after a failed attempt.
    pub stream_down_since: Cell<Option<u64>>,
    /// Since when (ms) a call of this session keeps failing.
    pub call_failing_since: Cell<Option<u64>>,
    /// Since when (ms) the session is in an outage (either of the above).
    pub impaired_since: Cell<Option<u64>>,
    /// Last event id seen on its stream, `(stream, seq)`.
    pub last_event: Cell<Option<(u32, u32)>>,
    /// Second (since the start) of the last byte read on the stream.
    pub last_rx_s: Cell<u32>,
    /// Ends the stream's connection (idle past the limit, session lost, run over).
    pub kill: Notify,
}

impl Sess {
    /// A session about to be opened.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            id: OnceCell::new(),
            home: Cell::new(0),
            state: Cell::new(State::Opening),
            stream_up: Cell::new(false),
            stream_ever: Cell::new(false),
            stream_down_since: Cell::new(None),
            call_failing_since: Cell::new(None),
            impaired_since: Cell::new(None),
            last_event: Cell::new(None),
            last_rx_s: Cell::new(0),
            kill: Notify::new(),
        }
    }

    /// The session id (empty before `initialize` was answered).
    pub fn sid(&self) -> &str {
        self.id.get().map_or("", |s| s)
    }

    /// Established and not lost.
    pub fn held(&self) -> bool {
        self.state.get() == State::Held
    }

    /// Re-evaluates the outage state after one of its causes changed.
    pub fn health(&self, shard: &Shard) {
        if !self.held() {
            return;
        }
        let bad = self.stream_down_since.get().is_some() || self.call_failing_since.get().is_some();
        match (self.impaired_since.get(), bad) {
            (None, true) => {
                let since = [self.stream_down_since.get(), self.call_failing_since.get()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or_else(|| shard.clock.ms());
                self.impaired_since.set(Some(since));
                shard.impaired_changed(1);
            }
            (Some(since), false) => {
                self.impaired_since.set(None);
                shard.impaired_changed(-1);
                let now = shard.clock.ms();
                let mut acc = shard.acc.borrow_mut();
                acc.s.outages += 1;
                acc.s.outage_max_ms = acc.s.outage_max_ms.max(now.saturating_sub(since));
                acc.s.recovered_at_ms = acc.s.recovered_at_ms.max(now);
            }
            _ => {}
        }
    }

    /// The stream broke or an attempt to open it failed.
    pub fn stream_down(&self, shard: &Shard) {
        if self.stream_up.replace(false) {
            shard.streams_up_changed(-1);
        }
        if self.stream_down_since.get().is_none() {
            self.stream_down_since.set(Some(shard.clock.ms()));
        }
        self.health(shard);
    }

    /// The stream is open (again).
    pub fn stream_opened(&self, shard: &Shard) {
        if !self.stream_up.replace(true) {
            shard.streams_up_changed(1);
        }
        if self.stream_ever.replace(true) {
            shard.acc.borrow_mut().s.resumes += 1;
        }
        self.stream_down_since.set(None);
        self.last_rx_s.set(shard.clock.second());
        self.health(shard);
    }

    /// A call of this session failed and will be retried.
    pub fn call_failing(&self, shard: &Shard) {
        if self.call_failing_since.get().is_none() {
            self.call_failing_since.set(Some(shard.clock.ms()));
            self.health(shard);
        }
    }

    /// A call of this session was answered.
    pub fn call_ok(&self, shard: &Shard) {
        if self.call_failing_since.take().is_some() {
            self.health(shard);
        }
    }

    /// An event id read on the stream.
    pub fn event(&self, shard: &Shard, found: Found) {
        let mut acc = shard.acc.borrow_mut();
        let Found::Id { stream, seq } = found else {
            acc.s.bad_ids += 1;
            return;
        };
        if seq > 0 {
            acc.s.events += 1;
        }
        match self.last_event.get() {
            None => self.last_event.set(Some((stream, seq))),
            Some((s, _)) if s != stream => {
                // Asked to resume stream `s`, the node opened a new one: whatever was sent on
                // `s` after the last id seen is gone (nothing, if only its priming was seen).
                shard.trace(
                    self,
                    format_args!("forgotten stream {s}: got {stream}-{seq}"),
                );
                if matches!(self.last_event.get(), Some((_, 0))) {
                    acc.s.resets_empty += 1;
                } else {
                    acc.s.resets += 1;
                }
                self.last_event.set(Some((stream, seq)));
            }
            Some((_, last)) if seq <= last => {
                shard.trace(
                    self,
                    format_args!("duplicate {stream}-{seq} after {stream}-{last}"),
                );
                acc.s.duplicates += 1
            }
            Some((_, last)) => {
                if seq > last + 1 {
                    shard.trace(self, format_args!("gap {stream}-{last} -> {stream}-{seq}"));
                }
                acc.s.gaps += u64::from(seq - last - 1);
                self.last_event.set(Some((stream, seq)));
            }
        }
    }

    /// Marks the session lost (once) and ends its stream.
    pub fn lose(&self, shard: &Shard, reason: &str, last_error: String) {
        if !self.held() {
            return;
        }
        if self.impaired_since.take().is_some() {
            shard.impaired_changed(-1);
        }
        if self.stream_up.replace(false) {
            shard.streams_up_changed(-1);
        }
        self.state.set(State::Lost);
        shard.held_changed(-1);
        {
            let mut acc = shard.acc.borrow_mut();
            acc.s.lost += 1;
            *acc.s.lost_reasons.entry(reason.to_string()).or_insert(0) += 1;
        }
        let lost = LostSession {
            shard: shard.cfg.shard,
            index: self.index,
            session: self.sid().to_string(),
            home: u32::from(self.home.get()),
            reason: reason.to_string(),
            at_ms: shard.clock.ms(),
            last_error,
        };
        shard.record_lost(lost);
        self.kill.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_record_stays_small() {
        // 100K sessions over a few processes: the record is what the loader pays per session
        // besides its socket.
        assert!(
            std::mem::size_of::<Sess>() <= 160,
            "{}",
            std::mem::size_of::<Sess>()
        );
    }
}
