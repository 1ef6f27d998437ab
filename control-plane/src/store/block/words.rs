//! The message column of format version 2: each message cut into words and the separators
//! between them, each piece written as a code into a per-block dictionary ranked by
//! frequency, or as a literal when it occurs once.
//!
//! Syslog text is mostly the same few thousand words in varying order. Given the text,
//! zstd has to find each word again as a match (an offset and a length, two or three bytes
//! per word); given one-byte codes, its entropy coder spends about the bits the word's
//! frequency calls for, and it has fewer bytes to compress. The
//! cutting is the one the token filter uses ([`filter::tokens`]), so each word is hashed
//! once per block for the filter instead of once per occurrence.
//!
//! ```text
//! count × words in the message
//! (words + count) × separator code | words × word code      (code 0 = literal, k = piece k - 1)
//! pieces: n, n × len, then their bytes (most frequent first)
//! literals: one len per code 0, in message order, then their bytes
//! ```
//!
//! A message is separator, word, separator, ..., word, separator; the first and last
//! separators are often empty. Numbers longer than five digits and words longer than 32
//! bytes (ids, hashes, timestamps) are always literals: they rarely repeat, and they are
//! not in the token filter either.

use std::ops::Range;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::filter::{self, FilterBuilder};
use super::varint::{Reader, put_u64};
use super::{BlockError, MAX_BODY_BYTES};

/// Piece index of an occurrence that was never looked up (always a literal).
const LITERAL: u32 = u32::MAX;

/// Cuts messages into pieces and writes the version-2 message section.
#[derive(Default)]
pub(super) struct MessageCoder {
    table: HashTable<u32>,
    hashes: Vec<u64>,
    /// Every distinct piece, back to back, and where each one lies.
    bytes: Vec<u8>,
    ranges: Vec<Range<u32>>,
    counts: Vec<u32>,
    /// Per message: its word count.
    word_counts: Vec<u8>,
    /// Every piece in message order: its index, or `LITERAL` with its bytes in `literals`.
    occurrences: Vec<u32>,
    /// Bytes of the pieces that are literals without a lookup, in message order.
    literals: Vec<u8>,
    literal_ranges: Vec<Range<u32>>,
    /// Piece indexes of the empty separator and of one space, once seen.
    common: [Option<u32>; 2],
    /// Scratch for the final ranking.
    codes: Vec<u32>,
    ranked: Vec<u32>,
}

impl MessageCoder {
    pub(super) fn clear(&mut self) {
        self.table.clear();
        self.hashes.clear();
        self.bytes.clear();
        self.ranges.clear();
        self.counts.clear();
        self.word_counts.clear();
        self.occurrences.clear();
        self.literals.clear();
        self.literal_ranges.clear();
        self.common = [None; 2];
    }

    /// Adds one message; its words go into `token_filter` the first time the block sees them.
    pub(super) fn push(&mut self, message: &[u8], token_filter: &mut FilterBuilder) {
        let mut position = 0;
        let mut words = 0u64;
        loop {
            let start = position;
            while position < message.len() && !filter::is_token_byte(message[position]) {
                position += 1;
            }
            self.separator(&message[start..position]);
            if position == message.len() {
                break;
            }
            let start = position;
            while position < message.len() && filter::is_token_byte(message[position]) {
                position += 1;
            }
            self.word(&message[start..position], token_filter);
            words += 1;
        }
        put_u64(&mut self.word_counts, words);
    }

    fn separator(&mut self, separator: &[u8]) {
        // Nearly every separator is nothing or a space: those skip the hash.
        let slot = match separator {
            b"" => 0,
            b" " => 1,
            _ => {
                let index = self.lookup(separator, None);
                self.occurrences.push(index);
                return;
            }
        };
        let index = match self.common[slot] {
            Some(index) => {
                self.counts[index as usize] += 1;
                index
            }
            None => {
                let index = self.lookup(separator, None);
                self.common[slot] = Some(index);
                index
            }
        };
        self.occurrences.push(index);
    }

    fn word(&mut self, word: &[u8], token_filter: &mut FilterBuilder) {
        if !filter::is_indexed(word) {
            let start = self.literals.len() as u32;
            self.literals.extend_from_slice(word);
            self.literal_ranges.push(start..self.literals.len() as u32);
            self.occurrences.push(LITERAL);
            return;
        }
        let index = self.lookup(word, Some(token_filter));
        self.occurrences.push(index);
    }

    /// The piece's index, counting this occurrence; a new word goes into the filter.
    fn lookup(&mut self, piece: &[u8], token_filter: Option<&mut FilterBuilder>) -> u32 {
        let hash = xxh3_64(piece);
        let (bytes, ranges) = (&self.bytes, &self.ranges);
        let equal = |&index: &u32| {
            let range = &ranges[index as usize];
            bytes[range.start as usize..range.end as usize] == *piece
        };
        if let Some(&index) = self.table.find(hash, equal) {
            self.counts[index as usize] += 1;
            return index;
        }
        let index = self.ranges.len() as u32;
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(piece);
        self.ranges.push(start..self.bytes.len() as u32);
        self.counts.push(1);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, index, |&index| hashes[index as usize]);
        if let Some(token_filter) = token_filter {
            token_filter.insert(filter::token_hash(piece));
        }
        index
    }

    /// Appends the message section (layout in the module documentation) to `body`.
    pub(super) fn write(&mut self, body: &mut Vec<u8>) {
        // Pieces seen twice or more get codes, the most frequent the smallest.
        self.ranked.clear();
        self.ranked.extend((0..self.counts.len() as u32).filter(|&index| self.counts[index as usize] > 1));
        let counts = &self.counts;
        self.ranked.sort_unstable_by_key(|&index| (std::cmp::Reverse(counts[index as usize]), index));
        self.codes.clear();
        self.codes.resize(self.counts.len(), 0);
        for (rank, &index) in self.ranked.iter().enumerate() {
            self.codes[index as usize] = rank as u32 + 1;
        }

        body.extend_from_slice(&self.word_counts);
        // Separators at even positions of each message's run, words at odd ones; the
        // word counts say where each message's run ends.
        let mut reader = Reader::new(&self.word_counts);
        let mut runs = Vec::new();
        let mut position = 0usize;
        while let Ok(words) = reader.u64() {
            let len = 2 * words as usize + 1;
            runs.push(position..position + len);
            position += len;
        }
        for parity in [0, 1] {
            for run in &runs {
                for occurrence in self.occurrences[run.clone()].iter().skip(parity).step_by(2) {
                    let code = match *occurrence {
                        LITERAL => 0,
                        index => self.codes[index as usize],
                    };
                    put_u64(body, u64::from(code));
                }
            }
        }
        put_u64(body, self.ranked.len() as u64);
        for &index in &self.ranked {
            put_u64(body, self.ranges[index as usize].len() as u64);
        }
        for &index in &self.ranked {
            let range = &self.ranges[index as usize];
            body.extend_from_slice(&self.bytes[range.start as usize..range.end as usize]);
        }
        // Literals in message order (the order of `occurrences`, which is the order the
        // reader rebuilds messages in): looked-up pieces seen once, and words never looked up.
        let mut unlooked = self.literal_ranges.iter();
        let mut literals: Vec<&[u8]> = Vec::new();
        for &occurrence in &self.occurrences {
            let range = match occurrence {
                LITERAL => match unlooked.next() {
                    Some(range) => range,
                    None => continue,
                },
                index if self.codes[index as usize] == 0 => &self.ranges[index as usize],
                _ => continue,
            };
            let source = if occurrence == LITERAL { &self.literals } else { &self.bytes };
            literals.push(&source[range.start as usize..range.end as usize]);
        }
        for piece in &literals {
            put_u64(body, piece.len() as u64);
        }
        for piece in &literals {
            body.extend_from_slice(piece);
        }
    }
}

/// Reads the message section: every message's text, back to back, and where each lies.
pub(super) fn read(
    reader: &mut Reader<'_>,
    count: usize,
) -> Result<(Vec<u8>, Vec<Range<usize>>), BlockError> {
    let mut word_counts = Vec::with_capacity(count);
    let mut total_words = 0usize;
    for _ in 0..count {
        let words = reader.len()?;
        total_words = total_words.checked_add(words).ok_or(BlockError::Damaged("word count"))?;
        word_counts.push(words);
    }
    let separators = total_words.checked_add(count).ok_or(BlockError::Damaged("word count"))?;
    let codes_left = |reader: &Reader<'_>, needed: usize| {
        // Each code takes at least one byte: a count past the body is damage.
        if needed > reader.remaining() { Err(BlockError::Damaged("more codes than bytes")) } else { Ok(()) }
    };
    codes_left(reader, separators)?;
    let mut separator_codes = Vec::with_capacity(separators);
    for _ in 0..separators {
        separator_codes.push(reader.len()?);
    }
    codes_left(reader, total_words)?;
    let mut word_codes = Vec::with_capacity(total_words);
    for _ in 0..total_words {
        word_codes.push(reader.len()?);
    }
    let pieces = reader.len()?;
    let mut lengths = Vec::with_capacity(pieces.min(reader.remaining()));
    for _ in 0..pieces {
        lengths.push(reader.len()?);
    }
    let mut dictionary = Vec::with_capacity(pieces);
    for len in lengths {
        dictionary.push(reader.take(len)?);
    }
    let literal_count = separator_codes.iter().chain(&word_codes).filter(|&&code| code == 0).count();
    let mut literal_lengths = Vec::with_capacity(literal_count.min(reader.remaining()));
    for _ in 0..literal_count {
        literal_lengths.push(reader.len()?);
    }
    let mut literals = Vec::with_capacity(literal_count);
    for len in literal_lengths {
        literals.push(reader.take(len)?);
    }

    let mut literals = literals.into_iter();
    let mut piece = |code: usize| -> Result<&[u8], BlockError> {
        match code {
            0 => literals.next().ok_or(BlockError::Damaged("missing literal")),
            code => dictionary.get(code - 1).copied().ok_or(BlockError::Damaged("piece code out of range")),
        }
    };
    let mut text = Vec::new();
    let mut ranges = Vec::with_capacity(count);
    let (mut separators, mut words) = (separator_codes.into_iter(), word_codes.into_iter());
    let next =
        |codes: &mut std::vec::IntoIter<usize>| codes.next().ok_or(BlockError::Damaged("codes end early"));
    for word_count in word_counts {
        let start = text.len();
        text.extend_from_slice(piece(next(&mut separators)?)?);
        for _ in 0..word_count {
            text.extend_from_slice(piece(next(&mut words)?)?);
            text.extend_from_slice(piece(next(&mut separators)?)?);
        }
        if text.len() > MAX_BODY_BYTES {
            return Err(BlockError::Damaged("messages larger than any block"));
        }
        ranges.push(start..text.len());
    }
    Ok((text, ranges))
}
