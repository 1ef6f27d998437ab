//! Syslog frames: `parse_syslog` must not panic for any bytes, every borrowed field must
//! point into the frame (even an empty one: docs/syslog-parsing.md), and the JSON
//! rendering must not panic either.

#![no_main]

#[expect(
    dead_code,
    reason = "syslog promises even empty fields point into the frame, so it never needs the lenient check"
)]
mod borrow;

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use killkrill_parsers::json::syslog_to_json;
use killkrill_parsers::syslog::{ParseOptions, SyslogMessage, parse_syslog};
use libfuzzer_sys::fuzz_target;

use borrow::assert_inside;

/// Two receive times: mid-year, and just after New Year, where a year-less timestamp
/// from late December must be put in the previous year.
const RECEIVED_AT: [Timestamp; 2] = [
    Timestamp::constant(1_718_452_800, 0), // 2024-06-15T12:00:00Z
    Timestamp::constant(1_704_070_800, 0), // 2024-01-01T01:00:00Z
];

/// UTC, and a zone with daylight saving time, for timestamps that carry no offset: the
/// gaps and folds of DST are where local-time conversion can go wrong. Built once:
/// loading a zone per input would dominate the run.
static OPTIONS: LazyLock<Vec<ParseOptions>> = LazyLock::new(|| {
    // The system database may be absent (a bare container); the POSIX rule is the same
    // zone for the years that matter here.
    let paris = TimeZone::get("Europe/Paris")
        .or_else(|_| TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3"))
        .expect("a POSIX time zone rule parses");
    RECEIVED_AT
        .into_iter()
        .flat_map(|received_at| {
            [TimeZone::UTC, paris.clone()].map(|time_zone| ParseOptions { received_at, time_zone })
        })
        .collect()
});

fuzz_target!(|frame: &[u8]| {
    for options in OPTIONS.iter() {
        let message = parse_syslog(frame, options);
        assert_borrows_only_from(frame, &message);
        let _ = syslog_to_json(frame, &message);
        let _ = message.repeated_count();
    }
});

fn assert_borrows_only_from(frame: &[u8], message: &SyslogMessage<'_>) {
    assert_inside(frame, message.message, "message");
    let fields = [
        ("hostname", message.hostname),
        ("app_name", message.app_name),
        ("procid", message.procid),
        ("msgid", message.msgid),
    ];
    for (what, field) in fields {
        if let Some(text) = field {
            assert_inside(frame, text.as_bytes(), what);
        }
    }
    let Some(data) = message.structured_data else {
        return;
    };
    assert_inside(frame, data.raw.as_bytes(), "structured data");
    for element in data.elements() {
        assert_inside(frame, element.id.as_bytes(), "SD-ID");
        assert_inside(frame, element.params_raw.as_bytes(), "SD params");
        for (name, value) in element.params() {
            assert_inside(frame, name.as_bytes(), "PARAM-NAME");
            assert_inside(frame, value.raw.as_bytes(), "PARAM-VALUE");
            let _ = value.unescaped();
        }
    }
}
