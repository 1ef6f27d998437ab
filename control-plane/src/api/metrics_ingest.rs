//! Metrics over HTTP: `POST /api/v1/metrics` (statsd, Influx line protocol or Prometheus
//! text exposition) and `POST /api/v1/prom/write` (Prometheus remote write 1.0). Both
//! answer only once the points are committed, and both are all or nothing: a bad line or
//! series rejects the request before anything is stored, so a client can send it again.
//!
//! statsd and Influx bodies go through the same aggregator as the UDP listeners and are
//! stamped with the interval they arrive in (ADR 0018). Prometheus samples carry their
//! own timestamps, which Prometheus relies on when it catches up after an outage, so they
//! are folded into the interval of their timestamp instead (ADR 0030).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use killkrill_dataplane::metrics::{Aggregator, AggregatorSettings, IngestCounts, MetricKind, MetricPoint};
use killkrill_parsers::influx::{InfluxItem, parse_influx};
use killkrill_parsers::prometheus::{PromItem, parse_prometheus};
use killkrill_parsers::statsd::{StatsdItem, parse_statsd};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::Error;

/// The listener name HTTP-posted points are stored under.
const HTTP_LISTENER: &str = "http";
/// Largest decompressed remote-write body; Prometheus sends a few MiB at most.
const MAX_REMOTE_WRITE_BYTES: usize = 64 << 20;

/// What the HTTP metric endpoints need beyond the store.
#[derive(Debug)]
pub struct MetricIngest {
    /// The listeners' aggregation settings, so that posted points line up with theirs.
    pub settings: AggregatorSettings,
}

impl MetricIngest {
    pub fn new(settings: AggregatorSettings) -> Arc<Self> {
        Arc::new(Self { settings })
    }

    fn interval_ns(&self) -> i64 {
        i64::try_from(self.settings.interval.as_nanos()).unwrap_or(i64::MAX).max(1)
    }
}

/// A body format `POST /api/v1/metrics` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyFormat {
    Statsd,
    Influx,
    Prometheus,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParam {
    /// `statsd`, `influx` or `prometheus`; without it, a Prometheus or OpenMetrics
    /// Content-Type selects `prometheus`.
    format: Option<String>,
}

fn bad(parameter: &'static str, message: impl Into<String>) -> Error {
    Error::BadRequest { parameter, message: message.into() }
}

fn body_format(param: Option<&str>, headers: &HeaderMap) -> Result<BodyFormat, Error> {
    match param.map(str::trim) {
        Some("statsd") => Ok(BodyFormat::Statsd),
        Some("influx") => Ok(BodyFormat::Influx),
        Some("prometheus") => Ok(BodyFormat::Prometheus),
        Some(other) => Err(bad("format", format!("`{other}` is not one of statsd, influx, prometheus"))),
        None => {
            let content_type =
                headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
            let prometheus = content_type.starts_with("application/openmetrics-text")
                || (content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"));
            if prometheus {
                Ok(BodyFormat::Prometheus)
            } else {
                Err(bad("format", "say which: ?format=statsd, influx or prometheus"))
            }
        }
    }
}

/// Rejects the body at its first bad line, naming it (the aggregator only counts them).
fn check_lines(format: BodyFormat, body: &[u8], settings: &AggregatorSettings) -> Result<(), Error> {
    let reject = |number: usize, reason: &str| bad("body", format!("line {number}: {reason}"));
    match format {
        BodyFormat::Statsd | BodyFormat::Influx => {
            for (index, line) in body.split(|&byte| byte == b'\n').enumerate() {
                let reason = if format == BodyFormat::Statsd {
                    parse_statsd(line).find_map(|item| match item {
                        StatsdItem::Reject(reject) => Some(reject.reason.as_str()),
                        _ => None,
                    })
                } else {
                    parse_influx(line, settings.influx_precision).find_map(|item| match item {
                        InfluxItem::Reject(reject) => Some(reject.reason.as_str()),
                        InfluxItem::Point(_) => None,
                    })
                };
                if let Some(reason) = reason {
                    return Err(reject(index + 1, reason));
                }
            }
        }
        BodyFormat::Prometheus => {
            for item in parse_prometheus(body) {
                if let PromItem::Reject(rejected) = item {
                    return Err(reject(rejected.line_number, rejected.reason.as_str()));
                }
            }
        }
    }
    Ok(())
}

/// A series (name, sorted tags) and an interval start.
type SeriesInterval = (String, Vec<(String, String)>, i64);

/// Folds timestamped samples into one gauge point per series and interval.
#[derive(Debug)]
struct SampleFolder {
    interval_ns: i64,
    points: HashMap<SeriesInterval, MetricPoint>,
    /// Samples that are not numbers (NaN, infinities, Prometheus staleness markers).
    skipped: u64,
    samples: u64,
}

impl SampleFolder {
    fn new(interval_ns: i64) -> Self {
        Self { interval_ns, points: HashMap::new(), skipped: 0, samples: 0 }
    }

    /// `tags` need not be sorted.
    fn add(&mut self, name: &str, mut tags: Vec<(String, String)>, time_ns: i64, value: f64) {
        if !value.is_finite() {
            self.skipped += 1;
            return;
        }
        self.samples += 1;
        tags.sort_unstable();
        let start = time_ns - time_ns.rem_euclid(self.interval_ns);
        let interval_ns = self.interval_ns;
        let point =
            self.points.entry((name.to_owned(), tags, start)).or_insert_with_key(|(name, tags, _)| {
                MetricPoint {
                    name: name.clone(),
                    tags: tags.clone(),
                    kind: MetricKind::Gauge,
                    interval_start_ns: start,
                    interval_ns,
                    count: 0.0,
                    sum: 0.0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    last: value,
                    p50: None,
                    p90: None,
                    p99: None,
                    histogram: None,
                }
            });
        point.count += 1.0;
        point.sum += value;
        point.min = point.min.min(value);
        point.max = point.max.max(value);
        // Samples of one series arrive in time order; the last of the interval wins.
        point.last = value;
    }

    fn into_points(self) -> Vec<MetricPoint> {
        self.points.into_values().collect()
    }
}

struct Folded {
    points: Vec<MetricPoint>,
    lines: u64,
    samples: u64,
    ignored: u64,
}

fn fold_body(format: BodyFormat, body: &[u8], ingest: &MetricIngest, now_ns: i64) -> Folded {
    match format {
        BodyFormat::Statsd | BodyFormat::Influx => {
            let mut aggregator = Aggregator::new(ingest.settings, now_ns);
            let mut counts = IngestCounts::default();
            if format == BodyFormat::Statsd {
                aggregator.ingest_statsd(body, &mut counts);
            } else {
                aggregator.ingest_influx(body, &mut counts);
            }
            Folded {
                points: aggregator.flush(now_ns),
                lines: counts.lines,
                samples: counts.samples,
                ignored: counts.ignored + counts.series_limit,
            }
        }
        BodyFormat::Prometheus => {
            let mut folder = SampleFolder::new(ingest.interval_ns());
            let mut lines = 0;
            for item in parse_prometheus(body) {
                lines += 1;
                let PromItem::Sample(sample) = item else { continue };
                let tags = sample.labels().map(|l| (l.name.to_owned(), l.value.into_owned())).collect();
                let time_ns = sample.timestamp_ms.map_or(now_ns, |ms| ms.saturating_mul(1_000_000));
                folder.add(sample.name, tags, time_ns, sample.value);
            }
            let (samples, ignored) = (folder.samples, folder.skipped);
            Folded { points: folder.into_points(), lines, samples, ignored }
        }
    }
}

async fn commit(state: &AppState, folded: Folded) -> Result<Value, ApiError> {
    let stored = if folded.points.is_empty() {
        0
    } else {
        state.store.insert_metric_points(HTTP_LISTENER, &folded.points).await?
    };
    Ok(json!({
        "lines": folded.lines,
        "samples": folded.samples,
        "ignored": folded.ignored,
        "points": stored,
    }))
}

/// Store metrics posted as statsd, Influx line protocol or Prometheus text; answered once
/// they are committed. All or nothing per request.
#[utoipa::path(post, path = "/api/v1/metrics", params(FormatParam),
    request_body(content = String, description = "statsd lines, Influx line protocol or Prometheus text exposition"),
    responses(
        (status = 200, description = "Committed", body = super::openapi::MetricPostAnswer),
        (status = 400, description = "A line is wrong, or the format is unknown; nothing was stored", body = super::openapi::ErrorAnswer),
        (status = 413, description = "Over 16 MiB", body = super::openapi::ErrorAnswer),
        (status = 429, description = "Too many ingest requests at once; retry after the Retry-After seconds", body = super::openapi::ErrorAnswer),
        (status = 503, description = "The store is not answering; nothing was stored", body = super::openapi::ErrorAnswer),
    ))]
pub async fn post_metrics(
    State(state): State<AppState>,
    Query(param): Query<FormatParam>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let _slot = state.ingest_slots.acquire()?;
    let body = super::ingest::read_body(body).await?;
    let format = body_format(param.format.as_deref(), &headers)?;
    let ingest = state.metric_ingest.clone();
    let now_ns = super::logs::now_ns();
    let folded = tokio::task::spawn_blocking(move || {
        check_lines(format, &body, &ingest.settings)?;
        Ok::<_, Error>(fold_body(format, &body, &ingest, now_ns))
    })
    .await
    .map_err(|error| Error::Internal(format!("metric parser stopped: {error}")))??;
    Ok(Json(commit(&state, folded).await?))
}

/// Prometheus remote write 1.0: `prometheus.WriteRequest`, the fields Killkrill reads.
/// Metadata and native histograms are skipped by the decoder as unknown fields.
mod remote_write {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Decodes a snappy-compressed `WriteRequest` into folded points; every series must
/// carry a `__name__`.
fn fold_remote_write(body: &[u8], interval_ns: i64) -> Result<Folded, Error> {
    use prost::Message as _;
    let length = snap::raw::decompress_len(body)
        .map_err(|error| bad("body", format!("not snappy-compressed: {error}")))?;
    if length > MAX_REMOTE_WRITE_BYTES {
        return Err(Error::TooLarge(format!(
            "{length} bytes once decompressed; at most {MAX_REMOTE_WRITE_BYTES}"
        )));
    }
    let decompressed = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|error| bad("body", format!("not snappy-compressed: {error}")))?;
    let request = remote_write::WriteRequest::decode(decompressed.as_slice())
        .map_err(|error| bad("body", format!("not a remote-write WriteRequest: {error}")))?;
    let mut folder = SampleFolder::new(interval_ns);
    for (index, series) in request.timeseries.iter().enumerate() {
        let name = series
            .labels
            .iter()
            .find(|label| label.name == "__name__")
            .map(|label| label.value.as_str())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| bad("body", format!("series {index}: no __name__ label")))?;
        let tags: Vec<(String, String)> = series
            .labels
            .iter()
            .filter(|label| label.name != "__name__")
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        for sample in &series.samples {
            folder.add(name, tags.clone(), sample.timestamp.saturating_mul(1_000_000), sample.value);
        }
    }
    let lines = request.timeseries.len() as u64;
    let (samples, ignored) = (folder.samples, folder.skipped);
    Ok(Folded { points: folder.into_points(), lines, samples, ignored })
}

/// Prometheus remote write (as Prometheus and vmagent send it); answered 204 once the
/// samples are committed.
#[utoipa::path(post, path = "/api/v1/prom/write",
    request_body(content = Vec<u8>, content_type = "application/x-protobuf", description = "snappy-compressed prometheus.WriteRequest"),
    responses(
        (status = 204, description = "Committed"),
        (status = 400, description = "Not a snappy-compressed WriteRequest, or a series without a name; nothing was stored (Prometheus does not retry)", body = super::openapi::ErrorAnswer),
        (status = 413, description = "Over 16 MiB compressed or 64 MiB decompressed", body = super::openapi::ErrorAnswer),
        (status = 429, description = "Too many ingest requests at once", body = super::openapi::ErrorAnswer),
        (status = 503, description = "The store is not answering (Prometheus retries)", body = super::openapi::ErrorAnswer),
    ))]
pub async fn prom_write(State(state): State<AppState>, body: Body) -> Result<StatusCode, ApiError> {
    let _slot = state.ingest_slots.acquire()?;
    let body = super::ingest::read_body(body).await?;
    let interval_ns = state.metric_ingest.interval_ns();
    let folded = tokio::task::spawn_blocking(move || fold_remote_write(&body, interval_ns))
        .await
        .map_err(|error| Error::Internal(format!("remote-write decoder stopped: {error}")))??;
    commit(&state, folded).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message as _;

    use super::*;

    const T0: i64 = 1_700_000_000_000_000_000;

    fn ingest() -> MetricIngest {
        MetricIngest {
            settings: AggregatorSettings {
                interval: Duration::from_secs(10),
                ..AggregatorSettings::default()
            },
        }
    }

    #[test]
    fn the_format_comes_from_the_parameter_or_a_prometheus_content_type() {
        let mut headers = HeaderMap::new();
        assert_eq!(body_format(Some("influx"), &headers).unwrap(), BodyFormat::Influx);
        assert!(body_format(None, &headers).unwrap_err().to_string().contains("format"));
        assert!(body_format(Some("graphite"), &headers).unwrap_err().to_string().contains("graphite"));
        headers.insert(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8".parse().unwrap());
        assert_eq!(body_format(None, &headers).unwrap(), BodyFormat::Prometheus);
        assert_eq!(body_format(Some("statsd"), &headers).unwrap(), BodyFormat::Statsd, "the parameter wins");
    }

    #[test]
    fn the_first_bad_line_is_named() {
        let settings = AggregatorSettings::default();
        let error = check_lines(BodyFormat::Statsd, b"ok:1|c\nbad line\n", &settings).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        let error = check_lines(BodyFormat::Influx, b"cpu v=1\ncpu\n", &settings).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        let error =
            check_lines(BodyFormat::Prometheus, b"# TYPE a gauge\na 1\nb{x} 2\n", &settings).unwrap_err();
        assert!(error.to_string().contains("line 3") && error.to_string().contains("bad_labels"), "{error}");
        check_lines(BodyFormat::Statsd, b"a:1|c\n\nb:2|g\n", &settings).unwrap();
    }

    #[test]
    fn prometheus_samples_fold_into_the_interval_of_their_timestamp() {
        let t0_ms = T0 / 1_000_000;
        let body = format!(
            "req{{code=\"200\",method=\"get\"}} 5 {t0_ms}\nreq{{method=\"get\",code=\"200\"}} 7 {}\nreq{{code=\"200\",method=\"get\"}} 9 {}\nup NaN\n",
            t0_ms + 2_000,
            t0_ms + 12_000
        );
        let folded = fold_body(BodyFormat::Prometheus, body.as_bytes(), &ingest(), T0);
        assert_eq!((folded.lines, folded.samples, folded.ignored), (4, 3, 1));
        let mut points = folded.points;
        points.sort_by_key(|p| p.interval_start_ns);
        assert_eq!(points.len(), 2, "label order does not split a series; 12 s later is the next interval");
        assert_eq!(points[0].tags, [("code".into(), "200".into()), ("method".into(), "get".into())]);
        assert_eq!((points[0].count, points[0].sum, points[0].min, points[0].max), (2.0, 12.0, 5.0, 7.0));
        assert_eq!((points[0].last, points[0].interval_start_ns), (7.0, T0));
        assert_eq!((points[1].last, points[1].interval_start_ns), (9.0, T0 + 10_000_000_000));
    }

    /// Labels and (value, timestamp ms) samples of each series.
    type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(f64, i64)]);

    fn write_request(series: &[TestSeries<'_>]) -> Vec<u8> {
        let request = remote_write::WriteRequest {
            timeseries: series
                .iter()
                .map(|(labels, samples)| remote_write::TimeSeries {
                    labels: labels
                        .iter()
                        .map(|(name, value)| remote_write::Label {
                            name: (*name).into(),
                            value: (*value).into(),
                        })
                        .collect(),
                    samples: samples
                        .iter()
                        .map(|(value, timestamp)| remote_write::Sample {
                            value: *value,
                            timestamp: *timestamp,
                        })
                        .collect(),
                })
                .collect(),
        };
        snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
    }

    #[test]
    fn remote_write_series_become_points_named_by_their_name_label() {
        let t0_ms = T0 / 1_000_000;
        let body = write_request(&[
            (&[("__name__", "node_load1"), ("instance", "a:9100")], &[(0.5, t0_ms), (1.5, t0_ms + 1_000)]),
            (&[("instance", "b:9100"), ("__name__", "node_load1")], &[(2.0, t0_ms)]),
        ]);
        let folded = fold_remote_write(&body, 10_000_000_000).unwrap();
        assert_eq!((folded.lines, folded.samples), (2, 3));
        let a = folded.points.iter().find(|p| p.tags == [("instance".into(), "a:9100".into())]).unwrap();
        assert_eq!((a.name.as_str(), a.count, a.sum, a.last), ("node_load1", 2.0, 2.0, 1.5));
        assert_eq!(folded.points.len(), 2);
    }

    #[test]
    fn bad_remote_write_bodies_are_clear_errors() {
        let error = fold_remote_write(b"plain text, not snappy", 1).err().unwrap().to_string();
        assert!(error.contains("snappy") || error.contains("WriteRequest"), "{error}");
        let garbage = snap::raw::Encoder::new().compress_vec(&[0xff; 40]).unwrap();
        let error = fold_remote_write(&garbage, 1).err().unwrap().to_string();
        assert!(error.contains("WriteRequest"), "{error}");
        let nameless = write_request(&[(&[("job", "x")], &[(1.0, 0)])]);
        let error = fold_remote_write(&nameless, 1).err().unwrap().to_string();
        assert!(error.contains("series 0") && error.contains("__name__"), "{error}");
    }
}
