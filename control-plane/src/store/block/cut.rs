//! Cutting a message into words and separators sixteen bytes at a time.
//!
//! A byte-at-a-time loop pays a branch per byte and a mispredicted one at nearly every
//! word end. Here each sixteen bytes are classified at once with SSE2 compares (on other
//! targets, eight at once with word arithmetic, where no carries cross bytes because every
//! byte is below 0x80 when compared), giving one bit per byte for "token byte" and one for
//! "digit"; word and separator ends are then found with `trailing_zeros`. The classes are
//! exactly [`super::filter::is_token_byte`]'s: ASCII letters and digits and every non-ASCII
//! byte.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bit masks over a message: bit `i` of word `i / 64` describes byte `i`. Past the end
/// every bit is clear (no token), with one spare word so a search always stops.
#[derive(Default)]
pub(super) struct ByteClasses {
    tokens: Vec<u64>,
    digits: Vec<u64>,
    len: usize,
}

impl ByteClasses {
    pub(super) fn classify(&mut self, message: &[u8]) {
        self.len = message.len();
        self.tokens.clear();
        self.digits.clear();
        // Each 64 bytes make one word of each mask, built in registers and pushed once
        // (a read-modify-write of the vectors per eight bytes cost more than classifying).
        let (blocks, tail) = message.as_chunks::<64>();
        for block in blocks {
            let (tokens, digits) = classify64(block);
            self.tokens.push(tokens);
            self.digits.push(digits);
        }
        // The tail (possibly empty) zero-padded: zero bytes are separators, so padding
        // adds no token bits. Then the spare word, so a search always stops.
        let mut padded = [0u8; 64];
        padded[..tail.len()].copy_from_slice(tail);
        let (tokens, digits) = classify64(&padded);
        self.tokens.extend([tokens, 0]);
        self.digits.extend([digits, 0]);
    }

    /// The first token byte at or after `from`, or the message length.
    pub(super) fn next_token(&self, from: usize) -> usize {
        next_set(&self.tokens, from, false).min(self.len)
    }

    /// The first byte at or after `from` that is not a token byte (the message length at most).
    pub(super) fn word_end(&self, from: usize) -> usize {
        next_set(&self.tokens, from, true).min(self.len)
    }

    /// Whether every byte of `start..end` is an ASCII digit.
    pub(super) fn all_digits(&self, start: usize, end: usize) -> bool {
        next_set(&self.digits, start, true) >= end
    }
}

/// The first position at or after `from` whose bit is set (or clear, with `inverted`).
fn next_set(bits: &[u64], from: usize, inverted: bool) -> usize {
    let flip = if inverted { u64::MAX } else { 0 };
    let mut word = from / 64;
    let Some(&first) = bits.get(word) else {
        return from;
    };
    let mut mask = (first ^ flip) & (u64::MAX << (from % 64));
    loop {
        if mask != 0 {
            return word * 64 + mask.trailing_zeros() as usize;
        }
        word += 1;
        match bits.get(word) {
            Some(&next) => mask = next ^ flip,
            None => return word * 64,
        }
    }
}

/// Token and digit bits of 64 bytes (byte 0 in bit 0), sixteen bytes per SSE2 compare.
///
/// SSE2 is part of every x86-64 CPU, so this needs no run-time detection. Per 64 bytes it
/// takes about a quarter of the word-arithmetic version's instructions (callgrind, ADR 0046).
/// The compares are signed: a byte of 0x80 or more is negative, so it is neither a digit
/// nor a letter, and its sign bit alone makes it a token byte.
#[cfg(target_arch = "x86_64")]
fn classify64(block: &[u8; 64]) -> (u64, u64) {
    // SAFETY: SSE2 is part of the x86-64 baseline, so every CPU this runs on has it.
    unsafe { classify64_sse2(block) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify64_sse2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::{
        _mm_and_si128, _mm_cmpgt_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let (sixteens, _) = block.as_chunks::<16>();
    let (mut tokens, mut digits) = (0u64, 0u64);
    for (lane, sixteen) in sixteens.iter().enumerate() {
        // SAFETY: `sixteen` is 16 readable bytes, and the unaligned load needs no alignment.
        let bytes = unsafe { _mm_loadu_si128(sixteen.as_ptr().cast()) };
        let between = |value, low: u8, high: u8| {
            _mm_and_si128(
                _mm_cmpgt_epi8(value, _mm_set1_epi8(low as i8 - 1)),
                _mm_cmplt_epi8(value, _mm_set1_epi8(high as i8 + 1)),
            )
        };
        let digit = between(bytes, b'0', b'9');
        // Setting 0x20 folds upper-case letters onto lower-case ones.
        let letter = between(_mm_or_si128(bytes, _mm_set1_epi8(0x20)), b'a', b'z');
        let token = _mm_or_si128(_mm_or_si128(digit, letter), bytes);
        tokens |= u64::from(_mm_movemask_epi8(token) as u16) << (16 * lane);
        digits |= u64::from(_mm_movemask_epi8(digit) as u16) << (16 * lane);
    }
    (tokens, digits)
}

/// Token and digit bits of 64 bytes (byte 0 in bit 0), eight bytes per word.
#[cfg(not(target_arch = "x86_64"))]
fn classify64(block: &[u8; 64]) -> (u64, u64) {
    classify64_by_words(block)
}

/// The portable classification: eight bytes at a time with word arithmetic.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify64_by_words(block: &[u8; 64]) -> (u64, u64) {
    let (eights, _) = block.as_chunks::<8>();
    let (mut tokens, mut digits) = (0u64, 0u64);
    for (lane, eight) in eights.iter().enumerate() {
        let (lane_tokens, lane_digits) = classify8(u64::from_le_bytes(*eight));
        tokens |= u64::from(lane_tokens) << (8 * lane);
        digits |= u64::from(lane_digits) << (8 * lane);
    }
    (tokens, digits)
}

/// Bits 0..8: which of the eight bytes (little-endian) are token bytes, and which digits.
fn classify8(eight: u64) -> (u8, u8) {
    let non_ascii = eight & HIGH;
    let low = eight & !HIGH;
    // The high bit of each byte of `at_least(v, floor)` says byte >= floor (bytes < 0x80).
    let at_least = |value: u64, floor: u8| (value + ONES * u64::from(0x80 - floor)) & HIGH;
    let digits = at_least(low, b'0') & !at_least(low, b'9' + 1) & !non_ascii;
    // Setting 0x20 folds upper-case letters onto lower-case ones.
    let folded = low | (ONES * 0x20);
    let letters = at_least(folded, b'a') & !at_least(folded, b'z' + 1);
    (gather(non_ascii | digits | letters), gather(digits))
}

/// The high bit of each byte, as an 8-bit mask (byte 0 in bit 0).
fn gather(high_bits: u64) -> u8 {
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definition the masks must agree with.
    fn classes_by_byte(byte: u8) -> (bool, bool) {
        (crate::store::block::filter::is_token_byte(byte), byte.is_ascii_digit())
    }

    #[test]
    fn every_byte_is_classified_as_the_filter_does() {
        for byte in 0..=255u8 {
            for position in 0..8 {
                let mut bytes = [b' '; 8];
                bytes[position] = byte;
                let (tokens, digits) = classify8(u64::from_le_bytes(bytes));
                let (token, digit) = classes_by_byte(byte);
                assert_eq!(tokens == 1 << position, token, "byte {byte:#x} at {position}");
                assert_eq!(digits == 1 << position, digit, "byte {byte:#x} at {position}");
            }
        }
    }

    /// Both 64-byte classifications (SSE2 where built, and the word arithmetic) agree with
    /// the byte-at-a-time definition for every byte value at every position, among
    /// neighbours of every class.
    #[test]
    fn every_byte_at_every_position_of_64_is_classified_as_the_filter_does() {
        for background in [b' ', b'a', b'7', 0xc3] {
            for byte in 0..=255u8 {
                for position in 0..64 {
                    let mut block = [background; 64];
                    block[position] = byte;
                    let expected =
                        block.iter().enumerate().fold((0u64, 0u64), |(tokens, digits), (at, &b)| {
                            let (token, digit) = classes_by_byte(b);
                            (tokens | u64::from(token) << at, digits | u64::from(digit) << at)
                        });
                    assert_eq!(
                        classify64(&block),
                        expected,
                        "byte {byte:#x} at {position} among {background:#x}"
                    );
                    assert_eq!(classify64_by_words(&block), expected, "byte {byte:#x} at {position}");
                }
            }
        }
    }

    #[test]
    fn mixed_bytes_in_one_word_do_not_disturb_each_other() {
        let bytes = *b"a9\xff Z0\x00~";
        let (tokens, digits) = classify8(u64::from_le_bytes(bytes));
        assert_eq!(tokens, 0b0011_0111);
        assert_eq!(digits, 0b0010_0010);
    }

    #[test]
    fn searches_stop_at_the_message_end_across_words() {
        let mut message = vec![b' '; 130];
        message[70..75].copy_from_slice(b"12a45");
        message.extend_from_slice(b"tail");
        let mut classes = ByteClasses::default();
        classes.classify(&message);
        assert_eq!(classes.next_token(0), 70);
        assert_eq!(classes.word_end(70), 75);
        assert!(classes.all_digits(70, 72));
        assert!(!classes.all_digits(70, 73));
        assert_eq!(classes.next_token(75), 130);
        assert_eq!(classes.word_end(130), 134);
        assert_eq!(classes.next_token(134), 134);
        let full = vec![b'x'; 128];
        classes.classify(&full);
        assert_eq!(classes.word_end(0), 128);
        classes.classify(b"");
        assert_eq!(classes.next_token(0), 0);
    }

    /// Every message length from 0 to 200 (so every tail length and the 64-byte blocks'
    /// edges), with words and separators of varying lengths: the masks' searches agree
    /// with a byte-at-a-time scan at every position.
    #[test]
    fn searches_agree_with_a_byte_scan_at_every_length() {
        let pattern = b"ab 1 cd22  \xffe 333 x,, 4444y \t55555 ";
        let mut classes = ByteClasses::default();
        for len in 0..=200 {
            let message: Vec<u8> = pattern.iter().copied().cycle().skip(len % 7).take(len).collect();
            classes.classify(&message);
            for from in 0..=len {
                let token = |byte: &u8| classes_by_byte(*byte).0;
                let next = message[from..].iter().position(token).map_or(len, |at| from + at);
                let end = message[from..].iter().position(|byte| !token(byte)).map_or(len, |at| from + at);
                assert_eq!(classes.next_token(from), next, "len {len} from {from}");
                assert_eq!(classes.word_end(from), end, "len {len} from {from}");
                let digits_end = message[from..]
                    .iter()
                    .position(|byte| !byte.is_ascii_digit())
                    .map_or(len, |at| from + at);
                for to in from..=len {
                    assert_eq!(classes.all_digits(from, to), to <= digits_end, "len {len} {from}..{to}");
                }
            }
        }
    }
}
