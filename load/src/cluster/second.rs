//! One second of a cluster run: what a shard counted in it, in a form that adds up exactly
//! across shards and over the seconds of a phase.
//!
//! Counters count what happened in the second (calls answered, attempts that failed, events,
//! gaps...); gauges are the state at its end (sessions held, streams up, sessions impaired),
//! plus the highest impaired count seen during it. Latency is from each call's due time,
//! recorded in the second the call completed, as `(µs, count)` HDR bins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{Bins, Hist, Latency};

/// Counts by kind (error kinds, loss reasons).
pub type Kinds = BTreeMap<String, u64>;

/// One second, as a shard reports it and as the parent merges it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the run's start (`t0_unix_ms`).
    pub t: u32,
    /// Shards that contributed to this record.
    #[serde(default)]
    pub shards: u32,
    /// Gauge: sessions established and not lost.
    pub held: u64,
    /// Gauge: sessions whose GET stream is open.
    pub streams_up: u64,
    /// Gauge: sessions in an outage (stream broken or a call being retried).
    pub impaired: u64,
    /// Highest `impaired` during the second.
    pub impaired_max: u64,
    /// Gauge: `initialize` exchanges in progress.
    pub opening: u64,
    /// Sessions opened (initialize answered).
    pub opened: u64,
    /// Sessions that could not be opened within the deadline.
    pub open_failed: u64,
    /// Calls (paced) answered with a result.
    pub calls_ok: u64,
    /// Calls that never got a result (each loses its session).
    pub calls_failed: u64,
    /// Calls that came due when no session was held (nothing to call; not an attempt).
    #[serde(default)]
    pub unsent: u64,
    /// Call attempts sent (first tries and retries).
    pub attempts: u64,
    /// Failed attempts of every exchange (initialize, call, stream open), by kind.
    pub errors: Kinds,
    /// Attempts retried on another node.
    pub retries: u64,
    /// Events read from the GET streams (priming events not counted).
    pub events: u64,
    /// Event ids missing (a jump forward in a stream's sequence).
    pub gaps: u64,
    /// Event ids seen again (a sequence number not above the last one).
    pub duplicates: u64,
    /// Resumed streams whose events were forgotten: the node opened a new stream instead.
    pub resets: u64,
    /// The same when only the priming event had been seen (no event can have been missed).
    pub resets_empty: u64,
    /// Events with an id that is not `<stream>-<seq>`.
    pub bad_ids: u64,
    /// Streams reopened (with `Last-Event-ID`) after they broke.
    pub resumes: u64,
    /// Sessions lost (404 after being established, or no success within the deadline).
    pub lost: u64,
    /// Lost sessions by reason.
    pub lost_reasons: Kinds,
    /// Outages that ended.
    pub outages: u64,
    /// Longest of them, milliseconds.
    pub outage_max_ms: u64,
    /// When the last of them ended (ms since the run's start); 0 if none.
    pub recovered_at_ms: u64,
    /// `test_trigger_tool_change` calls answered / failed.
    pub announces_ok: u64,
    /// See `announces_ok`.
    pub announces_failed: u64,
    /// Final-check calls answered (not paced; not in the latency figures).
    pub checked: u64,
    /// The most a paced call's request was written after its due time (the generator's
    /// lateness: its timer and the wait for a free pool connection), µs.
    #[serde(default)]
    pub late_max_us: u64,
    /// How late the shard's once-a-second report woke, µs (the most of any shard): a shard
    /// whose thread was blocked or not scheduled. Its timeouts and session deadlines kept
    /// running meanwhile, so failures in such a second may be the load generator's own.
    #[serde(default)]
    pub stall_max_us: u64,
    /// CPU seconds the shard processes used in this second, user and system.
    pub cpu_user_s: f64,
    /// See `cpu_user_s`.
    pub cpu_sys_s: f64,
    /// Latency from the due time of the calls answered in this second.
    pub latency: Bins,
}

impl Second {
    /// Adds another shard's record for the same second (gauges add too: shards hold disjoint
    /// sessions).
    pub fn merge(&mut self, o: &Second) {
        self.shards += o.shards.max(1);
        self.held += o.held;
        self.streams_up += o.streams_up;
        self.impaired += o.impaired;
        self.impaired_max += o.impaired_max;
        self.opening += o.opening;
        self.add_counters(o);
        self.latency.merge(&o.latency);
    }

    /// Adds the counters (not the gauges) of `o`.
    fn add_counters(&mut self, o: &Second) {
        self.opened += o.opened;
        self.open_failed += o.open_failed;
        self.calls_ok += o.calls_ok;
        self.calls_failed += o.calls_failed;
        self.unsent += o.unsent;
        self.attempts += o.attempts;
        add_kinds(&mut self.errors, &o.errors);
        self.retries += o.retries;
        self.events += o.events;
        self.gaps += o.gaps;
        self.duplicates += o.duplicates;
        self.resets += o.resets;
        self.resets_empty += o.resets_empty;
        self.bad_ids += o.bad_ids;
        self.resumes += o.resumes;
        self.lost += o.lost;
        add_kinds(&mut self.lost_reasons, &o.lost_reasons);
        self.outages += o.outages;
        self.outage_max_ms = self.outage_max_ms.max(o.outage_max_ms);
        self.recovered_at_ms = self.recovered_at_ms.max(o.recovered_at_ms);
        self.announces_ok += o.announces_ok;
        self.announces_failed += o.announces_failed;
        self.checked += o.checked;
        self.late_max_us = self.late_max_us.max(o.late_max_us);
        self.stall_max_us = self.stall_max_us.max(o.stall_max_us);
        self.cpu_user_s += o.cpu_user_s;
        self.cpu_sys_s += o.cpu_sys_s;
    }

    /// Failed attempts of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Adds `from` into `into`.
pub fn add_kinds(into: &mut Kinds, from: &Kinds) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

/// A stretch of seconds summed up: the figures of one phase of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// First second (inclusive).
    pub from: u32,
    /// Last second (exclusive).
    pub to: u32,
    /// Sessions held at the end.
    pub held_end: u64,
    /// Most sessions held at the end of any second.
    pub held_max: u64,
    /// Fewest streams open at the end of any second (with sessions held).
    pub streams_up_min: u64,
    /// Highest impaired count.
    pub impaired_max: u64,
    /// Sessions opened per second over the span.
    pub open_rate: f64,
    /// Answered calls per second over the span.
    pub call_rate: f64,
    /// Failed attempts / attempts (initialize, calls, announcements and stream opens).
    pub error_rate: f64,
    /// Calls that never got a result / calls finished.
    pub call_failure_rate: f64,
    /// Latency from the due time of the calls answered in the span.
    pub latency: Latency,
    /// The counters summed (gauges: those of the last second).
    pub sum: Second,
}

impl Span {
    /// Sums `seconds[from..to]` (seconds are indexed by `t`; missing ones count as empty).
    pub fn of(seconds: &[Second], from: u32, to: u32) -> Self {
        let mut span = Span {
            from,
            to,
            streams_up_min: u64::MAX,
            ..Span::default()
        };
        let mut hist = Hist::with_precision(2);
        let mut last: Option<&Second> = None;
        for s in seconds.iter().filter(|s| s.t >= from && s.t < to) {
            span.sum.add_counters(s);
            span.held_max = span.held_max.max(s.held);
            if s.held > 0 {
                span.streams_up_min = span.streams_up_min.min(s.streams_up);
            }
            span.impaired_max = span.impaired_max.max(s.impaired_max.max(s.impaired));
            hist.add_bins(&s.latency);
            last = Some(s);
        }
        if span.streams_up_min == u64::MAX {
            span.streams_up_min = 0;
        }
        if let Some(l) = last {
            span.held_end = l.held;
            span.sum.held = l.held;
            span.sum.streams_up = l.streams_up;
            span.sum.impaired = l.impaired;
            span.sum.opening = l.opening;
        }
        let secs = f64::from(to.saturating_sub(from)).max(1.0);
        span.open_rate = span.sum.opened as f64 / secs;
        span.call_rate = span.sum.calls_ok as f64 / secs;
        // Every initialize, call, announcement and stream open is one attempt.
        let failed = span.sum.error_count();
        span.error_rate = if span.sum.attempts > 0 {
            (failed as f64 / span.sum.attempts as f64).min(1.0)
        } else {
            0.0
        };
        let finished = span.sum.calls_ok + span.sum.calls_failed;
        span.call_failure_rate = if finished > 0 {
            span.sum.calls_failed as f64 / finished as f64
        } else {
            0.0
        };
        span.latency = hist.latency();
        span
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn second(t: u32, held: u64, lat_us: &[u64]) -> Second {
        let mut h = Hist::with_precision(2);
        for &us in lat_us {
            h.record(Duration::from_micros(us));
        }
        Second {
            t,
            shards: 1,
            held,
            streams_up: held,
            calls_ok: lat_us.len() as u64,
            attempts: lat_us.len() as u64,
            errors: [("call_http_503".to_string(), 1)].into(),
            latency: h.to_bins(),
            ..Second::default()
        }
    }

    #[test]
    fn a_merged_second_keeps_the_longest_stall_of_its_shards() {
        let mut a = second(3, 10, &[100]);
        a.stall_max_us = 1_200_000;
        let mut b = second(3, 5, &[100]);
        b.stall_max_us = 3_400_000;
        a.merge(&b);
        assert_eq!(a.stall_max_us, 3_400_000);
        b.merge(&second(3, 1, &[100]));
        assert_eq!(
            b.stall_max_us, 3_400_000,
            "a shard that did not stall changes nothing"
        );
    }

    #[test]
    fn merges_shards_and_sums_spans() {
        let mut a = second(3, 10, &[100, 200]);
        a.merge(&second(3, 5, &[300]));
        assert_eq!((a.shards, a.held, a.calls_ok), (2, 15, 3));
        assert_eq!(a.errors.get("call_http_503"), Some(&2));
        let seconds = vec![second(0, 1, &[1_000]), a, second(4, 20, &[10_000])];
        let span = Span::of(&seconds, 3, 5);
        assert_eq!(span.held_end, 20);
        assert_eq!(span.held_max, 20);
        assert_eq!(span.sum.calls_ok, 4);
        assert_eq!(span.latency.max_us / 100, 100);
        assert!((span.call_rate - 2.0).abs() < 1e-9);
        // 3 failed attempts of 4.
        assert!((span.error_rate - 3.0 / 4.0).abs() < 1e-9);
        assert_eq!(Span::of(&seconds, 9, 10).held_end, 0);
    }
}
