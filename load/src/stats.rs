//! Latency histograms: recording, percentiles, a per-second timeline, and a compact form that
//! shard processes send to the parent so their histograms merge exactly.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

/// A latency histogram in microseconds, 1 µs to 60 s.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::with_precision(3)
    }
}

impl Hist {
    /// A histogram with `sigfig` significant digits (2 for per-second figures: ten times
    /// fewer buckets than 3).
    pub fn with_precision(sigfig: u8) -> Self {
        // 1 µs to 60 s at 2 or 3 significant digits: constant, valid bounds.
        Self(Histogram::new_with_bounds(1, 60_000_000, sigfig).expect("valid histogram bounds"))
    }

    /// Records one duration (clamped to the histogram's range).
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record((d.as_micros() as u64).max(1));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Hist) {
        let _ = self.0.add(&other.0);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The percentiles (all zero when empty).
    pub fn latency(&self) -> Latency {
        if self.0.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: self.0.value_at_quantile(0.50),
            p95_us: self.0.value_at_quantile(0.95),
            p99_us: self.0.value_at_quantile(0.99),
            p999_us: self.0.value_at_quantile(0.999),
            max_us: self.0.max(),
        }
    }

    /// The compact form: `(value, count)` for every non-empty bucket.
    pub fn to_bins(&self) -> Bins {
        Bins(
            self.0
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    /// Rebuilds a histogram from [`Hist::to_bins`].
    pub fn from_bins(bins: &Bins) -> Self {
        let mut h = Self::default();
        h.add_bins(bins);
        h
    }

    /// Adds the values of `bins`.
    pub fn add_bins(&mut self, bins: &Bins) {
        for &(value, count) in &bins.0 {
            let _ = self.0.record_n(value.clamp(1, 60_000_000), count);
        }
    }
}

/// A histogram as `(value µs, count)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bins(pub Vec<(u64, u64)>);

impl Bins {
    /// Adds `other` (both sorted by value, as [`Hist::to_bins`] makes them; histograms of the
    /// same precision share bucket values, so the sum is exact).
    pub fn merge(&mut self, other: &Bins) {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i].0 == b[j].0 {
                out.push((a[i].0, a[i].1 + b[j].1));
                i += 1;
                j += 1;
            } else if a[i].0 < b[j].0 {
                out.push(a[i]);
                i += 1;
            } else {
                out.push(b[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.0 = out;
    }
}

/// Latency and outcomes per second of the call phase (by due time), for the plot.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

#[derive(Debug, Clone, Default)]
struct Second {
    latency: Option<Hist>,
    errors: u64,
}

/// One second of the timeline, as reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds since the call phase started.
    pub second: u32,
    /// Calls answered with a result.
    pub ok: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Percentiles of the answered calls.
    pub latency: Latency,
    /// The histogram, for merging across shards.
    pub bins: Bins,
}

impl Timeline {
    fn slot(&mut self, at: Duration) -> &mut Second {
        let i = (at.as_secs() as usize).min(3_600);
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    /// An answered call due `at` after the start, with its latency.
    pub fn ok(&mut self, at: Duration, latency: Duration) {
        self.slot(at)
            .latency
            .get_or_insert_with(|| Hist::with_precision(2))
            .record(latency);
    }

    /// A failed call due `at` after the start.
    pub fn error(&mut self, at: Duration) {
        self.slot(at).errors += 1;
    }

    /// Adds another timeline second by second.
    pub fn merge(&mut self, other: &[SecondReport]) {
        for s in other {
            let slot = self.slot(Duration::from_secs(u64::from(s.second)));
            slot.errors += s.errors;
            let h = Hist::from_bins(&s.bins);
            match &mut slot.latency {
                Some(mine) => mine.merge(&h),
                None => slot.latency = Some(h),
            }
        }
    }

    /// The timeline as reported.
    pub fn report(&self) -> Vec<SecondReport> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| SecondReport {
                second: i as u32,
                ok: s.latency.as_ref().map_or(0, Hist::count),
                errors: s.errors,
                latency: s.latency.as_ref().map(Hist::latency).unwrap_or_default(),
                bins: s.latency.as_ref().map(Hist::to_bins).unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_round_trip_keeps_percentiles() {
        let mut h = Hist::default();
        for us in 1..=10_000u64 {
            h.record(Duration::from_micros(us));
        }
        let back = Hist::from_bins(&h.to_bins());
        assert_eq!(back.count(), 10_000);
        assert_eq!(back.latency(), h.latency());
        assert!((9_890..=9_910).contains(&h.latency().p99_us));
    }

    #[test]
    fn timelines_merge_by_second() {
        let mut a = Timeline::default();
        a.ok(Duration::from_millis(100), Duration::from_micros(200));
        a.error(Duration::from_millis(1_500));
        let mut b = Timeline::default();
        b.ok(Duration::from_millis(900), Duration::from_micros(400));
        b.ok(Duration::from_millis(2_100), Duration::from_micros(800));
        a.merge(&b.report());
        let r = a.report();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].ok, r[0].errors), (2, 0));
        assert_eq!((r[1].ok, r[1].errors), (0, 1));
        assert_eq!(r[2].ok, 1);
        assert!(r[0].latency.max_us >= 400);
    }
}
