//! RFC 5424 section 6: `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP
//! STRUCTURED-DATA [SP MSG]`, after the PRI.

use super::timestamp::{Iso8601Dialect, Scan, Zone, scan_iso8601};
use super::{
    ParseOptions, StructuredData, SyslogFormat, SyslogMessage, SyslogParseError, strip_bom, structured_data,
    tail,
};

const NILVALUE: &[u8] = b"-";

/// Field length limits from the RFC 5424 ABNF.
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const PROCID_MAX: usize = 128;
const MSGID_MAX: usize = 32;

/// `VERSION SP` (1 to 3 digits) followed by the end of the frame or by what can only start
/// an RFC 5424 TIMESTAMP (a digit or NILVALUE). The second check keeps RFC 3164 content such
/// as `<13>1 apple fell` on the RFC 3164 path. Returns the version and the header after it.
pub(super) fn read_version(body: &[u8]) -> Option<(u16, &[u8])> {
    let digits = body.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || body.get(digits) != Some(&b' ') {
        return None;
    }
    if !matches!(body.get(digits + 1), None | Some(b'0'..=b'9' | b'-')) {
        return None;
    }
    let version = body.get(..digits)?.iter().fold(0_u16, |value, &byte| value * 10 + u16::from(byte - b'0'));
    Some((version, tail(body, digits + 1)))
}

/// Takes the next space-delimited header field. `None` once the frame has ended.
fn next_field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    if rest.is_empty() {
        return None;
    }
    let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let field = rest.get(..end)?;
    *rest = tail(rest, end + 1);
    Some(field)
}

/// A header field: NILVALUE is `None`; a field outside PRINTUSASCII or over its length is
/// flagged but kept when it is UTF-8, since it is still what the sender meant.
fn header_field<'a>(message: &mut SyslogMessage<'a>, field: &'a [u8], max_len: usize) -> Option<&'a str> {
    if field == NILVALUE {
        return None;
    }
    let printable = field.iter().all(|byte| matches!(byte, 33..=126));
    if field.is_empty() || field.len() > max_len || !printable {
        message.flag(SyslogParseError::InvalidHeader);
    }
    if field.is_empty() {
        return None;
    }
    std::str::from_utf8(field).ok()
}

pub(super) fn parse_rfc5424<'a>(
    message: &mut SyslogMessage<'a>,
    version: u16,
    header: &'a [u8],
    options: &ParseOptions,
) {
    message.format = SyslogFormat::Rfc5424;
    message.version = u8::try_from(version).ok();
    if version != 1 {
        message.flag(SyslogParseError::UnsupportedVersion);
    }
    let mut rest = header;
    // Each field must be followed by SP; running out before STRUCTURED-DATA is truncation.
    let Some(timestamp) = next_field(&mut rest) else {
        return truncated(message, rest);
    };
    read_timestamp(message, timestamp, options);
    let Some(hostname) = next_field(&mut rest) else {
        return truncated(message, rest);
    };
    message.hostname = header_field(message, hostname, HOSTNAME_MAX);
    let Some(app_name) = next_field(&mut rest) else {
        return truncated(message, rest);
    };
    message.app_name = header_field(message, app_name, APP_NAME_MAX);
    let Some(procid) = next_field(&mut rest) else {
        return truncated(message, rest);
    };
    message.procid = header_field(message, procid, PROCID_MAX);
    let Some(msgid) = next_field(&mut rest) else {
        return truncated(message, rest);
    };
    message.msgid = header_field(message, msgid, MSGID_MAX);
    if rest.is_empty() {
        return truncated(message, rest);
    }
    read_structured_data_and_msg(message, rest);
}

fn truncated<'a>(message: &mut SyslogMessage<'a>, rest: &'a [u8]) {
    message.flag(SyslogParseError::TruncatedHeader);
    message.message = rest;
}

fn read_timestamp(message: &mut SyslogMessage<'_>, field: &[u8], options: &ParseOptions) {
    if field == NILVALUE {
        return;
    }
    let timestamp = match scan_iso8601(field, Iso8601Dialect::Rfc5424) {
        Scan::Valid { value: (civil, zone), len } if len == field.len() => {
            debug_assert!(zone != Zone::Local, "the RFC 5424 dialect requires an offset");
            civil.to_event_timestamp(zone, &options.time_zone)
        }
        _ => None,
    };
    match timestamp {
        Some(timestamp) => message.timestamp = Some(timestamp),
        None => message.flag(SyslogParseError::InvalidTimestamp),
    }
}

/// STRUCTURED-DATA, then MSG after one SP. When the section breaks the grammar there is no
/// telling where MSG starts, so everything from the section on becomes the message.
fn read_structured_data_and_msg<'a>(message: &mut SyslogMessage<'a>, rest: &'a [u8]) {
    let section_len =
        if rest.first() == Some(&b'-') { Some(1) } else { structured_data::scan_structured_data(rest) };
    let section = section_len.and_then(|len| rest.get(..len));
    let after = tail(rest, section_len.unwrap_or(0));
    let (Some(section), Some(b' ') | None) = (section, after.first()) else {
        message.flag(SyslogParseError::InvalidStructuredData);
        message.message = rest;
        return;
    };
    if section != NILVALUE {
        // The grammar admits any UTF-8 inside values; the section must be UTF-8 as a whole.
        let Ok(raw) = std::str::from_utf8(section) else {
            message.flag(SyslogParseError::InvalidStructuredData);
            message.message = rest;
            return;
        };
        message.structured_data = Some(StructuredData { raw });
    }
    let msg = tail(after, usize::from(!after.is_empty()));
    message.message = strip_bom(message, msg);
}
