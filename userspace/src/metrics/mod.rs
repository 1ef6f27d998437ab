//! Metrics: statsd/DogStatsD and Influx samples aggregated per listener into points, one
//! per series and flush interval, handed to the control plane through a bounded ring.
//!
//! A series is (name, sorted tags, kind). Each listener thread owns its [`Aggregator`]
//! and shares nothing; the control plane merges points of the same series and interval
//! from several listeners at query time (sums add, minima and maxima combine, histograms
//! merge exactly, see [`histogram`]). Semantics are in docs/metrics.md.

mod aggregate;
pub mod histogram;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use aggregate::{Aggregator, AggregatorSettings, IngestCounts};

use crate::listener::ListenerKind;

/// What a series measures; decides how its samples are folded into a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// statsd `c`: values (scaled by 1/sample rate) add up.
    Counter,
    /// statsd `g`: the last value wins; `+n`/`-n` adjust it.
    Gauge,
    /// statsd `ms`.
    Timer,
    /// statsd `h`.
    Histogram,
    /// DogStatsD `d`.
    Distribution,
    /// statsd `s`: distinct members per interval.
    Set,
    /// An Influx numeric or boolean field: every value is a sample; no histogram, since
    /// Influx senders (Telegraf) mostly send values they aggregated already, and a
    /// histogram per field of every tag set would cost far more than the point.
    Field,
}

impl MetricKind {
    pub const ALL: [MetricKind; 7] = [
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Timer,
        MetricKind::Histogram,
        MetricKind::Distribution,
        MetricKind::Set,
        MetricKind::Field,
    ];

    /// Stable lower-case name, stored and shown by the API.
    pub const fn label(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Timer => "timer",
            MetricKind::Histogram => "histogram",
            MetricKind::Distribution => "distribution",
            MetricKind::Set => "set",
            MetricKind::Field => "field",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.label() == label)
    }

    /// Kinds whose points carry a histogram (and so quantiles).
    pub const fn has_histogram(self) -> bool {
        matches!(self, MetricKind::Timer | MetricKind::Histogram | MetricKind::Distribution)
    }
}

/// One series over one flush interval, as one listener saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: String,
    /// Sorted by key, then value; a statsd tag without a value has an empty one.
    pub tags: Vec<(String, String)>,
    pub kind: MetricKind,
    /// Start of the flush interval, Unix nanoseconds, aligned to a multiple of its length.
    pub interval_start_ns: i64,
    pub interval_ns: i64,
    /// Samples, each weighted by 1/sample rate; distinct members for sets.
    pub count: f64,
    /// Sum of the values, each weighted by 1/sample rate (counters: the estimated total).
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The last value seen (gauges: the gauge after every adjustment).
    pub last: f64,
    /// Quantiles from the histogram, for kinds that keep one.
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    /// The interval's histogram ([`histogram::encode`]), so that points of several
    /// listeners and intervals can be merged exactly at query time.
    pub histogram: Option<Vec<u8>>,
}

/// The points one listener flushed at the end of one interval.
#[derive(Debug)]
pub struct MetricBatch {
    pub listener: ListenerKind,
    pub points: Vec<MetricPoint>,
}

/// Producer side of a listener's point ring.
pub struct MetricProducer {
    ring: rtrb::Producer<MetricBatch>,
    /// Points in batches pushed and not yet popped (shared with the consumer).
    queued_points: Arc<AtomicUsize>,
    max_queued_points: usize,
}

/// Consumer side, owned by the control plane's metric writer.
pub struct MetricConsumer {
    ring: rtrb::Consumer<MetricBatch>,
    queued_points: Arc<AtomicUsize>,
}

/// A ring holding up to `capacity` flushed batches and, past the first, up to
/// `max_queued_points` points. A batch is a whole interval of up to `max_series` points
/// (a few hundred bytes each), so a bound in batches alone let a slow store queue
/// gigabytes; the point bound keeps the memory a listener may queue near a known figure
/// (`metrics.max_queued_points`, docs/adr/0045). An empty ring takes any one batch.
pub fn metric_ring(capacity: usize, max_queued_points: usize) -> (MetricProducer, MetricConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
    let queued_points = Arc::new(AtomicUsize::new(0));
    (
        MetricProducer { ring: producer, queued_points: queued_points.clone(), max_queued_points },
        MetricConsumer { ring: consumer, queued_points },
    )
}

impl MetricProducer {
    /// Hands `batch` off, or gives it back when the ring is full (of batches or points).
    pub fn push(&mut self, batch: MetricBatch) -> Result<(), MetricBatch> {
        let points = batch.points.len();
        // Counted before the push, so the consumer never takes away more than was added.
        let queued = self.queued_points.fetch_add(points, Ordering::AcqRel);
        let result = if queued > 0 && queued.saturating_add(points) > self.max_queued_points {
            Err(batch)
        } else {
            self.ring.push(batch).map_err(|rtrb::PushError::Full(batch)| batch)
        };
        if result.is_err() {
            self.queued_points.fetch_sub(points, Ordering::AcqRel);
        }
        result
    }

    pub fn is_abandoned(&self) -> bool {
        self.ring.is_abandoned()
    }
}

impl MetricConsumer {
    pub fn pop(&mut self) -> Option<MetricBatch> {
        let batch = self.ring.pop().ok()?;
        self.queued_points.fetch_sub(batch.points.len(), Ordering::AcqRel);
        Some(batch)
    }

    /// True when the listener is gone and nothing is left to pop.
    pub fn is_finished(&self) -> bool {
        self.ring.is_abandoned() && self.ring.is_empty()
    }
}

/// Why a metric line was not aggregated. Indexes [`MetricCounters::rejected`].
pub const REJECT_REASONS: [&str; 29] = [
    // Both parsers.
    "not_utf8",
    "invalid_timestamp",
    // statsd.
    "missing_type",
    "missing_value",
    "empty_name",
    "empty_value",
    "unknown_type",
    "invalid_value",
    "invalid_sample_rate",
    "empty_section",
    "malformed_event_header",
    "event_length_mismatch",
    "empty_event_title",
    "empty_service_check_name",
    "invalid_service_check_status",
    // Influx.
    "empty_measurement",
    "malformed_tag",
    "empty_tag_key",
    "empty_tag_value",
    "missing_fields",
    "malformed_field",
    "empty_field_key",
    "empty_field_value",
    "invalid_field_value",
    "number_out_of_range",
    "unterminated_string",
    "timestamp_overflow",
    "trailing_data",
    // A reason a newer parser adds before this list learns it.
    "other",
];

/// Index of `reason` in [`REJECT_REASONS`]; unknown reasons count as `other`.
pub fn reject_index(reason: &str) -> usize {
    REJECT_REASONS.iter().position(|known| *known == reason).unwrap_or(REJECT_REASONS.len() - 1)
}

/// What a metrics listener aggregated, flushed and dropped; single writer (its thread),
/// added to once per receive call or flush.
#[derive(Debug)]
pub struct MetricCounters {
    pub listener: ListenerKind,
    /// Lines read (statsd: one per value of a multi-value line), rejected ones included.
    pub lines: AtomicU64,
    /// Metric values folded into a series (a multi-value statsd line counts each value).
    pub samples: AtomicU64,
    /// Lines rejected by the parser, by reason (index into [`REJECT_REASONS`]); counted
    /// and not kept (docs/adr/0018).
    pub rejected: [AtomicU64; REJECT_REASONS.len()],
    /// DogStatsD events and service checks, and Influx string fields: parsed, counted,
    /// not stored as metrics.
    pub ignored: AtomicU64,
    /// Points handed to the control plane.
    pub points_flushed: AtomicU64,
    /// Points dropped because the ring to the control plane was full.
    pub points_dropped_ring_full: AtomicU64,
    /// Points dropped at shutdown because the control plane no longer consumed.
    pub points_dropped_shutdown: AtomicU64,
    /// New series refused because the listener already tracks `max_series` this interval.
    pub samples_dropped_series_limit: AtomicU64,
}

impl MetricCounters {
    pub fn new(listener: ListenerKind) -> Self {
        Self {
            listener,
            lines: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            ignored: AtomicU64::new(0),
            points_flushed: AtomicU64::new(0),
            points_dropped_ring_full: AtomicU64::new(0),
            points_dropped_shutdown: AtomicU64::new(0),
            samples_dropped_series_limit: AtomicU64::new(0),
        }
    }

    /// Lines rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(crate::counters::ListenerCounters::read).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(points: usize) -> MetricBatch {
        let point = MetricPoint {
            name: "m".into(),
            tags: Vec::new(),
            kind: MetricKind::Counter,
            interval_start_ns: 0,
            interval_ns: 1,
            count: 1.0,
            sum: 1.0,
            min: 1.0,
            max: 1.0,
            last: 1.0,
            p50: None,
            p90: None,
            p99: None,
            histogram: None,
        };
        MetricBatch { listener: ListenerKind::StatsdUdp, points: vec![point; points] }
    }

    #[test]
    fn the_ring_bounds_queued_points_and_takes_any_one_batch_when_empty() {
        let (mut producer, mut consumer) = metric_ring(8, 100);
        assert!(producer.push(batch(150)).is_ok(), "an empty ring takes a batch past the bound");
        let refused = producer.push(batch(10)).expect_err("150 queued: no room");
        assert_eq!(refused.points.len(), 10, "the refused batch comes back whole");
        assert_eq!(consumer.pop().map(|batch| batch.points.len()), Some(150));
        assert!(producer.push(batch(60)).is_ok());
        assert!(producer.push(batch(40)).is_ok(), "exactly at the bound");
        assert!(producer.push(batch(1)).is_err(), "one past it");
        assert_eq!(consumer.pop().map(|batch| batch.points.len()), Some(60));
        assert!(producer.push(batch(60)).is_ok(), "room again once the store took some");
        assert_eq!(consumer.pop().map(|batch| batch.points.len()), Some(40));
        assert_eq!(consumer.pop().map(|batch| batch.points.len()), Some(60));
        assert!(consumer.pop().is_none());
        assert_eq!(producer.queued_points.load(Ordering::Acquire), 0, "every point counted out");
        // The batch bound still holds for small batches.
        for _ in 0..8 {
            assert!(producer.push(batch(1)).is_ok());
        }
        assert!(producer.push(batch(1)).is_err(), "eight batches fill a ring of eight");
    }
}
