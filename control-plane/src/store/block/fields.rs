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
//! That suits rows in arrival order. A compacted block holds a share of the hosts over a
//! whole window, so consecutive rows lie tens of milliseconds to seconds apart and that gap
//! is noise, while each sender's clock stays about as far from ours as it was. Format 5
//! (ADR 0054) therefore lets each block measure every event time
//! from its own row's receive time cut to its precision instead, and says which it did
//! in one byte; the encoder writes both and keeps the one whose bytes carry fewer bits
//! (order-0 entropy, [`EventTimeWriter::write`]). Logs replayed long after they were
//! written keep the format 3 way: their event times march on their own clock.
//!
//! ```text
//! u8 reference (format 5 on): 0 = the previous event time of the precision, 1 = the receive time
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

/// What a block's event times are measured from (the byte format 5 writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventReference {
    /// The previous event time of the block with the same precision (formats 3 and 4).
    Previous = 0,
    /// The row's own receive time cut to the precision.
    Receipt = 1,
}

impl EventReference {
    pub(super) fn from_byte(byte: u8) -> Result<Self, BlockError> {
        match byte {
            0 => Ok(Self::Previous),
            1 => Ok(Self::Receipt),
            _ => Err(BlockError::Damaged("event time reference")),
        }
    }
}

/// Writes the event times of one block both ways, keeping the cheaper at the end.
#[derive(Default)]
pub(super) struct EventTimeWriter {
    previous: [Option<i64>; PRECISIONS],
    by_previous: Vec<u8>,
    by_receipt: Vec<u8>,
}

impl EventTimeWriter {
    pub(super) fn clear(&mut self) {
        self.previous = [None; PRECISIONS];
        self.by_previous.clear();
        self.by_receipt.clear();
    }

    /// Takes the event time `nanos` of a row with `digits` fractional digits (0 to 9)
    /// received at `received`.
    pub(super) fn put(&mut self, nanos: i64, digits: u8, received: i64) {
        let digits = digits.min(9);
        let slot = &mut self.previous[usize::from(digits)];
        let unit = unit(digits);
        let from_previous = reference(*slot, received, unit);
        *slot = Some(nanos);
        put_distance(&mut self.by_previous, nanos.wrapping_sub(from_previous), unit);
        put_distance(&mut self.by_receipt, nanos.wrapping_sub(reference(None, received, unit)), unit);
    }

    /// Appends the reference byte and the event times measured from it: from the receive
    /// times when those bytes carry fewer bits, else from the previous event times.
    pub(super) fn write(&self, body: &mut Vec<u8>) {
        let reference = if order0_bits(&self.by_receipt) < order0_bits(&self.by_previous) {
            EventReference::Receipt
        } else {
            EventReference::Previous
        };
        self.write_as(body, reference);
    }

    pub(super) fn write_as(&self, body: &mut Vec<u8>, reference: EventReference) {
        body.push(reference as u8);
        body.extend_from_slice(match reference {
            EventReference::Previous => &self.by_previous,
            EventReference::Receipt => &self.by_receipt,
        });
    }
}

fn put_distance(out: &mut Vec<u8>, distance: i64, unit: i64) {
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

/// The bits `bytes` would take coded at their order-0 entropy: what zstd's Huffman stage
/// gets close to for a column of small numbers, and cheap enough to work out per block.
fn order0_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| f64::from(count) * (total / f64::from(count)).log2())
        .sum()
}

/// Reads back what [`EventTimeWriter`] wrote.
pub(super) struct EventTimeReader {
    previous: [Option<i64>; PRECISIONS],
    reference: EventReference,
}

impl Default for EventTimeReader {
    /// The reader of formats 3 and 4, which measure from the previous event time.
    fn default() -> Self {
        Self::new(EventReference::Previous)
    }
}

impl EventTimeReader {
    pub(super) fn new(reference: EventReference) -> Self {
        Self { previous: [None; PRECISIONS], reference }
    }

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
        let reference = match self.reference {
            EventReference::Previous => reference(*slot, received, unit),
            EventReference::Receipt => reference(None, received, unit),
        };
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

/// A process-id column value: 0 for none, 2 × (index + 1) for a dictionary entry,
/// 2 × number + 1 for a decimal. Formats 3 to 5 wrote it as a varint, format 6 in byte
/// planes (`planes.rs`).
pub(super) fn procid_value(procid: ProcidValue) -> u64 {
    match procid {
        ProcidValue::None => 0,
        ProcidValue::Entry(index) => 2 * (u64::from(index) + 1),
        ProcidValue::Decimal(number) => 2 * number + 1,
    }
}

/// One row's process id as format 3 writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProcidValue {
    None,
    Entry(u32),
    Decimal(u64),
}

/// The process id a column value stands for ([`procid_value`]).
pub(super) fn procid_from_value(value: u64) -> Result<ProcidValue, BlockError> {
    Ok(match value {
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
        for &(nanos, digits, received) in &rows {
            writer.put(nanos, digits, received);
        }
        for reference in [EventReference::Previous, EventReference::Receipt] {
            let mut out = Vec::new();
            writer.write_as(&mut out, reference);
            let mut input = Reader::new(&out);
            let mut reader = EventTimeReader::new(EventReference::from_byte(input.u8().unwrap()).unwrap());
            for &(nanos, digits, received) in &rows {
                assert_eq!(
                    reader.read(&mut input, digits, received).unwrap(),
                    nanos,
                    "{digits} digits, {reference:?}"
                );
            }
            assert_eq!(input.remaining(), 0);
        }
    }

    fn written(rows: impl Iterator<Item = (i64, u8, i64)>) -> Vec<u8> {
        let mut writer = EventTimeWriter::default();
        for (nanos, digits, received) in rows {
            writer.put(nanos, digits, received);
        }
        let mut out = Vec::new();
        writer.write(&mut out);
        out
    }

    /// Logs replayed long after they were written: whole-second timestamps on their own
    /// clock cost one byte a row measured from the previous one, however far they are from
    /// the receive times, and the writer measures them so.
    #[test]
    fn replayed_event_times_are_measured_from_the_previous_one() {
        let out = written(
            (0..100i64).map(|row| (1_000_000_000 * (row / 10), 0, 1_700_000_000_000_000_000 + row * 997)),
        );
        assert_eq!(out[0], EventReference::Previous as u8);
        // The first is far from its receive time; the other 99 are 0 or 1 second on.
        assert!(out.len() < 120, "{} bytes", out.len());
    }

    /// Rows seconds apart, each host's clock a steady distance from ours (as in a compacted
    /// block, which holds a share of the hosts over a whole window): measured from the
    /// receive time every row is its host's skew, and the writer measures so.
    #[test]
    fn grouped_event_times_are_measured_from_the_receive_time() {
        let rows = (0..4i64).flat_map(|host| {
            (0..250i64).map(move |row| {
                let received = 1_700_000_000_000_000_000 + row * 7_919_000_000 + host * 1_000_003;
                let skew_ms = host * 20 - 30;
                (received.div_euclid(1_000_000) * 1_000_000 + skew_ms * 1_000_000, 3u8, received)
            })
        });
        let out = written(rows);
        assert_eq!(out[0], EventReference::Receipt as u8);
        assert_eq!(out.len(), 1 + 1_000, "one byte a row");
    }

    #[test]
    fn damaged_event_times_are_errors() {
        assert!(EventReference::from_byte(2).is_err(), "reference other than 0 or 1");
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
        for value in values {
            assert_eq!(procid_from_value(procid_value(value)).unwrap(), value);
        }
        assert!(procid_from_value(2 * (u64::from(u32::MAX) + 2)).is_err());
    }
}
