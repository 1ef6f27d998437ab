//! What particular senders put where RFC 3164 expects a header: Cisco IOS sequence numbers
//! and `%FAC-SEV-MNEMONIC:` tags, Fortinet `key=value` records without a syslog timestamp,
//! and Snare's tab-separated `MSWinEventLog` records.

use super::timestamp::{
    Iso8601Dialect, Scan, Zone, infer_year, read_date_and_time, received_year_month, scan_bsd, scan_iso8601,
};
use super::{ParseOptions, SyslogMessage, SyslogParseError, tail};

/// Cisco IOS `service sequence-numbers`: `123: ` or `000123: ` before the timestamp. Only
/// skipped when a timestamp, clock marker (`*`, `.`) or mnemonic (`%`) follows, so that
/// content like `42: the answer` is left alone.
pub(super) fn skip_cisco_sequence(body: &[u8]) -> &[u8] {
    let digits = body.iter().take(11).take_while(|b| b.is_ascii_digit()).count();
    if !(1..=10).contains(&digits) || body.get(digits..digits + 2) != Some(b": ") {
        return body;
    }
    let after = tail(body, digits + 2);
    let starts_like_cisco = matches!(after.first(), Some(b'*' | b'.' | b'%'))
        || !matches!(scan_bsd(after), Scan::Absent)
        || !matches!(scan_iso8601(after, Iso8601Dialect::Lenient), Scan::Absent);
    if starts_like_cisco { after } else { body }
}

/// A Cisco `%FACILITY-SEVERITY-MNEMONIC:` token (IOS `%SYS-5-CONFIG_I:`, ASA
/// `%ASA-6-302013:`), returned without `%` and `:`. The severity must be one digit 0..=7.
pub(super) fn cisco_mnemonic(token: &[u8]) -> Option<&str> {
    let inner = token.strip_prefix(b"%")?.strip_suffix(b":")?;
    let mut parts = inner.split(|&byte| byte == b'-');
    let facility = parts.next()?;
    let severity = parts.next()?;
    let mnemonic = parts.next()?;
    let well_formed = !facility.is_empty()
        && matches!(severity, [b'0'..=b'7'])
        && !mnemonic.is_empty()
        && inner.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
    if !well_formed {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

/// FortiGate/FortiOS records with no syslog timestamp: `date=2024-01-02 time=10:11:12
/// devname="FG100" ...`. The date and time (wall clock of the device, read in
/// `ParseOptions::time_zone`) become the timestamp and `devname` the hostname; the whole
/// record stays the message. Returns whether the body was such a record.
pub(super) fn read_fortinet<'a>(
    message: &mut SyslogMessage<'a>,
    body: &'a [u8],
    options: &ParseOptions,
) -> bool {
    if !body.starts_with(b"date=") {
        return false;
    }
    let date = kv_value(body, 0);
    let time_pair = tail(body, "date=".len() + date.len() + 1);
    let timestamp = if time_pair.starts_with(b"time=") {
        read_date_and_time(unquote(date), unquote(kv_value(time_pair, 0)))
            .and_then(|civil| civil.to_event_timestamp(Zone::Local, &options.time_zone))
    } else {
        None
    };
    match timestamp {
        Some(timestamp) => message.timestamp = Some(timestamp),
        None => message.flag(SyslogParseError::InvalidTimestamp),
    }
    message.hostname = find_key(body, b"devname=")
        .map(|start| unquote(kv_value(body, start)))
        .filter(|name| !name.is_empty())
        .and_then(|name| std::str::from_utf8(name).ok());
    true
}

/// The value of the `key=value` pair starting at `start` (which points at the key): up to
/// the next space, or to the closing quote of a quoted value.
fn kv_value(body: &[u8], start: usize) -> &[u8] {
    let pair = tail(body, start);
    let Some(equals) = memchr::memchr(b'=', pair) else {
        return tail(pair, pair.len());
    };
    let value = tail(pair, equals + 1);
    let end = if value.first() == Some(&b'"') {
        memchr::memchr(b'"', tail(value, 1)).map_or(value.len(), |close| close + 2)
    } else {
        memchr::memchr(b' ', value).unwrap_or(value.len())
    };
    value.get(..end).unwrap_or(value)
}

fn unquote(value: &[u8]) -> &[u8] {
    value.strip_prefix(b"\"").and_then(|inner| inner.strip_suffix(b"\"")).unwrap_or(value)
}

/// Where `key` (which ends in `=`) starts as a key: at the start or after a space.
fn find_key(body: &[u8], key: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(body, key).find(|&at| at == 0 || body.get(at - 1) == Some(&b' '))
}

const SNARE_MARKER: &[u8] = b"MSWinEventLog\t";

/// Snare for Windows without a syslog header: `HOST\tMSWinEventLog\tcriticality\tlog\t
/// counter\tTue Jan 02 10:11:12 2024\tevent id\t...`. The host is the first field, the
/// timestamp the fifth (device wall clock), and the record after the marker is the message.
pub(super) fn read_snare_record<'a>(
    message: &mut SyslogMessage<'a>,
    body: &'a [u8],
    options: &ParseOptions,
) -> bool {
    let Some(first_tab) = memchr::memchr2(b' ', b'\t', body) else {
        return false;
    };
    if body.get(first_tab) != Some(&b'\t') || !tail(body, first_tab + 1).starts_with(SNARE_MARKER) {
        return false;
    }
    message.hostname = body
        .get(..first_tab)
        .filter(|host| !host.is_empty() && host.iter().all(|byte| matches!(byte, 33..=126)))
        .and_then(|host| std::str::from_utf8(host).ok());
    // The marker without its tab, borrowed from the frame like every other field.
    message.app_name = body
        .get(first_tab + 1..first_tab + SNARE_MARKER.len())
        .and_then(|name| std::str::from_utf8(name).ok());
    let record = tail(body, first_tab + 1 + SNARE_MARKER.len());
    message.timestamp = snare_timestamp(record, options);
    if message.timestamp.is_none() {
        message.flag(SyslogParseError::InvalidTimestamp);
    }
    message.message = record;
    true
}

/// The record after `MSWinEventLog\t` has the date as its fourth field, written like
/// `Tue Jan 02 10:11:12 2024`.
pub(super) fn snare_timestamp(record: &[u8], options: &ParseOptions) -> Option<super::EventTimestamp> {
    let field = record.split(|&byte| byte == b'\t').nth(3)?;
    let without_weekday = field.get(4..)?;
    let Scan::Valid { value, len } = scan_bsd(without_weekday) else {
        return None;
    };
    if len != without_weekday.len() {
        return None;
    }
    let mut civil = value.civil;
    if !value.has_year {
        civil.year = infer_year(civil.month, received_year_month(options.received_at, &options.time_zone));
    }
    civil.to_event_timestamp(Zone::Local, &options.time_zone)
}

/// `N` in "last message repeated N times" (BSD syslogd, sysklogd) and "message repeated N
/// times: [...]" (rsyslog).
pub(super) fn repeated_count(message: &[u8]) -> Option<u32> {
    let after = message
        .strip_prefix(b"last message repeated ")
        .or_else(|| message.strip_prefix(b"message repeated "))?;
    let digits = after.iter().take(10).take_while(|b| b.is_ascii_digit()).count();
    if !tail(after, digits).starts_with(b" time") {
        return None;
    }
    std::str::from_utf8(after.get(..digits)?).ok()?.parse().ok()
}
