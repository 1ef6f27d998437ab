//! statsd conformance tests.

use crate::corpus::check_corpus;

use killkrill_parsers::json::statsd_to_json;
use killkrill_parsers::statsd::{
    StatsdItem, StatsdMetricType, StatsdRejectReason, StatsdValue, parse_statsd, unescape_newlines,
};
use serde_json::{Value, json};

/// A metric item with the defaults of everything not given in `overrides`.
fn metric(overrides: Value) -> Value {
    let mut item = json!({
        "sample_rate": 1,
        "tags": {},
        "gauge_delta": false,
        "timestamp": null,
        "container_id": null,
    });
    for (key, value) in overrides.as_object().expect("object").clone() {
        item[key] = value;
    }
    item
}

fn reject(line: &str, reason: &str) -> Value {
    json!({"reject": true, "line": line, "reason": reason})
}

fn metric_cases() -> Vec<(&'static str, &'static [u8], Vec<Value>)> {
    vec![
        (
            "counter_value_is_an_integer",
            b"page.views:1|c",
            vec![metric(json!({"name": "page.views", "type": "counter", "value": 1}))],
        ),
        (
            "fractional_value_is_a_float",
            b"latency:12.5|ms",
            vec![metric(json!({"name": "latency", "type": "timer", "value": 12.5}))],
        ),
        (
            "exponent_value_is_accepted",
            b"big:1.5e3|h",
            vec![metric(json!({"name": "big", "type": "histogram", "value": 1500}))],
        ),
        (
            "negative_counter_is_not_a_delta",
            b"c:-3|c",
            vec![metric(json!({"name": "c", "type": "counter", "value": -3}))],
        ),
        (
            "plain_gauge_is_not_a_delta",
            b"temp:21|g",
            vec![metric(json!({"name": "temp", "type": "gauge", "value": 21}))],
        ),
        (
            "signed_gauge_is_a_delta",
            b"temp:+4|g\ntemp:-2.5|g",
            vec![
                metric(json!({"name": "temp", "type": "gauge", "value": 4, "gauge_delta": true})),
                metric(json!({"name": "temp", "type": "gauge", "value": -2.5, "gauge_delta": true})),
            ],
        ),
        (
            "distribution_type_is_recognised",
            b"req.size:512|d",
            vec![metric(json!({"name": "req.size", "type": "distribution", "value": 512}))],
        ),
        (
            "set_value_is_kept_as_text",
            b"users:alice|s\nusers:42|s",
            vec![
                metric(json!({"name": "users", "type": "set", "value": "alice"})),
                metric(json!({"name": "users", "type": "set", "value": "42"})),
            ],
        ),
        (
            "each_value_of_a_multi_value_line_is_an_item",
            b"lat:1:2.5:3|h|@0.5|#env:prod",
            vec![
                metric(
                    json!({"name": "lat", "type": "histogram", "value": 1, "sample_rate": 0.5, "tags": {"env": "prod"}}),
                ),
                metric(
                    json!({"name": "lat", "type": "histogram", "value": 2.5, "sample_rate": 0.5, "tags": {"env": "prod"}}),
                ),
                metric(
                    json!({"name": "lat", "type": "histogram", "value": 3, "sample_rate": 0.5, "tags": {"env": "prod"}}),
                ),
            ],
        ),
        (
            "sample_rate_is_read",
            b"hits:1|c|@0.1",
            vec![metric(json!({"name": "hits", "type": "counter", "value": 1, "sample_rate": 0.1}))],
        ),
        (
            "sample_rate_of_one_is_accepted",
            b"hits:1|c|@1",
            vec![metric(json!({"name": "hits", "type": "counter", "value": 1}))],
        ),
        (
            "tags_with_and_without_values",
            b"hits:1|c|#env:prod,canary,url:http://x/y",
            vec![metric(json!({
                "name": "hits", "type": "counter", "value": 1,
                "tags": {"env": "prod", "canary": null, "url": "http://x/y"},
            }))],
        ),
        (
            "empty_tag_entries_are_skipped",
            b"hits:1|c|#a:1,,b",
            vec![metric(
                json!({"name": "hits", "type": "counter", "value": 1, "tags": {"a": "1", "b": null}}),
            )],
        ),
        (
            "container_id_and_timestamp_are_read",
            b"hits:1|c|#a:b|c:83c1f0|T1700000000",
            vec![metric(json!({
                "name": "hits", "type": "counter", "value": 1, "tags": {"a": "b"},
                "container_id": "83c1f0", "timestamp": 1_700_000_000,
            }))],
        ),
        (
            "sections_may_come_in_any_order",
            b"hits:1|c|T5|c:abc|#t|@0.25",
            vec![metric(json!({
                "name": "hits", "type": "counter", "value": 1, "sample_rate": 0.25,
                "tags": {"t": null}, "container_id": "abc", "timestamp": 5,
            }))],
        ),
        (
            "unknown_sections_are_ignored",
            b"hits:1|c|e:it-false|card:low",
            vec![metric(json!({"name": "hits", "type": "counter", "value": 1}))],
        ),
        (
            "crlf_and_trailing_newline_are_tolerated",
            b"a:1|c\r\nb:2|c\n\n",
            vec![
                metric(json!({"name": "a", "type": "counter", "value": 1})),
                metric(json!({"name": "b", "type": "counter", "value": 2})),
            ],
        ),
        (
            "utf8_names_and_tags_are_kept",
            "température:3|g|#lieu:cuisine".as_bytes(),
            vec![metric(
                json!({"name": "température", "type": "gauge", "value": 3, "tags": {"lieu": "cuisine"}}),
            )],
        ),
        ("empty_datagram_yields_nothing", b"", vec![]),
        ("only_newlines_yield_nothing", b"\n\r\n\n", vec![]),
    ]
}

fn malformed_cases() -> Vec<(&'static str, &'static [u8], Vec<Value>)> {
    vec![
        ("missing_type", b"hits:1", vec![reject("hits:1", "missing_type")]),
        ("missing_value", b"hits|c", vec![reject("hits|c", "missing_value")]),
        ("empty_name", b":1|c", vec![reject(":1|c", "empty_name")]),
        ("empty_value", b"hits:|c", vec![reject("hits:|c", "empty_value")]),
        ("empty_value_in_multi_value", b"hits:1::2|c", vec![reject("hits:1::2|c", "empty_value")]),
        ("unknown_type", b"hits:1|x", vec![reject("hits:1|x", "unknown_type")]),
        ("empty_type", b"hits:1|", vec![reject("hits:1|", "unknown_type")]),
        ("non_numeric_value", b"hits:abc|c", vec![reject("hits:abc|c", "invalid_value")]),
        ("nan_value", b"hits:NaN|g", vec![reject("hits:NaN|g", "invalid_value")]),
        ("infinite_value", b"hits:inf|g", vec![reject("hits:inf|g", "invalid_value")]),
        ("overflowing_value", b"hits:1e999|g", vec![reject("hits:1e999|g", "invalid_value")]),
        ("lone_sign_gauge", b"temp:+|g", vec![reject("temp:+|g", "invalid_value")]),
        (
            "bad_value_anywhere_rejects_whole_line",
            b"lat:1:x:3|h",
            vec![reject("lat:1:x:3|h", "invalid_value")],
        ),
        ("zero_sample_rate", b"hits:1|c|@0", vec![reject("hits:1|c|@0", "invalid_sample_rate")]),
        ("negative_sample_rate", b"hits:1|c|@-0.5", vec![reject("hits:1|c|@-0.5", "invalid_sample_rate")]),
        ("sample_rate_above_one", b"hits:1|c|@1.5", vec![reject("hits:1|c|@1.5", "invalid_sample_rate")]),
        ("nan_sample_rate", b"hits:1|c|@NaN", vec![reject("hits:1|c|@NaN", "invalid_sample_rate")]),
        ("empty_sample_rate", b"hits:1|c|@", vec![reject("hits:1|c|@", "invalid_sample_rate")]),
        ("non_numeric_timestamp", b"hits:1|c|Tsoon", vec![reject("hits:1|c|Tsoon", "invalid_timestamp")]),
        ("negative_timestamp", b"hits:1|c|T-5", vec![reject("hits:1|c|T-5", "invalid_timestamp")]),
        (
            "overflowing_timestamp",
            b"hits:1|c|T99999999999999999999",
            vec![reject("hits:1|c|T99999999999999999999", "invalid_timestamp")],
        ),
        ("empty_section", b"hits:1|c||#a", vec![reject("hits:1|c||#a", "empty_section")]),
        ("empty_container_id", b"hits:1|c|c:", vec![reject("hits:1|c|c:", "empty_section")]),
        ("trailing_space_in_type", b"hits:1|c ", vec![reject("hits:1|c ", "unknown_type")]),
        (
            "invalid_utf8_line_is_rejected_and_neighbours_parse",
            b"a:1|c\nb\xff:1|c\nc:3|c",
            vec![
                metric(json!({"name": "a", "type": "counter", "value": 1})),
                reject("b\u{fffd}:1|c", "not_utf8"),
                metric(json!({"name": "c", "type": "counter", "value": 3})),
            ],
        ),
        (
            "rejects_keep_their_position_between_good_lines",
            b"a:1|c\ngarbage\nb:2|g",
            vec![
                metric(json!({"name": "a", "type": "counter", "value": 1})),
                reject("garbage", "missing_type"),
                metric(json!({"name": "b", "type": "gauge", "value": 2})),
            ],
        ),
    ]
}

fn event(overrides: Value) -> Value {
    let mut item = json!({
        "type": "event", "timestamp": null, "hostname": null, "aggregation_key": null,
        "priority": null, "alert_type": null, "source_type_name": null, "tags": {},
    });
    for (key, value) in overrides.as_object().expect("object").clone() {
        item[key] = value;
    }
    item
}

fn service_check(overrides: Value) -> Value {
    let mut item = json!({
        "type": "service_check", "timestamp": null, "hostname": null, "tags": {}, "message": null,
    });
    for (key, value) in overrides.as_object().expect("object").clone() {
        item[key] = value;
    }
    item
}

fn event_and_check_cases() -> Vec<(&'static str, &'static [u8], Vec<Value>)> {
    vec![
        (
            "minimal_event",
            b"_e{5,4}:Title|Body",
            vec![event(json!({"title": "Title", "text": "Body"}))],
        ),
        (
            "event_with_every_section",
            b"_e{6,9}:Deploy|v1.2 done|d:1700000000|h:web-1|k:deploys|p:low|s:jenkins|t:success|#env:prod,team",
            vec![event(json!({
                "title": "Deploy", "text": "v1.2 done", "timestamp": 1_700_000_000,
                "hostname": "web-1", "aggregation_key": "deploys", "priority": "low",
                "source_type_name": "jenkins", "alert_type": "success",
                "tags": {"env": "prod", "team": null},
            }))],
        ),
        (
            "event_text_may_hold_pipes_and_escaped_newlines",
            b"_e{1,10}:T|a|b\\nc|d:e|t:info",
            vec![event(json!({"title": "T", "text": "a|b\nc|d:e", "alert_type": "info"}))],
        ),
        (
            "event_lengths_count_bytes",
            "_e{5,2}:Ünï|ok".as_bytes(),
            vec![event(json!({"title": "Ünï", "text": "ok"}))],
        ),
        ("event_with_empty_text", b"_e{1,0}:T|", vec![event(json!({"title": "T", "text": ""}))]),
        ("event_title_too_long_for_length", b"_e{3,4}:Title|Body", vec![reject("_e{3,4}:Title|Body", "event_length_mismatch")]),
        ("event_text_shorter_than_length", b"_e{5,9}:Title|Body", vec![reject("_e{5,9}:Title|Body", "event_length_mismatch")]),
        ("event_text_longer_than_length", b"_e{5,2}:Title|Body", vec![reject("_e{5,2}:Title|Body", "event_length_mismatch")]),
        ("event_length_inside_a_character", "_e{1,2}:Ü|ok".as_bytes(), vec![reject("_e{1,2}:Ü|ok", "event_length_mismatch")]),
        ("event_without_lengths", b"_e:Title|Body", vec![reject("_e:Title|Body", "unknown_type")]),
        ("event_with_bad_lengths", b"_e{a,4}:Title|Body", vec![reject("_e{a,4}:Title|Body", "malformed_event_header")]),
        ("event_missing_comma", b"_e{5}:Title|Body", vec![reject("_e{5}:Title|Body", "malformed_event_header")]),
        ("event_empty_title", b"_e{0,4}:|Body", vec![reject("_e{0,4}:|Body", "empty_event_title")]),
        ("event_bad_timestamp", b"_e{1,1}:T|B|d:x", vec![reject("_e{1,1}:T|B|d:x", "invalid_timestamp")]),
        ("event_empty_hostname", b"_e{1,1}:T|B|h:", vec![reject("_e{1,1}:T|B|h:", "empty_section")]),
        (
            "minimal_service_check",
            b"_sc|db.up|0",
            vec![service_check(json!({"name": "db.up", "status": 0}))],
        ),
        (
            "service_check_with_every_section",
            b"_sc|db.up|2|d:1700000000|h:db-1|#env:prod,primary|m:replica lag|too high\\nsee runbook",
            vec![service_check(json!({
                "name": "db.up", "status": 2, "timestamp": 1_700_000_000, "hostname": "db-1",
                "tags": {"env": "prod", "primary": null}, "message": "replica lag|too high\nsee runbook",
            }))],
        ),
        ("service_check_unknown_status", b"_sc|db.up|3", vec![service_check(json!({"name": "db.up", "status": 3}))]),
        ("service_check_status_out_of_range", b"_sc|db.up|4", vec![reject("_sc|db.up|4", "invalid_service_check_status")]),
        ("service_check_missing_status", b"_sc|db.up", vec![reject("_sc|db.up", "invalid_service_check_status")]),
        ("service_check_empty_name", b"_sc||0", vec![reject("_sc||0", "empty_service_check_name")]),
        ("service_check_bad_timestamp", b"_sc|a|0|d:-1", vec![reject("_sc|a|0|d:-1", "invalid_timestamp")]),
        (
            "metrics_events_and_checks_mix_in_wire_order",
            b"a:1|c\n_e{1,1}:T|B\n_sc|s|1\nb:2|g",
            vec![
                metric(json!({"name": "a", "type": "counter", "value": 1})),
                event(json!({"title": "T", "text": "B"})),
                service_check(json!({"name": "s", "status": 1})),
                metric(json!({"name": "b", "type": "gauge", "value": 2})),
            ],
        ),
    ]
}

#[test]
fn statsd_cases_render_as_expected() {
    for (name, datagram, items) in
        metric_cases().into_iter().chain(malformed_cases()).chain(event_and_check_cases())
    {
        assert_eq!(statsd_to_json(datagram), json!({ "items": items }), "{name}");
    }
}

#[test]
fn metric_fields_borrow_from_the_datagram() {
    let datagram = b"api.req:1:2|ms|@0.5|#env:prod,canary|c:abc|T17";
    let items: Vec<StatsdItem<'_>> = parse_statsd(datagram).collect();
    assert_eq!(items.len(), 2);
    for (item, expected_value) in items.iter().zip([1.0, 2.0]) {
        let StatsdItem::Metric(metric) = item else { panic!("not a metric: {item:?}") };
        assert_eq!(metric.name, "api.req");
        assert!(std::ptr::eq(metric.name.as_ptr(), datagram.as_ptr()), "name is a slice of the datagram");
        assert_eq!(metric.metric_type, StatsdMetricType::Timer);
        assert_eq!(metric.value, StatsdValue::Number(expected_value));
        assert_eq!(metric.sample_rate, 0.5);
        assert_eq!(metric.tags.raw, "env:prod,canary");
        assert_eq!(metric.tags.iter().collect::<Vec<_>>(), [("env", Some("prod")), ("canary", None)]);
        assert_eq!(metric.container_id, Some("abc"));
        assert_eq!(metric.timestamp, Some(17));
    }
}

#[test]
fn reject_keeps_the_raw_line_and_a_reason() {
    let items: Vec<StatsdItem<'_>> = parse_statsd(b"ok:1|c\r\nbad:1|q\r\n").collect();
    assert_eq!(
        items[1],
        StatsdItem::Reject(killkrill_parsers::statsd::StatsdReject {
            line: b"bad:1|q",
            reason: StatsdRejectReason::UnknownType,
        })
    );
}

#[test]
fn tags_without_section_are_empty() {
    let Some(StatsdItem::Metric(metric)) = parse_statsd(b"a:1|c").next() else { panic!("no metric") };
    assert!(metric.tags.is_empty());
    assert_eq!(metric.tags.iter().count(), 0);
}

#[test]
fn escaped_newlines_are_restored_only_on_request() {
    assert_eq!(unescape_newlines("a\\nb"), "a\nb");
    assert!(matches!(unescape_newlines("plain"), std::borrow::Cow::Borrowed("plain")));
}

/// Each `NAME.txt` in tests/data/statsd is a datagram; `NAME.json` is its rendering.
#[test]
fn corpus_datagrams_render_as_recorded() {
    check_corpus("statsd", "txt", |datagram, _| statsd_to_json(datagram));
}

#[test]
fn decimal_values_equal_what_the_standard_parser_gives() {
    for text in [
        "0.1",
        "0.3",
        "12.7",
        "-2.5",
        "+4",
        "1.",
        ".5",
        "999999999999999",
        "1234567.891011",
        "0.000000000000001",
        "9007199254740993",
        "1234567890.1234567",
        "3.14159265358979",
    ] {
        let line = format!("v:{text}|ms");
        let Some(StatsdItem::Metric(metric)) = parse_statsd(line.as_bytes()).next() else {
            panic!("{text} did not parse")
        };
        let expected: f64 = text.parse().expect("valid float");
        assert_eq!(metric.value, StatsdValue::Number(expected), "{text}");
    }
}
