//! The histogram kept with each point, and its compact encoding.
//!
//! Values are recorded in thousandths of the sent unit (a timer in milliseconds is kept
//! in microseconds) with 2 significant digits, so a quantile is within 1% of the true
//! value. Two digits, not three, keep a timer's histogram near 20 KiB instead of 160 KiB,
//! which bounds a listener at `max_series` timers (docs/adr/0018); an aggregator's
//! histograms count in 32 bits, which halves that again (ADR 0047). Negative values are
//! recorded as 0 (min, max, sum and last stay exact).
//!
//! Encoding: a version byte, then for each non-empty bucket the varint of the gap from
//! the previous bucket's value and the varint of its count. The hdrhistogram crate's own
//! V2 format would pull in flate2 and nom for little gain.

use hdrhistogram::{Counter, Histogram};

/// Recorded units per sent unit.
pub const SCALE: f64 = 1000.0;
const SIGNIFICANT_DIGITS: u8 = 2;
const FORMAT_VERSION: u8 = 1;

/// A fresh auto-resizing histogram, for merging points (any number of samples).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("2 significant digits is within the crate's range (0 to 5)")
}

/// A fresh auto-resizing histogram for one series over one interval. Its counts are 32-bit:
/// half the memory of the 64-bit ones, and a bucket would need over 4 billion samples of
/// one series in one interval to saturate (the crate saturates rather than wraps).
pub fn new_interval_histogram() -> Histogram<u32> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("2 significant digits is within the crate's range (0 to 5)")
}

/// The recorded value for a sample.
pub fn scaled(value: f64) -> u64 {
    let scaled = (value * SCALE).round();
    if scaled <= 0.0 {
        0
    } else if scaled >= u64::MAX as f64 {
        // Past 1.8e16 sent units: clamp rather than wrap.
        u64::MAX / 2
    } else {
        scaled as u64
    }
}

/// The quantile `q` (0..=1) in sent units; None for an empty histogram.
pub fn quantile<C: Counter>(histogram: &Histogram<C>, q: f64) -> Option<f64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q) as f64 / SCALE)
}

pub fn encode<C: Counter>(histogram: &Histogram<C>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(FORMAT_VERSION);
    let mut previous = 0u64;
    for bucket in histogram.iter_recorded() {
        let value = histogram.highest_equivalent(bucket.value_iterated_to());
        put_varint(&mut out, value - previous);
        put_varint(&mut out, bucket.count_at_value().as_u64());
        previous = value;
    }
    out
}

/// Adds an encoded histogram to `into`; an error for bytes this module did not write.
pub fn merge_encoded(into: &mut Histogram<u64>, encoded: &[u8]) -> Result<(), HistogramDecodeError> {
    let (&version, mut rest) = encoded.split_first().ok_or(HistogramDecodeError)?;
    if version != FORMAT_VERSION {
        return Err(HistogramDecodeError);
    }
    let mut value = 0u64;
    while !rest.is_empty() {
        let gap = take_varint(&mut rest)?;
        let count = take_varint(&mut rest)?;
        value = value.checked_add(gap).ok_or(HistogramDecodeError)?;
        into.record_n(value, count).map_err(|_| HistogramDecodeError)?;
    }
    Ok(())
}

/// Bytes that are not an encoded histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramDecodeError;

impl std::fmt::Display for HistogramDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an encoded histogram")
    }
}

impl std::error::Error for HistogramDecodeError {}

/// LEB128, as the histogram encoding and the aggregator's series keys write it.
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn take_varint(bytes: &mut &[u8]) -> Result<u64, HistogramDecodeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or(HistogramDecodeError)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HistogramDecodeError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_histograms_merge_to_the_quantiles_of_all_samples() {
        let mut first = new_histogram();
        let mut second = new_histogram();
        for value in 1..=500u64 {
            first.record(scaled(value as f64)).unwrap();
        }
        for value in 501..=1000u64 {
            second.record(scaled(value as f64)).unwrap();
        }
        let mut merged = new_histogram();
        merge_encoded(&mut merged, &encode(&first)).unwrap();
        merge_encoded(&mut merged, &encode(&second)).unwrap();
        assert_eq!(merged.len(), 1000);
        for (q, expected) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = quantile(&merged, q).unwrap();
            assert!((got - expected).abs() <= expected * 0.01, "q{q}: {got} vs {expected}");
        }
    }

    /// An aggregator's 32-bit histogram encodes to exactly the bytes a 64-bit one with the
    /// same samples does, so points merge the same; a count past 32 bits saturates.
    #[test]
    fn interval_histograms_encode_as_the_merging_ones_do() {
        let mut interval = new_interval_histogram();
        let mut merging = new_histogram();
        for (value, copies) in [(0.5, 3u32), (12.0, 1), (12.1, 7), (499_999.999, 2), (0.0, 1)] {
            interval.record_n(scaled(value), copies).unwrap();
            merging.record_n(scaled(value), u64::from(copies)).unwrap();
        }
        assert_eq!(encode(&interval), encode(&merging));
        assert_eq!(quantile(&interval, 0.5), quantile(&merging, 0.5));
        interval.record_n(scaled(1.0), u32::MAX).unwrap();
        interval.record_n(scaled(1.0), u32::MAX).unwrap();
        assert_eq!(interval.count_at(scaled(1.0)), u32::MAX);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut into = new_histogram();
        assert!(merge_encoded(&mut into, &[]).is_err());
        assert!(merge_encoded(&mut into, &[9, 1, 1]).is_err(), "unknown version");
        assert!(merge_encoded(&mut into, &[1, 0x80]).is_err(), "truncated varint");
        assert!(
            merge_encoded(&mut into, &[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1])
                .is_err()
        );
    }

    #[test]
    fn negative_values_record_as_zero() {
        assert_eq!(scaled(-5.0), 0);
        assert_eq!(scaled(1.5), 1500);
    }
}
