//! Influx line protocol.
//!
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one point per
//! line. [`parse_influx`] yields a point per line, or a [`InfluxReject`] for a line that
//! cannot be parsed; blank lines and comment lines (`#` first) yield nothing.
//!
//! Every line is checked in full when it is parsed, but points keep only raw slices:
//! tags and fields are cut again, and unescaped, only when iterated, and an unescaped
//! name allocates only when it holds an escape. A backslash hides the next byte from the
//! delimiter search everywhere (as influxd does), but is removed only before the
//! characters escapable in that place: `,` and space in measurements; `,`, `=` and space
//! in tag keys, tag values and field keys; `"` and `\` in string field values.
//! A string value ends at the end of its line: newlines inside strings are not supported.

use std::borrow::Cow;

use crate::datagram::DatagramLines;

/// The unit of the timestamps in a datagram; they come out in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InfluxPrecision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl InfluxPrecision {
    fn nanoseconds_per_unit(self) -> i64 {
        match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
        }
    }
}

/// Which characters a backslash escapes in a piece of text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escapes {
    Measurement,
    /// Tag keys, tag values and field keys.
    Key,
    FieldString,
}

impl Escapes {
    fn escapable(self) -> &'static [u8] {
        match self {
            Self::Measurement => b", ",
            Self::Key => b",= ",
            Self::FieldString => b"\"\\",
        }
    }
}

/// A name or string as sent, unescaped on request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfluxText<'a> {
    raw: &'a str,
    escapes: Escapes,
}

impl<'a> InfluxText<'a> {
    /// As sent, escapes included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Without escapes; allocates only when there is one.
    pub fn unescaped(&self) -> Cow<'a, str> {
        let Some(first_backslash) = self.raw.find('\\') else {
            return Cow::Borrowed(self.raw);
        };
        let escapable = self.escapes.escapable();
        let mut unescaped = String::with_capacity(self.raw.len());
        unescaped.push_str(&self.raw[..first_backslash]);
        let mut rest = &self.raw[first_backslash..];
        while let Some(at) = rest.find('\\') {
            unescaped.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match after.as_bytes().first() {
                Some(next) if escapable.contains(next) => {
                    // The escaped character is ASCII, one byte long.
                    unescaped.push_str(&after[..1]);
                    rest = &after[1..];
                }
                _ => {
                    unescaped.push('\\');
                    rest = after;
                }
            }
        }
        unescaped.push_str(rest);
        Cow::Owned(unescaped)
    }
}

/// A field value. Floats are always finite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InfluxFieldValue<'a> {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    /// The text between the quotes.
    String(InfluxText<'a>),
}

impl InfluxFieldValue<'_> {
    /// `float`, `int`, `uint`, `bool` or `string`, as the JSON rendering writes it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Float(_) => "float",
            Self::Integer(_) => "int",
            Self::Unsigned(_) => "uint",
            Self::Boolean(_) => "bool",
            Self::String(_) => "string",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfluxTag<'a> {
    pub key: InfluxText<'a>,
    pub value: InfluxText<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InfluxField<'a> {
    pub key: InfluxText<'a>,
    pub value: InfluxFieldValue<'a>,
}

/// One point. Tags and fields are cut from the raw line when iterated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfluxPoint<'a> {
    measurement: InfluxText<'a>,
    tags_raw: &'a str,
    fields_raw: &'a str,
    /// Nanoseconds since the Unix epoch; `None` when the line has no timestamp.
    pub timestamp_ns: Option<i64>,
}

impl<'a> InfluxPoint<'a> {
    pub fn measurement(&self) -> InfluxText<'a> {
        self.measurement
    }

    /// The tag section as sent, without the leading comma; empty without tags.
    pub fn tags_raw(&self) -> &'a str {
        self.tags_raw
    }

    /// The field section as sent.
    pub fn fields_raw(&self) -> &'a str {
        self.fields_raw
    }

    pub fn tags(&self) -> InfluxTags<'a> {
        InfluxTags { rest: self.tags_raw }
    }

    pub fn fields(&self) -> InfluxFields<'a> {
        InfluxFields { rest: self.fields_raw }
    }
}

/// Tags of a point in wire order.
#[derive(Clone, Debug)]
pub struct InfluxTags<'a> {
    rest: &'a str,
}

impl<'a> Iterator for InfluxTags<'a> {
    type Item = InfluxTag<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // The line was checked when parsed, so a failure here cannot happen; it would
        // end the iteration rather than panic.
        match cut_tag(self.rest) {
            Ok((tag, rest)) => {
                self.rest = rest;
                Some(tag)
            }
            Err(_) => {
                self.rest = "";
                None
            }
        }
    }
}

/// Fields of a point in wire order.
#[derive(Clone, Debug)]
pub struct InfluxFields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for InfluxFields<'a> {
    type Item = InfluxField<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match cut_field(self.rest) {
            Ok((field, end)) => {
                let rest = &self.rest[end..];
                self.rest = rest.strip_prefix(',').unwrap_or("");
                Some(field)
            }
            Err(_) => {
                self.rest = "";
                None
            }
        }
    }
}

/// Why a line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfluxRejectReason {
    NotUtf8,
    EmptyMeasurement,
    /// A tag without `=`, with two, or an empty entry (`a=b,,c=d`, a trailing comma).
    MalformedTag,
    EmptyTagKey,
    EmptyTagValue,
    /// No field section at all.
    MissingFields,
    /// A field without `=`, or junk after a string value.
    MalformedField,
    EmptyFieldKey,
    /// `key=` with nothing after it.
    EmptyFieldValue,
    /// Not a float, integer, unsigned, boolean or string.
    InvalidFieldValue,
    /// An `i` or `u` value outside its type's range, or a float that overflows.
    NumberOutOfRange,
    UnterminatedString,
    InvalidTimestamp,
    /// The timestamp does not fit in `i64` nanoseconds.
    TimestampOverflow,
    /// Something after the timestamp.
    TrailingData,
}

impl InfluxRejectReason {
    /// Stable snake_case name, for counters and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotUtf8 => "not_utf8",
            Self::EmptyMeasurement => "empty_measurement",
            Self::MalformedTag => "malformed_tag",
            Self::EmptyTagKey => "empty_tag_key",
            Self::EmptyTagValue => "empty_tag_value",
            Self::MissingFields => "missing_fields",
            Self::MalformedField => "malformed_field",
            Self::EmptyFieldKey => "empty_field_key",
            Self::EmptyFieldValue => "empty_field_value",
            Self::InvalidFieldValue => "invalid_field_value",
            Self::NumberOutOfRange => "number_out_of_range",
            Self::UnterminatedString => "unterminated_string",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampOverflow => "timestamp_overflow",
            Self::TrailingData => "trailing_data",
        }
    }
}

impl std::fmt::Display for InfluxRejectReason {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A line that could not be parsed, kept raw (without its line ending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfluxReject<'a> {
    pub line: &'a [u8],
    pub reason: InfluxRejectReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfluxItem<'a> {
    Point(InfluxPoint<'a>),
    Reject(InfluxReject<'a>),
}

/// Parses a datagram lazily; see the module documentation.
pub fn parse_influx(datagram: &[u8], precision: InfluxPrecision) -> InfluxItems<'_> {
    InfluxItems { lines: DatagramLines::new(datagram), precision }
}

/// The items of one datagram; see [`parse_influx`].
#[derive(Clone, Debug)]
pub struct InfluxItems<'a> {
    lines: DatagramLines<'a>,
    precision: InfluxPrecision,
}

impl<'a> Iterator for InfluxItems<'a> {
    type Item = InfluxItem<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (line, text) = self.lines.next()?;
            let Some(text) = text else {
                return Some(reject(line, InfluxRejectReason::NotUtf8));
            };
            let text = text.trim_start_matches([' ', '\t']);
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(match parse_point(text, self.precision) {
                Ok(point) => InfluxItem::Point(point),
                Err(reason) => reject(line, reason),
            });
        }
    }
}

fn reject(line: &[u8], reason: InfluxRejectReason) -> InfluxItem<'_> {
    InfluxItem::Reject(InfluxReject { line, reason })
}

/// The first byte in `stops` at or after `from` that no backslash escapes, or the end.
/// Always a char boundary: either the end or an ASCII byte.
fn find_unescaped(bytes: &[u8], from: usize, stops: &[u8]) -> usize {
    let mut at = from;
    while let Some(&byte) = bytes.get(at) {
        if byte == b'\\' {
            at += 2;
        } else if stops.contains(&byte) {
            return at;
        } else {
            at += 1;
        }
    }
    bytes.len()
}

fn skip_spaces(bytes: &[u8], from: usize) -> usize {
    from + bytes.get(from..).map_or(0, |rest| rest.iter().take_while(|&&byte| byte == b' ').count())
}

fn parse_point(line: &str, precision: InfluxPrecision) -> Result<InfluxPoint<'_>, InfluxRejectReason> {
    let bytes = line.as_bytes();
    let measurement_end = find_unescaped(bytes, 0, b", ");
    if measurement_end == 0 {
        return Err(InfluxRejectReason::EmptyMeasurement);
    }
    let mut position = measurement_end;
    let mut tags_raw = "";
    if bytes.get(position) == Some(&b',') {
        let tags_end = find_unescaped(bytes, position + 1, b" ");
        tags_raw = &line[position + 1..tags_end];
        let mut rest = tags_raw;
        loop {
            rest = cut_tag(rest)?.1;
            if rest.is_empty() {
                break;
            }
        }
        position = tags_end;
    }
    position = skip_spaces(bytes, position);
    if position == bytes.len() {
        return Err(InfluxRejectReason::MissingFields);
    }
    let fields_start = position;
    loop {
        let (_, end) = cut_field(&line[position..])?;
        position += end;
        if bytes.get(position) != Some(&b',') {
            break;
        }
        position += 1;
    }
    let fields_raw = &line[fields_start..position];
    position = skip_spaces(bytes, position);
    let timestamp_ns = if position == bytes.len() {
        None
    } else {
        let end = memchr::memchr(b' ', &bytes[position..]).map_or(bytes.len(), |at| position + at);
        if skip_spaces(bytes, end) != bytes.len() {
            return Err(InfluxRejectReason::TrailingData);
        }
        Some(parse_timestamp(&line[position..end], precision)?)
    };
    Ok(InfluxPoint {
        measurement: InfluxText { raw: &line[..measurement_end], escapes: Escapes::Measurement },
        tags_raw,
        fields_raw,
        timestamp_ns,
    })
}

/// The first tag of a non-empty tag section, and the section after it and its comma.
fn cut_tag(section: &str) -> Result<(InfluxTag<'_>, &str), InfluxRejectReason> {
    let bytes = section.as_bytes();
    let tag_end = find_unescaped(bytes, 0, b",");
    let key_end = find_unescaped(&bytes[..tag_end], 0, b"=");
    if key_end == tag_end || find_unescaped(&bytes[..tag_end], key_end + 1, b"=") != tag_end {
        return Err(InfluxRejectReason::MalformedTag);
    }
    if key_end == 0 {
        return Err(InfluxRejectReason::EmptyTagKey);
    }
    if key_end + 1 == tag_end {
        return Err(InfluxRejectReason::EmptyTagValue);
    }
    let rest = match section.get(tag_end..) {
        Some(rest) => match rest.strip_prefix(',') {
            // A trailing comma promises another tag.
            Some("") => return Err(InfluxRejectReason::MalformedTag),
            Some(rest) => rest,
            None => "",
        },
        None => "",
    };
    let tag = InfluxTag {
        key: InfluxText { raw: &section[..key_end], escapes: Escapes::Key },
        value: InfluxText { raw: &section[key_end + 1..tag_end], escapes: Escapes::Key },
    };
    Ok((tag, rest))
}

/// The first field of `text`, and where it ends (at a `,`, a space or the end).
fn cut_field(text: &str) -> Result<(InfluxField<'_>, usize), InfluxRejectReason> {
    let bytes = text.as_bytes();
    let key_end = find_unescaped(bytes, 0, b"=, ");
    if bytes.get(key_end) != Some(&b'=') {
        return Err(InfluxRejectReason::MalformedField);
    }
    if key_end == 0 {
        return Err(InfluxRejectReason::EmptyFieldKey);
    }
    let key = InfluxText { raw: &text[..key_end], escapes: Escapes::Key };
    let value_start = key_end + 1;
    let (value, value_end) = if bytes.get(value_start) == Some(&b'"') {
        let string_end = find_unescaped(bytes, value_start + 1, b"\"");
        if string_end == bytes.len() {
            return Err(InfluxRejectReason::UnterminatedString);
        }
        let raw = &text[value_start + 1..string_end];
        (InfluxFieldValue::String(InfluxText { raw, escapes: Escapes::FieldString }), string_end + 1)
    } else {
        let value_end =
            memchr::memchr2(b',', b' ', &bytes[value_start..]).map_or(bytes.len(), |at| value_start + at);
        (parse_scalar(&text[value_start..value_end])?, value_end)
    };
    if !matches!(bytes.get(value_end), None | Some(b',' | b' ')) {
        return Err(InfluxRejectReason::MalformedField);
    }
    Ok((InfluxField { key, value }, value_end))
}

fn parse_scalar(text: &str) -> Result<InfluxFieldValue<'static>, InfluxRejectReason> {
    match text {
        "" => return Err(InfluxRejectReason::EmptyFieldValue),
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(InfluxFieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(InfluxFieldValue::Boolean(false)),
        _ => {}
    }
    if let Some(integer) = text.strip_suffix('i') {
        let digits = integer.strip_prefix('-').unwrap_or(integer);
        if !is_digits(digits) {
            return Err(InfluxRejectReason::InvalidFieldValue);
        }
        return integer
            .parse()
            .map(InfluxFieldValue::Integer)
            .map_err(|_| InfluxRejectReason::NumberOutOfRange);
    }
    if let Some(unsigned) = text.strip_suffix('u') {
        if !is_digits(unsigned) {
            return Err(InfluxRejectReason::InvalidFieldValue);
        }
        return unsigned
            .parse()
            .map(InfluxFieldValue::Unsigned)
            .map_err(|_| InfluxRejectReason::NumberOutOfRange);
    }
    // `f64::from_str` also takes `inf` and `NaN`, which line protocol does not have.
    let looks_numeric = text
        .starts_with(|first: char| first.is_ascii_digit() || matches!(first, '-' | '+' | '.'))
        && text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !looks_numeric {
        return Err(InfluxRejectReason::InvalidFieldValue);
    }
    let float: f64 = text.parse().map_err(|_| InfluxRejectReason::InvalidFieldValue)?;
    if !float.is_finite() {
        return Err(InfluxRejectReason::NumberOutOfRange);
    }
    Ok(InfluxFieldValue::Float(float))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

fn parse_timestamp(text: &str, precision: InfluxPrecision) -> Result<i64, InfluxRejectReason> {
    if !is_digits(text.strip_prefix('-').unwrap_or(text)) {
        return Err(InfluxRejectReason::InvalidTimestamp);
    }
    let timestamp: i64 = text.parse().map_err(|_| InfluxRejectReason::TimestampOverflow)?;
    timestamp.checked_mul(precision.nanoseconds_per_unit()).ok_or(InfluxRejectReason::TimestampOverflow)
}
