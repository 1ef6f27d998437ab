//! The message column: each message cut into words and the separators between them, each
//! piece written as a code into a per-block dictionary ranked by frequency, or as a
//! literal when it occurs once.
//!
//! Syslog text is mostly the same few thousand words in varying order. Given the text,
//! zstd has to find each word again as a match (an offset and a length, two or three bytes
//! per word); given one-byte codes, its entropy coder spends about the bits the word's
//! frequency calls for, and it has fewer bytes to compress. The
//! cutting is the one the token filter uses ([`filter::tokens`]), so each word is hashed
//! once per block for the filter instead of once per occurrence.
//!
//! Format version 6 (ADR 0057):
//!
//! ```text
//! count × codes in the message
//! every message's codes, in message order   (0 = literal, 1 = address, k = piece k - 2)
//! pieces: n, n × len, then their bytes (most frequent first)
//! literals: one len per code 0, in message order, then their bytes
//! addresses: per code 1, in message order, its four bytes
//! ```
//!
//! A message is its pieces in order, except that one space between two words is not
//! written: a reader puts a space between two pieces that are both words. A piece is a
//! word when its first byte is a token byte, since words and separators are the maximal
//! runs of token and other bytes; no written piece is empty. Nearly every separator of a
//! syslog message is one space between words, so a message is about half as many codes
//! as pieces, and the codes of a template repeat as one run that zstd finds as a match.
//!
//! An IPv4 address in dotted decimal (`ipv4_at`: four whole-word octets, none with a
//! leading zero) is one code and four bytes, and counts as a word for the implied space.
//! As pieces it was seven codes, three or four of them octets whose ranks the text makes
//! random; where addresses vary, that was over a fifth of a block (ADR 0057). Its octets
//! go into the token filter, and a search for a word that is an octet looks inside the
//! row's addresses.
//!
//! Formats 3 (ADR 0048) to 5 (ADR 0049 and 0054 changed other columns only) had no
//! addresses and wrote piece k as code k + 1; the reader shifts their codes to version 6's.
//!
//! Format version 2 wrote every separator, empty ones included, as a run of its own:
//!
//! ```text
//! count × words in the message
//! (words + count) × separator code | words × word code      (code 0 = literal, k = piece k - 1)
//! pieces and literals as above
//! ```
//!
//! Numbers longer than five digits and words longer than 32 bytes (ids, hashes,
//! timestamps) are always literals: they rarely repeat, and they are not in the token
//! filter either.
//!
//! Compaction hands the encoder a coded block's messages as their codes
//! ([`MessageCoder::push_coded`]): each old code is looked up once per new block and then
//! only counted, and the block written is the one the rendered text would give (ADR 0052).
//!
//! The encoder looks up every piece of every message, so the lookup is most of its cost
//! (ADR 0039). Pieces of up to [`SHORT_PIECE`] bytes (nearly all of them) are keyed by
//! their bytes packed into two 64-bit words held in the table entry itself: a lookup
//! hashes two words and compares two words, with no pointer into a byte arena. A small
//! direct-mapped cache of the last piece per hash slot sits in front of the table, so the
//! few hundred words that make up most of the text are found in L1 or L2 without a probe.
//! Longer pieces keep their 64-bit hash in the entry and compare bytes only when it matches.

use std::ops::Range;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use xxhash_rust::xxh3::xxh3_64;

use super::cut::ByteClasses;
use super::filter::{self, FilterBuilder};
use super::varint::{Reader, put_u64};
use super::{BlockError, MAX_BODY_BYTES};

/// Piece index of a word that was never looked up (always a literal). Odd, and
/// [`ADDRESS`] even: `write_codes` tells them apart by that bit.
const LITERAL: u32 = u32::MAX;
/// Piece index of an IPv4 address (format 6): its four bytes are in `addresses`.
const ADDRESS: u32 = u32::MAX - 1;

/// Codes as a reader holds them, whatever the format: 0 is the message's next literal, 1
/// its next address, k ≥ 2 ranked piece k - 2. Format 6 writes them so; formats 3 to 5
/// wrote piece k as k + 1 and had no addresses, and are read into these codes.
const LITERAL_CODE: u32 = 0;
const ADDRESS_CODE: u32 = 1;
const FIRST_PIECE_CODE: u32 = 2;

/// The first block format whose messages keep IPv4 addresses as four bytes (ADR 0057).
pub(super) const ADDRESSES_FROM_FORMAT: u8 = 6;
/// Pieces up to this many bytes are keyed by value (the 16th byte of the key holds the length).
const SHORT_PIECE: usize = 15;

/// Slots of the direct-mapped cache in front of the short-piece table (96 KiB, so mostly in
/// L2: with 1,024 slots, one lookup in seven missed the cache by a conflict and paid for a
/// table probe, dearer than an L2 hit; ADR 0041).
const RECENT_SLOTS: usize = 4096;

/// A piece of at most [`SHORT_PIECE`] bytes: its bytes and length are its key.
#[derive(Clone, Copy)]
struct ShortPiece {
    key: [u64; 2],
    index: u32,
    /// In a cache slot: occurrences not yet added to the piece's count (unused in the
    /// table). A hit counts here, in the slot it has just read, rather than in `counts`,
    /// a second random access per piece (ADR 0048).
    pending: u32,
}

/// A key no piece has (its length byte is past [`SHORT_PIECE`]): marks an empty cache slot.
const NO_PIECE: ShortPiece = ShortPiece { key: [u64::MAX; 2], index: u32::MAX, pending: 0 };

/// A longer piece: its bytes live in the arena, its hash in the entry.
#[derive(Clone, Copy)]
struct LongPiece {
    hash: u64,
    index: u32,
}

/// Cuts messages into pieces and writes the message section.
#[derive(Default)]
pub(super) struct MessageCoder {
    /// Token and digit bits of the message being cut.
    classes: ByteClasses,
    short: HashTable<ShortPiece>,
    /// The last short piece seen per slot (by the hash's top bits): the few hundred words
    /// that make up most of the text are found here without probing the table.
    recent: Vec<ShortPiece>,
    long: HashTable<LongPiece>,
    /// Per piece: its occurrences so far.
    counts: Vec<u32>,
    /// Every distinct piece, back to back, and where each one lies (by piece index, which
    /// is the order of first occurrence).
    bytes: Vec<u8>,
    ranges: Vec<Range<u32>>,
    /// Per piece: the position of its first occurrence among all pieces of the block.
    first_seen: Vec<u64>,
    /// Per message: how many codes it is written as (varints).
    code_counts: Vec<u8>,
    /// Every written piece of every message, in order: its piece index, or `LITERAL`.
    sequence: Vec<u32>,
    /// Every IPv4 address of every message, in order (format 6).
    addresses: Vec<[u8; 4]>,
    /// Bit n set: octet n is in the token filter (each inserted once a block).
    octets_in_filter: [u64; 4],
    /// Bytes of the words never looked up, in message order, with their positions.
    literals: Vec<u8>,
    literal_ranges: Vec<Range<u32>>,
    literal_positions: Vec<u64>,
    /// Compaction (`push_coded`): per old block, per code, the piece index it became (or
    /// `LITERAL`, a word written as a literal every time) in the upper 32 bits the block
    /// number `map_generation` had when it was set. An entry of an earlier block counts as
    /// unmapped, so starting a block does not clear the maps: a busy compaction window
    /// holds up to 64 old blocks, each new block drawing rows from most of them.
    code_maps: Vec<Vec<u64>>,
    map_generation: u32,
    /// Scratch for the final ranking: per piece, and one past the last for a literal, its
    /// code as written ([`packed_code`]).
    codes: Vec<u32>,
    ranked: Vec<u64>,
}

impl MessageCoder {
    pub(super) fn clear(&mut self) {
        self.short.clear();
        self.recent.clear();
        self.recent.resize(RECENT_SLOTS, NO_PIECE);
        self.long.clear();
        self.counts.clear();
        self.bytes.clear();
        self.ranges.clear();
        self.first_seen.clear();
        self.code_counts.clear();
        self.sequence.clear();
        self.addresses.clear();
        self.octets_in_filter = [0; 4];
        self.literals.clear();
        self.literal_ranges.clear();
        self.literal_positions.clear();
        self.map_generation = self.map_generation.wrapping_add(1);
        if self.map_generation == 0 {
            // Wrapped (after 2^32 blocks): generation 0 is what new entries hold.
            self.code_maps.iter_mut().for_each(|map| map.fill(0));
            self.map_generation = 1;
        }
    }

    /// Adds one message; its words go into `token_filter` the first time the block sees them.
    pub(super) fn push(&mut self, message: &[u8], token_filter: &mut FilterBuilder) {
        self.classes.classify(message);
        let codes_before = self.sequence.len();
        let mut position = self.classes.next_token(0);
        if position > 0 {
            self.separator(message, 0..position);
        }
        while position < message.len() {
            let start = position;
            position = self.classes.word_end(start);
            // Tested for every word although only words of 6 to 32 bytes need it: skipping
            // it by length was a branch the length mispredicts (callgrind: +4 M
            // mispredicts per 13 blocks, and no time saved; ADR 0041).
            let all_digits = self.classes.all_digits(start, position);
            // A dotted IPv4 address begins with a word of one to three digits and a dot.
            let address = if all_digits && position - start <= 3 && message.get(position) == Some(&b'.') {
                ipv4_at(message, start)
            } else {
                None
            };
            match address {
                Some((octets, end)) => {
                    self.address(octets, token_filter);
                    position = end;
                }
                None => self.word(message, start..position, all_digits, token_filter),
            }
            let start = position;
            position = self.classes.next_token(start);
            // One space with a word after it is what a reader assumes between two words.
            let implied = position == start + 1 && message[start] == b' ' && position < message.len();
            if position > start && !implied {
                self.separator(message, start..position);
            }
        }
        put_u64(&mut self.code_counts, (self.sequence.len() - codes_before) as u64);
    }

    /// Adds one message of an old block from its codes, for compaction: the same pieces,
    /// looked up in the same order, as `push` of its rendered text would (so the block is
    /// the same bytes; a test holds both to that), but a piece the old block coded is
    /// looked up once per block it comes from, then counted through `code_maps`. Neither
    /// the text is built nor are its pieces cut and hashed again, which `perf` put at a
    /// fifth of compaction (ADR 0052). `from` numbers the old block among those the
    /// rows come from.
    pub(super) fn push_coded(&mut self, from: usize, row: CodedRow<'_>, token_filter: &mut FilterBuilder) {
        let codes_before = self.sequence.len();
        if self.code_maps.len() <= from {
            self.code_maps.resize_with(from + 1, Vec::new);
        }
        if self.code_maps[from].len() < row.pieces.len() {
            self.code_maps[from].resize(row.pieces.len(), 0);
        }
        // `clear` starts every block, so no entry can hold generation 0 of a block.
        debug_assert!(self.map_generation != 0, "push_coded before clear");
        let generation = u64::from(self.map_generation) << 32;
        let (mut literals, mut addresses) = (row.literals, row.addresses);
        for &code in row.codes {
            let slot = match code {
                // Every code 0 has its literal, and every code 1 its address, in a block
                // `read` accepted.
                LITERAL_CODE => {
                    if let Some(range) = literals.next() {
                        self.coded_piece(row.body, range, token_filter);
                    }
                    continue;
                }
                ADDRESS_CODE => {
                    if let Some(&octets) = addresses.next() {
                        self.address(octets, token_filter);
                    }
                    continue;
                }
                code => (code - FIRST_PIECE_CODE) as usize,
            };
            // Every code names a piece in a block `read` accepted.
            let (Some(&mapped), Some(range)) = (self.code_maps[from].get(slot), row.pieces.get(slot)) else {
                continue;
            };
            if mapped & !u64::from(u32::MAX) != generation {
                let index = self.coded_piece(row.body, range, token_filter);
                self.code_maps[from][slot] = generation | u64::from(index);
                continue;
            }
            match mapped as u32 {
                LITERAL => self.literal(&row.body[range.start as usize..range.end as usize]),
                index => {
                    if let Some(count) = self.counts.get_mut(index as usize) {
                        *count += 1;
                    }
                    self.sequence.push(index);
                }
            }
        }
        put_u64(&mut self.code_counts, (self.sequence.len() - codes_before) as u64);
    }

    /// One piece of an old block's message, as `push` handles a piece it cut: a word of an
    /// unindexed shape is a literal, anything else is looked up. Returns its index, or
    /// `LITERAL`. This repeats `word` and `separator` rather than calling them: with a
    /// second caller they were no longer inlined into `push` (callgrind, per encoded block:
    /// +8% instructions), and forcing them inline there cost 31% more mispredicted branches.
    fn coded_piece(&mut self, body: &[u8], range: &Range<u32>, token_filter: &mut FilterBuilder) -> u32 {
        let range = range.start as usize..range.end as usize;
        let piece = &body[range.clone()];
        if !piece.first().is_some_and(|&byte| filter::is_token_byte(byte)) {
            let index = self.lookup(body, range, None);
            self.sequence.push(index);
            return index;
        }
        if !filter::is_indexed(piece) {
            self.literal(piece);
            return LITERAL;
        }
        let index = self.lookup(body, range, Some(token_filter));
        self.sequence.push(index);
        index
    }

    /// Position of the next code among all codes of the block, in message order.
    fn next_position(&self) -> u64 {
        self.sequence.len() as u64
    }

    fn separator(&mut self, message: &[u8], range: Range<usize>) {
        let index = self.lookup(message, range, None);
        self.sequence.push(index);
    }

    fn word(
        &mut self,
        message: &[u8],
        range: Range<usize>,
        all_digits: bool,
        token_filter: &mut FilterBuilder,
    ) {
        if !filter::is_indexed_shape(range.len(), all_digits) {
            return self.literal(&message[range]);
        }
        let index = self.lookup(message, range, Some(token_filter));
        self.sequence.push(index);
    }

    /// An IPv4 address: four bytes of their own, whose octets go into the token filter as
    /// the words the text has there.
    fn address(&mut self, octets: [u8; 4], token_filter: &mut FilterBuilder) {
        for octet in octets {
            let (word, bit) = (usize::from(octet >> 6), 1u64 << (octet & 63));
            if self.octets_in_filter[word] & bit == 0 {
                self.octets_in_filter[word] |= bit;
                let mut digits = [0u8; 3];
                token_filter.insert(filter::token_hash(octet_text(octet, &mut digits)));
            }
        }
        self.addresses.push(octets);
        self.sequence.push(ADDRESS);
    }

    /// A word that is never looked up (a long number, a long word): written as a literal.
    fn literal(&mut self, word: &[u8]) {
        let start = self.literals.len() as u32;
        self.literals.extend_from_slice(word);
        self.literal_ranges.push(start..self.literals.len() as u32);
        self.literal_positions.push(self.next_position());
        self.sequence.push(LITERAL);
    }

    /// The index of `message[range]`, counting this occurrence; a new word goes into the filter.
    /// Inlined (into its callers) for the common case, a short piece found in the cache;
    /// the rest is out of line.
    #[inline(always)]
    fn lookup(
        &mut self,
        message: &[u8],
        range: Range<usize>,
        token_filter: Option<&mut FilterBuilder>,
    ) -> u32 {
        if range.len() > SHORT_PIECE {
            return self.lookup_long(message, range, token_filter);
        }
        let key = short_key(message, range.clone());
        let hash = short_hash(key);
        let slot = (hash >> (64 - RECENT_SLOTS.trailing_zeros())) as usize;
        if let Some(recent) = self.recent.get_mut(slot)
            && recent.key == key
        {
            recent.pending += 1;
            return recent.index;
        }
        self.lookup_short(message, range, key, hash, token_filter)
    }

    /// A short piece not in the cache: found in (or added to) the table, then cached.
    #[inline(never)]
    fn lookup_short(
        &mut self,
        message: &[u8],
        range: Range<usize>,
        key: [u64; 2],
        hash: u64,
        token_filter: Option<&mut FilterBuilder>,
    ) -> u32 {
        let next = self.ranges.len() as u32;
        let index = match self.short.entry(hash, |piece| piece.key == key, |piece| short_hash(piece.key)) {
            Entry::Occupied(found) => found.get().index,
            Entry::Vacant(vacant) => {
                vacant.insert(ShortPiece { key, index: next, pending: 0 });
                next
            }
        };
        let slot = (hash >> (64 - RECENT_SLOTS.trailing_zeros())) as usize;
        if let Some(recent) = self.recent.get_mut(slot) {
            if let Some(count) = self.counts.get_mut(recent.index as usize) {
                *count += recent.pending;
            }
            *recent = ShortPiece { key, index, pending: 0 };
        }
        if index != next {
            self.counts[index as usize] += 1;
            return index;
        }
        self.add_piece(message, range, token_filter)
    }

    /// A piece longer than [`SHORT_PIECE`]: its hash in the table, its bytes compared on a match.
    #[inline(never)]
    fn lookup_long(
        &mut self,
        message: &[u8],
        range: Range<usize>,
        token_filter: Option<&mut FilterBuilder>,
    ) -> u32 {
        let next = self.ranges.len() as u32;
        let piece = &message[range.clone()];
        let hash = xxh3_64(piece);
        let (bytes, ranges) = (&self.bytes, &self.ranges);
        let equal = |entry: &LongPiece| {
            let stored = &ranges[entry.index as usize];
            entry.hash == hash && bytes[stored.start as usize..stored.end as usize] == *piece
        };
        match self.long.entry(hash, equal, |entry| entry.hash) {
            Entry::Occupied(found) => {
                let index = found.get().index;
                self.counts[index as usize] += 1;
                index
            }
            Entry::Vacant(vacant) => {
                vacant.insert(LongPiece { hash, index: next });
                self.add_piece(message, range, token_filter)
            }
        }
    }

    /// Records a piece the block has not seen before (already entered in its table).
    fn add_piece(
        &mut self,
        message: &[u8],
        range: Range<usize>,
        token_filter: Option<&mut FilterBuilder>,
    ) -> u32 {
        let next = self.ranges.len() as u32;
        self.counts.push(1);
        let piece = &message[range];
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(piece);
        self.ranges.push(start..self.bytes.len() as u32);
        self.first_seen.push(self.next_position());
        if let Some(token_filter) = token_filter {
            token_filter.insert(filter::token_hash(piece));
        }
        next
    }

    /// Appends the message section (layout in the module documentation) to `body`.
    /// Writes the message column, and where each of its sections ends into `section_ends`.
    pub(super) fn write(&mut self, body: &mut Vec<u8>, section_ends: &mut Vec<usize>) {
        let pieces = self.ranges.len();
        for recent in &mut self.recent {
            if let Some(count) = self.counts.get_mut(recent.index as usize) {
                *count += std::mem::take(&mut recent.pending);
            }
        }
        // Pieces seen twice or more get codes, the most frequent the smallest, ties in
        // order of first occurrence: one sort of (inverted count, index) packed in a u64.
        self.ranked.clear();
        self.ranked.extend(
            self.counts
                .iter()
                .enumerate()
                .filter(|&(_, &count)| count > 1)
                .map(|(index, &count)| (u64::from(u32::MAX - count) << 32) | index as u64),
        );
        self.ranked.sort_unstable();
        // A piece seen once is a literal, code 0, as is a word never looked up (the last
        // entry); an address (the entry before it) is code 1.
        self.codes.clear();
        self.codes.resize(pieces + 2, packed_code(LITERAL_CODE));
        self.codes[pieces] = packed_code(ADDRESS_CODE);
        for (rank, &key) in self.ranked.iter().enumerate() {
            self.codes[key as u32 as usize] = packed_code(rank as u32 + FIRST_PIECE_CODE);
        }

        body.extend_from_slice(&self.code_counts);
        section_ends.push(body.len());
        self.write_codes(body);
        section_ends.push(body.len());
        put_u64(body, self.ranked.len() as u64);
        for &key in &self.ranked {
            put_u64(body, self.ranges[key as u32 as usize].len() as u64);
        }
        section_ends.push(body.len());
        for &key in &self.ranked {
            let range = &self.ranges[key as u32 as usize];
            body.extend_from_slice(&self.bytes[range.start as usize..range.end as usize]);
        }
        // Literals in message order (the order the reader rebuilds messages in): pieces
        // seen once, which lie in order of first occurrence, merged by position with the
        // words never looked up.
        let mut once = (0..pieces).filter(|&index| self.counts[index] == 1).peekable();
        let mut unlooked = self.literal_positions.iter().zip(&self.literal_ranges).peekable();
        let mut literals: Vec<&[u8]> = Vec::new();
        loop {
            let take_piece = match (once.peek(), unlooked.peek()) {
                (Some(&index), Some(&(&position, _))) => self.first_seen[index] < position,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let piece = if take_piece {
                let range = once.next().map(|index| &self.ranges[index]);
                range.map(|range| &self.bytes[range.start as usize..range.end as usize])
            } else {
                unlooked.next().map(|(_, range)| &self.literals[range.start as usize..range.end as usize])
            };
            literals.extend(piece);
        }
        section_ends.push(body.len());
        for piece in &literals {
            put_u64(body, piece.len() as u64);
        }
        section_ends.push(body.len());
        for piece in &literals {
            body.extend_from_slice(piece);
        }
        // Addresses in message order, each as its four bytes side by side, so that zstd
        // finds an address seen before as a match (ADR 0057).
        section_ends.push(body.len());
        for address in &self.addresses {
            body.extend_from_slice(address);
        }
    }
}

impl MessageCoder {
    /// Every message's codes. The run's exact size is known from the counts, so the codes
    /// are written into a slice with a cursor rather than pushed one by one (a push
    /// reloads the vector's length and capacity every time). Each code is stored as four
    /// bytes and the cursor moves by its length, so no branch depends on how many bytes a
    /// code takes: that follows the piece's rank, which the text makes random, and
    /// that branch was a quarter of the writing's time (`perf annotate`, ADR 0052).
    fn write_codes(&self, body: &mut Vec<u8>) {
        if self.ranked.len() >= 1 << 21 {
            // Codes past three bytes (blocks of millions of distinct pieces).
            return self.write_codes_plainly(body);
        }
        let coded: usize = self
            .counts
            .iter()
            .zip(&self.codes)
            .map(|(&count, &code)| count as usize * packed_len(code))
            .sum();
        // Words never looked up (code 0) and addresses (code 1): one byte each.
        let size = coded + self.literal_ranges.len() + self.addresses.len();
        let start = body.len();
        // Three spare bytes: the last code's store reaches past the run.
        body.resize(start + size + 3, 0);
        let out = &mut body[start..];
        let pieces = self.ranges.len();
        let mut at = 0;
        for &index in &self.sequence {
            // `ADDRESS` (even) becomes the entry after the pieces, `LITERAL` (odd) the last
            // one: a branch-free clamp.
            let code = self.codes[(index as usize).min(pieces + (index & 1) as usize)];
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&code.to_le_bytes());
            }
            at += packed_len(code);
        }
        body.truncate(start + size);
        if at != size {
            // Unreachable if the counts are right; if not, write the run the plain way.
            debug_assert!(false, "code run of {at} bytes, {size} expected");
            body.truncate(start);
            self.write_codes_plainly(body);
        }
    }

    /// Every message's codes, one varint at a time, from the ranking alone.
    fn write_codes_plainly(&self, body: &mut Vec<u8>) {
        let mut codes = vec![LITERAL_CODE; self.ranges.len()];
        for (rank, &key) in self.ranked.iter().enumerate() {
            codes[key as u32 as usize] = rank as u32 + FIRST_PIECE_CODE;
        }
        for &index in &self.sequence {
            let code = match index {
                ADDRESS => ADDRESS_CODE,
                index => codes.get(index as usize).copied().unwrap_or(LITERAL_CODE),
            };
            put_u64(body, u64::from(code));
        }
    }
}

/// Appends `source[range]` to `out`. Nearly every piece is short: one of up to sixteen
/// bytes with sixteen bytes of `source` from its start is copied as a fixed sixteen-byte
/// move and cut back to its length, instead of a `memcpy` call whose length varies from
/// piece to piece and mispredicts inside (ADR 0052). Rendering gains from it; the
/// encoder's own copies (literals, new pieces, the section's pieces) did not measurably.
#[inline(always)]
fn append_piece(out: &mut Vec<u8>, source: &[u8], range: Range<usize>) {
    match source.get(range.start..range.start + 16) {
        Some(window) if range.len() <= 16 => {
            let len = out.len();
            out.extend_from_slice(<&[u8; 16]>::try_from(window).unwrap_or(&[0; 16]));
            out.truncate(len + range.len());
        }
        _ => out.extend_from_slice(&source[range]),
    }
}

/// A code below 2^21 as written: its varint's bytes (one to three) in the low three bytes,
/// and its length in the top one. Larger codes are never packed (see `write_codes`).
const fn packed_code(code: u32) -> u32 {
    let len = if code < 1 << 7 {
        1
    } else if code < 1 << 14 {
        2
    } else {
        3
    };
    let mut bytes = (code & 0x7f) | (((code >> 7) & 0x7f) << 8) | (((code >> 14) & 0x7f) << 16);
    if len > 1 {
        bytes |= 0x80;
    }
    if len > 2 {
        bytes |= 0x80 << 8;
    }
    bytes | (len << 24)
}

/// Bytes a packed code takes.
fn packed_len(packed: u32) -> usize {
    (packed >> 24) as usize
}

/// The key of a piece of at most [`SHORT_PIECE`] bytes: its bytes, zero-padded, with the
/// length in the last byte (so pieces that differ only in trailing zero bytes differ).
#[inline(always)]
fn short_key(message: &[u8], range: Range<usize>) -> [u64; 2] {
    let len = range.len();
    debug_assert!(len <= SHORT_PIECE);
    let value = match message.get(range.start..range.start + 16) {
        // One unaligned load, masked to the piece; the piece is mid-message.
        Some(window) => u128::from_le_bytes(window.try_into().unwrap_or_default()),
        // Near the end of a message: the last sixteen bytes, shifted down to the piece. A
        // copy of the piece alone called `memcpy` with a varying length, four times a
        // message, and was a tenth of the encoder's mispredicted branches (ADR 0052).
        None => match message.len().checked_sub(16) {
            Some(last) => {
                let window =
                    message.get(last..).and_then(|window| window.try_into().ok()).unwrap_or_default();
                u128::from_le_bytes(window) >> (8 * (range.start - last).min(15))
            }
            None => {
                let mut chunk = [0u8; 16];
                chunk[..len].copy_from_slice(&message[range]);
                u128::from_le_bytes(chunk)
            }
        },
    };
    let [low_mask, high_mask] = KEY_MASKS[len];
    [value as u64 & low_mask, ((value >> 64) as u64 & high_mask) | ((len as u64) << 56)]
}

/// Per piece length: the masks that keep the piece's bytes of the two key words (a table
/// rather than a variable 128-bit shift, which compiles to a branchy sequence).
static KEY_MASKS: [[u64; 2]; SHORT_PIECE + 1] = {
    let mut masks = [[0u64; 2]; SHORT_PIECE + 1];
    let mut len = 1;
    while len <= SHORT_PIECE {
        masks[len] = if len < 8 { [(1 << (8 * len)) - 1, 0] } else { [u64::MAX, (1 << (8 * (len - 8))) - 1] };
        len += 1;
    }
    masks
};

/// A folded multiply of the two key words (as in wyhash and foldhash): every key bit
/// reaches both the low bits (bucket) and the high bits (tag) the table uses.
#[inline(always)]
fn short_hash(key: [u64; 2]) -> u64 {
    let product = u128::from(key[0] ^ 0x243f_6a88_85a3_08d3) * u128::from(key[1] ^ 0x1319_8a2e_0370_7344);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The text of every message of a block, back to back, and where each lies.
type Messages = (Vec<u8>, Vec<Range<usize>>);

/// The message section of formats 3 to 5, read but not rendered: a message's text is
/// built when asked for ([`CodedMessages::render`]). A search reads a whole block for the
/// few rows its host or time filter leaves, and building every message's text was two
/// thirds of decoding a block (`perf` of `store/decode_block`, ADR 0051).
#[derive(Debug, Default)]
pub(super) struct CodedMessages {
    /// Every message's codes, in message order ([`LITERAL_CODE`], [`ADDRESS_CODE`], or
    /// piece k + [`FIRST_PIECE_CODE`]).
    codes: Vec<u32>,
    /// Per message, and one past the last: where its codes start in `codes`.
    code_starts: Vec<u32>,
    /// Per message: the index in `literals` of its first literal, and in `addresses` of
    /// its first address.
    literal_starts: Vec<u32>,
    address_starts: Vec<u32>,
    /// Where each ranked piece and each literal lies in the block's body.
    pieces: Vec<Range<u32>>,
    literals: Vec<Range<u32>>,
    addresses: Vec<[u8; 4]>,
}

/// One message's codes, with the literals and addresses its code 0s and 1s take in order.
struct RowCodes<'a> {
    codes: &'a [u32],
    literals: std::slice::Iter<'a, Range<u32>>,
    addresses: std::slice::Iter<'a, [u8; 4]>,
}

/// One message of a coded block as compaction reads it ([`MessageCoder::push_coded`]).
pub(super) struct CodedRow<'a> {
    /// The old block's body, which the ranges below point into.
    body: &'a [u8],
    /// Every ranked piece of the old block (code k is piece k - `FIRST_PIECE_CODE`).
    pieces: &'a [Range<u32>],
    codes: &'a [u32],
    /// The literals, and the addresses, from the message's first one on.
    literals: std::slice::Iter<'a, Range<u32>>,
    addresses: std::slice::Iter<'a, [u8; 4]>,
}

impl CodedMessages {
    /// Message `row` as its codes, for [`MessageCoder::push_coded`]; None past the last row.
    pub(super) fn coded_row<'a>(&'a self, body: &'a [u8], row: usize) -> Option<CodedRow<'a>> {
        let RowCodes { codes, literals, addresses } = self.row(row)?;
        Some(CodedRow { body, pieces: &self.pieces, codes, literals, addresses })
    }

    /// Message `row`'s codes, and the literals and addresses from its first ones on;
    /// None past the last row.
    fn row(&self, row: usize) -> Option<RowCodes<'_>> {
        let (&start, &end) = (self.code_starts.get(row)?, self.code_starts.get(row + 1)?);
        let first_literal = *self.literal_starts.get(row)? as usize;
        let first_address = *self.address_starts.get(row)? as usize;
        Some(RowCodes {
            codes: &self.codes[start as usize..end as usize],
            literals: self.literals[first_literal..].iter(),
            addresses: self.addresses[first_address..].iter(),
        })
    }

    /// Appends the text of message `row` to `out`. Every code and literal was checked
    /// when the section was read, so this cannot fail on a block `read` accepted.
    pub(super) fn render(&self, body: &[u8], row: usize, out: &mut Vec<u8>) {
        let Some(RowCodes { codes, mut literals, mut addresses }) = self.row(row) else { return };
        let mut after_word = false;
        for &code in codes {
            let range = match code {
                LITERAL_CODE => literals.next(),
                ADDRESS_CODE => {
                    let Some(&octets) = addresses.next() else { return };
                    if after_word {
                        out.push(b' ');
                    }
                    append_address(out, octets);
                    after_word = true;
                    continue;
                }
                code => self.pieces.get((code - FIRST_PIECE_CODE) as usize),
            };
            let Some(range) = range else { return };
            let (start, end) = (range.start as usize, range.end as usize);
            let piece = &body[start..end];
            let word = piece.first().is_some_and(|&byte| filter::is_token_byte(byte));
            if after_word && word {
                out.push(b' ');
            }
            append_piece(out, body, start..end);
            after_word = word;
        }
    }

    /// The codes of the pieces that are `word`, ASCII case ignored (a word is a piece, a
    /// literal or an octet of an address, never part of one: all are cut where the token
    /// filter cuts).
    pub(super) fn codes_of(&self, body: &[u8], word: &[u8]) -> Vec<u32> {
        (FIRST_PIECE_CODE..)
            .zip(&self.pieces)
            .filter(|(_, range)| body[range.start as usize..range.end as usize].eq_ignore_ascii_case(word))
            .map(|(code, _)| code)
            .collect()
    }

    /// Whether message `row` has a piece among `codes` (from `codes_of(word)`), a literal
    /// that is `word`, or an address with `word` as an octet: the word check of a search,
    /// without building the text.
    pub(super) fn has_word(&self, body: &[u8], row: usize, codes: &[u32], word: &[u8]) -> bool {
        let Some(RowCodes { codes: row_codes, mut literals, mut addresses }) = self.row(row) else {
            return false;
        };
        for &code in row_codes {
            match code {
                LITERAL_CODE => {
                    if literals.next().is_some_and(|range| {
                        body[range.start as usize..range.end as usize].eq_ignore_ascii_case(word)
                    }) {
                        return true;
                    }
                }
                ADDRESS_CODE => {
                    if addresses
                        .next()
                        .is_some_and(|octets| octet_of(word).is_some_and(|octet| octets.contains(&octet)))
                    {
                        return true;
                    }
                }
                code => {
                    if codes.contains(&code) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// Reads the message section of formats 3 to 6, checking every code and length, without
/// building the text.
pub(super) fn read(
    reader: &mut Reader<'_>,
    count: usize,
    format_version: u8,
) -> Result<CodedMessages, BlockError> {
    let with_addresses = format_version >= ADDRESSES_FROM_FORMAT;
    // Formats 3 to 5 wrote piece k as k + 1, one less than the code held.
    let piece_shift = if with_addresses { 0 } else { FIRST_PIECE_CODE - 1 };
    let (code_counts, total) = read_counts(reader, count)?;
    // Each code takes at least one byte: a count past the body is damage.
    if total > reader.remaining() {
        return Err(BlockError::Damaged("more codes than bytes"));
    }
    let mut messages = CodedMessages {
        codes: Vec::with_capacity(total),
        code_starts: Vec::with_capacity(count + 1),
        literal_starts: Vec::with_capacity(count),
        address_starts: Vec::with_capacity(count),
        ..CodedMessages::default()
    };
    let (mut literal_count, mut address_count) = (0u32, 0u32);
    // The largest code, checked against the pieces once they are read.
    let mut largest = 0u64;
    for code_count in code_counts {
        messages.code_starts.push(messages.codes.len() as u32);
        messages.literal_starts.push(literal_count);
        messages.address_starts.push(address_count);
        for _ in 0..code_count {
            let written = reader.u64()?;
            // Branch-free: a literal (0) is not shifted.
            let code = written.saturating_add(u64::from(piece_shift) * u64::from(written != 0));
            largest = largest.max(code);
            literal_count += u32::from(code == u64::from(LITERAL_CODE));
            address_count += u32::from(code == u64::from(ADDRESS_CODE));
            // Cut to 32 bits only here: a code past them is refused below.
            messages.codes.push(code as u32);
        }
    }
    messages.code_starts.push(messages.codes.len() as u32);
    let piece_count = reader.len()?;
    messages.pieces = read_ranges(reader, piece_count)?;
    messages.literals = read_ranges(reader, literal_count as usize)?;
    if with_addresses {
        let bytes = reader.take(address_count as usize * 4)?;
        messages.addresses =
            bytes.chunks_exact(4).map(|octets| [octets[0], octets[1], octets[2], octets[3]]).collect();
    }
    // Every code must name a piece; and the text the codes make must stay within what
    // a block can hold, or a damaged block that names a long piece many times would
    // render far more. Bounded first by the longest piece, which settles it for any
    // real block without a look-up per code.
    let longest = messages
        .pieces
        .iter()
        .chain(&messages.literals)
        .map(|range| range.len())
        .max()
        .unwrap_or(0)
        .max(LONGEST_ADDRESS);
    if largest >= piece_count as u64 + u64::from(FIRST_PIECE_CODE) {
        return Err(BlockError::Damaged("piece code out of range"));
    }
    if messages.codes.len().saturating_mul(longest + 1) > MAX_BODY_BYTES {
        let text_bytes: usize = messages
            .codes
            .iter()
            .map(|&code| match code {
                LITERAL_CODE => 0,
                ADDRESS_CODE => LONGEST_ADDRESS + 1,
                code => messages.pieces[(code - FIRST_PIECE_CODE) as usize].len() + 1,
            })
            .sum();
        let literal_bytes: usize = messages.literals.iter().map(|range| range.len() + 1).sum();
        if text_bytes + literal_bytes > MAX_BODY_BYTES {
            return Err(BlockError::Damaged("messages larger than any block"));
        }
    }
    Ok(messages)
}

/// The most bytes an address renders to (`255.255.255.255`).
const LONGEST_ADDRESS: usize = 15;

/// The IPv4 address written at `text[start..]` in dotted decimal, and where it ends: four
/// octets of one to three digits, no leading zero, at most 255, each a whole word (no
/// letter or digit right after it). Only such text renders back byte for byte from its
/// four bytes; any other (`010.1.2.3`, `1.2.3.4a`, `1.2.3`) stays pieces.
fn ipv4_at(text: &[u8], start: usize) -> Option<([u8; 4], usize)> {
    let mut octets = [0u8; 4];
    let mut at = start;
    for (index, octet) in octets.iter_mut().enumerate() {
        if index > 0 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let digits = at;
        let mut value = 0u32;
        while at - digits < 3
            && let Some(&byte) = text.get(at)
            && byte.is_ascii_digit()
        {
            value = value * 10 + u32::from(byte - b'0');
            at += 1;
        }
        let len = at - digits;
        let whole_word = !text.get(at).is_some_and(|&byte| filter::is_token_byte(byte));
        if len == 0 || value > 255 || (len > 1 && text[digits] == b'0') || !whole_word {
            return None;
        }
        *octet = value as u8;
    }
    Some((octets, at))
}

/// `octet` in decimal, in `buffer`.
fn octet_text(octet: u8, buffer: &mut [u8; 3]) -> &[u8] {
    let digits = [octet / 100, octet / 10 % 10, octet % 10];
    let skip = if octet >= 100 {
        0
    } else if octet >= 10 {
        1
    } else {
        2
    };
    for (slot, digit) in buffer.iter_mut().zip(digits) {
        *slot = b'0' + digit;
    }
    &buffer[skip..]
}

/// The octet a search word names, if it is one as an address renders it (`0` to `255`,
/// no leading zero).
fn octet_of(word: &[u8]) -> Option<u8> {
    match word {
        [b'0'] => Some(0),
        [b'1'..=b'9', rest @ ..] if rest.len() <= 2 && rest.iter().all(u8::is_ascii_digit) => {
            let value = word.iter().fold(0u32, |value, &byte| value * 10 + u32::from(byte - b'0'));
            u8::try_from(value).ok()
        }
        _ => None,
    }
}

/// Appends `octets` as dotted decimal.
fn append_address(out: &mut Vec<u8>, octets: [u8; 4]) {
    let mut buffer = [0u8; 3];
    for (index, &octet) in octets.iter().enumerate() {
        if index > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(octet_text(octet, &mut buffer));
    }
}

/// `count` lengths, then as many strings of those lengths: where each string lies.
fn read_ranges(reader: &mut Reader<'_>, count: usize) -> Result<Vec<Range<u32>>, BlockError> {
    let lengths = reader.lengths(count)?;
    let mut ranges = Vec::with_capacity(lengths.len());
    for len in lengths {
        let start = reader.position();
        reader.take(len)?;
        // The body is at most `MAX_BODY_BYTES`, so its positions fit.
        ranges.push(start as u32..(start + len) as u32);
    }
    Ok(ranges)
}

/// Reads the message section of format 2 (separators and words in runs of their own).
pub(super) fn read_v2(reader: &mut Reader<'_>, count: usize) -> Result<Messages, BlockError> {
    let (word_counts, total_words) = read_counts(reader, count)?;
    let separators = total_words.checked_add(count).ok_or(BlockError::Damaged("word count"))?;
    // The separator run, then the word run, back to back.
    let total = separators.checked_add(total_words).ok_or(BlockError::Damaged("word count"))?;
    let codes = read_codes(reader, total)?;
    let mut pieces = PieceReader::read(reader, &codes)?;
    let mut text = Vec::new();
    let mut ranges = Vec::with_capacity(count);
    let (separator_codes, word_codes) = codes.split_at(separators);
    let (mut separators, mut words) = (separator_codes.iter(), word_codes.iter());
    let next = |codes: &mut std::slice::Iter<'_, usize>| {
        codes.next().copied().ok_or(BlockError::Damaged("codes end early"))
    };
    // Literals are in message order, so the pieces are read in that order too.
    for word_count in word_counts {
        let start = text.len();
        text.extend_from_slice(pieces.piece(next(&mut separators)?)?);
        for _ in 0..word_count {
            text.extend_from_slice(pieces.piece(next(&mut words)?)?);
            text.extend_from_slice(pieces.piece(next(&mut separators)?)?);
        }
        if text.len() > MAX_BODY_BYTES {
            return Err(BlockError::Damaged("messages larger than any block"));
        }
        ranges.push(start..text.len());
    }
    Ok((text, ranges))
}

/// Per message: a count of its codes (format 3) or words (format 2); and their sum.
fn read_counts(reader: &mut Reader<'_>, count: usize) -> Result<(Vec<usize>, usize), BlockError> {
    let mut counts = Vec::with_capacity(count);
    let mut total = 0usize;
    for _ in 0..count {
        let value = reader.len()?;
        total = total.checked_add(value).ok_or(BlockError::Damaged("code count"))?;
        counts.push(value);
    }
    Ok((counts, total))
}

fn read_codes(reader: &mut Reader<'_>, count: usize) -> Result<Vec<usize>, BlockError> {
    // Each code takes at least one byte: a count past the body is damage.
    if count > reader.remaining() {
        return Err(BlockError::Damaged("more codes than bytes"));
    }
    let mut codes = Vec::with_capacity(count);
    for _ in 0..count {
        codes.push(reader.len()?);
    }
    Ok(codes)
}

/// `count` lengths, then as many strings of those lengths.
fn read_strings<'a>(reader: &mut Reader<'a>, count: usize) -> Result<Vec<&'a [u8]>, BlockError> {
    reader.lengths(count)?.into_iter().map(|len| reader.take(len)).collect()
}

/// The ranked pieces and the literals of a message section, handed out by code.
struct PieceReader<'a> {
    dictionary: Vec<&'a [u8]>,
    literals: std::vec::IntoIter<&'a [u8]>,
}

impl<'a> PieceReader<'a> {
    /// Reads the pieces, then one literal per code 0 among `codes`.
    fn read(reader: &mut Reader<'a>, codes: &[usize]) -> Result<Self, BlockError> {
        let pieces = reader.len()?;
        let dictionary = read_strings(reader, pieces)?;
        let literal_count = codes.iter().filter(|&&code| code == 0).count();
        let literals = read_strings(reader, literal_count)?;
        Ok(Self { dictionary, literals: literals.into_iter() })
    }

    /// The piece of `code`: the next literal for code 0, else a ranked piece.
    fn piece(&mut self, code: usize) -> Result<&'a [u8], BlockError> {
        match code {
            0 => self.literals.next().ok_or(BlockError::Damaged("missing literal")),
            code => {
                self.dictionary.get(code - 1).copied().ok_or(BlockError::Damaged("piece code out of range"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes written per message: one per word and per separator other than one space
    /// between two words.
    #[test]
    fn one_space_between_words_is_not_written() {
        let mut coder = MessageCoder::default();
        coder.clear();
        let mut filter = FilterBuilder::default();
        for (message, codes) in [
            (&b"the cat sat on the mat"[..], 6),
            (b"the  cat", 3),
            (b" the cat", 3),
            (b"the cat ", 3),
            // An address is one code (format 6).
            (b"src=10.0.0.1 port 22", 5),
            (b"src=10.0.0.1.port 22", 6),
            (b"", 0),
            (b" ", 1),
        ] {
            let before = coder.sequence.len();
            coder.push(message, &mut filter);
            assert_eq!(coder.sequence.len() - before, codes, "{}", String::from_utf8_lossy(message));
        }
    }

    /// A damaged section whose codes name one long piece again and again would render
    /// more text than any block holds: refused when read, not when rendered.
    #[test]
    fn a_section_that_would_render_past_any_block_is_refused() {
        let section = |repeats: usize, piece_len: usize| {
            let mut bytes = Vec::new();
            put_u64(&mut bytes, repeats as u64);
            bytes.extend(std::iter::repeat_n(1u8, repeats));
            put_u64(&mut bytes, 1);
            put_u64(&mut bytes, piece_len as u64);
            bytes.extend(std::iter::repeat_n(b'x', piece_len));
            bytes
        };
        let small = section(1 << 10, 1 << 10);
        let coded = read(&mut Reader::new(&small), 1, 5).unwrap();
        let mut text = Vec::new();
        coded.render(&small, 0, &mut text);
        assert_eq!(
            text.len(),
            (1 << 10) * (1 << 10) + (1 << 10) - 1,
            "pieces with a space between each two words"
        );
        let huge = section(1 << 15, 1 << 15);
        assert!(matches!(
            read(&mut Reader::new(&huge), 1, 5),
            Err(BlockError::Damaged("messages larger than any block"))
        ));
        let mut beyond = section(4, 4);
        beyond[2] = 2;
        assert!(matches!(
            read(&mut Reader::new(&beyond), 1, 5),
            Err(BlockError::Damaged("piece code out of range"))
        ));
    }

    /// A piece's key is its bytes and length wherever it lies: mid-message (one sixteen-byte
    /// load), in the last sixteen bytes (a shifted load), or in a message shorter than
    /// sixteen bytes (a copy).
    #[test]
    fn short_keys_are_the_pieces_bytes_at_every_position() {
        let text: Vec<u8> = (0..40u8).map(|at| b'a' + at % 26).collect();
        for len in 0..=text.len() {
            let message = &text[..len];
            for start in 0..len {
                for end in start + 1..=len.min(start + SHORT_PIECE) {
                    let piece = &message[start..end];
                    let mut bytes = [0u8; 16];
                    bytes[..piece.len()].copy_from_slice(piece);
                    bytes[15] = piece.len() as u8;
                    let expected = [
                        u64::from_le_bytes(bytes[..8].try_into().unwrap()),
                        u64::from_le_bytes(bytes[8..].try_into().unwrap()),
                    ];
                    assert_eq!(short_key(message, start..end), expected, "len {len}, {start}..{end}");
                }
            }
        }
    }

    /// Only text that renders back byte for byte is taken as an address.
    #[test]
    fn dotted_addresses_are_taken_only_where_they_render_back() {
        for (text, start, expected) in [
            (&b"10.0.0.1"[..], 0, Some(([10, 0, 0, 1], 8))),
            (b"x 255.255.255.255 y", 2, Some(([255, 255, 255, 255], 17))),
            (b"1.2.3.4.5", 0, Some(([1, 2, 3, 4], 7))),
            (b"1.2.3.4:80", 0, Some(([1, 2, 3, 4], 7))),
            (b"1.2.3.4/24", 0, Some(([1, 2, 3, 4], 7))),
            (b"0.0.0.0", 0, Some(([0, 0, 0, 0], 7))),
            (b"1.2.3", 0, None),
            (b"1.2.3.", 0, None),
            (b"01.2.3.4", 0, None),
            (b"1.2.3.04", 0, None),
            (b"256.1.1.1", 0, None),
            (b"1.2.3.256", 0, None),
            (b"1.2.3.1000", 0, None),
            (b"1.2.3.4a", 0, None),
            (b"1.2.3.4\xc3\xa9", 0, None),
            (b"1..2.3.4", 0, None),
            (b"1.2.3.-4", 0, None),
        ] {
            assert_eq!(ipv4_at(text, start), expected, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn octets_as_a_search_names_them() {
        for value in 0..=255u8 {
            let mut buffer = [0u8; 3];
            let text = octet_text(value, &mut buffer).to_vec();
            assert_eq!(text, value.to_string().as_bytes());
            assert_eq!(octet_of(&text), Some(value));
        }
        for word in [&b"00"[..], b"007", b"256", b"1000", b"", b"a", b"1a"] {
            assert_eq!(octet_of(word), None, "{}", String::from_utf8_lossy(word));
        }
    }

    #[test]
    fn packed_codes_are_the_varints_of_their_codes() {
        for value in 0..1 << 21 {
            let mut written = Vec::new();
            put_u64(&mut written, u64::from(value));
            let packed = packed_code(value);
            assert_eq!(packed_len(packed), written.len(), "{value}");
            assert_eq!(&packed.to_le_bytes()[..written.len()], written.as_slice(), "{value}");
        }
    }

    /// The packed run and the one written a varint at a time (blocks of millions of distinct
    /// pieces) are the same bytes, for codes of one and two bytes and literals.
    #[test]
    fn packed_and_plain_code_runs_are_the_same_bytes() {
        let mut coder = MessageCoder::default();
        coder.clear();
        let mut token_filter = FilterBuilder::default();
        for message in 0..3_000u32 {
            let text = format!(
                "app{} said {} x{} <{}> 1234567890123 end",
                message % 300,
                message % 7,
                message,
                message % 150
            );
            coder.push(text.as_bytes(), &mut token_filter);
        }
        let mut packed = Vec::new();
        coder.write(&mut packed, &mut Vec::new());
        assert!(coder.ranked.len() > 300, "two-byte codes are covered");
        let mut run = Vec::new();
        coder.write_codes(&mut run);
        let mut plain = Vec::new();
        coder.write_codes_plainly(&mut plain);
        assert!(!run.is_empty());
        assert_eq!(run, plain);
    }
}
