//! Metric queries, shared by every backend: what is asked, what comes back, and how the
//! stored points (one per series, listener and flush interval) are merged into buckets
//! of `step` (across listeners and cores, and across the intervals a bucket spans).

use async_trait::async_trait;
use hdrhistogram::Histogram;
use killkrill_dataplane::metrics::MetricPoint;
use killkrill_dataplane::metrics::histogram::{merge_encoded, new_histogram, quantile};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::Result;

/// How the points of a bucket become one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricAgg {
    /// Sum of the values (counters: the total counted).
    Sum,
    /// Sum of the values divided by the number of samples.
    Avg,
    Min,
    Max,
    /// Samples (weighted by 1/sample rate; sets: distinct members per point, added).
    Count,
    /// Sum per second of the bucket's step.
    Rate,
    /// The last value of the newest point (gauges).
    Last,
    P50,
    P90,
    P99,
}

impl MetricAgg {
    pub const NAMES: &'static str = "sum, avg, min, max, count, rate, last, p50, p90, p99";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count" => Self::Count,
            "rate" => Self::Rate,
            "last" => Self::Last,
            "p50" => Self::P50,
            "p90" => Self::P90,
            "p99" => Self::P99,
            _ => return None,
        })
    }

    fn quantile(self) -> Option<f64> {
        match self {
            Self::P50 => Some(0.5),
            Self::P90 => Some(0.9),
            Self::P99 => Some(0.99),
            _ => None,
        }
    }
}

/// `GET /api/v1/metrics`, parsed.
#[derive(Clone, Debug)]
pub struct MetricQuery {
    pub name: String,
    /// Every pair must be on a series for it to match.
    pub tags: Vec<(String, String)>,
    /// Points whose interval starts in [start_ns, end_ns).
    pub start_ns: i64,
    pub end_ns: i64,
    /// Bucket width; buckets start at `start_ns` and every `step_ns` after it.
    pub step_ns: i64,
    pub agg: MetricAgg,
}

/// A stored point as a backend reads it back.
#[derive(Clone, Debug)]
pub struct StoredPoint {
    pub series_id: i64,
    pub start_ns: i64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub histogram: Option<Vec<u8>>,
}

/// A series as a backend reads it back.
#[derive(Clone, Debug)]
pub struct StoredSeries {
    pub id: i64,
    pub kind: String,
    /// JSON object text, keys sorted.
    pub tags: String,
}

/// One value of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricValue {
    /// Bucket start, RFC 3339 UTC.
    pub time: String,
    /// None where the aggregation does not apply (a quantile of a counter).
    pub value: Option<f64>,
}

/// The values of one tag set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricSeries {
    pub tags: Map<String, Value>,
    pub kind: String,
    pub points: Vec<MetricValue>,
}

#[async_trait]
pub trait MetricStore: Send + Sync {
    /// Stores the points one listener flushed; returns how many were stored.
    async fn insert_metric_points(&self, listener: &str, points: &[MetricPoint]) -> Result<u64>;
    /// Series matching the query, with their bucketed values.
    async fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<MetricSeries>>;
    /// Every metric name stored, sorted.
    async fn metric_names(&self) -> Result<Vec<String>>;
    /// Removes the points of intervals starting before `cutoff_ns`, then the series left
    /// without points; returns the points removed.
    async fn remove_metrics_before(&self, cutoff_ns: i64) -> Result<u64>;
}

/// The tags of a point as stored: a JSON object with sorted keys (a repeated key keeps
/// its last value, which sorts last).
pub fn tags_json(tags: &[(String, String)]) -> String {
    let mut map = Map::new();
    for (key, value) in tags {
        map.insert(key.clone(), Value::String(value.clone()));
    }
    Value::Object(map).to_string()
}

#[derive(Debug)]
struct Bucket {
    start_ns: i64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// (interval start, last) of the newest point.
    last: (i64, f64),
    histogram: Option<Histogram<u64>>,
}

impl Bucket {
    fn new(start_ns: i64) -> Self {
        Self {
            start_ns,
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: (i64::MIN, 0.0),
            histogram: None,
        }
    }

    fn add(&mut self, point: &StoredPoint) {
        self.count += point.count;
        self.sum += point.sum;
        self.min = self.min.min(point.min);
        self.max = self.max.max(point.max);
        if point.start_ns >= self.last.0 {
            self.last = (point.start_ns, point.last);
        }
        if let Some(encoded) = &point.histogram {
            let histogram = self.histogram.get_or_insert_with(new_histogram);
            // A point this process did not write is left out of the quantile, not fatal.
            if merge_encoded(histogram, encoded).is_err() {
                tracing::warn!(series_id = point.series_id, "Stored histogram unreadable; skipped.");
            }
        }
    }

    fn value(&self, agg: MetricAgg, step_ns: i64) -> Option<f64> {
        match agg {
            MetricAgg::Sum => Some(self.sum),
            MetricAgg::Count => Some(self.count),
            MetricAgg::Avg => (self.count > 0.0).then(|| self.sum / self.count),
            MetricAgg::Min => Some(self.min),
            MetricAgg::Max => Some(self.max),
            MetricAgg::Rate => Some(self.sum / (step_ns as f64 / 1e9)),
            MetricAgg::Last => Some(self.last.1),
            MetricAgg::P50 | MetricAgg::P90 | MetricAgg::P99 => {
                quantile(self.histogram.as_ref()?, agg.quantile()?)
            }
        }
        .filter(|value| value.is_finite())
    }
}

/// Merges the points of each series into buckets; points must be sorted by start.
pub fn bucket_series(
    query: &MetricQuery,
    series: &[StoredSeries],
    points: &[StoredPoint],
) -> Vec<MetricSeries> {
    let step = query.step_ns.max(1);
    series
        .iter()
        .filter_map(|stored| {
            let mut buckets: Vec<Bucket> = Vec::new();
            for point in points.iter().filter(|point| point.series_id == stored.id) {
                let start = point.start_ns - (point.start_ns - query.start_ns).rem_euclid(step);
                match buckets.last_mut() {
                    Some(bucket) if bucket.start_ns == start => bucket.add(point),
                    _ => {
                        let mut bucket = Bucket::new(start);
                        bucket.add(point);
                        buckets.push(bucket);
                    }
                }
            }
            if buckets.is_empty() {
                return None;
            }
            let tags = match serde_json::from_str(&stored.tags) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            let points = buckets
                .iter()
                .map(|bucket| MetricValue {
                    time: super::rfc3339_with_digits(bucket.start_ns, 3).unwrap_or_default(),
                    value: bucket.value(query.agg, step),
                })
                .collect();
            Some(MetricSeries { tags, kind: stored.kind.clone(), points })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use killkrill_dataplane::metrics::histogram::{encode, scaled};

    use super::*;

    fn point(series_id: i64, start_ns: i64, sum: f64, values: &[f64]) -> StoredPoint {
        let mut histogram = new_histogram();
        for value in values {
            histogram.record(scaled(*value)).unwrap();
        }
        StoredPoint {
            series_id,
            start_ns,
            count: values.len() as f64,
            sum,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            last: *values.last().unwrap(),
            histogram: Some(encode(&histogram)),
        }
    }

    fn query(agg: MetricAgg, step_s: i64) -> MetricQuery {
        MetricQuery {
            name: "x".into(),
            tags: Vec::new(),
            start_ns: 0,
            end_ns: i64::MAX,
            step_ns: step_s * 1_000_000_000,
            agg,
        }
    }

    #[test]
    fn points_of_two_listeners_and_two_intervals_merge_into_one_bucket() {
        let series = [StoredSeries { id: 1, kind: "timer".into(), tags: r#"{"a":"1"}"#.into() }];
        let second = 1_000_000_000;
        // Two listeners in the interval at 0 s, one in the interval at 10 s.
        let points = [
            point(1, 0, 6.0, &[1.0, 2.0, 3.0]),
            point(1, 0, 15.0, &[4.0, 5.0, 6.0]),
            point(1, 10 * second, 100.0, &[100.0]),
        ];
        let value = |agg, step| bucket_series(&query(agg, step), &series, &points)[0].points.clone();
        assert_eq!(value(MetricAgg::Sum, 60)[0].value, Some(121.0));
        assert_eq!(value(MetricAgg::Count, 60)[0].value, Some(7.0));
        assert_eq!(value(MetricAgg::Min, 60)[0].value, Some(1.0));
        assert_eq!(value(MetricAgg::Max, 60)[0].value, Some(100.0));
        assert_eq!(value(MetricAgg::Last, 60)[0].value, Some(100.0), "the newest interval's last");
        assert_eq!(value(MetricAgg::Rate, 60)[0].value, Some(121.0 / 60.0));
        let p50 = value(MetricAgg::P50, 60)[0].value.unwrap();
        assert!((p50 - 4.0).abs() < 0.04, "median of 1..6 and 100 is 4, not an average of medians: {p50}");
        let by_ten = value(MetricAgg::Sum, 10);
        assert_eq!(by_ten.len(), 2);
        assert_eq!((by_ten[0].value, by_ten[1].value), (Some(21.0), Some(100.0)));
        assert_eq!(by_ten[1].time, "1970-01-01T00:00:10.000Z");
    }

    #[test]
    fn a_quantile_of_a_series_without_histogram_is_null() {
        let series = [StoredSeries { id: 1, kind: "counter".into(), tags: "{}".into() }];
        let mut counter = point(1, 0, 5.0, &[5.0]);
        counter.histogram = None;
        let result = bucket_series(&query(MetricAgg::P99, 60), &series, &[counter]);
        assert_eq!(result[0].points[0].value, None);
    }

    #[test]
    fn tags_are_stored_with_sorted_keys() {
        let tags = [("b".to_owned(), "2".to_owned()), ("a".to_owned(), "1".to_owned())];
        let mut sorted = tags.to_vec();
        sorted.sort();
        assert_eq!(tags_json(&sorted), r#"{"a":"1","b":"2"}"#);
    }
}
