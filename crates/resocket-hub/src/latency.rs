//! A lock-free latency histogram: fixed buckets of relaxed atomics, for round trips timed on
//! hot paths (every Redis call of a publish), rendered as a Prometheus histogram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Bucket upper bounds in microseconds: 100 µs to 1 s, about three per decade.
const BOUNDS_US: [u64; 13] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// Round-trip times: per-bucket counts, their sum and count, and the latest one.
///
/// Each record is four relaxed increments and a store; readers may see a record half applied
/// (a count one ahead of its bucket), which a statistic tolerates and a lock would not repay.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Non-cumulative: `buckets[i]` counts samples in `(BOUNDS_US[i-1], BOUNDS_US[i]]`; the
    /// last slot counts those above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
    last_us: AtomicU64,
}

/// What a [`Histogram`] holds at one instant, for the stats snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Samples recorded.
    pub(crate) count: u64,
    /// Their sum, in microseconds.
    pub(crate) sum_us: u64,
    /// The latest sample, in microseconds.
    pub(crate) last_us: u64,
}

impl Totals {
    /// The mean round trip since `earlier`, in microseconds; `None` without samples between.
    pub(crate) fn mean_since(&self, earlier: Totals) -> Option<u64> {
        let n = self.count.checked_sub(earlier.count).filter(|n| *n > 0)?;
        Some(self.sum_us.saturating_sub(earlier.sum_us) / n)
    }
}

impl Histogram {
    /// Records one round trip.
    pub(crate) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let slot = BOUNDS_US.partition_point(|b| *b < us);
        self.buckets[slot].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.last_us.store(us, Relaxed);
    }

    /// Count, sum and latest sample.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
            last_us: self.last_us.load(Relaxed),
        }
    }

    /// Appends the histogram as `name_bucket{le=..}`, `name_sum` and `name_count`, in seconds.
    pub(crate) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BOUNDS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let t = self.totals();
        // `+Inf` is the count itself, so the two never disagree however reads interleave.
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", t.count);
        let _ = writeln!(out, "{name}_sum {}", t.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", t.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_cumulative_buckets_with_sum_count_and_last() {
        let h = Histogram::default();
        h.record(Duration::from_micros(80));
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(700));
        h.record(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "rt_seconds", "Round trips.");
        assert!(out.contains("# TYPE rt_seconds histogram"), "{out}");
        assert!(
            out.contains("rt_seconds_bucket{le=\"0.0001\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("rt_seconds_bucket{le=\"0.00025\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("rt_seconds_bucket{le=\"0.001\"} 3\n"), "{out}");
        assert!(out.contains("rt_seconds_bucket{le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("rt_seconds_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("rt_seconds_count 4\n"), "{out}");
        assert!(out.contains("rt_seconds_sum 3.00088\n"), "{out}");
        let t = h.totals();
        assert_eq!(t.last_us, 3_000_000);
        assert_eq!(t.mean_since(Totals::default()), Some(750_220));
        assert_eq!(t.mean_since(t), None);
    }
}
