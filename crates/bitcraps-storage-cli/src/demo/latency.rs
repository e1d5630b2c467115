//! Latency samples of the demo's calls, and their percentiles.

use std::future::Future;
use std::time::{Duration, Instant};

/// Wall times of one kind of call.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    durations: Vec<Duration>,
}

impl Samples {
    /// Awaits `call` and records how long it took.
    pub async fn time<T>(&mut self, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.durations.push(started.elapsed());
        result
    }

    /// Adds another set of samples.
    pub fn merge(&mut self, other: Samples) {
        self.durations.extend(other.durations);
    }

    /// Number of samples.
    pub fn count(&self) -> usize {
        self.durations.len()
    }

    /// p50, p99 and max (nearest-rank), or `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        let mut sorted = self.durations.clone();
        sorted.sort_unstable();
        let rank = |p: usize| {
            // Nearest rank: the smallest sample with at least p% of samples at or below it.
            let index = (sorted.len() * p).div_ceil(100).saturating_sub(1);
            sorted.get(index).copied()
        };
        Some(Summary {
            p50: rank(50)?,
            p99: rank(99)?,
            max: *sorted.last()?,
        })
    }
}

/// Percentiles of a [`Samples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        assert_eq!(s.summary(), None);
        s.durations = (1..=100).rev().map(Duration::from_millis).collect();
        let sum = s.summary();
        assert_eq!(sum.map(|x| x.p50), Some(Duration::from_millis(50)));
        assert_eq!(sum.map(|x| x.p99), Some(Duration::from_millis(99)));
        assert_eq!(sum.map(|x| x.max), Some(Duration::from_millis(100)));
        let mut one = Samples::default();
        one.durations.push(Duration::from_millis(7));
        s.merge(one);
        assert_eq!(s.count(), 101);
    }
}
