//! Loss and latency accounting from the seqs and send times a receiver stored.

use hdrhistogram::Histogram;

/// The most seqs a tracker will cover (a 512 MiB bitmap); beyond that seqs count as out of
/// range rather than exhausting memory on a corrupt marker.
pub const MAX_TRACKED_SEQS: u64 = 1 << 32;

/// A bitmap over a run's seqs. Seqs are expected in `first_seq..first_seq + expected`; the
/// bitmap grows when a higher seq arrives (a scan that was not told the count).
#[derive(Debug, Clone)]
pub struct SequenceTracker {
    first_seq: u64,
    expected: u64,
    words: Vec<u64>,
    received: u64,
    duplicates: u64,
    out_of_range: u64,
    /// One past the highest offset seen.
    span_seen: u64,
}

impl SequenceTracker {
    pub fn new(first_seq: u64, expected: u64) -> Self {
        let expected = expected.min(MAX_TRACKED_SEQS);
        Self {
            first_seq,
            expected,
            words: vec![0; expected.div_ceil(64) as usize],
            received: 0,
            duplicates: 0,
            out_of_range: 0,
            span_seen: 0,
        }
    }

    pub fn record(&mut self, seq: u64) {
        let Some(offset) = seq.checked_sub(self.first_seq).filter(|o| *o < MAX_TRACKED_SEQS) else {
            self.out_of_range += 1;
            return;
        };
        let word = (offset / 64) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (offset % 64);
        if self.words[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            self.words[word] |= bit;
            self.received += 1;
        }
        self.span_seen = self.span_seen.max(offset + 1);
    }

    /// Distinct seqs received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Seqs expected (or below the highest seen) and never received.
    pub fn missing(&self) -> u64 {
        self.expected.max(self.span_seen) - self.received
    }

    /// Receipts of a seq already received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Seqs below `first_seq` or absurdly far above it.
    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// An HDR histogram of nanosecond latencies, 1 ns to 1 hour at 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

const HIGHEST_TRACKABLE_NANOS: u64 = 3_600 * 1_000_000_000;

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_NANOS, 3)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one latency; values past an hour are clamped to an hour.
    pub fn record(&mut self, nanos: u64) {
        self.histogram.saturating_record(nanos.max(1));
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn quantile_us(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    pub fn p50_us(&self) -> f64 {
        self.quantile_us(0.5)
    }

    pub fn p99_us(&self) -> f64 {
        self.quantile_us(0.99)
    }

    pub fn p999_us(&self) -> f64 {
        self.quantile_us(0.999)
    }

    pub fn max_us(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }

    /// `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        (self.count() > 0).then(|| LatencySummary {
            p50: self.p50_us(),
            p99: self.p99_us(),
            p999: self.p999_us(),
            max: self.max_us(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_missing_and_duplicates() {
        let mut tracker = SequenceTracker::new(100, 10);
        for seq in [100, 101, 101, 103, 109, 99] {
            tracker.record(seq);
        }
        assert_eq!(tracker.received(), 4);
        assert_eq!(tracker.duplicates(), 1);
        assert_eq!(tracker.missing(), 6);
        assert_eq!(tracker.out_of_range(), 1);
    }

    #[test]
    fn tracker_grows_when_not_told_the_count() {
        let mut tracker = SequenceTracker::new(0, 0);
        for seq in (0..10_000).filter(|s| s % 10 != 0) {
            tracker.record(seq);
        }
        assert_eq!(tracker.received(), 9000);
        assert_eq!(tracker.missing(), 1000);
    }

    #[test]
    fn latency_percentiles_are_in_microseconds() {
        let mut latency = LatencyRecorder::new();
        for us in 1..=1000u64 {
            latency.record(us * 1000);
        }
        let summary = latency.summary().unwrap();
        assert!((summary.p50 - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99 - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max - 1000.0).abs() < 1.0, "{summary:?}");
        assert_eq!(LatencyRecorder::new().summary(), None);
    }
}
