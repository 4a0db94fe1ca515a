//! The simulated clients: each holds one legacy session, opens its GET stream, makes calls
//! whose answers stream events, changes its log level, and resumes any stream that ends early
//! with its last event id through whatever node it reaches — and checks, event by event, what
//! the invariants promise: no gap, no event it saw missing or changed where it resumes, no
//! acknowledged change undone, no acknowledged session lost while fewer than R holders died.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};

use crate::action::Ticket;
use crate::data::StreamKind;
use crate::id::SessionId;

use super::links::Idx;

/// A log level as the session holds it: the value and the change that set it (its tag, kept in
/// the session's `next_request`, which the simulated clients do not otherwise use). Levels are
/// compared by both: a copy holding the same value from an earlier change (a level set
/// 1 → 2 → 1, a copy from before the 2) does not hold what the client was told — it missed
/// two acknowledged changes — and a take-over from it would have undone them, whatever the
/// values say (seed 900009399).
pub(crate) type Level = (u8, i64);

/// One stream a client reads.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    pub(crate) stream: u32,
    pub(crate) kind: StreamKind,
    /// Where it is attached (the owner's node and that node's generation), if anywhere.
    pub(crate) at: Option<(Idx, u64)>,
    /// The last event number seen.
    pub(crate) last: u32,
    /// The stream ended (every event shown).
    pub(crate) ended: bool,
}

/// One client and what it saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    pub(crate) session: Option<SessionId>,
    /// `initialize` was answered: the session must survive while fewer than R holders die.
    pub(crate) acked: bool,
    /// Waiting for the ticket of `initialize` at a node (its generation).
    pub(crate) creating: Option<(Idx, u64, Ticket)>,
    /// Lost while all its holders were dead: allowed.
    pub(crate) lost_legit: bool,
    /// Lost otherwise: a violation (recorded once).
    pub(crate) lost: bool,
    pub(crate) readers: Vec<Reader>,
    /// The log level the last acknowledged change set (with the change that set it), and a
    /// change waiting for its ticket.
    pub(crate) level: Option<Level>,
    pub(crate) updating: Option<(Idx, u64, Ticket, Level)>,
    /// A later change whose outcome is unknown (not acknowledged, or its node died before
    /// answering): the session's level is `level` or this one — any other undoes what the
    /// client was told. (Two such changes in a row and the simulator stops checking the level
    /// until the next acknowledged one.)
    pub(crate) level_alt: Option<Level>,
    /// Per stream, the hash of every event seen (index = seq - 1).
    pub(crate) seen: HashMap<u32, Vec<u64>, BuildHasherDefault<DefaultHasher>>,
    /// Calls made.
    pub(crate) calls: u64,
}

impl Client {
    pub(crate) fn reader_mut(&mut self, stream: u32) -> Option<&mut Reader> {
        self.readers.iter_mut().find(|r| r.stream == stream)
    }

    /// Whether it may do something else now (nothing it waits for).
    pub(crate) fn idle(&self) -> bool {
        self.creating.is_none() && self.updating.is_none()
    }

    /// A change to level `v` whose outcome is unknown.
    pub(crate) fn level_unknown(&mut self, v: Level) {
        if self.level_alt.is_none() {
            self.level_alt = Some(v);
        } else {
            self.level = None;
            self.level_alt = None;
        }
    }

    /// Whether `have` is a level the session may have.
    pub(crate) fn level_may_be(&self, have: Level) -> bool {
        self.level
            .is_none_or(|want| want == have || self.level_alt == Some(have))
    }
}

/// FNV-1a of an event's bytes.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
