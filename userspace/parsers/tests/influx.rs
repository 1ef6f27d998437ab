//! influx conformance tests.

use crate::corpus::check_corpus;
use std::borrow::Cow;

use killkrill_parsers::influx::{InfluxFieldValue, InfluxItem, InfluxPrecision, parse_influx};
use killkrill_parsers::json::influx_to_json;
use serde_json::{Value, json};

fn point(measurement: &str, tags: Value, fields: Value, timestamp_ns: Option<i64>) -> Value {
    json!({"measurement": measurement, "tags": tags, "fields": fields, "timestamp_ns": timestamp_ns})
}

fn reject(line: &str, reason: &str) -> Value {
    json!({"reject": true, "line": line, "reason": reason})
}

fn float(value: f64) -> Value {
    json!({"type": "float", "value": value})
}

fn cases() -> Vec<(&'static str, &'static str, Vec<Value>)> {
    vec![
        ("minimal_point", "cpu value=1", vec![point("cpu", json!({}), json!({"value": float(1.0)}), None)]),
        (
            "tags_fields_and_timestamp",
            "cpu,host=a,region=eu usage=0.5,idle=99.5 1700000000000000000",
            vec![point(
                "cpu",
                json!({"host": "a", "region": "eu"}),
                json!({"usage": float(0.5), "idle": float(99.5)}),
                Some(1_700_000_000_000_000_000),
            )],
        ),
        (
            "every_field_type",
            r#"m f=-1.5e3,i=-42i,u=42u,s="hi there",b=true 1"#,
            vec![point(
                "m",
                json!({}),
                json!({
                    "f": float(-1500.0),
                    "i": {"type": "int", "value": -42},
                    "u": {"type": "uint", "value": 42},
                    "s": {"type": "string", "value": "hi there"},
                    "b": {"type": "bool", "value": true},
                }),
                Some(1),
            )],
        ),
        (
            "every_boolean_spelling",
            "m a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
            vec![point(
                "m",
                json!({}),
                json!({
                    "a": {"type": "bool", "value": true}, "b": {"type": "bool", "value": true},
                    "c": {"type": "bool", "value": true}, "d": {"type": "bool", "value": true},
                    "e": {"type": "bool", "value": true}, "f": {"type": "bool", "value": false},
                    "g": {"type": "bool", "value": false}, "h": {"type": "bool", "value": false},
                    "i": {"type": "bool", "value": false}, "j": {"type": "bool", "value": false},
                }),
                None,
            )],
        ),
        (
            "integer_and_unsigned_limits_are_accepted",
            "m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u",
            vec![point(
                "m",
                json!({}),
                json!({
                    "a": {"type": "int", "value": i64::MAX},
                    "b": {"type": "int", "value": i64::MIN},
                    "c": {"type": "uint", "value": u64::MAX},
                }),
                None,
            )],
        ),
        (
            "escaped_measurement",
            r"disk\ usage\,total,path=/ used=1",
            vec![point("disk usage,total", json!({"path": "/"}), json!({"used": float(1.0)}), None)],
        ),
        (
            "escaped_tag_keys_and_values",
            r"m,tag\ key\=x=va\,l\ ue\=y f=1",
            vec![point("m", json!({"tag key=x": "va,l ue=y"}), json!({"f": float(1.0)}), None)],
        ),
        (
            "escaped_field_key",
            r"m field\ key\,a\=b=1",
            vec![point("m", json!({}), json!({"field key,a=b": float(1.0)}), None)],
        ),
        (
            "escaped_string_value",
            r#"m s="say \"hi\" \\ bye",t="a\nb""#,
            vec![point(
                "m",
                json!({}),
                json!({
                    "s": {"type": "string", "value": "say \"hi\" \\ bye"},
                    "t": {"type": "string", "value": "a\\nb"},
                }),
                None,
            )],
        ),
        (
            "string_value_may_hold_delimiters",
            r#"m s="a=b, c d",n=1i 5"#,
            vec![point(
                "m",
                json!({}),
                json!({"s": {"type": "string", "value": "a=b, c d"}, "n": {"type": "int", "value": 1}}),
                Some(5),
            )],
        ),
        (
            "empty_string_value",
            r#"m s="""#,
            vec![point("m", json!({}), json!({"s": {"type": "string", "value": ""}}), None)],
        ),
        (
            "backslash_before_other_characters_is_literal",
            r"m\x,t=a\b f=1",
            vec![point(r"m\x", json!({"t": r"a\b"}), json!({"f": float(1.0)}), None)],
        ),
        (
            "negative_timestamp_is_accepted",
            "m f=1 -1000",
            vec![point("m", json!({}), json!({"f": float(1.0)}), Some(-1000))],
        ),
        (
            "trailing_spaces_are_tolerated",
            "m f=1 5  ",
            vec![point("m", json!({}), json!({"f": float(1.0)}), Some(5))],
        ),
        (
            "comments_and_blank_lines_yield_nothing",
            "# a comment\n\n   \n  # indented comment\nm f=1\r\n",
            vec![point("m", json!({}), json!({"f": float(1.0)}), None)],
        ),
        (
            "several_lines_with_a_bad_one_between",
            "a f=1\nb f=\nc f=3",
            vec![
                point("a", json!({}), json!({"f": float(1.0)}), None),
                reject("b f=", "empty_field_value"),
                point("c", json!({}), json!({"f": float(3.0)}), None),
            ],
        ),
        ("empty_measurement", ",t=a f=1", vec![reject(",t=a f=1", "empty_measurement")]),
        (
            "space_first_is_skipped_then_measurement_read",
            " m f=1",
            vec![point("m", json!({}), json!({"f": float(1.0)}), None)],
        ),
        ("no_fields", "m", vec![reject("m", "missing_fields")]),
        ("no_fields_after_tags", "m,t=a", vec![reject("m,t=a", "missing_fields")]),
        ("no_fields_after_space", "m ", vec![reject("m ", "missing_fields")]),
        ("tag_without_equals", "m,t f=1", vec![reject("m,t f=1", "malformed_tag")]),
        ("tag_with_two_equals", "m,t=a=b f=1", vec![reject("m,t=a=b f=1", "malformed_tag")]),
        ("empty_tag_entry", "m,a=b,,c=d f=1", vec![reject("m,a=b,,c=d f=1", "malformed_tag")]),
        ("trailing_comma_after_tags", "m,a=b, f=1", vec![reject("m,a=b, f=1", "malformed_tag")]),
        ("empty_tag_key", "m,=a f=1", vec![reject("m,=a f=1", "empty_tag_key")]),
        ("empty_tag_value", "m,a= f=1", vec![reject("m,a= f=1", "empty_tag_value")]),
        ("field_without_equals", "m f", vec![reject("m f", "malformed_field")]),
        ("empty_field_key", "m =1", vec![reject("m =1", "empty_field_key")]),
        ("empty_field_value", "m f=,g=1", vec![reject("m f=,g=1", "empty_field_value")]),
        ("trailing_comma_after_fields", "m f=1,", vec![reject("m f=1,", "malformed_field")]),
        ("junk_after_string_value", r#"m s="a"x"#, vec![reject(r#"m s="a"x"#, "malformed_field")]),
        ("unterminated_string", r#"m s="abc"#, vec![reject(r#"m s="abc"#, "unterminated_string")]),
        (
            "escaped_closing_quote_leaves_string_open",
            r#"m s="abc\""#,
            vec![reject(r#"m s="abc\""#, "unterminated_string")],
        ),
        ("word_value", "m f=hello", vec![reject("m f=hello", "invalid_field_value")]),
        ("nan_value", "m f=NaN", vec![reject("m f=NaN", "invalid_field_value")]),
        ("inf_value", "m f=inf", vec![reject("m f=inf", "invalid_field_value")]),
        ("overflowing_float", "m f=1e999", vec![reject("m f=1e999", "number_out_of_range")]),
        ("float_with_garbage", "m f=1.2.3", vec![reject("m f=1.2.3", "invalid_field_value")]),
        ("integer_with_fraction", "m f=1.5i", vec![reject("m f=1.5i", "invalid_field_value")]),
        ("integer_without_digits", "m f=i", vec![reject("m f=i", "invalid_field_value")]),
        (
            "integer_too_large",
            "m f=9223372036854775808i",
            vec![reject("m f=9223372036854775808i", "number_out_of_range")],
        ),
        (
            "integer_too_small",
            "m f=-9223372036854775809i",
            vec![reject("m f=-9223372036854775809i", "number_out_of_range")],
        ),
        ("negative_unsigned", "m f=-1u", vec![reject("m f=-1u", "invalid_field_value")]),
        (
            "unsigned_too_large",
            "m f=18446744073709551616u",
            vec![reject("m f=18446744073709551616u", "number_out_of_range")],
        ),
        ("non_numeric_timestamp", "m f=1 now", vec![reject("m f=1 now", "invalid_timestamp")]),
        ("float_timestamp", "m f=1 1.5", vec![reject("m f=1 1.5", "invalid_timestamp")]),
        (
            "timestamp_beyond_i64",
            "m f=1 9223372036854775808",
            vec![reject("m f=1 9223372036854775808", "timestamp_overflow")],
        ),
        ("data_after_timestamp", "m f=1 5 6", vec![reject("m f=1 5 6", "trailing_data")]),
    ]
}

#[test]
fn influx_cases_render_as_expected() {
    for (name, datagram, items) in cases() {
        assert_eq!(
            influx_to_json(datagram.as_bytes(), InfluxPrecision::Nanoseconds),
            json!({ "items": items }),
            "{name}"
        );
    }
}

#[test]
fn precision_scales_timestamps_to_nanoseconds() {
    for (precision, expected) in [
        (InfluxPrecision::Nanoseconds, 1_700_000_000_i64),
        (InfluxPrecision::Microseconds, 1_700_000_000_000),
        (InfluxPrecision::Milliseconds, 1_700_000_000_000_000),
        (InfluxPrecision::Seconds, 1_700_000_000_000_000_000),
    ] {
        let rendered = influx_to_json(b"m f=1 1700000000", precision);
        assert_eq!(rendered["items"][0]["timestamp_ns"], json!(expected), "{precision:?}");
    }
    assert_eq!(InfluxPrecision::default(), InfluxPrecision::Nanoseconds);
}

#[test]
fn timestamp_overflowing_after_scaling_is_rejected() {
    let rendered = influx_to_json(b"m f=1 10000000000", InfluxPrecision::Seconds);
    assert_eq!(rendered["items"][0], reject("m f=1 10000000000", "timestamp_overflow"));
    let rendered = influx_to_json(b"m f=1 -10000000000", InfluxPrecision::Seconds);
    assert_eq!(rendered["items"][0]["reason"], "timestamp_overflow");
}

#[test]
fn invalid_utf8_line_is_rejected_and_neighbours_parse() {
    let rendered = influx_to_json(b"a f=1\nb\xff f=1\nc f=1", InfluxPrecision::Nanoseconds);
    let reasons: Vec<&Value> =
        rendered["items"].as_array().expect("items").iter().map(|item| &item["reason"]).collect();
    assert_eq!(reasons, [&Value::Null, &json!("not_utf8"), &Value::Null]);
}

#[test]
fn names_are_borrowed_unless_an_escape_is_present() {
    let datagram = br#"cpu,host=a,path=C:\ dir usage=1,note="q\"x" 7"#;
    let Some(InfluxItem::Point(point)) = parse_influx(datagram, InfluxPrecision::Nanoseconds).next() else {
        panic!("no point")
    };
    assert!(matches!(point.measurement().unescaped(), Cow::Borrowed("cpu")));
    let tags: Vec<_> = point.tags().collect();
    assert_eq!(tags.len(), 2);
    assert!(matches!(tags[0].value.unescaped(), Cow::Borrowed("a")));
    assert_eq!(tags[1].value.raw(), r"C:\ dir");
    assert!(matches!(tags[1].value.unescaped(), Cow::Owned(ref owned) if owned == "C: dir"));
    let fields: Vec<_> = point.fields().collect();
    assert_eq!(fields[0].value, InfluxFieldValue::Float(1.0));
    let InfluxFieldValue::String(note) = fields[1].value else { panic!("not a string") };
    assert_eq!(note.raw(), r#"q\"x"#);
    assert_eq!(note.unescaped(), r#"q"x"#);
    assert_eq!(point.tags_raw(), r"host=a,path=C:\ dir");
    assert_eq!(point.fields_raw(), r#"usage=1,note="q\"x""#);
    assert_eq!(point.timestamp_ns, Some(7));
}

/// Each `NAME.txt` in tests/data/influx is a datagram in nanoseconds; `NAME.json` is
/// its rendering.
#[test]
fn corpus_datagrams_render_as_recorded() {
    check_corpus("influx", "txt", |datagram, _| influx_to_json(datagram, InfluxPrecision::Nanoseconds));
}
