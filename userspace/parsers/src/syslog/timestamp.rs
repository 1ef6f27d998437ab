//! The timestamp grammars syslog senders use, and civil time to UTC.
//!
//! Civil-to-epoch arithmetic is done here rather than through jiff: for the common case (an
//! explicit offset) it is a handful of integer operations, and building jiff values per
//! message would cost more than the rest of the header. jiff is only asked for the offset
//! of `ParseOptions::time_zone` when the sender wrote no offset.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::EventTimestamp;

const NANOS_PER_SECOND: i64 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// A wall-clock time as written, before validation against the calendar.
#[derive(Clone, Copy, Debug)]
pub(super) struct CivilTime {
    pub(super) year: i32,
    pub(super) month: u8,
    pub(super) day: u8,
    pub(super) hour: u8,
    pub(super) minute: u8,
    pub(super) second: u8,
    pub(super) nanos: u32,
    pub(super) fractional_digits: u8,
}

/// Where the civil time is anchored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Zone {
    /// Seconds east of UTC, as written by the sender.
    Offset(i32),
    /// No offset written: `ParseOptions::time_zone` applies.
    Local,
}

/// The outcome of looking for a timestamp at the start of some bytes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Scan<T> {
    /// Nothing shaped like this kind of timestamp: the bytes are something else.
    Absent,
    /// Shaped like a timestamp but malformed or impossible; `len` bytes belong to it.
    Invalid {
        len: usize,
    },
    Valid {
        value: T,
        len: usize,
    },
}

pub(super) const fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(super) const fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Counts in 400-year eras, starting
/// each year in March so that the leap day is the last day of its year.
pub(super) fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days separate 0000-03-01 (day 0 of era 0) from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub(super) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (year, u8::try_from(month).unwrap_or(1), u8::try_from(day).unwrap_or(1))
}

impl CivilTime {
    /// Rejects what no calendar has: 30 February, 29 February outside leap years, hour 24,
    /// minute or second 60 (RFC 5424 section 6.2.3 bans leap seconds).
    fn is_possible(&self) -> bool {
        (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }

    fn seconds_since_epoch_as_if_utc(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// Anchors the civil time in `zone`; `None` for impossible dates and instants outside
    /// what `i64` nanoseconds hold (years 1677..=2262).
    pub(super) fn to_event_timestamp(self, zone: Zone, time_zone: &TimeZone) -> Option<EventTimestamp> {
        if !self.is_possible() {
            return None;
        }
        let offset_seconds = match zone {
            Zone::Offset(seconds) => seconds,
            Zone::Local => local_offset_seconds(&self, time_zone)?,
        };
        let seconds = self.seconds_since_epoch_as_if_utc() - i64::from(offset_seconds);
        let unix_nanos = seconds.checked_mul(NANOS_PER_SECOND)?.checked_add(i64::from(self.nanos))?;
        Some(EventTimestamp { unix_nanos, fractional_digits: self.fractional_digits })
    }
}

/// The offset `time_zone` has at a wall-clock time. In a DST gap or fold the offset in force
/// before the transition is used, which is what RFC 9557 calls "compatible" (a skipped 02:30
/// becomes 03:30, a repeated 01:30 the first one).
fn local_offset_seconds(civil: &CivilTime, time_zone: &TimeZone) -> Option<i32> {
    let datetime = DateTime::new(
        i16::try_from(civil.year).ok()?,
        i8::try_from(civil.month).ok()?,
        i8::try_from(civil.day).ok()?,
        i8::try_from(civil.hour).ok()?,
        i8::try_from(civil.minute).ok()?,
        i8::try_from(civil.second).ok()?,
        0,
    )
    .ok()?;
    let offset = match time_zone.to_ambiguous_timestamp(datetime).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { before, .. } | AmbiguousOffset::Fold { before, .. } => before,
    };
    Some(offset.seconds())
}

/// The (year, month) of the receive time on the wall clock of `time_zone`.
pub(super) fn received_year_month(received_at: Timestamp, time_zone: &TimeZone) -> (i32, u8) {
    let offset = time_zone.to_offset(received_at).seconds();
    let local_seconds = received_at.as_second() + i64::from(offset);
    let (year, month, _) = civil_from_days(local_seconds.div_euclid(SECONDS_PER_DAY));
    (i32::try_from(year).unwrap_or(1970), month)
}

/// The year of a year-less timestamp: the receive year, except that December read in
/// January belongs to the year before (a message sent just before midnight on 31 December
/// and received after it, or a relay's backlog).
pub(super) fn infer_year(month: u8, received: (i32, u8)) -> i32 {
    let (received_year, received_month) = received;
    if month == 12 && received_month == 1 { received_year - 1 } else { received_year }
}

fn digit(bytes: &[u8], index: usize) -> Option<u8> {
    match bytes.get(index) {
        Some(byte @ b'0'..=b'9') => Some(byte - b'0'),
        _ => None,
    }
}

fn two_digits(bytes: &[u8], index: usize) -> Option<u8> {
    Some(digit(bytes, index)? * 10 + digit(bytes, index + 1)?)
}

fn four_digits(bytes: &[u8], index: usize) -> Option<i32> {
    let high = i32::from(two_digits(bytes, index)?);
    let low = i32::from(two_digits(bytes, index + 2)?);
    Some(high * 100 + low)
}

/// `hh:mm:ss` then an optional `.` and 1 to 9 digits; returns the bytes used.
fn read_time_of_day(bytes: &[u8], at: usize, civil: &mut CivilTime) -> Option<usize> {
    civil.hour = two_digits(bytes, at)?;
    (bytes.get(at + 2) == Some(&b':')).then_some(())?;
    civil.minute = two_digits(bytes, at + 3)?;
    (bytes.get(at + 5) == Some(&b':')).then_some(())?;
    civil.second = two_digits(bytes, at + 6)?;
    let mut end = at + 8;
    if bytes.get(end) == Some(&b'.') {
        let (nanos, digits) = read_fraction(bytes.get(end + 1..).unwrap_or_default())?;
        civil.nanos = nanos;
        civil.fractional_digits = digits;
        end += 1 + usize::from(digits);
    }
    Some(end)
}

/// 1 to 9 fractional digits, scaled to nanoseconds. More than 9 cannot be kept exactly, so
/// they make the timestamp invalid rather than silently rounded.
fn read_fraction(bytes: &[u8]) -> Option<(u32, u8)> {
    let count = bytes.iter().take(10).take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || count > 9 {
        return None;
    }
    let mut nanos: u32 = 0;
    for &byte in bytes.get(..count)? {
        nanos = nanos * 10 + u32::from(byte - b'0');
    }
    let digits = u8::try_from(count).ok()?;
    Some((nanos * 10_u32.pow(9 - u32::from(digits)), digits))
}

/// A date `YYYY-MM-DD` and a time `hh:mm:ss[.frac]` written as two separate values (Fortinet
/// `date=... time=...`).
pub(super) fn read_date_and_time(date: &[u8], time: &[u8]) -> Option<CivilTime> {
    if date.len() != 10 || date.get(4) != Some(&b'-') || date.get(7) != Some(&b'-') {
        return None;
    }
    let mut civil = CivilTime {
        year: four_digits(date, 0)?,
        month: two_digits(date, 5)?,
        day: two_digits(date, 8)?,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        fractional_digits: 0,
    };
    let end = read_time_of_day(time, 0, &mut civil)?;
    (end == time.len()).then_some(civil)
}

/// How strictly RFC 3339 is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Iso8601Dialect {
    /// RFC 5424 section 6.2.3: `T`, an offset (`Z` or `±hh:mm`), nothing else.
    Rfc5424,
    /// What RFC 3164 senders (rsyslog's forwarding templates, syslog-ng, appliances) write:
    /// also a space for `T`, lower-case `t`/`z`, `±hhmm` or `±hh`, or no offset at all.
    Lenient,
}

/// An RFC 3339 / ISO 8601 date-time at the start of `bytes`. The caller decides what may
/// follow it.
pub(super) fn scan_iso8601(bytes: &[u8], dialect: Iso8601Dialect) -> Scan<(CivilTime, Zone)> {
    let shaped_like_a_date = bytes.len() >= 10
        && bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && four_digits(bytes, 0).is_some();
    if !shaped_like_a_date {
        return Scan::Absent;
    }
    let invalid = Scan::Invalid { len: token_len(bytes) };
    match read_iso8601(bytes, dialect) {
        Some((civil, zone, len)) => Scan::Valid { value: (civil, zone), len },
        None => invalid,
    }
}

fn read_iso8601(bytes: &[u8], dialect: Iso8601Dialect) -> Option<(CivilTime, Zone, usize)> {
    let mut civil = CivilTime {
        year: four_digits(bytes, 0)?,
        month: two_digits(bytes, 5)?,
        day: two_digits(bytes, 8)?,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        fractional_digits: 0,
    };
    let separator_ok =
        matches!((bytes.get(10), dialect), (Some(b'T'), _) | (Some(b't' | b' '), Iso8601Dialect::Lenient));
    if !separator_ok {
        return None;
    }
    let after_time = read_time_of_day(bytes, 11, &mut civil)?;
    let (zone, offset_len) = read_offset(bytes.get(after_time..).unwrap_or_default(), dialect)?;
    Some((civil, zone, after_time + offset_len))
}

fn read_offset(bytes: &[u8], dialect: Iso8601Dialect) -> Option<(Zone, usize)> {
    let lenient = dialect == Iso8601Dialect::Lenient;
    let sign = match bytes.first() {
        Some(b'Z') => return Some((Zone::Offset(0), 1)),
        Some(b'z') if lenient => return Some((Zone::Offset(0), 1)),
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ if lenient => return Some((Zone::Local, 0)),
        _ => return None,
    };
    let hours = two_digits(bytes, 1)?;
    let (minutes, len) = match (bytes.get(3), two_digits(bytes, 4), two_digits(bytes, 3)) {
        (Some(b':'), Some(minutes), _) => (minutes, 6),
        (_, _, Some(minutes)) if lenient => (minutes, 5),
        _ if lenient => (0, 3),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((Zone::Offset(sign * (i32::from(hours) * 3600 + i32::from(minutes) * 60)), len))
}

/// Bytes up to the next space, tab or the end: how far an unreadable timestamp reaches.
pub(super) fn token_len(bytes: &[u8]) -> usize {
    memchr::memchr2(b' ', b'\t', bytes).unwrap_or(bytes.len())
}

/// Month abbreviations, any case (`Jan`, `JAN`, `jan`), as 3 lower-case bytes.
fn month_number(bytes: &[u8]) -> Option<u8> {
    let &[first, second, third] = bytes.get(..3)? else {
        return None;
    };
    // Setting bit 5 lower-cases ASCII letters; other bytes cannot match a name anyway.
    let month = match &[first | 0x20, second | 0x20, third | 0x20] {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    };
    Some(month)
}

/// A BSD timestamp as written, before the year is known.
#[derive(Clone, Copy, Debug)]
pub(super) struct BsdTime {
    pub(super) civil: CivilTime,
    /// Whether the sender wrote a year (Cisco `Mar  1 2024 18:46:11`, or a trailing year).
    pub(super) has_year: bool,
}

/// RFC 3164's `Mmm dd hh:mm:ss` at the start of `bytes`, with what real senders add: a day
/// without its padding space (`Mar 1`), a leading zero (`Mar 01`), a fraction (`.123`), and a
/// year before or after the time (`Mar  1 2024 18:46:11`, `Mar  1 18:46:11 2024`).
pub(super) fn scan_bsd(bytes: &[u8]) -> Scan<BsdTime> {
    let Some(month) = month_number(bytes) else {
        return Scan::Absent;
    };
    let mut civil =
        CivilTime { year: 0, month, day: 0, hour: 0, minute: 0, second: 0, nanos: 0, fractional_digits: 0 };
    if bytes.get(3) != Some(&b' ') {
        return Scan::Absent;
    }
    // Day: "dd", " d" (RFC 3164's padding) or "d" followed by a space.
    let (day, after_day) = match (bytes.get(4), digit(bytes, 4), digit(bytes, 5)) {
        (Some(b' '), _, Some(day)) => (day, 6),
        (_, Some(tens), Some(ones)) => (tens * 10 + ones, 6),
        (_, Some(day), None) => (day, 5),
        _ => return Scan::Absent,
    };
    civil.day = day;
    if bytes.get(after_day) != Some(&b' ') {
        return Scan::Absent;
    }
    let mut at = after_day + 1;
    let mut has_year = false;
    if let (Some(year), Some(b' ')) = (four_digits(bytes, at), bytes.get(at + 4)) {
        civil.year = year;
        has_year = true;
        at += 5;
    }
    let Some(mut end) = read_time_of_day(bytes, at, &mut civil) else {
        return Scan::Absent;
    };
    if !has_year
        && bytes.get(end) == Some(&b' ')
        && let Some(year) = four_digits(bytes, end + 1)
        && matches!(bytes.get(end + 5), None | Some(b' ' | b':' | b'\t'))
    {
        civil.year = year;
        has_year = true;
        end += 5;
    }
    Scan::Valid { value: BsdTime { civil, has_year }, len: end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_round_trips_across_eras_and_leap_days() {
        for days in (-800_000..800_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            let year = i32::try_from(year).expect("year fits");
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29) + 1, days_from_civil(2024, 3, 1));
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert!(is_leap_year(2000));
        assert!(is_leap_year(2024));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2023));
    }
}
