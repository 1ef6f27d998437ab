//! `GET /api/v1/metrics` (a time series per tag set) and `GET /api/v1/metrics/names`.

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::logs::{now_ns, parse_time};
use crate::Error;
use crate::store::{MetricAgg, MetricQuery};

/// Without `start`, the last hour.
const DEFAULT_RANGE_NS: i64 = 3_600 * 1_000_000_000;
/// Without `step`, one bucket per minute.
const DEFAULT_STEP_NS: i64 = 60 * 1_000_000_000;
/// Buckets one answer may hold per series.
const MAX_BUCKETS: i64 = 11_000;

fn bad(parameter: &'static str, message: impl Into<String>) -> Error {
    Error::BadRequest { parameter, message: message.into() }
}

/// A step: `30s`, `5m`, `1h`, `1d`, or plain seconds (`15`).
fn parse_step(text: &str) -> Result<i64, Error> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_ns: i64 = match unit {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return Err(bad("step", format!("`{text}`: the unit must be ms, s, m, h or d"))),
    };
    let amount: i64 = number.parse().map_err(|_| bad("step", format!("`{text}` is not a duration")))?;
    let step = amount.checked_mul(unit_ns).ok_or_else(|| bad("step", format!("`{text}` is too long")))?;
    if step < 1_000_000 {
        return Err(bad("step", format!("`{text}` is shorter than 1ms")));
    }
    Ok(step)
}

/// Builds the query from the query string's pairs; `tag.<key>=<value>` may repeat.
pub fn parse_query(pairs: &[(String, String)], now: i64) -> Result<MetricQuery, Error> {
    let mut name = None;
    let mut tags = Vec::new();
    let (mut start, mut end, mut step, mut agg) = (None, None, None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "name" => name = Some(value.trim().to_owned()),
            "start" => start = Some(parse_time("start", value, now)?),
            "end" => end = Some(parse_time("end", value, now)?),
            "step" => step = Some(parse_step(value)?),
            "agg" => {
                agg = Some(
                    MetricAgg::parse(value.trim())
                        .ok_or_else(|| bad("agg", format!("`{value}` is not one of {}", MetricAgg::NAMES)))?,
                )
            }
            other => match other.strip_prefix("tag.") {
                Some(tag) if !tag.is_empty() => tags.push((tag.to_owned(), value.clone())),
                Some(_) => return Err(bad("tag", "a tag filter is tag.<key>=<value>; the key is empty")),
                None => {
                    return Err(bad(
                        "query",
                        format!("unknown parameter `{other}` (name, tag.<key>, start, end, step, agg)"),
                    ));
                }
            },
        }
    }
    let name = name.filter(|name| !name.is_empty()).ok_or_else(|| bad("name", "is required"))?;
    let end_ns = end.unwrap_or(now);
    let start_ns = start.unwrap_or(end_ns.saturating_sub(DEFAULT_RANGE_NS));
    if start_ns >= end_ns {
        return Err(bad("end", "must be after start"));
    }
    let step_ns = step.unwrap_or(DEFAULT_STEP_NS);
    let buckets = (end_ns - start_ns) / step_ns + 1;
    if buckets > MAX_BUCKETS {
        return Err(bad("step", format!("gives {buckets} buckets over the range; at most {MAX_BUCKETS}")));
    }
    Ok(MetricQuery { name, tags, start_ns, end_ns, step_ns, agg: agg.unwrap_or(MetricAgg::Sum) })
}

/// Aggregated statsd / Influx points as one time series per tag set (docs/metrics.md).
#[utoipa::path(get, path = "/api/v1/metrics", params(
    ("name" = String, Query, description = "Metric name (required)"),
    ("tag.<key>" = Option<String>, Query, description = "Only series with this tag value; repeatable"),
    ("start" = Option<String>, Query, description = "RFC 3339 or relative (-1h); default one hour ago"),
    ("end" = Option<String>, Query, description = "RFC 3339, relative or now"),
    ("step" = Option<String>, Query, description = "Bucket width, e.g. 10s, 1m"),
    ("agg" = Option<String>, Query, description = "sum, avg, min, max, count, rate, last, p50, p90, p99"),
), responses(
    (status = 200, description = "One series per tag set", body = Object),
    (status = 400, description = "A parameter is wrong; the message names it", body = super::openapi::ErrorAnswer),
))]
pub async fn query(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let query = parse_query(&pairs, now_ns())?;
    let series = state.store.query_metrics(&query).await?;
    let time = |ns| crate::store::rfc3339_with_digits(ns, 9);
    Ok(Json(json!({
        "name": query.name,
        "agg": pairs.iter().rev().find(|(k, _)| k == "agg").map_or("sum", |(_, v)| v.trim()),
        "start": time(query.start_ns),
        "end": time(query.end_ns),
        "step_s": query.step_ns as f64 / 1e9,
        "series": series,
    })))
}

/// Every stored metric name.
#[utoipa::path(get, path = "/api/v1/metrics/names", responses((status = 200, description = "`{\"names\": [...]}`", body = Object)))]
pub async fn names(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let names = state.store.metric_names().await?;
    Ok(Json(json!({ "names": names })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_the_last_hour_by_minute_summed() {
        let query =
            parse_query(&pairs(&[("name", "hits"), ("tag.host", "a"), ("tag.dc", "x")]), NOW).unwrap();
        assert_eq!(query.name, "hits");
        assert_eq!(query.tags, [("host".to_owned(), "a".to_owned()), ("dc".to_owned(), "x".to_owned())]);
        assert_eq!((query.start_ns, query.end_ns), (NOW - DEFAULT_RANGE_NS, NOW));
        assert_eq!(query.step_ns, 60_000_000_000);
        assert_eq!(query.agg, MetricAgg::Sum);
        let query =
            parse_query(&pairs(&[("name", "x"), ("step", "10s"), ("agg", "p99"), ("start", "-5m")]), NOW)
                .unwrap();
        assert_eq!(
            (query.step_ns, query.agg, query.start_ns),
            (10_000_000_000, MetricAgg::P99, NOW - 300_000_000_000)
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (list, parameter) in [
            (vec![("agg", "median"), ("name", "x")], "agg"),
            (vec![], "name"),
            (vec![("name", "x"), ("step", "5 parsecs")], "step"),
            (vec![("name", "x"), ("step", "0")], "step"),
            (vec![("name", "x"), ("step", "1ms"), ("start", "-1d")], "step"),
            (vec![("name", "x"), ("start", "yesterday")], "start"),
            (vec![("name", "x"), ("start", "-1m"), ("end", "-2m")], "end"),
            (vec![("name", "x"), ("tag.", "v")], "tag"),
            (vec![("name", "x"), ("host", "a")], "host"),
        ] {
            let error = parse_query(&pairs(&list), NOW).unwrap_err().to_string();
            assert!(error.contains(parameter), "{list:?}: {error}");
        }
    }
}
