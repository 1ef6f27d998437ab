//! RFC 3164 (`TIMESTAMP HOSTNAME TAG[pid]: MSG`) as real senders write it.
//!
//! RFC 3164 describes observed practice rather than a grammar, so nothing here is rejected:
//! whatever cannot be read as a header field stays in the message. Only a timestamp that is
//! shaped like one but impossible is flagged.

use super::timestamp::{
    BsdTime, Iso8601Dialect, Scan, Zone, infer_year, received_year_month, scan_bsd, scan_iso8601, token_len,
};
use super::{
    EventTimestamp, ParseOptions, SyslogFormat, SyslogMessage, SyslogParseError, strip_bom, tail, vendor,
};

pub(super) fn parse_rfc3164<'a>(message: &mut SyslogMessage<'a>, body: &'a [u8], options: &ParseOptions) {
    message.format = SyslogFormat::Rfc3164;
    if vendor::read_snare_record(message, body, options) {
        return;
    }
    let mut rest = vendor::skip_cisco_sequence(body);
    if read_timestamp(message, &mut rest, options) {
        read_hostname(message, &mut rest);
    } else if vendor::read_fortinet(message, rest, options) {
        message.message = rest;
        return;
    }
    read_tag(message, &mut rest);
    message.message = strip_bom(message, rest);
}

/// Reads a BSD or ISO 8601 timestamp at the start of `rest` and moves past it and the
/// spaces after it. Returns whether there was one (valid or flagged).
fn read_timestamp<'a>(message: &mut SyslogMessage<'a>, rest: &mut &'a [u8], options: &ParseOptions) -> bool {
    // Cisco IOS prefixes `*` when the clock was never set and `.` when it lost its source.
    let candidate = match rest.first() {
        Some(b'*' | b'.') => tail(rest, 1),
        _ => *rest,
    };
    let (timestamp, len) = match scan_bsd(candidate) {
        Scan::Valid { value, len } => read_bsd_suffix(value, candidate, len, options),
        Scan::Invalid { len } => (None, len),
        Scan::Absent => match scan_iso8601(candidate, Iso8601Dialect::Lenient) {
            Scan::Valid { value: (civil, zone), len } if ends_header_token(candidate, len) => {
                (civil.to_event_timestamp(zone, &options.time_zone), len)
            }
            Scan::Valid { .. } | Scan::Invalid { .. } => (None, token_len(candidate)),
            Scan::Absent => return false,
        },
    };
    match timestamp {
        Some(timestamp) => message.timestamp = Some(timestamp),
        None => message.flag(SyslogParseError::InvalidTimestamp),
    }
    // Cisco ends its timestamps with `:` (`*Mar  1 18:46:11.123: %SYS-...`).
    let len = if candidate.get(len) == Some(&b':') { len + 1 } else { len };
    *rest = skip_blanks(tail(candidate, len));
    true
}

/// Whether a header token may end at `at`: a blank, the end, or Cisco's `:` after the time.
fn ends_header_token(bytes: &[u8], at: usize) -> bool {
    matches!(bytes.get(at), None | Some(b' ' | b'\t' | b':'))
}

/// Completes a BSD timestamp: Cisco's ` UTC`/` GMT` zone and trailing `:`, the year, the
/// zone. Returns the timestamp (`None` when impossible) and the bytes used.
fn read_bsd_suffix(
    bsd: BsdTime,
    bytes: &[u8],
    mut len: usize,
    options: &ParseOptions,
) -> (Option<EventTimestamp>, usize) {
    let mut zone = Zone::Local;
    let after = tail(bytes, len);
    // Other zone abbreviations (`EST`, `CET`) are ambiguous worldwide; they are left to be
    // read as a tag rather than guessed.
    if (after.starts_with(b" UTC") || after.starts_with(b" GMT")) && ends_header_token(after, 4) {
        zone = Zone::Offset(0);
        len += 4;
    }
    if !ends_header_token(bytes, len) {
        return (None, len + token_len(tail(bytes, len)));
    }
    let mut civil = bsd.civil;
    if !bsd.has_year {
        civil.year = infer_year(civil.month, received_year_month(options.received_at, &options.time_zone));
    }
    (civil.to_event_timestamp(zone, &options.time_zone), len)
}

fn skip_blanks(bytes: &[u8]) -> &[u8] {
    let blanks = bytes.iter().take_while(|&&byte| byte == b' ' || byte == b'\t').count();
    tail(bytes, blanks)
}

/// The token after the timestamp is the HOSTNAME unless it is clearly something else: a
/// tag (`sshd[42]:`, `kernel:`), a Cisco mnemonic, or the start of a syslogd notice. Local
/// senders (journald's `ForwardToSyslog`, `logger` to /dev/log) leave the hostname out.
fn read_hostname<'a>(message: &mut SyslogMessage<'a>, rest: &mut &'a [u8]) {
    let len = token_len(rest);
    let Some(token) = rest.get(..len) else { return };
    let looks_like_tag = token.ends_with(b":") || token.contains(&b'[') || token.starts_with(b"%");
    let printable = token.iter().all(|byte| matches!(byte, 33..=126));
    if token.is_empty() || looks_like_tag || !printable || rest.starts_with(b"last message repeated ") {
        return;
    }
    message.hostname = std::str::from_utf8(token).ok();
    let mut after = skip_blanks(tail(rest, len));
    // Cisco ASA with `logging device-id hostname` writes `fw01 : %ASA-...`.
    if after.starts_with(b": ") {
        after = tail(after, 2);
    }
    *rest = after;
}

/// `TAG[pid]:`, `TAG:`, a Cisco `%FAC-SEV-MNEMONIC:` (kept as MSGID) or Snare's
/// `MSWinEventLog<TAB>` at the start of `rest`; anything else leaves `rest` untouched.
fn read_tag<'a>(message: &mut SyslogMessage<'a>, rest: &mut &'a [u8]) {
    let len = token_len(rest);
    let Some(token) = rest.get(..len) else { return };
    if token == b"MSWinEventLog" && rest.get(len) == Some(&b'\t') {
        message.app_name = std::str::from_utf8(token).ok();
        *rest = tail(rest, len + 1);
        return;
    }
    if let Some(mnemonic) = vendor::cisco_mnemonic(token) {
        message.msgid = Some(mnemonic);
        *rest = tail(rest, len + 1);
        return;
    }
    let Some(tag) = token.strip_suffix(b":") else {
        return;
    };
    let (app_name, procid) = match tag.strip_suffix(b"]").and_then(|inner| {
        let open = memchr::memchr(b'[', inner)?;
        Some((inner.get(..open)?, inner.get(open + 1..)?))
    }) {
        Some((app_name, procid)) => (app_name, Some(procid)),
        None => (tag, None),
    };
    let is_name = |name: &[u8]| {
        !name.is_empty() && name.iter().all(|byte| matches!(byte, 33..=126) && !matches!(byte, b'[' | b']'))
    };
    // A bare number (`42: ...`) is a counter or content, never a program name.
    let is_number = app_name.iter().all(u8::is_ascii_digit);
    if !is_name(app_name) || is_number || procid.is_some_and(|procid| !is_name(procid)) {
        return;
    }
    message.app_name = std::str::from_utf8(app_name).ok();
    message.procid = procid.and_then(|procid| std::str::from_utf8(procid).ok());
    *rest = tail(rest, len + 1);
}
