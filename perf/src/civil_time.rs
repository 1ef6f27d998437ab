//! UTC calendar arithmetic (Howard Hinnant's `days_from_civil` / `civil_from_days`), so
//! timestamps can be written per message without a date crate or an allocation.

use crate::ascii::{write_space_padded, write_u64, write_zero_padded};

/// A UTC instant broken into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

pub const MONTH_ABBREVIATIONS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

impl UtcDateTime {
    pub fn from_unix_nanos(unix_nanos: u64) -> Self {
        let secs = unix_nanos / 1_000_000_000;
        let nanos = (unix_nanos % 1_000_000_000) as u32;
        let days = (secs / 86_400) as i64;
        let of_day = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self { year, month, day, hour: of_day / 3600, minute: of_day / 60 % 60, second: of_day % 60, nanos }
    }

    /// Nanoseconds since the Unix epoch; `None` before 1970.
    pub fn to_unix_nanos(self) -> Option<u64> {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        u64::try_from(secs).ok()?.checked_mul(1_000_000_000)?.checked_add(u64::from(self.nanos))
    }

    pub fn month_abbreviation(self) -> &'static [u8; 3] {
        MONTH_ABBREVIATIONS[(self.month - 1) as usize]
    }

    /// `2024-01-02` (ISO 8601 date; years before 1000 do not occur here).
    pub fn write_date(self, out: &mut Vec<u8>) {
        write_u64(out, self.year.unsigned_abs());
        out.push(b'-');
        write_zero_padded(out, u64::from(self.month), 2);
        out.push(b'-');
        write_zero_padded(out, u64::from(self.day), 2);
    }

    /// `10:11:12`
    pub fn write_time(self, out: &mut Vec<u8>) {
        write_zero_padded(out, u64::from(self.hour), 2);
        out.push(b':');
        write_zero_padded(out, u64::from(self.minute), 2);
        out.push(b':');
        write_zero_padded(out, u64::from(self.second), 2);
    }

    /// `2024-01-02T10:11:12.123456Z`, the RFC 5424 TIMESTAMP with microseconds in UTC.
    pub fn write_rfc3339_micros(self, out: &mut Vec<u8>) {
        self.write_date(out);
        out.push(b'T');
        self.write_time(out);
        out.push(b'.');
        write_zero_padded(out, u64::from(self.nanos / 1000), 6);
        out.push(b'Z');
    }

    /// `Jan  2 10:11:12`, the RFC 3164 TIMESTAMP (day space-padded, no year, no zone).
    pub fn write_bsd(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.month_abbreviation());
        out.push(b' ');
        write_space_padded(out, u64::from(self.day), 2);
        out.push(b' ');
        self.write_time(out);
    }

    pub fn millis(self) -> u64 {
        u64::from(self.nanos / 1_000_000)
    }
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month 1..=12, day) to days since 1970-01-01.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_break_down_correctly() {
        // 2024-02-29T23:59:58.5Z, a leap day.
        let t = UtcDateTime::from_unix_nanos(1_709_251_198_500_000_000);
        assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2024, 2, 29, 23, 59, 58));
        assert_eq!(t.nanos, 500_000_000);
        assert_eq!(t.to_unix_nanos(), Some(1_709_251_198_500_000_000));
        assert_eq!(UtcDateTime::from_unix_nanos(0).year, 1970);
        let mut out = Vec::new();
        t.write_rfc3339_micros(&mut out);
        out.push(b' ');
        UtcDateTime::from_unix_nanos(1_704_190_272_000_000_000).write_bsd(&mut out);
        assert_eq!(out, b"2024-02-29T23:59:58.500000Z Jan  2 10:11:12");
    }

    #[test]
    fn days_round_trip() {
        for days in (0..80_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
