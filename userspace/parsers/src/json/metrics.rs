//! JSON for statsd, Influx and frames.
//!
//! Numbers: a statsd value or sample rate that is a whole number of magnitude below
//! 2^53 is written as a JSON integer (`1`, not `1.0`), anything else as a float. Influx
//! values keep their declared type instead: a `float` field is always a JSON float
//! (`1.0`), `int` and `uint` fields are always JSON integers.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::framing::Frame;
use crate::influx::{InfluxFieldValue, InfluxItem, InfluxPoint, InfluxPrecision, parse_influx};
use crate::statsd::{
    StatsdEvent, StatsdItem, StatsdMetric, StatsdServiceCheck, StatsdTags, StatsdValue, parse_statsd,
    unescape_newlines,
};

/// Integers beyond this lose precision in an f64, so they stay floats.
const LARGEST_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `{"items": [...]}` for one statsd datagram; see the module documentation for numbers.
pub fn statsd_to_json(datagram: &[u8]) -> Value {
    let items: Vec<Value> = parse_statsd(datagram)
        .map(|item| match item {
            StatsdItem::Metric(metric) => statsd_metric_to_json(&metric),
            StatsdItem::Event(event) => statsd_event_to_json(&event),
            StatsdItem::ServiceCheck(check) => statsd_service_check_to_json(&check),
            StatsdItem::Reject(reject) => reject_to_json(reject.line, reject.reason.as_str()),
        })
        .collect();
    json!({ "items": items })
}

/// `{"items": [...]}` for one Influx datagram.
pub fn influx_to_json(datagram: &[u8], precision: InfluxPrecision) -> Value {
    let items: Vec<Value> = parse_influx(datagram, precision)
        .map(|item| match item {
            InfluxItem::Point(point) => influx_point_to_json(&point),
            InfluxItem::Reject(reject) => reject_to_json(reject.line, reject.reason.as_str()),
        })
        .collect();
    json!({ "items": items })
}

/// `{"message_b64", "flag"}` for one frame; base64 because frames need not be UTF-8.
pub fn frame_to_json(frame: &Frame<'_>) -> Value {
    json!({
        "message_b64": base64::engine::general_purpose::STANDARD.encode(frame.bytes),
        "flag": frame.flag.map(|flag| flag.as_str()),
    })
}

fn reject_to_json(line: &[u8], reason: &str) -> Value {
    json!({ "reject": true, "line": String::from_utf8_lossy(line), "reason": reason })
}

/// A whole number within f64's exact range as an integer, anything else as a float.
fn number_to_json(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < LARGEST_EXACT_INTEGER {
        // Exact: whole and within ±2^53, so the cast neither rounds nor saturates.
        json!(number as i64)
    } else {
        json!(number)
    }
}

fn statsd_tags_to_json(tags: StatsdTags<'_>) -> Value {
    let object: Map<String, Value> = tags
        .iter()
        .map(|(key, value)| (key.to_owned(), value.map_or(Value::Null, |value| json!(value))))
        .collect();
    Value::Object(object)
}

fn statsd_metric_to_json(metric: &StatsdMetric<'_>) -> Value {
    let value = match metric.value {
        StatsdValue::Number(number) => number_to_json(number),
        StatsdValue::Set(member) => json!(member),
    };
    json!({
        "name": metric.name,
        "type": metric.metric_type.as_str(),
        "value": value,
        "sample_rate": number_to_json(metric.sample_rate),
        "tags": statsd_tags_to_json(metric.tags),
        "gauge_delta": metric.gauge_delta,
        "timestamp": metric.timestamp,
        "container_id": metric.container_id,
    })
}

fn statsd_event_to_json(event: &StatsdEvent<'_>) -> Value {
    json!({
        "type": "event",
        "title": unescape_newlines(event.title),
        "text": unescape_newlines(event.text),
        "timestamp": event.timestamp,
        "hostname": event.hostname,
        "aggregation_key": event.aggregation_key,
        "priority": event.priority,
        "alert_type": event.alert_type,
        "source_type_name": event.source_type_name,
        "tags": statsd_tags_to_json(event.tags),
    })
}

fn statsd_service_check_to_json(check: &StatsdServiceCheck<'_>) -> Value {
    json!({
        "type": "service_check",
        "name": check.name,
        "status": check.status,
        "timestamp": check.timestamp,
        "hostname": check.hostname,
        "tags": statsd_tags_to_json(check.tags),
        "message": check.message.map(unescape_newlines),
    })
}

fn influx_point_to_json(point: &InfluxPoint<'_>) -> Value {
    let tags: Map<String, Value> =
        point.tags().map(|tag| (tag.key.unescaped().into_owned(), json!(tag.value.unescaped()))).collect();
    let fields: Map<String, Value> = point
        .fields()
        .map(|field| {
            let value = match field.value {
                InfluxFieldValue::Float(float) => json!(float),
                InfluxFieldValue::Integer(integer) => json!(integer),
                InfluxFieldValue::Unsigned(unsigned) => json!(unsigned),
                InfluxFieldValue::Boolean(boolean) => json!(boolean),
                InfluxFieldValue::String(text) => json!(text.unescaped()),
            };
            let typed = json!({ "type": field.value.type_name(), "value": value });
            (field.key.unescaped().into_owned(), typed)
        })
        .collect();
    json!({
        "measurement": point.measurement().unescaped(),
        "tags": tags,
        "fields": fields,
        "timestamp_ns": point.timestamp_ns,
    })
}
