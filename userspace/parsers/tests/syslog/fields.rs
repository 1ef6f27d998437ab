//! Direct assertions on `SyslogMessage` and the structured-data API.

use std::borrow::Cow;

use jiff::tz::TimeZone;
use killkrill_parsers::syslog::{EventTimestamp, ParseOptions, SyslogFormat, SyslogParseError, parse_syslog};

use super::{options_at, utc_options};

#[test]
fn rfc5424_fields_are_read_into_the_struct() {
    let frame =
        br#"<165>1 2024-03-05T07:08:09.003+02:00 web-01 billing 2211 INV17 [order@32473 id="A-99"] done"#;
    let parsed = parse_syslog(frame, &utc_options());
    assert_eq!(parsed.format, SyslogFormat::Rfc5424);
    assert_eq!((parsed.facility, parsed.severity, parsed.version), (Some(20), Some(5), Some(1)));
    let expected_seconds = "2024-03-05T05:08:09Z".parse::<jiff::Timestamp>().expect("valid").as_second();
    assert_eq!(
        parsed.timestamp,
        Some(EventTimestamp {
            unix_nanos: expected_seconds * 1_000_000_000 + 3_000_000,
            fractional_digits: 3
        })
    );
    assert_eq!(parsed.hostname, Some("web-01"));
    assert_eq!(parsed.app_name, Some("billing"));
    assert_eq!(parsed.procid, Some("2211"));
    assert_eq!(parsed.msgid, Some("INV17"));
    assert_eq!(parsed.structured_data.map(|data| data.raw), Some(r#"[order@32473 id="A-99"]"#));
    assert_eq!(parsed.message, b"done");
    assert_eq!(parsed.parse_error, None);
}

#[test]
fn structured_data_iterates_elements_and_params_in_wire_order() {
    let frame = br#"<13>1 - h a - - [one@1 k="1" k="2"][two@1][three@1 q="a\"b"] m"#;
    let parsed = parse_syslog(frame, &utc_options());
    let data = parsed.structured_data.expect("structured data");
    let ids: Vec<&str> = data.elements().map(|element| element.id).collect();
    assert_eq!(ids, ["one@1", "two@1", "three@1"]);
    let first: Vec<(&str, String)> = data
        .elements()
        .next()
        .expect("first")
        .params()
        .map(|(name, value)| (name, value.to_string()))
        .collect();
    assert_eq!(first, [("k", "1".to_owned()), ("k", "2".to_owned())]);
    assert_eq!(data.elements().nth(1).expect("second").params().count(), 0);
    let quoted = data.param("three@1", "q").expect("q");
    assert_eq!(quoted.raw, r#"a\"b"#);
    assert_eq!(quoted.unescaped(), "a\"b");
    assert!(data.param("three@1", "missing").is_none());
    assert!(data.param("nope", "k").is_none());
}

#[test]
fn unescaping_borrows_unless_a_backslash_is_present() {
    let frame = br#"<13>1 - h a - - [x@1 plain="abc" escaped="a\]c"] m"#;
    let parsed = parse_syslog(frame, &utc_options());
    let data = parsed.structured_data.expect("structured data");
    assert!(matches!(data.param("x@1", "plain").expect("plain").unescaped(), Cow::Borrowed("abc")));
    assert!(
        matches!(data.param("x@1", "escaped").expect("escaped").unescaped(), Cow::Owned(text) if text == "a]c")
    );
}

#[test]
fn bom_is_removed_from_the_message() {
    let parsed = parse_syslog(b"<13>1 - - - - - - \xEF\xBB\xBFhello", &utc_options());
    assert_eq!(parsed.message, b"hello");
    assert_eq!(parsed.parse_error, None);
}

#[test]
fn out_of_range_pri_leaves_facility_and_severity_unknown() {
    let parsed = parse_syslog(b"<200>Jun 14 23:00:00 nas app: x", &utc_options());
    assert_eq!((parsed.facility, parsed.severity), (None, None));
    assert_eq!(parsed.parse_error, Some(SyslogParseError::PriOutOfRange));
    assert_eq!(parsed.hostname, Some("nas"));
}

#[test]
fn missing_pri_assumes_user_notice() {
    let parsed = parse_syslog(b"plain text", &utc_options());
    assert_eq!((parsed.facility, parsed.severity), (Some(1), Some(5)));
    assert_eq!(parsed.parse_error, Some(SyslogParseError::MissingPri));
    assert_eq!(parsed.message, b"plain text");
}

#[test]
fn impossible_dates_give_no_timestamp_rather_than_a_made_up_one() {
    for frame in [
        &b"<13>1 2024-02-30T00:00:00Z h a - - - x"[..],
        b"<13>1 2023-02-29T00:00:00Z h a - - - x",
        b"<13>1 2024-01-01T24:00:00Z h a - - - x",
        b"<13>Feb 30 10:00:00 nas app: x",
        b"<13>Jun 14 24:00:00 nas app: x",
    ] {
        let parsed = parse_syslog(frame, &utc_options());
        assert_eq!(parsed.timestamp, None, "{}", String::from_utf8_lossy(frame));
        assert_eq!(parsed.parse_error, Some(SyslogParseError::InvalidTimestamp));
    }
}

#[test]
fn year_less_timestamp_never_takes_the_receive_time() {
    let options = options_at("2024-06-15T12:00:00Z", TimeZone::UTC);
    let parsed = parse_syslog(b"<13>Jan  2 03:04:05 nas app: x", &options);
    let timestamp = parsed.timestamp.expect("timestamp");
    assert_eq!(timestamp.to_string(), "2024-01-02T03:04:05Z");
    assert_ne!(timestamp.to_jiff(), options.received_at);
}

#[test]
fn event_timestamp_displays_exactly_the_written_digits() {
    let cases = [
        (1_700_000_000_000_000_000, 0, "2023-11-14T22:13:20Z"),
        (1_700_000_000_003_000_000, 3, "2023-11-14T22:13:20.003Z"),
        (1_700_000_000_000_000_000, 3, "2023-11-14T22:13:20.000Z"),
        (1_700_000_000_123_456_789, 9, "2023-11-14T22:13:20.123456789Z"),
        (-1_000_000_000, 0, "1969-12-31T23:59:59Z"),
        (-1, 9, "1969-12-31T23:59:59.999999999Z"),
    ];
    for (unix_nanos, fractional_digits, text) in cases {
        assert_eq!(EventTimestamp { unix_nanos, fractional_digits }.to_string(), text);
    }
}

#[test]
fn repeated_notices_expose_their_count() {
    let options = utc_options();
    let count = |frame: &[u8]| parse_syslog(frame, &options).repeated_count();
    assert_eq!(count(b"<13>Jun 14 23:00:00 nas last message repeated 3 times"), Some(3));
    assert_eq!(count(b"<13>Jun 14 23:00:00 nas sshd[1]: message repeated 2 times: [ x]"), Some(2));
    assert_eq!(count(b"<13>Jun 14 23:00:00 nas app: something else"), None);
}

#[test]
fn message_lossy_replaces_invalid_utf8_and_keeps_raw_bytes() {
    let parsed = parse_syslog(b"<13>caf\xE9", &utc_options());
    assert_eq!(parsed.message, b"caf\xE9");
    assert_eq!(parsed.message_lossy(), "caf\u{FFFD}");
}

#[test]
fn parse_error_reasons_are_short_and_distinct() {
    let all = [
        SyslogParseError::MissingPri,
        SyslogParseError::InvalidPri,
        SyslogParseError::PriOutOfRange,
        SyslogParseError::UnsupportedVersion,
        SyslogParseError::InvalidTimestamp,
        SyslogParseError::InvalidHeader,
        SyslogParseError::TruncatedHeader,
        SyslogParseError::InvalidStructuredData,
        SyslogParseError::InvalidUtf8,
        SyslogParseError::Empty,
    ];
    let mut reasons: Vec<&str> = all.iter().map(|error| error.reason()).collect();
    for (error, reason) in all.iter().zip(&reasons) {
        assert_eq!(error.to_string(), *reason);
    }
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), all.len());
}

#[test]
fn default_options_read_zone_less_times_as_utc() {
    let options = ParseOptions::default();
    assert_eq!(options.time_zone, TimeZone::UTC);
}
