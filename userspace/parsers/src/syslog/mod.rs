//! Syslog: RFC 5424, RFC 3164 and the deviations real devices send.
//!
//! `parse_syslog` never fails: it always returns a [`SyslogMessage`] whose borrowed fields
//! point into the frame, with `parse_error` set when the frame is not a valid message.
//!
//! The parser is split by grammar: [`pri`] reads `<PRI>`, then the frame goes to the RFC 5424
//! reader when a `VERSION SP` follows, and to the RFC 3164 reader (with the vendor quirks in
//! `vendor`) otherwise. Nothing on this path allocates; see docs/syslog-parsing.md for what
//! is accepted and what each `parse_error` reason means.

mod pri;
mod rfc3164;
mod rfc5424;
mod structured_data;
mod timestamp;
mod vendor;

use std::borrow::Cow;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use structured_data::{SdElement, SdElements, SdParamValue, SdParams};

/// What the parser needs from outside the frame.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// When the frame was received; year-less timestamps take their year from it.
    pub received_at: Timestamp,
    /// Zone for timestamps that carry no offset.
    pub time_zone: TimeZone,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self { received_at: Timestamp::now(), time_zone: TimeZone::UTC }
    }
}

/// Which grammar the frame was read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    Rfc3164,
    /// Nothing recognisable: the whole frame is the message.
    Unknown,
}

impl SyslogFormat {
    /// Short stable name, used in JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            SyslogFormat::Rfc5424 => "rfc5424",
            SyslogFormat::Rfc3164 => "rfc3164",
            SyslogFormat::Unknown => "unknown",
        }
    }
}

/// An event time normalised to UTC, with the precision the sender wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTimestamp {
    /// Nanoseconds since the Unix epoch, UTC.
    pub unix_nanos: i64,
    /// How many fractional-second digits the sender wrote (0..=9).
    pub fractional_digits: u8,
}

impl EventTimestamp {
    /// The same instant as a jiff timestamp (the written precision is not kept).
    pub fn to_jiff(self) -> Timestamp {
        // Every i64 of nanoseconds lies inside jiff's range (years -9999..=9999), so the
        // fallback is unreachable; it keeps this function panic-free all the same.
        Timestamp::from_nanosecond(i128::from(self.unix_nanos)).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// RFC 3339 in UTC with a `Z`, with exactly the fractional digits the sender wrote
/// (`.003` stays `.003`, none stays none).
impl core::fmt::Display for EventTimestamp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let seconds = self.unix_nanos.div_euclid(1_000_000_000);
        let nanos = self.unix_nanos.rem_euclid(1_000_000_000);
        let (year, month, day) = timestamp::civil_from_days(seconds.div_euclid(86_400));
        let second_of_day = seconds.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )?;
        let digits = u32::from(self.fractional_digits.min(9));
        if digits > 0 {
            let scaled = nanos / 10_i64.pow(9 - digits);
            write!(f, ".{scaled:0width$}", width = digits as usize)?;
        }
        f.write_str("Z")
    }
}

/// Why a frame is not a valid syslog message. The record is still produced.
///
/// When a frame has several faults, the first one met (reading left to right) is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogParseError {
    /// The frame does not start with `<`; PRI 13 (user.notice) was assumed, as RFC 3164
    /// section 4.3.3 asks.
    MissingPri,
    /// The frame starts with `<` but no `<digits>` follows; the whole frame is the message.
    InvalidPri,
    /// `<digits>` above 191: facility and severity are unknown, the rest is still read.
    PriOutOfRange,
    /// An RFC 5424 VERSION other than 1; the header is still read with the RFC 5424 grammar.
    UnsupportedVersion,
    /// A timestamp that is malformed or names an impossible instant; `timestamp` is `None`.
    InvalidTimestamp,
    /// A header field with characters RFC 5424 forbids, too long, or empty.
    InvalidHeader,
    /// The frame ends inside the RFC 5424 header.
    TruncatedHeader,
    /// STRUCTURED-DATA that does not follow the grammar; the rest of the frame from there
    /// on is the message.
    InvalidStructuredData,
    /// The MSG starts with a UTF-8 BOM but is not UTF-8 (RFC 5424 section 6.4).
    InvalidUtf8,
    /// Nothing but framing (or only a PRI) was received.
    Empty,
}

impl SyslogParseError {
    /// Short stable reason, used in JSON output and metric labels.
    pub const fn reason(self) -> &'static str {
        match self {
            SyslogParseError::MissingPri => "missing PRI",
            SyslogParseError::InvalidPri => "invalid PRI",
            SyslogParseError::PriOutOfRange => "PRI out of range",
            SyslogParseError::UnsupportedVersion => "unsupported version",
            SyslogParseError::InvalidTimestamp => "invalid timestamp",
            SyslogParseError::InvalidHeader => "invalid header",
            SyslogParseError::TruncatedHeader => "truncated header",
            SyslogParseError::InvalidStructuredData => "invalid structured data",
            SyslogParseError::InvalidUtf8 => "invalid UTF-8",
            SyslogParseError::Empty => "empty message",
        }
    }
}

impl core::fmt::Display for SyslogParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SyslogParseError {}

/// The raw STRUCTURED-DATA section, e.g. `[a@1 x="y"][b@1]`; iterate to read it.
///
/// `parse_syslog` only hands out sections that follow the RFC 5424 grammar; the iterators
/// stop quietly at the first malformed byte of a hand-built one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructuredData<'a> {
    pub raw: &'a str,
}

/// One parsed syslog frame. Borrowed fields point into the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    pub format: SyslogFormat,
    /// `None` when the PRI was present but unreadable or above 191.
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    /// The RFC 5424 VERSION as written (1 when valid), `None` for other formats.
    pub version: Option<u8>,
    pub timestamp: Option<EventTimestamp>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    pub structured_data: Option<StructuredData<'a>>,
    /// The MSG part, exactly as sent (BOM and trailing newlines/NULs removed).
    pub message: &'a [u8],
    pub parse_error: Option<SyslogParseError>,
}

impl<'a> SyslogMessage<'a> {
    /// The message as text; invalid UTF-8 is replaced, the raw bytes stay in `message`.
    pub fn message_lossy(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.message)
    }

    /// `N` for the "last message repeated N times" notices syslog daemons send, and for
    /// rsyslog's "message repeated N times: [...]".
    pub fn repeated_count(&self) -> Option<u32> {
        vendor::repeated_count(self.message)
    }

    /// Keeps the first fault met: later ones are usually consequences of it.
    fn flag(&mut self, error: SyslogParseError) {
        if self.parse_error.is_none() {
            self.parse_error = Some(error);
        }
    }
}

/// Bytes UDP and line-framed senders append after the message.
fn is_frame_trailer(byte: u8) -> bool {
    matches!(byte, b'\n' | b'\r' | b'\0')
}

/// Parses one syslog frame. Never fails, never panics.
pub fn parse_syslog<'a>(frame: &'a [u8], options: &ParseOptions) -> SyslogMessage<'a> {
    let content_len = frame.iter().rposition(|&b| !is_frame_trailer(b)).map_or(0, |last| last + 1);
    let content = frame.get(..content_len).unwrap_or(frame);
    let mut message = SyslogMessage {
        format: SyslogFormat::Unknown,
        facility: None,
        severity: None,
        version: None,
        timestamp: None,
        hostname: None,
        app_name: None,
        procid: None,
        msgid: None,
        structured_data: None,
        message: content,
        parse_error: None,
    };
    if content.is_empty() {
        message.flag(SyslogParseError::Empty);
        return message;
    }
    let body = match pri::read_pri(content) {
        pri::Pri::Valid { value, len } => {
            message.facility = Some(value / 8);
            message.severity = Some(value % 8);
            tail(content, len)
        }
        pri::Pri::OutOfRange { len } => {
            message.flag(SyslogParseError::PriOutOfRange);
            tail(content, len)
        }
        pri::Pri::Missing => {
            message.flag(SyslogParseError::MissingPri);
            message.facility = Some(pri::DEFAULT_PRI / 8);
            message.severity = Some(pri::DEFAULT_PRI % 8);
            content
        }
        pri::Pri::Malformed => {
            message.flag(SyslogParseError::InvalidPri);
            return message;
        }
    };
    message.message = body;
    if body.is_empty() {
        message.flag(SyslogParseError::Empty);
        return message;
    }
    match rfc5424::read_version(body) {
        Some((version, header)) => rfc5424::parse_rfc5424(&mut message, version, header, options),
        None => rfc3164::parse_rfc3164(&mut message, body, options),
    }
    message
}

/// Strips the UTF-8 BOM RFC 5424 allows before MSG; flags a BOM followed by non-UTF-8.
fn strip_bom<'a>(message: &mut SyslogMessage<'a>, msg: &'a [u8]) -> &'a [u8] {
    match msg.strip_prefix(b"\xEF\xBB\xBF") {
        Some(text) => {
            if std::str::from_utf8(text).is_err() {
                message.flag(SyslogParseError::InvalidUtf8);
            }
            text
        }
        None => msg,
    }
}

/// `bytes[from..]`, or the empty slice at the end of `bytes` when `from` is past it. Never a
/// `&[]` constant: even an empty field must point into the frame, because the data plane
/// turns borrowed fields into offsets by pointer arithmetic.
fn tail(bytes: &[u8], from: usize) -> &[u8] {
    match bytes.get(from..) {
        Some(rest) => rest,
        None => bytes.get(bytes.len()..).unwrap_or(bytes),
    }
}
