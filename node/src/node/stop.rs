//! The phases of a node's stop (SIGTERM) and which one it is in: set by the shutdown sequence
//! (`lib.rs`, `drain.rs`), read by the stop's watchdog (`drain.rs`'s `StopWatch`).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// The phases of a stop (SIGTERM), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopPhase {
    /// Not stopping.
    Running = 0,
    /// New connections refused, streams ending; the open connections get `shutdownGraceSecs`
    /// to close (`http::serve`) while sessions are handed off in rounds.
    Connections = 1,
    /// `drain::finish`: the sessions still here are handed off, within `drain::HANDOFF_DEADLINE`.
    HandOff = 2,
    /// The membership leave and the peer endpoint's close (`Cluster::leave`).
    Leave = 3,
    /// Upstream sessions ended, the admin endpoint stopped.
    Upstreams = 4,
    /// Every phase ended: the runtime stops its tasks (`drain::RUNTIME_STOP`) and the process exits.
    Exit = 5,
}

impl StopPhase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Connections,
            2 => Self::HandOff,
            3 => Self::Leave,
            4 => Self::Upstreams,
            5 => Self::Exit,
            _ => Self::Running,
        }
    }

    /// What the stop waits for in this phase, for its reports.
    pub fn waits_for(self) -> &'static str {
        match self {
            Self::Running => "nothing (not stopping)",
            Self::Connections => "client connections to close (shutdownGraceSecs)",
            Self::HandOff => "the last hand-offs to be acknowledged",
            Self::Leave => "the membership leave",
            Self::Upstreams => "upstream sessions to end, the admin endpoint to stop",
            Self::Exit => "the runtime to stop its tasks",
        }
    }
}

/// Which phase a stop is in, and since when (ms since the node started).
#[derive(Debug, Default)]
pub struct Stop {
    phase: AtomicU8,
    since_ms: AtomicU64,
}

impl Stop {
    /// Enters `phase` at `now_ms` (the node's clock; logged).
    pub fn enter(&self, now_ms: u64, phase: StopPhase) {
        let was = StopPhase::from_u8(self.phase.swap(phase as u8, Ordering::AcqRel));
        let now = now_ms;
        let since = self.since_ms.swap(now, Ordering::AcqRel);
        if was == phase {
            return;
        }
        if was == StopPhase::Running {
            tracing::info!(phase = ?phase, waits_for = phase.waits_for(), "stop phase");
        } else {
            tracing::info!(
                phase = ?phase,
                waits_for = phase.waits_for(),
                previous = ?was,
                previous_took_ms = now.saturating_sub(since),
                "stop phase"
            );
        }
    }

    /// The current phase and how long it has lasted at `now_ms`.
    pub fn phase(&self, now_ms: u64) -> (StopPhase, Duration) {
        let phase = StopPhase::from_u8(self.phase.load(Ordering::Acquire));
        let since = self.since_ms.load(Ordering::Acquire);
        (phase, Duration::from_millis(now_ms.saturating_sub(since)))
    }
}
