//! Metrics: statsd/DogStatsD and Influx samples aggregated per listener into points, one
//! per series and flush interval, handed to the control plane through a bounded ring.
//!
//! A series is (name, sorted tags, kind). Each listener thread owns its [`Aggregator`]
//! and shares nothing; the control plane merges points of the same series and interval
//! from several listeners at query time (sums add, minima and maxima combine, histograms
//! merge exactly, see [`histogram`]). Semantics are in docs/metrics.md.

mod aggregate;
pub mod histogram;

use std::sync::atomic::AtomicU64;

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
pub struct MetricProducer(rtrb::Producer<MetricBatch>);

/// Consumer side, owned by the control plane's metric writer.
pub struct MetricConsumer(rtrb::Consumer<MetricBatch>);

/// A ring holding up to `capacity` flushed batches.
pub fn metric_ring(capacity: usize) -> (MetricProducer, MetricConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
    (MetricProducer(producer), MetricConsumer(consumer))
}

impl MetricProducer {
    /// Hands `batch` off, or gives it back when the ring is full.
    pub fn push(&mut self, batch: MetricBatch) -> Result<(), MetricBatch> {
        self.0.push(batch).map_err(|rtrb::PushError::Full(batch)| batch)
    }

    pub fn is_abandoned(&self) -> bool {
        self.0.is_abandoned()
    }
}

impl MetricConsumer {
    pub fn pop(&mut self) -> Option<MetricBatch> {
        self.0.pop().ok()
    }

    /// True when the listener is gone and nothing is left to pop.
    pub fn is_finished(&self) -> bool {
        self.0.is_abandoned() && self.0.is_empty()
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
