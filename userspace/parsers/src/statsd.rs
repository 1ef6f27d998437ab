//! statsd and DogStatsD datagrams.
//!
//! One datagram holds lines separated by LF (CRLF and a trailing newline are tolerated).
//! Each line is a metric, a DogStatsD event (`_e{...}`) or service check (`_sc|...`).
//! [`parse_statsd`] yields them in wire order, one item per metric value, and a
//! [`StatsdReject`] for each line that cannot be parsed; its neighbours still parse.
//! Every item borrows from the datagram; nothing is allocated.
//!
//! Lines must be UTF-8 (names and tags are handed on as `&str`); the datagram is checked
//! once as a whole and, only if that fails, line by line.
//!
//! Unknown `|` sections in metrics and events are ignored, so that newer DogStatsD
//! clients (which add sections such as `|e:` or `|card:`) still parse. When a section
//! is repeated, the last one wins.

use crate::ascii::split_at_byte;
use crate::datagram::DatagramLines;
use std::borrow::Cow;

/// The type of a metric, from the section after the first `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsdMetricType {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Distribution,
    Set,
}

impl StatsdMetricType {
    fn from_wire(text: &str) -> Option<Self> {
        Some(match text {
            "c" => Self::Counter,
            "g" => Self::Gauge,
            "ms" => Self::Timer,
            "h" => Self::Histogram,
            "d" => Self::Distribution,
            "s" => Self::Set,
            _ => return None,
        })
    }

    /// Stable lower-case name (`counter`, `gauge`, ...), as the JSON rendering writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Timer => "timer",
            Self::Histogram => "histogram",
            Self::Distribution => "distribution",
            Self::Set => "set",
        }
    }
}

/// One value of a metric line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StatsdValue<'a> {
    /// Every type but sets; always finite.
    Number(f64),
    /// A set member, as sent.
    Set(&'a str),
}

/// The raw `#` section of a line, with an iterator over its tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsdTags<'a> {
    /// The section as sent, without the `#`.
    pub raw: &'a str,
}

impl<'a> StatsdTags<'a> {
    /// `(key, value)` pairs in wire order; a tag without `:` has no value. Empty
    /// entries (`a,,b`) are skipped.
    pub fn iter(&self) -> StatsdTagIter<'a> {
        StatsdTagIter { rest: (!self.raw.is_empty()).then_some(self.raw) }
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<'a> IntoIterator for StatsdTags<'a> {
    type Item = (&'a str, Option<&'a str>);
    type IntoIter = StatsdTagIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the tags of a [`StatsdTags`].
#[derive(Clone, Debug)]
pub struct StatsdTagIter<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for StatsdTagIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let tag = match split_at_byte(rest, b',') {
                Some((tag, after)) => {
                    self.rest = Some(after);
                    tag
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            if tag.is_empty() {
                continue;
            }
            return Some(match split_at_byte(tag, b':') {
                Some((key, value)) => (key, Some(value)),
                None => (tag, None),
            });
        }
    }
}

/// One metric value with everything its line said about it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsdMetric<'a> {
    pub name: &'a str,
    pub metric_type: StatsdMetricType,
    pub value: StatsdValue<'a>,
    /// A gauge value sent with an explicit sign (`+3`, `-3`) adjusts the gauge.
    pub gauge_delta: bool,
    /// From `|@rate`; 1 when absent. Always in (0, 1].
    pub sample_rate: f64,
    pub tags: StatsdTags<'a>,
    /// From `|c:`.
    pub container_id: Option<&'a str>,
    /// Unix seconds, from `|T`.
    pub timestamp: Option<i64>,
}

/// A DogStatsD event (`_e{title_len,text_len}:title|text|...`).
///
/// `title` and `text` are as sent: DogStatsD clients write a newline as the two
/// characters `\n`; [`unescape_newlines`] turns them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsdEvent<'a> {
    pub title: &'a str,
    pub text: &'a str,
    /// Unix seconds, from `|d:`.
    pub timestamp: Option<i64>,
    pub hostname: Option<&'a str>,
    pub aggregation_key: Option<&'a str>,
    /// `normal` or `low`, as sent (not checked).
    pub priority: Option<&'a str>,
    pub source_type_name: Option<&'a str>,
    /// `error`, `warning`, `info` or `success`, as sent (not checked).
    pub alert_type: Option<&'a str>,
    pub tags: StatsdTags<'a>,
}

/// A DogStatsD service check (`_sc|name|status|...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsdServiceCheck<'a> {
    pub name: &'a str,
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub status: u8,
    /// Unix seconds, from `|d:`.
    pub timestamp: Option<i64>,
    pub hostname: Option<&'a str>,
    pub tags: StatsdTags<'a>,
    /// From `|m:`, which runs to the end of the line (it may hold `|`); escaped
    /// newlines as in events.
    pub message: Option<&'a str>,
}

/// Why a line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsdRejectReason {
    NotUtf8,
    /// No `|` after the values.
    MissingType,
    /// No `:` between name and value.
    MissingValue,
    EmptyName,
    EmptyValue,
    UnknownType,
    /// Not a finite number (or, for a gauge, a sign on its own).
    InvalidValue,
    /// Not a number in (0, 1].
    InvalidSampleRate,
    InvalidTimestamp,
    /// `||`, or a section that names a field and gives no value.
    EmptySection,
    /// The `_e{...}:` header is malformed.
    MalformedEventHeader,
    /// The title or text is not as long as the header says.
    EventLengthMismatch,
    EmptyEventTitle,
    EmptyServiceCheckName,
    /// The status is not 0, 1, 2 or 3.
    InvalidServiceCheckStatus,
}

impl StatsdRejectReason {
    /// Stable snake_case name, for counters and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::MissingType => "missing_type",
            Self::MissingValue => "missing_value",
            Self::EmptyName => "empty_name",
            Self::EmptyValue => "empty_value",
            Self::UnknownType => "unknown_type",
            Self::InvalidValue => "invalid_value",
            Self::InvalidSampleRate => "invalid_sample_rate",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::EmptySection => "empty_section",
            Self::MalformedEventHeader => "malformed_event_header",
            Self::EventLengthMismatch => "event_length_mismatch",
            Self::EmptyEventTitle => "empty_event_title",
            Self::EmptyServiceCheckName => "empty_service_check_name",
            Self::InvalidServiceCheckStatus => "invalid_service_check_status",
        }
    }
}

impl std::fmt::Display for StatsdRejectReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A line that could not be parsed, kept raw (without its line ending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsdReject<'a> {
    pub line: &'a [u8],
    pub reason: StatsdRejectReason,
}

/// One item of a datagram, in wire order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StatsdItem<'a> {
    Metric(StatsdMetric<'a>),
    Event(StatsdEvent<'a>),
    ServiceCheck(StatsdServiceCheck<'a>),
    Reject(StatsdReject<'a>),
}

/// Parses a datagram lazily; see the module documentation.
pub fn parse_statsd(datagram: &[u8]) -> StatsdItems<'_> {
    StatsdItems { lines: DatagramLines::new(datagram), more_values: None }
}

/// The items of one datagram; see [`parse_statsd`].
#[derive(Clone, Debug)]
pub struct StatsdItems<'a> {
    lines: DatagramLines<'a>,
    /// The values of a multi-value line not yet yielded.
    more_values: Option<MoreValues<'a>>,
}

#[derive(Clone, Copy, Debug)]
struct MoreValues<'a> {
    metric: StatsdMetric<'a>,
    line: &'a [u8],
    values: &'a str,
}

impl<'a> Iterator for StatsdItems<'a> {
    type Item = StatsdItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(more) = self.more_values.take() {
            return Some(self.next_value(more));
        }
        let (line, text) = self.lines.next()?;
        Some(match text {
            Some(text) => self.parse_line(line, text),
            None => reject(line, StatsdRejectReason::NotUtf8),
        })
    }
}

impl<'a> StatsdItems<'a> {
    fn parse_line(&mut self, line: &'a [u8], text: &'a str) -> StatsdItem<'a> {
        let parsed = if let Some(event) = text.strip_prefix("_e{") {
            parse_event(event).map(StatsdItem::Event)
        } else if let Some(check) = text.strip_prefix("_sc|") {
            parse_service_check(check).map(StatsdItem::ServiceCheck)
        } else {
            return self.parse_metric_line(line, text);
        };
        parsed.unwrap_or_else(|reason| reject(line, reason))
    }

    fn parse_metric_line(&mut self, line: &'a [u8], text: &'a str) -> StatsdItem<'a> {
        let (template, values) = match parse_metric_template(text) {
            Ok(parsed) => parsed,
            Err(reason) => return reject(line, reason),
        };
        let (first, others) = match split_at_byte(values, b':') {
            Some((first, others)) => (first, Some(others)),
            None => (values, None),
        };
        // Check every value before yielding any, so a bad value rejects the whole line
        // rather than leaving part of it counted.
        let first = match parse_value(template.metric_type, first) {
            Ok(value) => value,
            Err(reason) => return reject(line, reason),
        };
        if let Some(others) = others {
            let mut rest = Some(others);
            while let Some(values) = rest {
                let (value, after) = match split_at_byte(values, b':') {
                    Some((value, after)) => (value, Some(after)),
                    None => (values, None),
                };
                if let Err(reason) = parse_value(template.metric_type, value) {
                    return reject(line, reason);
                }
                rest = after;
            }
            self.more_values = Some(MoreValues { metric: template, line, values: others });
        }
        StatsdItem::Metric(with_value(template, first))
    }

    fn next_value(&mut self, more: MoreValues<'a>) -> StatsdItem<'a> {
        let (value, others) = match split_at_byte(more.values, b':') {
            Some((value, others)) => (value, Some(others)),
            None => (more.values, None),
        };
        if let Some(others) = others {
            self.more_values = Some(MoreValues { values: others, ..more });
        }
        match parse_value(more.metric.metric_type, value) {
            Ok(value) => StatsdItem::Metric(with_value(more.metric, value)),
            Err(reason) => reject(more.line, reason),
        }
    }
}

fn reject(line: &[u8], reason: StatsdRejectReason) -> StatsdItem<'_> {
    StatsdItem::Reject(StatsdReject { line, reason })
}

fn with_value<'a>(
    metric: StatsdMetric<'a>,
    (value, gauge_delta): (StatsdValue<'a>, bool),
) -> StatsdMetric<'a> {
    StatsdMetric { value, gauge_delta, ..metric }
}

/// Everything of a metric line but its values, and the values still unparsed.
fn parse_metric_template(text: &str) -> Result<(StatsdMetric<'_>, &str), StatsdRejectReason> {
    let (head, sections) = split_at_byte(text, b'|').ok_or(StatsdRejectReason::MissingType)?;
    let (name, values) = split_at_byte(head, b':').ok_or(StatsdRejectReason::MissingValue)?;
    if name.is_empty() {
        return Err(StatsdRejectReason::EmptyName);
    }
    let (type_text, mut options) = match split_at_byte(sections, b'|') {
        Some((type_text, options)) => (type_text, Some(options)),
        None => (sections, None),
    };
    let metric_type = StatsdMetricType::from_wire(type_text).ok_or(StatsdRejectReason::UnknownType)?;
    let mut metric = StatsdMetric {
        name,
        metric_type,
        value: StatsdValue::Number(0.0),
        gauge_delta: false,
        sample_rate: 1.0,
        tags: StatsdTags::default(),
        container_id: None,
        timestamp: None,
    };
    while let Some(rest) = options {
        let section = match split_at_byte(rest, b'|') {
            Some((section, after)) => {
                options = Some(after);
                section
            }
            None => {
                options = None;
                rest
            }
        };
        let (&marker, value) = match section.as_bytes().split_first() {
            // A non-ASCII first byte leaves no char boundary at 1; such a section is
            // unknown anyway and ignored below.
            Some((marker, _)) => (marker, section.get(1..).unwrap_or_default()),
            None => return Err(StatsdRejectReason::EmptySection),
        };
        match marker {
            b'@' => metric.sample_rate = parse_sample_rate(value)?,
            b'#' => metric.tags = StatsdTags { raw: value },
            b'T' => metric.timestamp = Some(parse_unix_seconds(value)?),
            b'c' => {
                if let Some(container_id) = value.strip_prefix(':') {
                    metric.container_id = Some(non_empty(container_id)?);
                }
            }
            _ => {}
        }
    }
    Ok((metric, values))
}

fn parse_value(
    metric_type: StatsdMetricType,
    text: &str,
) -> Result<(StatsdValue<'_>, bool), StatsdRejectReason> {
    if text.is_empty() {
        return Err(StatsdRejectReason::EmptyValue);
    }
    if metric_type == StatsdMetricType::Set {
        return Ok((StatsdValue::Set(text), false));
    }
    let gauge_delta = metric_type == StatsdMetricType::Gauge && text.starts_with(['+', '-']);
    let number = parse_finite(text).ok_or(StatsdRejectReason::InvalidValue)?;
    Ok((StatsdValue::Number(number), gauge_delta))
}

/// A finite decimal number. Plain decimals (`42`, `12.75`) take a fast path, since
/// nearly all values are: with at most 15 significant digits the mantissa is exact in
/// an f64 and so is the power of ten, and IEEE division rounds correctly, so the result
/// is the one `f64::from_str` gives.
fn parse_finite(text: &str) -> Option<f64> {
    if let Some(number) = parse_plain_decimal(text.as_bytes()) {
        return Some(number);
    }
    // `f64::from_str` also takes `inf`, `NaN` and `infinity`; statsd values are digits.
    if !text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|number| number.is_finite())
}

/// `[+-]digits[.digits]` with at most 15 digits, or `None` for anything else.
fn parse_plain_decimal(bytes: &[u8]) -> Option<f64> {
    const POWERS_OF_TEN: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut digit_count = 0usize;
    let mut fraction_digits = None;
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(byte - b'0');
                digit_count += 1;
            }
            b'.' if fraction_digits.is_none() => fraction_digits = Some(digit_count),
            _ => return None,
        }
    }
    if digit_count == 0 || digit_count > 15 {
        return None;
    }
    let scale = fraction_digits.map_or(0, |integer_digits| digit_count - integer_digits);
    // At most 15 digits: below 2^53, so the conversion is exact.
    let magnitude = mantissa as f64 / POWERS_OF_TEN[scale];
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_sample_rate(text: &str) -> Result<f64, StatsdRejectReason> {
    match parse_finite(text) {
        Some(rate) if rate > 0.0 && rate <= 1.0 => Ok(rate),
        _ => Err(StatsdRejectReason::InvalidSampleRate),
    }
}

fn parse_unix_seconds(text: &str) -> Result<i64, StatsdRejectReason> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(StatsdRejectReason::InvalidTimestamp);
    }
    text.parse().map_err(|_| StatsdRejectReason::InvalidTimestamp)
}

fn non_empty(text: &str) -> Result<&str, StatsdRejectReason> {
    if text.is_empty() { Err(StatsdRejectReason::EmptySection) } else { Ok(text) }
}

fn parse_length(text: &str) -> Result<usize, StatsdRejectReason> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(StatsdRejectReason::MalformedEventHeader);
    }
    text.parse().map_err(|_| StatsdRejectReason::MalformedEventHeader)
}

/// `text` is what follows `_e{`.
fn parse_event(text: &str) -> Result<StatsdEvent<'_>, StatsdRejectReason> {
    let (lengths, body) = text.split_once("}:").ok_or(StatsdRejectReason::MalformedEventHeader)?;
    let (title_len, text_len) =
        split_at_byte(lengths, b',').ok_or(StatsdRejectReason::MalformedEventHeader)?;
    let (title_len, text_len) = (parse_length(title_len)?, parse_length(text_len)?);
    // The lengths count bytes, and `get` refuses to cut inside a character.
    let title = body.get(..title_len).ok_or(StatsdRejectReason::EventLengthMismatch)?;
    let after_title = body.get(title_len..).ok_or(StatsdRejectReason::EventLengthMismatch)?;
    let after_title = after_title.strip_prefix('|').ok_or(StatsdRejectReason::EventLengthMismatch)?;
    let event_text = after_title.get(..text_len).ok_or(StatsdRejectReason::EventLengthMismatch)?;
    let sections = after_title.get(text_len..).ok_or(StatsdRejectReason::EventLengthMismatch)?;
    if !sections.is_empty() && !sections.starts_with('|') {
        return Err(StatsdRejectReason::EventLengthMismatch);
    }
    if title.is_empty() {
        return Err(StatsdRejectReason::EmptyEventTitle);
    }
    let mut event = StatsdEvent {
        title,
        text: event_text,
        timestamp: None,
        hostname: None,
        aggregation_key: None,
        priority: None,
        source_type_name: None,
        alert_type: None,
        tags: StatsdTags::default(),
    };
    for section in sections.split('|').skip(1) {
        if let Some(tags) = section.strip_prefix('#') {
            event.tags = StatsdTags { raw: tags };
            continue;
        }
        let Some((key, value)) = split_at_byte(section, b':') else {
            if section.is_empty() {
                return Err(StatsdRejectReason::EmptySection);
            }
            continue;
        };
        match key {
            "d" => event.timestamp = Some(parse_unix_seconds(value)?),
            "h" => event.hostname = Some(non_empty(value)?),
            "k" => event.aggregation_key = Some(non_empty(value)?),
            "p" => event.priority = Some(non_empty(value)?),
            "s" => event.source_type_name = Some(non_empty(value)?),
            "t" => event.alert_type = Some(non_empty(value)?),
            _ => {}
        }
    }
    Ok(event)
}

/// `text` is what follows `_sc|`.
fn parse_service_check(text: &str) -> Result<StatsdServiceCheck<'_>, StatsdRejectReason> {
    let (name, rest) = split_at_byte(text, b'|').unwrap_or((text, ""));
    if name.is_empty() {
        return Err(StatsdRejectReason::EmptyServiceCheckName);
    }
    let (status, mut sections) = match split_at_byte(rest, b'|') {
        Some((status, sections)) => (status, Some(sections)),
        None => (rest, None),
    };
    let status = match status {
        "0" => 0,
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return Err(StatsdRejectReason::InvalidServiceCheckStatus),
    };
    let mut check = StatsdServiceCheck {
        name,
        status,
        timestamp: None,
        hostname: None,
        tags: StatsdTags::default(),
        message: None,
    };
    while let Some(rest) = sections {
        // The message is the last section and may itself contain `|`.
        if let Some(message) = rest.strip_prefix("m:") {
            check.message = Some(message);
            break;
        }
        let section = match split_at_byte(rest, b'|') {
            Some((section, after)) => {
                sections = Some(after);
                section
            }
            None => {
                sections = None;
                rest
            }
        };
        if let Some(tags) = section.strip_prefix('#') {
            check.tags = StatsdTags { raw: tags };
        } else if let Some(timestamp) = section.strip_prefix("d:") {
            check.timestamp = Some(parse_unix_seconds(timestamp)?);
        } else if let Some(hostname) = section.strip_prefix("h:") {
            check.hostname = Some(non_empty(hostname)?);
        } else if section.is_empty() {
            return Err(StatsdRejectReason::EmptySection);
        }
    }
    Ok(check)
}

/// Turns the two characters `\n` back into a newline, as DogStatsD clients escape it
/// in event text and service check messages; borrows when there is none.
pub fn unescape_newlines(text: &str) -> Cow<'_, str> {
    if text.contains("\\n") { Cow::Owned(text.replace("\\n", "\n")) } else { Cow::Borrowed(text) }
}
