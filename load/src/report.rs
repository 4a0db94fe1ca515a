//! The report of a whole run: shard results merged, the server's memory, text and JSON output.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::probe::NodeGauges;
use crate::run::{CallReport, Errors, RampReport};
use crate::stats::{Hist, Latency, SecondReport, Timeline};

/// One memory sample taken while sessions ramp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MemorySample {
    /// Seconds since the ramp started.
    pub t: f64,
    /// Sessions held at that moment (all processes).
    pub held: u64,
    /// Server RSS in bytes.
    pub rss_bytes: u64,
}

/// What the server looked like.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerReport {
    /// RSS before the ramp.
    pub rss_idle_bytes: u64,
    /// RSS with every session held, before the call phase.
    pub rss_held_bytes: u64,
    /// RSS after the call phase, sessions still held.
    pub rss_end_bytes: u64,
    /// `(rss_held - rss_idle) / sessions held`: memory per open idle connection with its session
    /// (legacy: and its GET stream).
    pub bytes_per_connection: u64,
    /// Samples during the ramp.
    pub samples: Vec<MemorySample>,
    /// mcp-node's own gauges with every session held (when `--admin` was given).
    pub node_gauges: Option<NodeGauges>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Free-form label (server name, level).
    pub label: String,
    /// Load-generator processes used.
    pub processes: u32,
    /// Sessions requested.
    pub sessions_requested: u32,
    /// Sessions held open at the end of the ramp.
    pub sessions_held: u32,
    /// Seconds the ramp took (the slowest process).
    pub ramp_seconds: f64,
    /// Sessions opened per second over the ramp.
    pub ramp_per_sec: f64,
    /// Target call rate.
    pub rate: f64,
    /// Calls due in the call phase.
    pub calls_due: u64,
    /// Calls answered with a result.
    pub calls_ok: u64,
    /// Answered calls per second over the call phase.
    pub throughput_per_sec: f64,
    /// Latency from the due time (what a client on a schedule sees, generator lateness
    /// included).
    pub latency: Latency,
    /// Latency from the moment the request was written (service time only).
    pub service: Latency,
    /// Failures by kind (ramp and calls).
    pub errors: Errors,
    /// Per second of the call phase.
    pub timeline: Vec<SecondReport>,
    /// The server's memory, when its pid was given.
    pub server: Option<ServerReport>,
}

impl Report {
    /// Merges the shards' results.
    pub fn merge(
        label: &str,
        rate: f64,
        duration_secs: f64,
        ramps: &[RampReport],
        calls: &[CallReport],
    ) -> Self {
        let mut r = Report {
            label: label.to_string(),
            processes: ramps.len().max(calls.len()) as u32,
            rate,
            ..Report::default()
        };
        for ramp in ramps {
            r.sessions_requested += ramp.requested;
            r.sessions_held += ramp.held;
            r.ramp_seconds = r.ramp_seconds.max(ramp.seconds);
            add_errors(&mut r.errors, &ramp.errors);
        }
        if r.ramp_seconds > 0.0 {
            r.ramp_per_sec = f64::from(r.sessions_held) / r.ramp_seconds;
        }
        let (mut latency, mut service, mut timeline) =
            (Hist::default(), Hist::default(), Timeline::default());
        let mut seconds: f64 = 0.0;
        for c in calls {
            r.calls_due += c.due;
            r.calls_ok += c.ok;
            seconds = seconds.max(c.seconds);
            latency.merge(&Hist::from_bins(&c.latency));
            service.merge(&Hist::from_bins(&c.service));
            timeline.merge(&c.timeline);
            add_errors(&mut r.errors, &c.errors);
        }
        if r.calls_due > 0 {
            r.throughput_per_sec = r.calls_ok as f64 / seconds.max(duration_secs).max(1e-9);
        }
        r.latency = latency.latency();
        r.service = service.latency();
        r.timeline = timeline.report();
        r
    }

    /// Failures of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "label             {}", self.label);
        let _ = writeln!(
            s,
            "sessions held     {}/{} (ramp {:.2} s, {:.0}/s, {} process{})",
            self.sessions_held,
            self.sessions_requested,
            self.ramp_seconds,
            self.ramp_per_sec,
            self.processes,
            if self.processes == 1 { "" } else { "es" }
        );
        if self.rate > 0.0 {
            let _ = writeln!(
                s,
                "calls             {} due at {:.0}/s, {} ok, {:.0}/s answered",
                self.calls_due, self.rate, self.calls_ok, self.throughput_per_sec
            );
        } else {
            let _ = writeln!(
                s,
                "calls             {} sent closed-loop, {} ok, {:.0}/s answered",
                self.calls_due, self.calls_ok, self.throughput_per_sec
            );
        }
        let l = &self.latency;
        let _ = writeln!(
            s,
            "latency (us)      p50 {} p95 {} p99 {} p99.9 {} max {}  (from the due time)",
            l.p50_us, l.p95_us, l.p99_us, l.p999_us, l.max_us
        );
        let v = &self.service;
        let _ = writeln!(
            s,
            "service (us)      p50 {} p95 {} p99 {} p99.9 {} max {}  (from the actual send)",
            v.p50_us, v.p95_us, v.p99_us, v.p999_us, v.max_us
        );
        if let Some(m) = &self.server {
            let _ = writeln!(
                s,
                "server rss        idle {:.1} MiB, held {:.1} MiB, end {:.1} MiB; {} B per connection",
                mib(m.rss_idle_bytes),
                mib(m.rss_held_bytes),
                mib(m.rss_end_bytes),
                m.bytes_per_connection
            );
            if let Some(g) = &m.node_gauges {
                let gauges: Vec<String> = g.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(s, "node gauges       {}", gauges.join(" "));
            }
        }
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors            none");
        } else {
            for (kind, n) in &self.errors {
                let _ = writeln!(s, "errors            {kind}: {n}");
            }
        }
        s
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn add_errors(into: &mut Errors, from: &Errors) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn merges_shards_exactly() {
        let mut a = Hist::default();
        let mut b = Hist::default();
        for us in 1..=100 {
            a.record(Duration::from_micros(us));
            b.record(Duration::from_micros(us + 100));
        }
        let call = |h: &Hist, ok| CallReport {
            due: 100,
            ok,
            seconds: 1.0,
            latency: h.to_bins(),
            service: h.to_bins(),
            timeline: Vec::new(),
            errors: [("http_503".to_string(), 100 - ok)].into(),
        };
        let ramp = RampReport {
            requested: 10,
            held: 10,
            seconds: 0.5,
            errors: Errors::new(),
        };
        let r = Report::merge(
            "x",
            200.0,
            1.0,
            &[ramp.clone(), ramp],
            &[call(&a, 100), call(&b, 98)],
        );
        assert_eq!((r.sessions_held, r.calls_due, r.calls_ok), (20, 200, 198));
        assert_eq!(r.errors.get("http_503"), Some(&2));
        assert_eq!(r.latency.max_us, 200);
        assert_eq!(r.latency.p50_us, 100);
        assert!((r.ramp_per_sec - 40.0).abs() < 1e-9);
        assert!(r.text().contains("198 ok"));
    }
}
