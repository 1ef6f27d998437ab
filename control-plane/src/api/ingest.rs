//! `POST /api/v1/logs`: messages posted as JSON, stored as one block and acknowledged only
//! once that block is committed. A request is all or nothing: on any error nothing of it
//! is stored, so a client can simply send it again.

use std::net::SocketAddr;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::logs::{facility_number, severity_number};
use crate::Error;
use crate::store::BlockEncoder;
use crate::store::block::MAX_ROWS;

/// Largest accepted body; larger ones are answered 413.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// zstd level for posted blocks: requests are small and answered synchronously.
const COMPRESSION_LEVEL: i32 = 1;

/// A number or a name, for severity and facility.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Level {
    Number(u64),
    Name(String),
}

/// One posted message (docs/api.md).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostedLog {
    /// A complete syslog frame, parsed as if it came from the network.
    raw: Option<String>,
    message: Option<String>,
    hostname: Option<String>,
    app_name: Option<String>,
    procid: Option<String>,
    msgid: Option<String>,
    severity: Option<Level>,
    facility: Option<Level>,
    /// RFC 3339.
    timestamp: Option<String>,
    /// RFC 5424 STRUCTURED-DATA, e.g. `[origin ip="192.0.2.1"]`.
    structured_data: Option<String>,
}

fn bad(message: String) -> Error {
    Error::BadRequest { parameter: "body", message }
}

/// An RFC 5424 header field: printable ASCII without spaces, at most `max` bytes.
fn header_field(line: usize, name: &str, value: Option<&str>, max: usize) -> Result<String, Error> {
    match value {
        None => Ok("-".to_owned()),
        Some(text)
            if !text.is_empty() && text.len() <= max && text.bytes().all(|b| (33..=126).contains(&b)) =>
        {
            Ok(text.to_owned())
        }
        Some(_) => Err(bad(format!(
            "message {line}: {name} must be 1 to {max} printable ASCII characters without spaces"
        ))),
    }
}

fn level_number(line: usize, name: &'static str, level: &Level, max: u8) -> Result<u8, Error> {
    let parsed = match level {
        Level::Number(number) => u8::try_from(*number).ok().filter(|n| *n <= max).ok_or(()),
        Level::Name(text) if name == "severity" => severity_number(name, text).map_err(|_| ()),
        Level::Name(text) => facility_number(name, text).map_err(|_| ()),
    };
    parsed.map_err(|()| bad(format!("message {line}: {name} is not a known {name} (a name or 0 to {max})")))
}

/// The frame a posted message stands for: its `raw` text, or an RFC 5424 frame built from
/// its fields (so that posted messages are parsed and stored exactly like received ones).
fn frame_of(line: usize, posted: PostedLog) -> Result<Vec<u8>, Error> {
    if let Some(raw) = posted.raw {
        let has_fields = posted.message.is_some()
            || posted.hostname.is_some()
            || posted.app_name.is_some()
            || posted.procid.is_some()
            || posted.msgid.is_some()
            || posted.severity.is_some()
            || posted.facility.is_some()
            || posted.timestamp.is_some()
            || posted.structured_data.is_some();
        if has_fields {
            return Err(bad(format!("message {line}: `raw` cannot be combined with other fields")));
        }
        return Ok(raw.into_bytes());
    }
    let message =
        posted.message.ok_or_else(|| bad(format!("message {line}: `message` or `raw` is required")))?;
    let severity =
        posted.severity.as_ref().map(|s| level_number(line, "severity", s, 7)).transpose()?.unwrap_or(6);
    let facility =
        posted.facility.as_ref().map(|f| level_number(line, "facility", f, 23)).transpose()?.unwrap_or(1);
    let timestamp = match posted.timestamp.as_deref() {
        None => "-".to_owned(),
        Some(text) => {
            let invalid = || bad(format!("message {line}: timestamp `{text}` is not RFC 3339"));
            let time: jiff::Timestamp = text.parse().map_err(|_| invalid())?;
            // Keep the precision the client wrote (`.250` stays three digits).
            let digits = text
                .split_once('.')
                .map_or(0, |(_, fraction)| fraction.bytes().take_while(u8::is_ascii_digit).count());
            let nanos = i64::try_from(time.as_nanosecond()).map_err(|_| invalid())?;
            crate::store::rfc3339_with_digits(nanos, digits.min(9) as u8).ok_or_else(invalid)?
        }
    };
    let structured_data = posted.structured_data.unwrap_or_else(|| "-".to_owned());
    if !structured_data.starts_with('[') && structured_data != "-" {
        return Err(bad(format!("message {line}: structured_data must start with `[`")));
    }
    Ok(format!(
        "<{}>1 {timestamp} {} {} {} {} {structured_data} {message}",
        u32::from(facility) * 8 + u32::from(severity),
        header_field(line, "hostname", posted.hostname.as_deref(), 255)?,
        header_field(line, "app_name", posted.app_name.as_deref(), 48)?,
        header_field(line, "procid", posted.procid.as_deref(), 128)?,
        header_field(line, "msgid", posted.msgid.as_deref(), 32)?,
    )
    .into_bytes())
}

/// A JSON array of messages, or one JSON object per line.
fn parse_body(body: &[u8]) -> Result<Vec<PostedLog>, Error> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"[") {
        return serde_json::from_slice(trimmed)
            .map_err(|error| bad(format!("not a JSON array of messages: {error}")));
    }
    let mut posted = Vec::new();
    for (index, line) in body.split(|&byte| byte == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        posted
            .push(serde_json::from_slice(line).map_err(|error| bad(format!("line {}: {error}", index + 1)))?);
    }
    Ok(posted)
}

/// Reads an ingest request's body, at most `MAX_BODY_BYTES` (413 past it). Handlers take
/// their ingest slot first, so that only as many bodies as there are slots are buffered.
pub(super) async fn read_body(body: Body) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            Error::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        } else {
            bad(format!("the body could not be read: {error}"))
        }
    })
}

/// Store messages; answered once they are committed. All or nothing per request.
#[utoipa::path(post, path = "/api/v1/logs",
    request_body(content = Vec<PostedLog>, description = "A JSON array, or one object per line (JSON lines)"),
    responses(
        (status = 200, description = "Committed", body = super::openapi::PostAnswer),
        (status = 400, description = "A message is wrong; nothing was stored", body = super::openapi::ErrorAnswer),
        (status = 413, description = "More than 65,536 messages or 16 MiB", body = super::openapi::ErrorAnswer),
        (status = 429, description = "Too many ingest requests at once; retry after the Retry-After seconds", body = super::openapi::ErrorAnswer),
        (status = 503, description = "The store does not answer; nothing was stored", body = super::openapi::ErrorAnswer),
))]
pub async fn post_logs(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let _slot = state.ingest_slots.acquire()?;
    let body = read_body(body).await?;
    let posted = parse_body(&body)?;
    if posted.is_empty() {
        return Err(bad("no messages".to_owned()).into());
    }
    if posted.len() > MAX_ROWS {
        return Err(
            Error::TooLarge(format!("{} messages; at most {MAX_ROWS} per request", posted.len())).into()
        );
    }
    let limits =
        BatchLimits { max_messages: MAX_ROWS, max_bytes: MAX_BODY_BYTES * 2, ..BatchLimits::default() };
    let mut batch = LogBatch::new(ListenerKind::Http, &limits);
    let options = ParseOptions::default();
    for (index, posted) in posted.into_iter().enumerate() {
        let frame = frame_of(index + 1, posted)?;
        batch.push_syslog(&frame, None, peer, &options);
    }
    let block = tokio::task::spawn_blocking(move || {
        BlockEncoder::new(COMPRESSION_LEVEL).and_then(|mut encoder| encoder.encode(batch.iter()))
    })
    .await
    .map_err(|error| Error::Internal(format!("block encoder stopped: {error}")))?
    .map_err(Error::from)?;
    state.store.insert_block(&block).await?;
    state.store_counters.count_committed(&block);
    Ok(Json(json!({ "accepted": block.summary.message_count, "block_id": block.summary.block_id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(json: &str) -> PostedLog {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fields_become_an_rfc5424_frame() {
        let frame = frame_of(
            1,
            posted(
                r#"{"message":"disk full","hostname":"db-1","app_name":"pg","severity":"err","facility":"daemon","timestamp":"2024-05-01T12:00:00.5+02:00","structured_data":"[a b=\"c\"]"}"#,
            ),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(frame).unwrap(),
            r#"<27>1 2024-05-01T10:00:00.5Z db-1 pg - - [a b="c"] disk full"#
        );
        let frame = frame_of(2, posted(r#"{"message":"plain"}"#)).unwrap();
        assert_eq!(frame, b"<14>1 - - - - - - plain");
    }

    #[test]
    fn bad_messages_name_the_line_and_field() {
        for (json, expected) in [
            (r#"{"message":"x","hostname":"has space"}"#, "hostname"),
            (r#"{"message":"x","severity":9}"#, "severity"),
            (r#"{"message":"x","facility":"moon"}"#, "facility"),
            (r#"{"message":"x","timestamp":"yesterday"}"#, "timestamp"),
            (r#"{"hostname":"h"}"#, "`message` or `raw`"),
            (r#"{"raw":"<13>x","message":"y"}"#, "raw"),
            (r#"{"message":"x","structured_data":"nope"}"#, "structured_data"),
        ] {
            let error = frame_of(7, posted(json)).unwrap_err().to_string();
            assert!(error.contains("message 7") && error.contains(expected), "{json}: {error}");
        }
        let error = parse_body(b"{\"message\":\"a\"}\n{\"mesage\":\"b\"}\n").err().unwrap().to_string();
        assert!(error.contains("line 2") && error.contains("mesage"), "{error}");
    }

    #[test]
    fn arrays_and_json_lines_are_both_accepted() {
        assert_eq!(parse_body(br#" [{"message":"a"},{"raw":"<13>b"}]"#).unwrap().len(), 2);
        assert_eq!(parse_body(b"{\"message\":\"a\"}\n\n{\"message\":\"b\"}\n").unwrap().len(), 2);
    }
}
