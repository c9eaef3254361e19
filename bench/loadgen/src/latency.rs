//! Percentiles of recorded latencies (nearest rank, exact: every sample is kept).

use std::time::Duration;

/// Sorted latencies of one run.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub(crate) fn from_samples(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// The nearest-rank percentile `p` (0 < p ≤ 100) in milliseconds; 0 without samples.
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        let count = self.sorted.len();
        if count == 0 {
            return 0.0;
        }
        // Nearest rank: the smallest sample with at least p% of the samples at or below it.
        let rank = ((p / 100.0) * count as f64).ceil() as usize;
        let index = rank.clamp(1, count) - 1;
        self.sorted
            .get(index)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1_000.0)
    }

    pub(crate) fn max_ms(&self) -> f64 {
        self.sorted
            .last()
            .map_or(0.0, |latency| latency.as_secs_f64() * 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Latencies {
        Latencies::from_samples(values.iter().map(|ms| Duration::from_millis(*ms)).collect())
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let latencies = millis(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(latencies.percentile_ms(50.0), 50.0);
        assert_eq!(latencies.percentile_ms(99.0), 99.0);
        assert_eq!(latencies.percentile_ms(100.0), 100.0);
        assert_eq!(latencies.max_ms(), 100.0);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let latencies = millis(&[7]);
        assert_eq!(latencies.percentile_ms(1.0), 7.0);
        assert_eq!(latencies.percentile_ms(99.0), 7.0);
    }

    #[test]
    fn no_samples_give_zero() {
        let latencies = millis(&[]);
        assert_eq!(latencies.percentile_ms(50.0), 0.0);
        assert_eq!(latencies.max_ms(), 0.0);
    }
}
