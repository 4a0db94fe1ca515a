//! The report of a cluster run: its phases summed from the per-second timeline, the sessions
//! lost, the events missed, the final check, the load processes' CPU, and a verdict.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::LostSession;
use super::second::{Kinds, Second, Span};

/// One phase (a ramp stage, the hold, the final check). Phases are whole seconds of the
/// timeline, `[from, to)`; one shorter than a second shares its second with the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `ramp 10000`, `hold`, `final check`.
    pub name: String,
    /// Sessions the phase aimed at (ramp stages).
    pub target: Option<u64>,
    /// The target was reached before the stage's deadline.
    pub reached: Option<bool>,
    /// Seconds from the stage's start until its opens ended (ramp stages).
    pub ramp_seconds: Option<f64>,
    /// Sessions the stage opened per second of `ramp_seconds`.
    pub ramp_rate: Option<f64>,
    /// Sessions held when the stage's opens ended (ramp stages).
    pub held: Option<u64>,
    /// The figures.
    pub span: Span,
}

/// Event ids on the GET streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Events received (priming events not counted).
    pub received: u64,
    /// Ids missing.
    pub gaps: u64,
    /// Ids seen twice.
    pub duplicates: u64,
    /// Streams the node forgot after events had been delivered on them.
    pub resets: u64,
    /// The same with only the priming event delivered (nothing can be missing).
    pub resets_empty: u64,
    /// Ids that are not `<stream>-<seq>`.
    pub bad_ids: u64,
}

impl Events {
    /// Events missed or seen twice (gaps, duplicates, forgotten streams, bad ids).
    pub fn missed(&self) -> u64 {
        self.gaps + self.duplicates + self.resets + self.bad_ids
    }
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// Label.
    pub label: String,
    /// The nodes' endpoints, in the order the run numbers them.
    pub nodes: Vec<String>,
    /// Load processes.
    pub processes: u32,
    /// The run's start (Unix ms): `t` in the timeline counts seconds from here.
    pub t0_unix_ms: u64,
    /// Sessions asked for (the last stage).
    pub sessions_requested: u64,
    /// Calls per second asked for.
    pub rate: f64,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// The whole run.
    pub total: Span,
    /// Sessions lost.
    pub lost: u64,
    /// By reason.
    pub lost_reasons: Kinds,
    /// The first lost sessions of each process.
    pub lost_sessions: Vec<LostSession>,
    /// Event ids.
    pub events: Events,
    /// Sessions the final check called / that passed it.
    pub final_checked: u64,
    /// See `final_checked`.
    pub final_ok: u64,
    /// Load processes' CPU seconds, user and system.
    pub loader_cpu_user_s: f64,
    /// See `loader_cpu_user_s`.
    pub loader_cpu_sys_s: f64,
    /// What went wrong with the load processes themselves (exits, time limits).
    pub problems: Vec<String>,
    /// Why the run failed (empty: passed).
    pub failures: Vec<String>,
    /// Every second, all processes merged.
    pub timeline: Vec<Second>,
}

impl ClusterReport {
    /// Fills `total`, `events`, `lost_reasons` from the timeline and decides the verdict:
    /// at most `max_lost` sessions lost, at most `max_missed` events missed, every stage
    /// reached, no open failure, the final check complete, no problem with the load itself.
    pub fn conclude(&mut self, max_lost: u64, max_missed: u64) {
        let end = self.timeline.last().map_or(0, |s| s.t + 1);
        self.total = Span::of(&self.timeline, 0, end);
        let s = &self.total.sum;
        self.events = Events {
            received: s.events,
            gaps: s.gaps,
            duplicates: s.duplicates,
            resets: s.resets,
            resets_empty: s.resets_empty,
            bad_ids: s.bad_ids,
        };
        self.lost_reasons = s.lost_reasons.clone();
        self.loader_cpu_user_s = s.cpu_user_s;
        self.loader_cpu_sys_s = s.cpu_sys_s;
        let mut f = Vec::new();
        if self.lost > max_lost {
            f.push(format!(
                "{} sessions lost (at most {max_lost} allowed)",
                self.lost
            ));
        }
        if self.events.missed() > max_missed {
            f.push(format!(
                "events: {} gaps, {} duplicates, {} forgotten streams, {} bad ids (at most {max_missed} allowed)",
                self.events.gaps, self.events.duplicates, self.events.resets, self.events.bad_ids
            ));
        }
        for p in &self.phases {
            if p.reached == Some(false) {
                f.push(format!(
                    "{}: {} held of {} when the stage's deadline passed",
                    p.name,
                    p.held.unwrap_or(p.span.held_end),
                    p.target.unwrap_or(0)
                ));
            }
        }
        if s.open_failed > 0 {
            f.push(format!("{} sessions could not be opened", s.open_failed));
        }
        if self.final_ok < self.final_checked {
            f.push(format!(
                "final check: {} of {} sessions passed",
                self.final_ok, self.final_checked
            ));
        }
        f.extend(self.problems.iter().cloned());
        self.failures = f;
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let kv = |m: &Kinds| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(s, "label        {}", self.label);
        let _ = writeln!(
            s,
            "nodes        {} ({}), {} load process{}",
            self.nodes.len(),
            self.nodes.join(" "),
            self.processes,
            if self.processes == 1 { "" } else { "es" }
        );
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>6} {:>8} {:>7}",
            "phase",
            "held",
            "secs",
            "ramp/s",
            "calls/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p999 ms",
            "err %",
            "lost",
            "gaps",
            "impaired",
            "cpu s"
        );
        for p in self
            .phases
            .iter()
            .map(|p| (p.name.as_str(), &p.span, p.reached, p.ramp_rate, p.held))
            .chain([("whole run", &self.total, None, None, None)])
        {
            let (name, sp, reached, ramp_rate, held) = p;
            let l = &sp.latency;
            let _ = writeln!(
                s,
                "{:<16} {:>8} {:>7} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7.3} {:>6} {:>6} {:>8} {:>7.1}{}",
                name,
                held.unwrap_or(sp.held_end),
                sp.to.saturating_sub(sp.from),
                ramp_rate.unwrap_or(sp.open_rate),
                sp.call_rate,
                ms(l.p50_us),
                ms(l.p95_us),
                ms(l.p99_us),
                ms(l.p999_us),
                sp.error_rate * 100.0,
                sp.sum.lost,
                sp.sum.gaps + sp.sum.duplicates + sp.sum.resets,
                sp.impaired_max,
                sp.sum.cpu_user_s + sp.sum.cpu_sys_s,
                if reached == Some(false) {
                    "  NOT REACHED"
                } else {
                    ""
                }
            );
        }
        let t = &self.total.sum;
        let _ = writeln!(
            s,
            "sessions     {} opened, {} failed to open, {} lost ({}); final check {} of {} passed",
            t.opened,
            t.open_failed,
            self.lost,
            kv(&self.lost_reasons),
            self.final_ok,
            self.final_checked
        );
        let _ = writeln!(
            s,
            "calls        {} answered, {} never answered, {} due with no session held, {} retries; the load's own lateness at most {:.2} ms, its longest stall {:.2} ms; latency from the due time: p50 {:.2} p95 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms",
            t.calls_ok,
            t.calls_failed,
            t.unsent,
            t.retries,
            t.late_max_us as f64 / 1000.0,
            t.stall_max_us as f64 / 1000.0,
            ms(self.total.latency.p50_us),
            ms(self.total.latency.p95_us),
            ms(self.total.latency.p99_us),
            ms(self.total.latency.p999_us),
            ms(self.total.latency.max_us)
        );
        let _ = writeln!(
            s,
            "streams      {} events, {} gaps, {} duplicates, {} forgotten ({} with only the priming event), {} resumed; announcements {} ok, {} failed",
            self.events.received,
            self.events.gaps,
            self.events.duplicates,
            self.events.resets,
            self.events.resets_empty,
            t.resumes,
            t.announces_ok,
            t.announces_failed
        );
        let _ = writeln!(
            s,
            "outages      {} ended, longest {:.3} s, most sessions at once {}",
            t.outages,
            t.outage_max_ms as f64 / 1000.0,
            self.total.impaired_max
        );
        let _ = writeln!(s, "errors       {}", kv(&t.errors));
        let _ = writeln!(
            s,
            "load cpu     {:.1} s user + {:.1} s system",
            self.loader_cpu_user_s, self.loader_cpu_sys_s
        );
        for l in self.lost_sessions.iter().take(10) {
            let _ = writeln!(
                s,
                "LOST         shard {} #{} {} (created on node {}): {} at {:.3} s; last error {}",
                l.shard,
                l.index,
                l.session,
                l.home,
                l.reason,
                l.at_ms as f64 / 1000.0,
                l.last_error
            );
        }
        if self.failures.is_empty() {
            let _ = writeln!(s, "verdict      PASSED");
        } else {
            for f in &self.failures {
                let _ = writeln!(s, "FAILED       {f}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_on_losses_missed_events_and_stalled_stages() {
        let mut r = ClusterReport {
            timeline: vec![Second {
                t: 0,
                held: 5,
                opened: 5,
                ..Second::default()
            }],
            phases: vec![Phase {
                name: "ramp 10".into(),
                target: Some(10),
                reached: Some(false),
                ..Phase::default()
            }],
            ..ClusterReport::default()
        };
        r.conclude(0, 0);
        assert!(!r.passed());
        assert!(r.failures[0].contains("ramp 10"), "{:?}", r.failures);
        r.phases.clear();
        r.conclude(0, 0);
        assert!(r.passed(), "{:?}", r.failures);
        r.timeline[0].gaps = 2;
        r.lost = 1;
        r.conclude(0, 0);
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        r.conclude(1, 2);
        assert!(r.passed());
        assert!(r.text().contains("PASSED"));
    }
}
