//! Two row fields that format 3 codes by what they hold rather than as bytes (ADR 0048):
//! the sender's timestamp and the process id.
//!
//! **Event times.** Format 2 wrote each as its distance from the row's receive time in
//! nanoseconds, which is as noisy as the receive time itself: a timestamp of whole seconds
//! against a receive time in nanoseconds differs by a fraction of a second that changes on
//! every row. Format 3 writes the distance from the previous event time of the block with
//! the same number of fractional digits, in units of that precision (seconds for a BSD
//! timestamp, milliseconds for `.123`), so that rows of one sender, or of clocks in step,
//! give small and repeating numbers. The first event time of each precision is measured
//! from the row's receive time cut to that precision.
//!
//! ```text
//! per present event time, 0 to 8 fractional digits:
//!   varint (zigzag(distance / unit) << 1)         when the distance is whole units
//!   varint 1, then zigzag varint distance in ns   otherwise
//! 9 digits: zigzag varint distance in ns
//! ```
//!
//! **Process ids.** Format 2 entered every process id in the block's dictionary, where a
//! block of busy hosts holds thousands of distinct ones. Format 3 writes a decimal one as
//! its number:
//!
//! ```text
//! varint 0: none | 2 × (dictionary index + 1): text | 2 × number + 1: a decimal
//! ```
//!
//! A decimal is one written the way its number prints (no sign, no leading zero, not
//! empty), so the reader gives back the same bytes.

use super::BlockError;
use super::varint::{Reader, put_i64, put_u64, unzigzag, zigzag};

/// Fractional digits a stored event time may have (0 to 9).
const PRECISIONS: usize = 10;

fn unit(digits: u8) -> i64 {
    10i64.pow(9 - u32::from(digits.min(9)))
}

/// What an event time is measured from: the previous one of its precision, or for the
/// first its row's receive time cut to that precision.
fn reference(previous: Option<i64>, received: i64, unit: i64) -> i64 {
    previous.unwrap_or_else(|| received.div_euclid(unit).wrapping_mul(unit))
}

/// Writes the event times of one block.
#[derive(Default)]
pub(super) struct EventTimeWriter {
    previous: [Option<i64>; PRECISIONS],
}

impl EventTimeWriter {
    /// Appends the event time `nanos` of a row with `digits` fractional digits (0 to 9)
    /// received at `received`.
    pub(super) fn put(&mut self, out: &mut Vec<u8>, nanos: i64, digits: u8, received: i64) {
        let digits = digits.min(9);
        let slot = &mut self.previous[usize::from(digits)];
        let unit = unit(digits);
        let reference = reference(*slot, received, unit);
        *slot = Some(nanos);
        let distance = nanos.wrapping_sub(reference);
        if unit == 1 {
            put_i64(out, distance);
        } else if distance % unit == 0 {
            // |distance / unit| < 2^63 / 10, so the shifted zigzag value keeps every bit.
            put_u64(out, zigzag(distance / unit) << 1);
        } else {
            put_u64(out, 1);
            put_i64(out, distance);
        }
    }
}

/// Reads back what [`EventTimeWriter`] wrote.
#[derive(Default)]
pub(super) struct EventTimeReader {
    previous: [Option<i64>; PRECISIONS],
}

impl EventTimeReader {
    pub(super) fn read(
        &mut self,
        reader: &mut Reader<'_>,
        digits: u8,
        received: i64,
    ) -> Result<i64, BlockError> {
        if digits > 9 {
            return Err(BlockError::Damaged("event time digits"));
        }
        let slot = &mut self.previous[usize::from(digits)];
        let unit = unit(digits);
        let reference = reference(*slot, received, unit);
        let distance = if unit == 1 {
            reader.i64()?
        } else {
            match reader.u64()? {
                1 => reader.i64()?,
                tagged if tagged & 1 == 0 => unzigzag(tagged >> 1).wrapping_mul(unit),
                _ => return Err(BlockError::Damaged("event time")),
            }
        };
        let nanos = reference.wrapping_add(distance);
        *slot = Some(nanos);
        Ok(nanos)
    }
}

/// The number a process id is the decimal of, if it is one (and small enough for its
/// tagged varint).
pub(super) fn decimal(value: &[u8]) -> Option<u64> {
    let canonical = match value {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && value.len() <= 19,
    };
    if !canonical || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = value.iter().fold(0u64, |number, digit| number * 10 + u64::from(digit - b'0'));
    (number < 1 << 63).then_some(number)
}

/// Appends a process-id column value: none, a dictionary entry, or a decimal.
pub(super) fn put_procid(out: &mut Vec<u8>, procid: ProcidValue) {
    put_u64(
        out,
        match procid {
            ProcidValue::None => 0,
            ProcidValue::Entry(index) => 2 * (u64::from(index) + 1),
            ProcidValue::Decimal(number) => 2 * number + 1,
        },
    );
}

/// One row's process id as format 3 writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProcidValue {
    None,
    Entry(u32),
    Decimal(u64),
}

pub(super) fn read_procid(reader: &mut Reader<'_>) -> Result<ProcidValue, BlockError> {
    Ok(match reader.u64()? {
        0 => ProcidValue::None,
        odd if odd & 1 == 1 => ProcidValue::Decimal(odd >> 1),
        even => ProcidValue::Entry(
            u32::try_from((even >> 1) - 1)
                .map_err(|_| BlockError::Damaged("dictionary index out of range"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event times of every precision, whole and not, near and far from their receive
    /// times, before 1970 and at the ends of the range, read back exactly.
    #[test]
    fn event_times_round_trip_at_every_precision() {
        let received = 1_700_000_000_123_456_789i64;
        let mut rows = Vec::new();
        for digits in 0..=9u8 {
            let unit = unit(digits);
            for nanos in [
                received.div_euclid(unit) * unit,
                received.div_euclid(unit) * unit - 3 * unit,
                0,
                -86_400 * 1_000_000_000,
                received + 7,
                i64::MAX,
                i64::MIN,
                i64::MIN / unit * unit,
                received.div_euclid(unit) * unit + unit,
            ] {
                rows.push((nanos, digits, received));
                rows.push((nanos, digits, i64::MIN));
                rows.push((nanos, digits, -5));
            }
        }
        let mut writer = EventTimeWriter::default();
        let mut out = Vec::new();
        for &(nanos, digits, received) in &rows {
            writer.put(&mut out, nanos, digits, received);
        }
        let mut reader = EventTimeReader::default();
        let mut input = Reader::new(&out);
        for &(nanos, digits, received) in &rows {
            assert_eq!(reader.read(&mut input, digits, received).unwrap(), nanos, "{digits} digits");
        }
        assert_eq!(input.remaining(), 0);
    }

    /// A sender's whole-second timestamps cost one byte a row, however far they are from
    /// the receive times.
    #[test]
    fn repeating_event_times_take_one_byte() {
        let mut writer = EventTimeWriter::default();
        let mut out = Vec::new();
        for row in 0..100i64 {
            writer.put(&mut out, 1_000_000_000 * (row / 10), 0, 1_700_000_000_000_000_000 + row * 997);
        }
        // The first is far from its receive time; the other 99 are 0 or 1 second on.
        assert!(out.len() < 120, "{} bytes", out.len());
    }

    #[test]
    fn damaged_event_times_are_errors() {
        let mut reader = EventTimeReader::default();
        assert!(reader.read(&mut Reader::new(&[3]), 0, 0).is_err(), "odd tag other than 1");
        assert!(reader.read(&mut Reader::new(&[0]), 10, 0).is_err(), "digits past 9");
        assert!(reader.read(&mut Reader::new(&[]), 3, 0).is_err(), "nothing left");
    }

    #[test]
    fn only_canonical_decimals_are_numbers() {
        for (text, number) in [
            (&b"0"[..], Some(0)),
            (b"1", Some(1)),
            (b"4711", Some(4711)),
            (b"9223372036854775807", Some(i64::MAX as u64)),
            (b"9223372036854775808", None),
            (b"9999999999999999999", None),
            (b"10000000000000000000", None),
            (b"", None),
            (b"00", None),
            (b"007", None),
            (b"-5", None),
            (b"+5", None),
            (b"12a", None),
            (b" 12", None),
            (b"\xd9\xa1", None),
        ] {
            assert_eq!(decimal(text), number, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn procid_values_round_trip() {
        let values = [
            ProcidValue::None,
            ProcidValue::Entry(0),
            ProcidValue::Entry(u32::MAX - 1),
            ProcidValue::Decimal(0),
            ProcidValue::Decimal(4711),
            ProcidValue::Decimal(i64::MAX as u64),
        ];
        let mut out = Vec::new();
        for value in values {
            put_procid(&mut out, value);
        }
        let mut reader = Reader::new(&out);
        for value in values {
            assert_eq!(read_procid(&mut reader).unwrap(), value);
        }
        let mut too_far = Vec::new();
        put_u64(&mut too_far, 2 * (u64::from(u32::MAX) + 2));
        assert!(read_procid(&mut Reader::new(&too_far)).is_err());
    }
}
