//! Prometheus text exposition format (version 0.0.4, and the sample lines OpenMetrics
//! shares with it), as scraped from `/metrics` endpoints and pushed to
//! `POST /api/v1/metrics?format=prometheus`.
//!
//! One item per non-blank line that is not a comment: a sample, or a reject naming the
//! line's text and why. `# HELP`, `# TYPE`, `# EOF` and other comments are skipped: the
//! store keeps every sample as a value, whatever type the exporter declared (a counter's
//! samples are its running totals, which `last`, `max` and `rate` over a query read back).
//! Label values are unescaped on demand, so a sample borrows from the input and
//! allocates only for a value that holds an escape.

use std::borrow::Cow;

/// Why a line is not a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromRejectReason {
    /// The metric name is empty or holds a character outside `[a-zA-Z0-9_:]`.
    BadName,
    /// A label is not `name="value"`, a quote or brace is missing, or an escape is unknown.
    BadLabels,
    /// The value is missing or not a float (`NaN`, `+Inf` and `-Inf` are floats).
    BadValue,
    /// The timestamp is not a whole number of milliseconds.
    BadTimestamp,
    /// Something follows the timestamp.
    TrailingText,
}

impl PromRejectReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadName => "bad_name",
            Self::BadLabels => "bad_labels",
            Self::BadValue => "bad_value",
            Self::BadTimestamp => "bad_timestamp",
            Self::TrailingText => "trailing_text",
        }
    }
}

/// A line that is not a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromReject<'a> {
    /// 1-based line number in the input.
    pub line_number: usize,
    pub line: &'a [u8],
    pub reason: PromRejectReason,
}

/// One sample line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PromSample<'a> {
    pub line_number: usize,
    pub name: &'a str,
    /// The text between the braces, already checked; read it with [`PromSample::labels`].
    labels_raw: &'a str,
    pub value: f64,
    /// Milliseconds since the Unix epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl<'a> PromSample<'a> {
    /// The labels in the order written.
    pub fn labels(&self) -> PromLabels<'a> {
        PromLabels { rest: self.labels_raw }
    }
}

/// A label of a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromLabel<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

/// The labels of a sample, from text that [`parse_prometheus`] has validated.
#[derive(Clone, Debug)]
pub struct PromLabels<'a> {
    rest: &'a str,
}

impl<'a> Iterator for PromLabels<'a> {
    type Item = PromLabel<'a>;

    fn next(&mut self) -> Option<PromLabel<'a>> {
        let (name, value_raw, rest) = split_label(self.rest).ok()??;
        self.rest = rest;
        Some(PromLabel { name, value: unescape(value_raw) })
    }
}

/// A parsed line.
#[derive(Clone, Debug, PartialEq)]
pub enum PromItem<'a> {
    Sample(PromSample<'a>),
    Reject(PromReject<'a>),
}

/// The samples and rejects of `text`, in order.
pub fn parse_prometheus(text: &[u8]) -> PromLines<'_> {
    PromLines { rest: text, line_number: 0 }
}

/// Iterator returned by [`parse_prometheus`].
#[derive(Clone, Debug)]
pub struct PromLines<'a> {
    rest: &'a [u8],
    line_number: usize,
}

impl<'a> Iterator for PromLines<'a> {
    type Item = PromItem<'a>;

    fn next(&mut self) -> Option<PromItem<'a>> {
        while !self.rest.is_empty() {
            let end = self.rest.iter().position(|&b| b == b'\n').unwrap_or(self.rest.len());
            let line = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
            self.line_number += 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let trimmed = line.trim_ascii();
            if trimmed.is_empty() || trimmed[0] == b'#' {
                continue;
            }
            return Some(match parse_line(trimmed, self.line_number) {
                Ok(sample) => PromItem::Sample(sample),
                Err(reason) => {
                    PromItem::Reject(PromReject { line_number: self.line_number, line: trimmed, reason })
                }
            });
        }
        None
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn parse_line(line: &[u8], line_number: usize) -> Result<PromSample<'_>, PromRejectReason> {
    // Non-UTF-8 can only be inside a label value; the whole line must be text anyway.
    let line = std::str::from_utf8(line).map_err(|_| PromRejectReason::BadLabels)?;
    let name_end = line.find(|c: char| !c.is_ascii() || !is_name_byte(c as u8)).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || !is_name_start(name.as_bytes()[0]) {
        return Err(PromRejectReason::BadName);
    }
    let mut rest = &line[name_end..];
    let mut labels_raw = "";
    if let Some(after_brace) = rest.strip_prefix('{') {
        let close = labels_end(after_brace).ok_or(PromRejectReason::BadLabels)?;
        labels_raw = &after_brace[..close];
        let mut labels = labels_raw;
        while let Some((_, _, next)) = split_label(labels).map_err(|()| PromRejectReason::BadLabels)? {
            labels = next;
        }
        rest = &after_brace[close + 1..];
    } else if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(PromRejectReason::BadName);
    }
    let mut fields = rest.split([' ', '\t']).filter(|field| !field.is_empty());
    let value = fields.next().ok_or(PromRejectReason::BadValue).and_then(parse_value)?;
    let timestamp_ms = fields
        .next()
        .map(|field| field.parse::<i64>().map_err(|_| PromRejectReason::BadTimestamp))
        .transpose()?;
    if fields.next().is_some() {
        return Err(PromRejectReason::TrailingText);
    }
    Ok(PromSample { line_number, name, labels_raw, value, timestamp_ms })
}

/// Index of the `}` closing a label set, skipping braces inside quoted values.
fn labels_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut in_quotes = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if in_quotes => index += 1,
            b'"' => in_quotes = !in_quotes,
            b'}' if !in_quotes => return Some(index),
            _ => {}
        }
        index += 1;
    }
    None
}

/// The first `name="value"` of a label list and what follows its separating comma;
/// `Ok(None)` at the end of the list.
fn split_label(text: &str) -> Result<Option<(&str, &str, &str)>, ()> {
    let text = text.trim_start_matches([' ', '\t']);
    if text.is_empty() {
        return Ok(None);
    }
    let name_end = text.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(text.len());
    let name = &text[..name_end];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(());
    }
    let after_name = text[name_end..].trim_start_matches([' ', '\t']);
    let after_equals = after_name.strip_prefix('=').ok_or(())?.trim_start_matches([' ', '\t']);
    let quoted = after_equals.strip_prefix('"').ok_or(())?;
    let bytes = quoted.as_bytes();
    let mut index = 0;
    loop {
        match bytes.get(index) {
            None => return Err(()),
            Some(b'\\') => {
                if !matches!(bytes.get(index + 1), Some(b'\\' | b'"' | b'n')) {
                    return Err(());
                }
                index += 2;
            }
            Some(b'"') => break,
            Some(_) => index += 1,
        }
    }
    let value = &quoted[..index];
    let after_value = quoted[index + 1..].trim_start_matches([' ', '\t']);
    let rest = match after_value.strip_prefix(',') {
        Some(rest) => rest,
        None if after_value.is_empty() => after_value,
        None => return Err(()),
    };
    Ok(Some((name, value, rest)))
}

fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

fn parse_value(text: &str) -> Result<f64, PromRejectReason> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        // Rust also accepts "inf", "infinity" and "nan" in any case; the format does not.
        _ if text.bytes().any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) => {
            Err(PromRejectReason::BadValue)
        }
        _ => text.parse().map_err(|_| PromRejectReason::BadValue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(text: &str) -> Vec<PromItem<'_>> {
        parse_prometheus(text.as_bytes()).collect()
    }

    fn sample<'a>(item: &'a PromItem<'a>) -> &'a PromSample<'a> {
        match item {
            PromItem::Sample(sample) => sample,
            PromItem::Reject(reject) => panic!("rejected: {reject:?}"),
        }
    }

    #[test]
    fn reads_an_exposition_with_comments_labels_and_timestamps() {
        let text = "# HELP http_requests_total The total.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\r\n\
                    \n\
                    up 1\n\
                    rpc_duration_seconds{quantile=\"0.5\",} 4.773e3\n";
        let items = samples(text);
        assert_eq!(items.len(), 4);
        let first = sample(&items[0]);
        assert_eq!(
            (first.name, first.value, first.timestamp_ms),
            ("http_requests_total", 1027.0, Some(1395066363000))
        );
        assert_eq!(first.line_number, 3);
        let labels: Vec<_> = first.labels().map(|l| (l.name, l.value.into_owned())).collect();
        assert_eq!(labels, [("method", "post".to_owned()), ("code", "200".to_owned())]);
        assert_eq!(sample(&items[1]).value, 3.0);
        let up = sample(&items[2]);
        assert_eq!((up.name, up.value, up.timestamp_ms, up.labels().count()), ("up", 1.0, None, 0));
        let quantile = sample(&items[3]);
        assert_eq!(quantile.value, 4773.0);
        assert_eq!(quantile.labels().count(), 1, "a trailing comma ends the list");
    }

    #[test]
    fn label_values_keep_braces_and_unescape_on_demand() {
        let items = samples(r#"msg{path="C:\\dir",text="say \"hi\"\nbye",b="{x}"} +Inf"#);
        let sample = sample(&items[0]);
        let labels: Vec<_> = sample.labels().collect();
        assert_eq!(labels[0].value, "C:\\dir");
        assert_eq!(labels[1].value, "say \"hi\"\nbye");
        assert!(matches!(labels[2].value, Cow::Borrowed("{x}")), "no escape, no allocation");
        assert_eq!(sample.value, f64::INFINITY);
    }

    #[test]
    fn special_values_are_floats() {
        let items = samples("a NaN\nb -Inf\nc 1e-3\nd -0.5");
        assert!(sample(&items[0]).value.is_nan());
        assert_eq!(sample(&items[1]).value, f64::NEG_INFINITY);
        assert_eq!(sample(&items[2]).value, 0.001);
        assert_eq!(sample(&items[3]).value, -0.5);
    }

    #[test]
    fn bad_lines_are_rejected_with_their_number_and_reason() {
        let text = "ok 1\n9bad 1\nm{a=\"1\" 2\nm{a=1} 2\nm{a=\"\\x\"} 2\nm inf\nm 1 12.5\nm 1 2 3\nm\nm{} 1\nm{a=\"1\"b=\"2\"} 1";
        let got: Vec<_> = samples(text)
            .into_iter()
            .map(|item| match item {
                PromItem::Sample(sample) => (sample.line_number, "sample"),
                PromItem::Reject(reject) => (reject.line_number, reject.reason.as_str()),
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "sample"),
                (2, "bad_name"),
                (3, "bad_labels"),
                (4, "bad_labels"),
                (5, "bad_labels"),
                (6, "bad_value"),
                (7, "bad_timestamp"),
                (8, "trailing_text"),
                (9, "bad_value"),
                (10, "sample"),
                (11, "bad_labels"),
            ]
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let inputs: [&[u8]; 6] = [b"\xff\xfe{", b"a{", b"a{\"", b"a{b=\"\\", b"{}", b"a{b=\"c\"}"];
        for input in inputs {
            for item in parse_prometheus(input) {
                if let PromItem::Sample(sample) = item {
                    sample.labels().for_each(drop);
                }
            }
        }
    }
}
