//! Numeric columns as byte planes (format 6, ADR 0057): a width byte w (0 to 8), then the
//! lowest byte of every value in row order, then every value's second byte, and so on up
//! to the w-th. Each plane is a section of its own (`sections.rs`), so zstd codes it
//! with a table of its own.
//!
//! A column of values spread evenly over a wide range (a host among two thousand, a
//! process id) costs about its entropy this way. As varints, every byte mixes seven bits
//! of value with a continuation bit, the bytes of different positions share one table,
//! and the column cost a fifth more than its entropy on the scale corpus. A column that
//! repeats (a compacted block's hosts) stays runs in every plane.

use super::BlockError;
use super::varint::Reader;

/// Appends `values` as planes, ending a section after each (the reader takes the row
/// count from the block).
pub(super) fn put_planes<T: Copy + Into<u64>>(
    body: &mut Vec<u8>,
    values: &[T],
    section_ends: &mut Vec<usize>,
) {
    let largest = values.iter().map(|&value| value.into()).max().unwrap_or(0);
    let width = (u64::BITS - largest.leading_zeros()).div_ceil(8) as usize;
    body.push(width as u8);
    for plane in 0..width {
        let shift = 8 * plane;
        body.extend(values.iter().map(|&value| (value.into() >> shift) as u8));
        section_ends.push(body.len());
    }
    if width == 0 {
        section_ends.push(body.len());
    }
}

/// Reads `count` values written by [`put_planes`].
pub(super) fn read_planes(reader: &mut Reader<'_>, count: usize) -> Result<Vec<u64>, BlockError> {
    let width = usize::from(reader.u8()?);
    if width > 8 {
        return Err(BlockError::Damaged("byte plane width"));
    }
    let mut values = vec![0u64; count];
    for plane in 0..width {
        let shift = 8 * plane;
        for (value, &byte) in values.iter_mut().zip(reader.take(count)?) {
            *value |= u64::from(byte) << shift;
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_round_trip_at_every_width() {
        for values in [
            vec![],
            vec![0, 0, 0],
            vec![1, 255, 7],
            vec![256, 0, 65_535],
            vec![u64::MAX, 1, 1 << 40],
            (0..1_000u64).map(|n| n * 7_919 % 30_011).collect(),
        ] {
            let mut body = Vec::new();
            let mut ends = Vec::new();
            put_planes(&mut body, &values, &mut ends);
            let mut reader = Reader::new(&body);
            assert_eq!(read_planes(&mut reader, values.len()).unwrap(), values);
            assert_eq!(reader.remaining(), 0);
            assert_eq!(ends.last(), Some(&body.len()));
        }
    }

    #[test]
    fn damaged_planes_are_refused() {
        assert!(read_planes(&mut Reader::new(&[9]), 1).is_err(), "width past eight bytes");
        assert!(read_planes(&mut Reader::new(&[2, 1, 2, 3]), 2).is_err(), "a plane cut short");
        assert!(read_planes(&mut Reader::new(&[]), 1).is_err(), "no width");
    }
}
