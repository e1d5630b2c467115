//! Latency percentiles for [`StorageStatistics`](crate::StorageStatistics): a lock-free
//! histogram with four buckets per doubling (a percentile is the upper bound of its bucket,
//! at most 25 % above the true value, and never above the maximum seen).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::striped::Striped;

/// Octaves above 1 µs the buckets cover (2^40 µs is 12 days; anything longer is counted in
/// the last bucket).
const OCTAVES: usize = 40;
/// Bucket 0 holds durations under 1 µs; then four per octave.
const BUCKETS: usize = 1 + OCTAVES * 4;

/// Percentiles of a latency distribution, in milliseconds (0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LatencyPercentiles {
    /// Operations recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// The slowest.
    pub max_ms: f64,
}

/// One thread's share of the live histogram.
#[derive(Debug)]
struct Counts {
    buckets: [AtomicU64; BUCKETS],
    max_nanos: AtomicU64,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_nanos: AtomicU64::new(0),
        }
    }
}

/// The live histogram, striped per thread (`striped.rs`: every read records into it, and one
/// copy shared by every thread moved its lines between the cores on every read); a snapshot
/// adds the stripes up, so the counts are exact.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    stripes: Striped<Counts>,
}

/// The bucket of a duration of `micros` µs.
fn bucket(micros: u64) -> usize {
    if micros == 0 {
        return 0;
    }
    let octave = 63 - micros.leading_zeros();
    // The two bits below the leading one: which quarter of the octave.
    let quarter = ((micros << (63 - octave)) >> 61) & 3;
    let index =
        1 + usize::try_from(octave).unwrap_or(OCTAVES) * 4 + usize::try_from(quarter).unwrap_or(0);
    index.min(BUCKETS - 1)
}

/// The upper bound of bucket `index`, in microseconds.
#[expect(
    clippy::cast_precision_loss,
    reason = "statistics: bucket bounds as f64"
)]
fn upper_micros(index: usize) -> f64 {
    if index == 0 {
        return 1.0;
    }
    let octave = (index - 1) / 4;
    let quarter = (index - 1) % 4;
    let base = 2f64.powi(i32::try_from(octave).unwrap_or(i32::MAX));
    base * (5 + quarter) as f64 / 4.0
}

impl LatencyHistogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let counts = self.stripes.local();
        if let Some(b) = counts.buckets.get(bucket(nanos / 1000)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        // A load first: a new maximum is rare, and `fetch_max` always writes.
        if counts.max_nanos.load(Ordering::Relaxed) < nanos {
            counts.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    #[expect(
        clippy::cast_precision_loss,
        reason = "statistics: percentiles of u64 counters as f64"
    )]
    pub(crate) fn percentiles(&self) -> LatencyPercentiles {
        let mut counts = vec![0u64; BUCKETS];
        let mut max_nanos = 0;
        for stripe in self.stripes.iter() {
            for (sum, b) in counts.iter_mut().zip(&stripe.buckets) {
                *sum = sum.saturating_add(b.load(Ordering::Relaxed));
            }
            max_nanos = max_nanos.max(stripe.max_nanos.load(Ordering::Relaxed));
        }
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencyPercentiles::default();
        }
        let max_ms = max_nanos as f64 / 1e6;
        let at = |per_mille: u64| {
            // The smallest bucket whose cumulative count reaches rank ceil(q * count).
            let rank = count.saturating_mul(per_mille).div_ceil(1000).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return (upper_micros(i) / 1000.0).min(max_ms);
                }
            }
            max_ms
        };
        LatencyPercentiles {
            count,
            p50_ms: at(500),
            p90_ms: at(900),
            p99_ms: at(990),
            max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        for micros in [1u64, 2, 3, 5, 7, 8, 9, 100, 1_000, 123_456, 10_000_000] {
            let b = bucket(micros);
            #[expect(clippy::cast_precision_loss, reason = "test values are small")]
            let v = micros as f64;
            assert!(
                upper_micros(b) > v,
                "{micros} µs is below its bucket's bound"
            );
            assert!(
                upper_micros(b) <= v * 1.25 + 1.0,
                "{micros} µs: bound too loose"
            );
            assert!(
                b == 0 || upper_micros(b - 1) <= v,
                "{micros} µs in too high a bucket"
            );
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = LatencyHistogram::default();
        assert_eq!(h.percentiles(), LatencyPercentiles::default());
        // 90 fast operations (1 ms) and 10 slow ones (100 ms).
        for _ in 0..90 {
            h.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(100));
        }
        let p = h.percentiles();
        assert_eq!(p.count, 100);
        assert!((1.0..=1.25).contains(&p.p50_ms), "{p:?}");
        assert!((1.0..=1.25).contains(&p.p90_ms), "{p:?}");
        assert!(
            (p.p99_ms - 100.0).abs() < 1e-9,
            "capped at the maximum: {p:?}"
        );
        assert!((p.max_ms - 100.0).abs() < 1e-9, "{p:?}");
    }
}
