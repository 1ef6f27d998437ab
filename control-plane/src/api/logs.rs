//! `GET /api/v1/logs`: search stored messages.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::Error;
use std::sync::Arc;

use crate::store::{Cursor, LogPage, LogQuery, Order, SharedPage, StoredLog, TextQuery};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

const SEVERITIES: [(&str, u8); 12] = [
    ("emerg", 0),
    ("emergency", 0),
    ("alert", 1),
    ("crit", 2),
    ("critical", 2),
    ("err", 3),
    ("error", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("debug", 7),
];

const FACILITIES: [(&str, u8); 24] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("security", 13),
    ("console", 14),
    ("solaris-cron", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The query string of `GET /api/v1/logs` (docs/api.md).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsParams {
    /// Receive time from (inclusive): RFC 3339, or relative to now such as `-15m`.
    start: Option<String>,
    /// Receive time until (exclusive): RFC 3339, relative, or `now`.
    end: Option<String>,
    /// Hostnames, comma-separated (any of them).
    host: Option<String>,
    /// App names, comma-separated (any of them).
    app: Option<String>,
    /// A level name or number, a comma-separated list, or a comparison such as `<=warning`.
    severity: Option<String>,
    /// Facility names or numbers, comma-separated.
    facility: Option<String>,
    /// A source address or network (CIDR).
    source: Option<String>,
    /// Words, `"phrases"` and `-excluded` terms.
    q: Option<String>,
    /// Rows to return (1 to 10,000; default 100).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    order: Option<String>,
}

fn bad(parameter: &'static str, message: impl Into<String>) -> Error {
    Error::BadRequest { parameter, message: message.into() }
}

/// A time bound: RFC 3339, `now`, or `-<n><s|m|h|d|w>` before `now_ns`.
pub fn parse_time(parameter: &'static str, text: &str, now_ns: i64) -> Result<i64, Error> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ns);
    }
    if let Some(relative) = text.strip_prefix('-') {
        let split = relative.find(|c: char| !c.is_ascii_digit()).unwrap_or(relative.len());
        let (number, unit) = relative.split_at(split);
        let seconds: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad(parameter, format!("`{text}`: the unit must be s, m, h, d or w"))),
        };
        let amount: i64 =
            number.parse().map_err(|_| bad(parameter, format!("`{text}` is not a duration")))?;
        let nanos = amount
            .checked_mul(seconds)
            .and_then(|s| s.checked_mul(1_000_000_000))
            .ok_or_else(|| bad(parameter, format!("`{text}` is too far back")))?;
        return Ok(now_ns.saturating_sub(nanos));
    }
    let timestamp: jiff::Timestamp = text.parse().map_err(|_| {
        bad(
            parameter,
            format!("`{text}` is not an RFC 3339 time (2024-05-01T12:00:00Z) or a relative one (-15m)"),
        )
    })?;
    i64::try_from(timestamp.as_nanosecond()).map_err(|_| bad(parameter, format!("`{text}` is out of range")))
}

fn level(parameter: &'static str, names: &[(&str, u8)], text: &str, max: u8) -> Result<u8, Error> {
    let text = text.trim();
    if let Ok(number) = text.parse::<u8>() {
        return if number <= max {
            Ok(number)
        } else {
            Err(bad(parameter, format!("`{text}` is out of range (0 to {max})")))
        };
    }
    let lower = text.to_ascii_lowercase();
    names
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|(_, number)| *number)
        .ok_or_else(|| bad(parameter, format!("`{text}` is not a known {parameter}")))
}

/// A single severity, by name or number.
pub fn severity_number(parameter: &'static str, text: &str) -> Result<u8, Error> {
    level(parameter, &SEVERITIES, text, 7)
}

/// A single facility, by name or number.
pub fn facility_number(parameter: &'static str, text: &str) -> Result<u8, Error> {
    level(parameter, &FACILITIES, text, 23)
}

/// `warning`, `4`, `err,crit`, `<=warning`, `>notice`: a mask of wanted severities.
pub fn parse_severity(text: &str) -> Result<u32, Error> {
    let severities = &SEVERITIES;
    let text = text.trim();
    for (operator, keep) in [
        ("<=", (|s, l| s <= l) as fn(u8, u8) -> bool),
        (">=", |s, l| s >= l),
        ("<", |s, l| s < l),
        (">", |s, l| s > l),
    ] {
        if let Some(rest) = text.strip_prefix(operator) {
            let limit = level("severity", severities, rest, 7)?;
            let mask = (0..=7u8).filter(|&s| keep(s, limit)).fold(0u32, |mask, s| mask | 1 << s);
            return if mask == 0 {
                Err(bad("severity", format!("`{text}` matches no severity")))
            } else {
                Ok(mask)
            };
        }
    }
    text.split(',').try_fold(0u32, |mask, part| Ok(mask | 1 << level("severity", severities, part, 7)?))
}

pub fn parse_facility(text: &str) -> Result<u32, Error> {
    text.split(',').try_fold(0u32, |mask, part| Ok(mask | 1 << level("facility", &FACILITIES, part, 23)?))
}

fn names(text: Option<String>) -> Vec<String> {
    text.map(|text| text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl LogsParams {
    /// Whether a time bound is relative to now (`-15m`, `now`): such a search differs at
    /// every request, so keeping its answer would only push others out.
    fn is_relative(&self) -> bool {
        [&self.start, &self.end].into_iter().flatten().any(|bound| {
            let bound = bound.trim();
            bound == "now" || bound.starts_with('-')
        })
    }

    pub fn into_query(self, now_ns: i64) -> Result<LogQuery, Error> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => return Err(bad("limit", format!("`{text}` is not a number between 1 and {MAX_LIMIT}"))),
            },
        };
        let start_ns = self.start.as_deref().map(|t| parse_time("start", t, now_ns)).transpose()?;
        let end_ns = self.end.as_deref().map(|t| parse_time("end", t, now_ns)).transpose()?;
        if let (Some(start), Some(end)) = (start_ns, end_ns)
            && start >= end
        {
            return Err(bad("end", "must be after start"));
        }
        let source = self
            .source
            .as_deref()
            .map(|text| {
                let text = text.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| bad("source", format!("`{text}` is not an address or a CIDR network")))
            })
            .transpose()?;
        let order = match self.order.as_deref() {
            None | Some("desc") => Order::Descending,
            Some("asc") => Order::Ascending,
            Some(other) => return Err(bad("order", format!("`{other}` is not asc or desc"))),
        };
        let cursor = self
            .cursor
            .as_deref()
            .map(|text| {
                Cursor::decode(text).ok_or_else(|| bad("cursor", "not a cursor from a previous page"))
            })
            .transpose()?;
        Ok(LogQuery {
            start_ns,
            end_ns,
            hosts: names(self.host),
            apps: names(self.app),
            severity_mask: self.severity.as_deref().map(parse_severity).transpose()?,
            facility_mask: self.facility.as_deref().map(parse_facility).transpose()?,
            source,
            text: TextQuery::parse(self.q.as_deref().unwrap_or_default())
                .map_err(|message| bad("q", message))?,
            limit,
            order,
            cursor,
            block_seqs: None,
        })
    }
}

pub fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// Search stored messages, newest first, one page at a time.
#[utoipa::path(get, path = "/api/v1/logs", params(LogsParams), responses(
    (status = 200, description = "A page of matching messages", body = super::openapi::LogsAnswer),
    (status = 400, description = "A filter is wrong; the message names it", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer", body = super::openapi::ErrorAnswer),
))]
pub async fn search(
    State(state): State<AppState>,
    Query(params): Query<LogsParams>,
) -> Result<Response, ApiError> {
    let relative = params.is_relative();
    let query = params.into_query(now_ns())?;
    let shared = if relative {
        Arc::new(SharedPage::new(state.store.query_logs(&query).await?))
    } else {
        state.store.query_logs_shared(&query).await?
    };
    // Encoded once per kept answer, however many clients it goes to.
    let json = shared
        .json(|page| {
            // Sized for the page at once: growing from serde_json's 128 bytes copied the
            // answer several times over (docs/adr/0042).
            let mut json = Vec::with_capacity(json_bytes_estimate(page));
            serde_json::to_writer(&mut json, &LogsAnswer::from(page)).map(|()| json)
        })
        .map_err(|error| Error::Internal(format!("a page could not be encoded: {error}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// About the size of a page's JSON: the fixed fields of a row and its texts.
fn json_bytes_estimate(page: &LogPage) -> usize {
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let rows: usize = page
        .logs
        .iter()
        .map(|log| {
            384 + log.message.len()
                + text(&log.structured_data)
                + text(&log.raw_b64)
                + text(&log.parse_error)
                + text(&log.hostname)
                + text(&log.app_name)
        })
        .sum();
    rows + 64
}

/// The body of a page, in the order the fields are sent.
#[derive(Serialize)]
struct LogsAnswer<'a> {
    count: usize,
    logs: &'a [StoredLog],
    next_cursor: Option<String>,
}

impl<'a> From<&'a LogPage> for LogsAnswer<'a> {
    fn from(page: &'a LogPage) -> Self {
        Self { count: page.logs.len(), logs: &page.logs, next_cursor: page.next_cursor.map(|c| c.encode()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn limit_is_checked_and_named() {
        let params = LogsParams { limit: Some("0".into()), ..LogsParams::default() };
        let error = params.into_query(NOW).unwrap_err().to_string();
        assert!(error.contains("limit"), "{error}");
        let params = LogsParams { q: Some("a  b".into()), ..LogsParams::default() };
        let query = params.into_query(NOW).unwrap();
        assert_eq!(query.text.words, ["a", "b"]);
        assert_eq!(query.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn searches_relative_to_now_are_told_apart() {
        let with = |start: Option<&str>, end: Option<&str>| LogsParams {
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            ..LogsParams::default()
        };
        assert!(with(Some("-15m"), None).is_relative());
        assert!(with(Some("2023-11-14T22:13:20Z"), Some(" now")).is_relative());
        assert!(!with(Some("2023-11-14T22:13:20Z"), None).is_relative());
        assert!(!with(None, None).is_relative());
    }

    #[test]
    fn times_are_absolute_or_relative() {
        assert_eq!(parse_time("start", "-15m", NOW).unwrap(), NOW - 900_000_000_000);
        assert_eq!(parse_time("start", "now", NOW).unwrap(), NOW);
        assert_eq!(parse_time("start", "2023-11-14T22:13:20Z", NOW).unwrap(), NOW);
        assert_eq!(parse_time("start", "2023-11-14T23:13:20+01:00", NOW).unwrap(), NOW);
        for bad in ["-15y", "yesterday", "-m", "-99999999999999w"] {
            let error = parse_time("start", bad, NOW).unwrap_err().to_string();
            assert!(error.contains("start"), "{bad}: {error}");
        }
    }

    #[test]
    fn severities_by_name_number_list_and_comparison() {
        assert_eq!(parse_severity("warning").unwrap(), 1 << 4);
        assert_eq!(parse_severity("4").unwrap(), 1 << 4);
        assert_eq!(parse_severity("err,CRIT").unwrap(), (1 << 3) | (1 << 2));
        assert_eq!(parse_severity("<=warning").unwrap(), 0b1_1111);
        assert_eq!(parse_severity(">notice").unwrap(), (1 << 6) | (1 << 7));
        assert!(parse_severity("8").is_err());
        assert!(parse_severity("loud").is_err());
        assert!(parse_severity("<emerg").is_err());
    }

    #[test]
    fn facilities_and_sources() {
        assert_eq!(parse_facility("local4,auth").unwrap(), (1 << 20) | (1 << 4));
        assert!(parse_facility("24").is_err());
        let query = LogsParams { source: Some("192.0.2.9/24".into()), ..LogsParams::default() }
            .into_query(NOW)
            .unwrap();
        assert_eq!(query.source.unwrap().to_string(), "192.0.2.0/24");
        let query = LogsParams { source: Some("2001:db8::1".into()), ..LogsParams::default() }
            .into_query(NOW)
            .unwrap();
        assert_eq!(query.source.unwrap().prefix_len(), 128);
        let error = LogsParams { source: Some("10.0.0.300".into()), ..LogsParams::default() }
            .into_query(NOW)
            .unwrap_err()
            .to_string();
        assert!(error.contains("source"), "{error}");
    }

    #[test]
    fn bad_order_cursor_and_range_name_their_parameter() {
        for (params, name) in [
            (LogsParams { order: Some("up".into()), ..LogsParams::default() }, "order"),
            (LogsParams { cursor: Some("garbage".into()), ..LogsParams::default() }, "cursor"),
            (
                LogsParams { start: Some("-1m".into()), end: Some("-2m".into()), ..LogsParams::default() },
                "end",
            ),
            (LogsParams { q: Some("\"open".into()), ..LogsParams::default() }, "q"),
        ] {
            let error = params.into_query(NOW).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }
}
