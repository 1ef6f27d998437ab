//! Scanning what a receiver stored (a peer's output file, a Killkrill export) for markers.
//!
//! Loss needs only the seqs. Latency needs to know when the receiver wrote each line, which
//! the message itself cannot say: it is measured only when the receiver was configured to
//! prefix each line with its own receive or write time (for rsyslog a template starting
//! `%timegenerated:::date-rfc3339%`, for syslog-ng `${R_ISODATE}`), named with
//! [`WriteTime`]. Otherwise a scan gives counts only.

use std::io::{self, BufRead};
use std::str::FromStr;

use crate::ascii::parse_u64;
use crate::civil_time::UtcDateTime;
use crate::loss::{LatencyRecorder, LatencySummary, SequenceTracker};
use crate::mix::parse_marker;

/// Where a stored line says when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteTime {
    /// Lines carry no write time; the scan gives counts only.
    None,
    /// Lines start with an RFC 3339 timestamp (`2024-01-02T10:11:12.123456+00:00`).
    Rfc3339Prefix,
    /// Lines start with Unix seconds with a fraction (`1704190272.123456`) or Unix
    /// nanoseconds (19 digits).
    UnixPrefix,
}

impl FromStr for WriteTime {
    type Err = crate::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "none" => Ok(Self::None),
            "rfc3339" => Ok(Self::Rfc3339Prefix),
            "unix" => Ok(Self::UnixPrefix),
            _ => Err(crate::Error::UnknownName {
                what: "write-time format",
                value: value.to_owned(),
                expected: "none, rfc3339, unix",
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub run_id: u32,
    pub first_seq: u64,
    /// Messages sent; `None` sizes the tracker from the highest seq seen, which cannot see
    /// loss at the tail of a run.
    pub expected: Option<u64>,
    pub write_time: WriteTime,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanSummary {
    pub received: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// Markers of this run with a seq outside the tracked range.
    pub out_of_range: u64,
    /// Lines with a marker of another run.
    pub other_runs: u64,
    pub lines: u64,
    pub lines_without_marker: u64,
    /// Write time minus send time; `None` when no line had a usable write time.
    pub latency_us: Option<LatencySummary>,
    /// Lines written "before" they were sent: clock skew between sender and receiver.
    pub negative_latencies: u64,
}

pub fn scan(mut reader: impl BufRead, options: &ScanOptions) -> io::Result<ScanSummary> {
    let mut tracker = SequenceTracker::new(options.first_seq, options.expected.unwrap_or(0));
    let mut latency = LatencyRecorder::new();
    let (mut lines, mut without_marker, mut other_runs, mut negative) = (0, 0, 0, 0);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines += 1;
        let Some(marker) = parse_marker(&line) else {
            without_marker += 1;
            continue;
        };
        if marker.run_id != options.run_id {
            other_runs += 1;
            continue;
        }
        tracker.record(marker.seq);
        if let Some(written) = parse_write_time(&line, options.write_time) {
            match written.checked_sub(marker.send_unix_nanos) {
                Some(nanos) => latency.record(nanos),
                None => negative += 1,
            }
        }
    }
    Ok(ScanSummary {
        received: tracker.received(),
        missing: tracker.missing(),
        duplicates: tracker.duplicates(),
        out_of_range: tracker.out_of_range(),
        other_runs,
        lines,
        lines_without_marker: without_marker,
        latency_us: latency.summary(),
        negative_latencies: negative,
    })
}

/// The write time at the start of `line`, in Unix nanoseconds.
pub fn parse_write_time(line: &[u8], format: WriteTime) -> Option<u64> {
    let token_end = line.iter().position(|b| b.is_ascii_whitespace()).unwrap_or(line.len());
    let token = &line[..token_end];
    match format {
        WriteTime::None => None,
        WriteTime::Rfc3339Prefix => parse_rfc3339(token),
        WriteTime::UnixPrefix => parse_unix(token),
    }
}

fn parse_unix(token: &[u8]) -> Option<u64> {
    match token.iter().position(|b| *b == b'.') {
        None if token.len() >= 19 => parse_u64(token),
        None => parse_u64(token)?.checked_mul(1_000_000_000),
        Some(dot) => {
            let secs = parse_u64(&token[..dot])?;
            Some(secs.checked_mul(1_000_000_000)? + parse_fraction_nanos(&token[dot + 1..])?)
        }
    }
}

/// Up to nine fraction digits as nanoseconds; further digits are ignored.
fn parse_fraction_nanos(digits: &[u8]) -> Option<u64> {
    let kept = &digits[..digits.len().min(9)];
    let value = parse_u64(kept)?;
    Some(value * 10u64.pow(9 - kept.len() as u32))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)`
fn parse_rfc3339(token: &[u8]) -> Option<u64> {
    if token.len() < 20 || token[4] != b'-' || token[7] != b'-' || !matches!(token[10], b'T' | b't') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| parse_u64(&token[range]);
    let (year, month, day) = (number(0..4)?, number(5..7)? as u32, number(8..10)? as u32);
    let (hour, minute, second) = (number(11..13)? as u32, number(14..16)? as u32, number(17..19)? as u32);
    let mut rest = &token[19..];
    let mut nanos = 0;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        nanos = parse_fraction_nanos(&rest[1..1 + digits])? as u32;
        rest = &rest[1 + digits..];
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let offset = (parse_u64(&[*h1, *h2])? * 3600 + parse_u64(&[*m1, *m2])? * 60) as i64;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let local = UtcDateTime { year: year as i64, month, day, hour, minute, second, nanos };
    let nanos_utc = local.to_unix_nanos()? as i128 - i128::from(offset_secs) * 1_000_000_000;
    u64::try_from(nanos_utc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::{Marker, write_marker};

    fn line(prefix: &str, seq: u64, send: u64) -> String {
        let mut out = prefix.as_bytes().to_vec();
        write_marker(&mut out, Marker { run_id: 3, seq, send_unix_nanos: send });
        String::from_utf8(out).unwrap() + "\n"
    }

    #[test]
    fn scan_counts_loss_duplicates_and_other_runs() {
        let mut input = String::new();
        for seq in [0, 1, 1, 3, 4] {
            input += &line("host app: ", seq, 1);
        }
        input += "no marker here\nkk=9.0.1 another run\n";
        let options = ScanOptions { run_id: 3, first_seq: 0, expected: Some(6), write_time: WriteTime::None };
        let summary = scan(input.as_bytes(), &options).unwrap();
        assert_eq!((summary.received, summary.missing, summary.duplicates), (4, 2, 1));
        assert_eq!((summary.other_runs, summary.lines_without_marker, summary.lines), (1, 1, 7));
        assert!(summary.latency_us.is_none());
    }

    #[test]
    fn latency_comes_from_a_write_time_prefix() {
        let send = 1_704_190_272_000_000_000;
        let input = line("2024-01-02T10:11:12.000250Z host app: ", 0, send)
            + &line("2024-01-02T11:11:12.000500+01:00 host app: ", 1, send);
        let options =
            ScanOptions { run_id: 3, first_seq: 0, expected: None, write_time: WriteTime::Rfc3339Prefix };
        let latency = scan(input.as_bytes(), &options).unwrap().latency_us.unwrap();
        assert!((latency.p50 - 250.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max - 500.0).abs() < 1.0, "{latency:?}");
    }

    #[test]
    fn unix_write_times_parse_in_both_forms() {
        assert_eq!(
            parse_write_time(b"1704190272.5 x", WriteTime::UnixPrefix),
            Some(1_704_190_272_500_000_000)
        );
        assert_eq!(
            parse_write_time(b"1704190272000000001 x", WriteTime::UnixPrefix),
            Some(1_704_190_272_000_000_001)
        );
        assert_eq!(parse_write_time(b"<13>1 x", WriteTime::UnixPrefix), None);
    }
}
