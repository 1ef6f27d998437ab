//! syslog conformance tests: the corpus in tests/data/syslog rendered through
//! `syslog_to_json`, direct assertions on the parsed struct, and robustness properties.
mod corpus;
mod fields;
mod robustness;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use killkrill_parsers::syslog::ParseOptions;

/// The receive time most cases use: mid-June, so that year-less timestamps get 2024.
pub(crate) const DEFAULT_RECEIVED_AT: &str = "2024-06-15T12:00:00Z";

pub(crate) fn options_at(received_at: &str, time_zone: TimeZone) -> ParseOptions {
    let received_at: Timestamp = received_at.parse().expect("test receive time parses");
    ParseOptions { received_at, time_zone }
}

pub(crate) fn utc_options() -> ParseOptions {
    options_at(DEFAULT_RECEIVED_AT, TimeZone::UTC)
}
