//! The per-listener aggregator: folds samples into one running state per series and,
//! at the end of each flush interval, turns them into points.
//!
//! A series is found by a key built in a reused buffer (kind, name, sorted tags), so a
//! sample of a known series allocates nothing; a new series allocates its key once per
//! interval, and its point's name and tags are read back from the key at the flush.
//! Samples are stamped with the interval in which they were received, not with a
//! timestamp they carry (statsd `|T`, Influx): see docs/adr/0018.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use hdrhistogram::Histogram;
use killkrill_parsers::influx::{InfluxFieldValue, InfluxItem, InfluxPrecision, parse_influx};
use killkrill_parsers::statsd::{StatsdItem, StatsdMetricType, StatsdValue, parse_statsd};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use super::histogram::{self, new_interval_histogram, scaled};
use super::{MetricKind, MetricPoint, REJECT_REASONS, reject_index};

/// How an aggregator cuts intervals and bounds its memory.
#[derive(Clone, Copy, Debug)]
pub struct AggregatorSettings {
    /// Length of a flush interval; points are stamped with its start.
    pub interval: Duration,
    /// Series tracked per interval; samples of further new series are counted and dropped.
    pub max_series: usize,
    /// Of those, series keeping a histogram (timers, histograms, distributions: about
    /// 10 KiB each, against a few hundred bytes for the others).
    pub max_histogram_series: usize,
    /// Unit of Influx timestamps (only checked: samples are stamped by receive time).
    pub influx_precision: InfluxPrecision,
    /// Points flushed and not yet taken by the store that a listener may hold (see
    /// [`super::metric_ring`]); a flush past it is dropped and counted.
    pub max_queued_points: usize,
}

impl Default for AggregatorSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            max_series: 100_000,
            max_histogram_series: 10_000,
            influx_precision: InfluxPrecision::Nanoseconds,
            max_queued_points: 200_000,
        }
    }
}

/// Counts from one receive call, added to the listener's atomics once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestCounts {
    /// Lines read: metrics, events, service checks, points and rejected lines.
    pub lines: u64,
    pub samples: u64,
    pub rejected: [u64; REJECT_REASONS.len()],
    pub ignored: u64,
    pub series_limit: u64,
}

impl IngestCounts {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// One series' running state. Its name and tags live only in its key (one allocation
/// rather than one per string: under a flood of new series, a series took about 1 KB of
/// heap with its own copies; ADR 0047).
#[derive(Debug)]
struct Series {
    kind: MetricKind,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    histogram: Option<Histogram<u32>>,
    /// Hashes of set members seen this interval.
    members: Option<FxHashSet<u64>>,
}

/// One listener's aggregation state.
#[derive(Debug)]
pub struct Aggregator {
    settings: AggregatorSettings,
    series: FxHashMap<Box<[u8]>, Series>,
    /// Gauge values carried from earlier intervals, so that `+n`/`-n` adjust them.
    gauges: FxHashMap<Box<[u8]>, f64>,
    interval_start_ns: i64,
    /// Series of this interval that keep a histogram.
    histogram_series: usize,
    /// Reused buffers: the series key and an Influx metric name.
    key: Vec<u8>,
    name: String,
}

type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

impl Aggregator {
    pub fn new(settings: AggregatorSettings, now_ns: i64) -> Self {
        let mut aggregator = Self {
            settings,
            series: FxHashMap::default(),
            gauges: FxHashMap::default(),
            interval_start_ns: 0,
            histogram_series: 0,
            key: Vec::with_capacity(256),
            name: String::with_capacity(128),
        };
        aggregator.interval_start_ns = aggregator.align(now_ns);
        aggregator
    }

    fn interval_ns(&self) -> i64 {
        i64::try_from(self.settings.interval.as_nanos()).unwrap_or(i64::MAX).max(1)
    }

    /// Start of the interval holding `now_ns`; intervals are aligned to the epoch so that
    /// every listener and core cuts the same ones.
    fn align(&self, now_ns: i64) -> i64 {
        now_ns - now_ns.rem_euclid(self.interval_ns())
    }

    /// Series with samples in the current interval.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// True once the current interval has ended at `now_ns`.
    pub fn is_due(&self, now_ns: i64) -> bool {
        now_ns >= self.interval_start_ns.saturating_add(self.interval_ns())
    }

    /// Folds every metric of a statsd datagram in.
    pub fn ingest_statsd(&mut self, datagram: &[u8], counts: &mut IngestCounts) {
        let mut tags: Tags<'_> = Vec::new();
        for item in parse_statsd(datagram) {
            counts.lines += 1;
            match item {
                StatsdItem::Metric(metric) => {
                    tags.clear();
                    tags.extend(
                        metric.tags.iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v.unwrap_or("")))),
                    );
                    let kind = match metric.metric_type {
                        StatsdMetricType::Counter => MetricKind::Counter,
                        StatsdMetricType::Gauge => MetricKind::Gauge,
                        StatsdMetricType::Timer => MetricKind::Timer,
                        StatsdMetricType::Histogram => MetricKind::Histogram,
                        StatsdMetricType::Distribution => MetricKind::Distribution,
                        StatsdMetricType::Set => MetricKind::Set,
                    };
                    let sample = match metric.value {
                        StatsdValue::Number(value) if metric.gauge_delta => Sample::Delta(value),
                        StatsdValue::Number(value) => Sample::Value(value),
                        StatsdValue::Set(member) => Sample::Member(member),
                    };
                    self.add(kind, metric.name, &mut tags, sample, metric.sample_rate, counts);
                }
                StatsdItem::Event(_) | StatsdItem::ServiceCheck(_) => counts.ignored += 1,
                StatsdItem::Reject(reject) => counts.rejected[reject_index(reject.reason.as_str())] += 1,
            }
        }
    }

    /// Folds every numeric or boolean field of an Influx datagram in, as
    /// `measurement.field`; string fields are counted as ignored.
    pub fn ingest_influx(&mut self, datagram: &[u8], counts: &mut IngestCounts) {
        let mut tags: Tags<'_> = Vec::new();
        for item in parse_influx(datagram, self.settings.influx_precision) {
            counts.lines += 1;
            let point = match item {
                InfluxItem::Point(point) => point,
                InfluxItem::Reject(reject) => {
                    counts.rejected[reject_index(reject.reason.as_str())] += 1;
                    continue;
                }
            };
            tags.clear();
            tags.extend(point.tags().map(|tag| (tag.key.unescaped(), tag.value.unescaped())));
            let measurement = point.measurement().unescaped();
            for field in point.fields() {
                let value = match field.value {
                    InfluxFieldValue::Float(value) => value,
                    InfluxFieldValue::Integer(value) => value as f64,
                    InfluxFieldValue::Unsigned(value) => value as f64,
                    InfluxFieldValue::Boolean(value) => f64::from(u8::from(value)),
                    InfluxFieldValue::String(_) => {
                        counts.ignored += 1;
                        continue;
                    }
                };
                let mut name = std::mem::take(&mut self.name);
                name.clear();
                name.push_str(&measurement);
                name.push('.');
                name.push_str(&field.key.unescaped());
                self.add(MetricKind::Field, &name, &mut tags, Sample::Value(value), 1.0, counts);
                self.name = name;
            }
        }
    }

    fn add(
        &mut self,
        kind: MetricKind,
        name: &str,
        tags: &mut Tags<'_>,
        sample: Sample<'_>,
        sample_rate: f64,
        counts: &mut IngestCounts,
    ) {
        tags.sort_unstable();
        let mut key = std::mem::take(&mut self.key);
        series_key(&mut key, kind, name, tags);
        if !self.series.contains_key(key.as_slice()) {
            let histogram_full =
                kind.has_histogram() && self.histogram_series >= self.settings.max_histogram_series;
            if self.series.len() >= self.settings.max_series || histogram_full {
                counts.series_limit += 1;
                self.key = key;
                return;
            }
            let series = Series {
                kind,
                count: 0.0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                last: self.gauges.get(key.as_slice()).copied().unwrap_or(0.0),
                histogram: kind.has_histogram().then(new_interval_histogram),
                members: (kind == MetricKind::Set).then(FxHashSet::default),
            };
            self.histogram_series += usize::from(kind.has_histogram());
            self.series.insert(key.as_slice().into(), series);
        }
        if let Some(series) = self.series.get_mut(key.as_slice()) {
            series.add(sample, sample_rate);
            counts.samples += 1;
        }
        self.key = key;
    }

    /// Ends the current interval: its points, and a fresh interval holding `now_ns`.
    pub fn flush(&mut self, now_ns: i64) -> Vec<MetricPoint> {
        let interval_ns = self.interval_ns();
        let start = self.interval_start_ns;
        let mut points = Vec::with_capacity(self.series.len());
        self.histogram_series = 0;
        for (key, series) in self.series.drain() {
            let (name, tags) = read_series_key(&key);
            let point = series.into_point(name, tags, start, interval_ns);
            if point.kind == MetricKind::Gauge
                && (self.gauges.len() < self.settings.max_series || self.gauges.contains_key(&key))
            {
                self.gauges.insert(key, point.last);
            }
            points.push(point);
        }
        self.interval_start_ns = self.align(now_ns).max(start + interval_ns);
        points
    }
}

/// `kind, name, (tag key, tag value)*`, each string after its length (LEB128), the tags
/// sorted. With lengths rather than separators, two different series never share a key
/// whatever bytes their names and tags hold (a tag value may hold any UTF-8, control
/// characters included), and the name and tags can be read back: [`read_series_key`].
fn series_key(key: &mut Vec<u8>, kind: MetricKind, name: &str, tags: &Tags<'_>) {
    key.clear();
    put_string(key, kind.label());
    put_string(key, name);
    for (tag_key, value) in tags {
        put_string(key, tag_key);
        put_string(key, value);
    }
}

fn put_string(key: &mut Vec<u8>, text: &str) {
    histogram::put_varint(key, text.len() as u64);
    key.extend_from_slice(text.as_bytes());
}

/// The name and tags of a key written by [`series_key`] (its kind is kept in the series).
fn read_series_key(key: &[u8]) -> (String, Vec<(String, String)>) {
    let mut rest = key;
    let mut next = || take_string(&mut rest);
    let _kind = next();
    let name = next().unwrap_or_default();
    let mut tags = Vec::new();
    while let Some(tag_key) = next() {
        tags.push((tag_key, next().unwrap_or_default()));
    }
    (name, tags)
}

/// The next length-prefixed string of a key, or `None` at its end. Keys are built here
/// from `&str`s, so the bytes are UTF-8; a damaged key would read lossily, not panic.
fn take_string(rest: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(histogram::take_varint(rest).ok()?).ok()?;
    let (text, after) = rest.split_at_checked(len)?;
    *rest = after;
    Some(String::from_utf8_lossy(text).into_owned())
}

#[derive(Clone, Copy, Debug)]
enum Sample<'a> {
    Value(f64),
    /// A signed gauge value: adjusts the gauge.
    Delta(f64),
    Member(&'a str),
}

impl Series {
    fn add(&mut self, sample: Sample<'_>, sample_rate: f64) {
        let value = match sample {
            Sample::Member(member) => {
                if let Some(members) = &mut self.members {
                    let mut hasher = FxHasher::default();
                    member.hash(&mut hasher);
                    members.insert(hasher.finish());
                }
                return;
            }
            Sample::Delta(delta) if self.kind == MetricKind::Gauge => self.last + delta,
            Sample::Value(value) | Sample::Delta(value) => value,
        };
        // Gauges are not sampled: every value counts once, whatever the rate says.
        let weight = if self.kind == MetricKind::Gauge { 1.0 } else { 1.0 / sample_rate };
        self.count += weight;
        self.sum += value * weight;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last = value;
        if let Some(histogram) = &mut self.histogram {
            // A sampled value stands for 1/rate of them. record_n grows the histogram (the
            // saturating variant would clamp to its current range); it only fails past the
            // largest trackable value, which is then clamped.
            let copies = weight.round().clamp(1.0, f64::from(u32::MAX)) as u32;
            if histogram.record_n(scaled(value), copies).is_err() {
                histogram.saturating_record_n(scaled(value), copies);
            }
        }
    }

    fn into_point(
        self,
        name: String,
        tags: Vec<(String, String)>,
        interval_start_ns: i64,
        interval_ns: i64,
    ) -> MetricPoint {
        let (count, sum, min, max, last) = match &self.members {
            Some(members) => {
                let distinct = members.len() as f64;
                (distinct, distinct, distinct, distinct, distinct)
            }
            None => (self.count, self.sum, self.min, self.max, self.last),
        };
        let quantile = |q| self.histogram.as_ref().and_then(|h| histogram::quantile(h, q));
        MetricPoint {
            name,
            tags,
            kind: self.kind,
            interval_start_ns,
            interval_ns,
            count,
            sum,
            min,
            max,
            last,
            p50: quantile(0.5),
            p90: quantile(0.9),
            p99: quantile(0.99),
            histogram: self.histogram.as_ref().map(histogram::encode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000_000;

    fn aggregator() -> Aggregator {
        Aggregator::new(AggregatorSettings::default(), T0 + 1)
    }

    fn point<'a>(points: &'a [MetricPoint], name: &str, kind: MetricKind) -> &'a MetricPoint {
        points
            .iter()
            .find(|p| p.name == name && p.kind == kind)
            .unwrap_or_else(|| panic!("no {name} {kind:?} in {points:#?}"))
    }

    #[test]
    fn counters_honour_sample_rates() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(b"hits:1|c\nhits:2|c|@0.5\nhits:1|c|@0.1", &mut counts);
        assert_eq!((counts.lines, counts.samples), (3, 3));
        let points = aggregator.flush(T0 + 10_000_000_001);
        let hits = point(&points, "hits", MetricKind::Counter);
        assert!((hits.sum - (1.0 + 4.0 + 10.0)).abs() < 1e-9, "{}", hits.sum);
        assert!((hits.count - (1.0 + 2.0 + 10.0)).abs() < 1e-9, "{}", hits.count);
        assert_eq!((hits.min, hits.max, hits.last), (1.0, 2.0, 1.0));
        assert_eq!(hits.interval_start_ns, T0, "aligned to the 10 s interval");
        assert_eq!(hits.interval_ns, 10_000_000_000);
    }

    #[test]
    fn tags_in_any_order_are_one_series_and_kinds_are_apart() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(
            b"req:1|c|#b:2,a:1\nreq:1|c|#a:1,b:2\nreq:5|g|#a:1,b:2\nreq:1|c|#a:1",
            &mut counts,
        );
        let points = aggregator.flush(T0 + 10_000_000_001);
        assert_eq!(points.len(), 3, "{points:#?}");
        let both = points.iter().find(|p| p.kind == MetricKind::Counter && p.tags.len() == 2).unwrap();
        assert_eq!(both.tags, [("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        assert_eq!(both.sum, 2.0);
    }

    /// With separators in the key, a tag value holding them could make two different
    /// series one; with lengths they stay apart, and every name and tag (empty, non-ASCII,
    /// control characters, longer than 127 bytes) reads back from the key as sent.
    #[test]
    fn series_keys_keep_any_tags_apart_and_read_back_exactly() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        let long = "v".repeat(300);
        let datagram = format!(
            "m:1|c|#a:1\x1fb\x1e2\nm:2|c|#a:1,b:2\nm:4|c|#a:1\x1e\x1fb:2\nm\u{e9}:8|c|#h\u{f4}te:z\u{fc}rich,empty:,bare,long:{long}"
        );
        aggregator.ingest_statsd(datagram.as_bytes(), &mut counts);
        assert_eq!(counts.samples, 4);
        let points = aggregator.flush(T0 + 10_000_000_001);
        assert_eq!(points.len(), 4, "{points:#?}");
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
        };
        let sum_of = |expected: &[(String, String)]| {
            points.iter().find(|p| p.name == "m" && p.tags == expected).map(|p| p.sum)
        };
        assert_eq!(sum_of(&tags(&[("a", "1\x1fb\x1e2")])), Some(1.0));
        assert_eq!(sum_of(&tags(&[("a", "1"), ("b", "2")])), Some(2.0));
        assert_eq!(sum_of(&tags(&[("a", "1\x1e\x1fb:2")])), Some(4.0), "a value runs to the next comma");
        let accented = point(&points, "m\u{e9}", MetricKind::Counter);
        assert_eq!(
            accented.tags,
            tags(&[("bare", ""), ("empty", ""), ("h\u{f4}te", "z\u{fc}rich"), ("long", &long)])
        );
        assert_eq!(accented.sum, 8.0);
    }

    #[test]
    fn gauges_keep_the_last_value_and_deltas_adjust_it_across_intervals() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(b"temp:10|g\ntemp:+5|g\ntemp:-3|g", &mut counts);
        let points = aggregator.flush(T0 + 10_000_000_001);
        let temp = point(&points, "temp", MetricKind::Gauge);
        assert_eq!((temp.last, temp.min, temp.max, temp.count), (12.0, 10.0, 15.0, 3.0));
        aggregator.ingest_statsd(b"temp:+1|g", &mut counts);
        let points = aggregator.flush(T0 + 20_000_000_001);
        let temp = point(&points, "temp", MetricKind::Gauge);
        assert_eq!(temp.last, 13.0, "a delta in a later interval adjusts the carried value");
        assert_eq!(temp.interval_start_ns, T0 + 10_000_000_000);
    }

    #[test]
    fn timers_give_quantiles_and_sample_rates_weigh_them() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        let mut datagram = String::new();
        for value in 1..=1000 {
            datagram.push_str(&format!("lat:{value}|ms\n"));
        }
        aggregator.ingest_statsd(datagram.as_bytes(), &mut counts);
        // Sampled at 1%: stands for 100 samples of 5000 ms.
        aggregator.ingest_statsd(b"other:5000|h|@0.01\nother:1|h", &mut counts);
        let points = aggregator.flush(T0 + 10_000_000_001);
        let lat = point(&points, "lat", MetricKind::Timer);
        assert_eq!((lat.count, lat.sum, lat.min, lat.max), (1000.0, 500_500.0, 1.0, 1000.0));
        for (got, expected) in [(lat.p50, 500.0), (lat.p90, 900.0), (lat.p99, 990.0)] {
            let got = got.unwrap();
            assert!((got - expected).abs() <= expected * 0.01, "{got} vs {expected}");
        }
        let other = point(&points, "other", MetricKind::Histogram);
        assert_eq!(other.count, 101.0);
        assert!((other.p50.unwrap() - 5000.0).abs() <= 50.0, "the sampled value dominates: {:?}", other.p50);
        assert!(other.histogram.is_some());
        // A rate so small that its weight is past a 32-bit count: recorded, saturated.
        aggregator.ingest_statsd(b"rare:2|ms|@0.0000000001", &mut counts);
        let points = aggregator.flush(T0 + 20_000_000_001);
        let rare = point(&points, "rare", MetricKind::Timer);
        assert_eq!(rare.count, 1e10);
        assert!((rare.p50.unwrap() - 2.0).abs() <= 0.02, "{:?}", rare.p50);
    }

    #[test]
    fn sets_count_distinct_members() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(b"users:alice|s\nusers:bob|s\nusers:alice|s\nusers:carol|s", &mut counts);
        let points = aggregator.flush(T0 + 10_000_000_001);
        assert_eq!(point(&points, "users", MetricKind::Set).count, 3.0);
    }

    #[test]
    fn malformed_lines_are_counted_by_reason_and_neighbours_still_count() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(b"ok:1|c\nbroken\nbad:x|c\nok:1|zz\n\xff\xfe:1|c\n_e{1,1}:a|b", &mut counts);
        assert_eq!(counts.samples, 1);
        assert_eq!(counts.rejected_total(), 4);
        assert_eq!(counts.rejected[reject_index("invalid_value")], 1);
        assert_eq!(counts.rejected[reject_index("unknown_type")], 1);
        assert_eq!(counts.rejected[reject_index("not_utf8")], 1);
        assert_eq!(counts.ignored, 1, "the event");
        aggregator.ingest_influx(b"cpu,host=a usage=1\ncpu,host=a\nmem free=\"x\"", &mut counts);
        assert_eq!(counts.rejected[reject_index("missing_fields")], 1);
        assert_eq!(counts.ignored, 2, "the string field");
    }

    #[test]
    fn influx_fields_become_measurement_dot_field_series() {
        let mut aggregator = aggregator();
        let mut counts = IngestCounts::default();
        aggregator.ingest_influx(
            b"cpu,host=a,dc=x usage=10,idle=90i,up=true 1700000000000000000\ncpu,dc=x,host=a usage=30",
            &mut counts,
        );
        assert_eq!((counts.lines, counts.samples), (2, 4), "a sample per numeric field");
        let points = aggregator.flush(T0 + 10_000_000_001);
        let usage = point(&points, "cpu.usage", MetricKind::Field);
        assert_eq!((usage.count, usage.sum, usage.min, usage.max, usage.last), (2.0, 40.0, 10.0, 30.0, 30.0));
        assert_eq!(usage.tags, [("dc".to_owned(), "x".to_owned()), ("host".to_owned(), "a".to_owned())]);
        assert_eq!(point(&points, "cpu.idle", MetricKind::Field).sum, 90.0);
        assert_eq!(point(&points, "cpu.up", MetricKind::Field).last, 1.0);
    }

    #[test]
    fn new_series_past_the_limit_are_counted_not_kept() {
        let settings =
            AggregatorSettings { max_series: 3, max_histogram_series: 1, ..AggregatorSettings::default() };
        let mut aggregator = Aggregator::new(settings, T0);
        let mut counts = IngestCounts::default();
        aggregator.ingest_statsd(b"t1:1|ms\nt2:1|ms\na:1|c\nb:1|c\nc:1|c\na:1|c\nt1:2|ms", &mut counts);
        assert_eq!((counts.samples, counts.series_limit), (5, 2), "t2 (histograms full) and c (series full)");
        assert_eq!(aggregator.series_count(), 3);
        aggregator.flush(T0 + 10_000_000_000);
        aggregator.ingest_statsd(b"t2:1|ms", &mut counts);
        assert_eq!(counts.samples, 6, "limits start over each interval");
    }

    #[test]
    fn flushing_is_due_at_the_end_of_the_interval_and_an_empty_interval_gives_nothing() {
        let mut aggregator = aggregator();
        assert!(!aggregator.is_due(T0 + 9_999_999_999));
        assert!(aggregator.is_due(T0 + 10_000_000_000));
        assert!(aggregator.flush(T0 + 10_000_000_000).is_empty());
        assert!(!aggregator.is_due(T0 + 10_000_000_001));
    }
}
