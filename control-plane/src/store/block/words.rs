//! The message column: each message cut into words and the separators between them. The
//! words without digits and the separators make the message's template; the words with
//! digits are its variables, numbers stored as numbers. Templates and pieces are coded
//! into per-block dictionaries ranked by frequency; a piece that occurs once is a literal.
//!
//! Syslog text is a few hundred message shapes with values in them ("Accepted publickey
//! for root from 10.1.2.3 port 52011 ssh2"). Written as one code per piece, every message
//! alternates between the shape's codes, which zstd finds again as a match (an offset and
//! a length, two or three bytes each time), and the values, which it cannot find: most of
//! the bytes went on the matches. With the shape as one template code per message and each
//! of its value slots as a column of its own, the shape costs what its frequency calls
//! for, and each column holds like values (ports with ports, addresses' last numbers with
//! their like) for zstd's entropy coder (ADR 0049). The cutting is the one the token
//! filter uses ([`filter::tokens`]), so each word is hashed once per block for the filter
//! instead of once per occurrence.
//!
//! Format version 4 (ADR 0049; "item" and "value" codes below):
//!
//! ```text
//! count × template code: 0 = a template used by this message only, k = shared template k - 1
//! shared templates: n, then per template (most used first): item count, item codes
//! single-use templates, one per template code 0, in message order: item count, item codes
//!     item code: 0 = a value slot, 1 = literal, k + 2 = piece k
//! values: per template (shared in rank order, then single-use ones), per slot, per message
//!     of the template in message order: 2 n + 1 = the number n, 0 = literal, 2 (k + 1) = piece k
//! pieces: n, n × len, then their bytes (most frequent first)
//! literals: one len per item code 1 and value code 0, in the order above, then their bytes
//! ```
//!
//! A message is its template with each slot filled by the next value, except that one
//! space between two words is not written: a reader puts a space between two pieces (or
//! values) that are both words. A piece is a word when its first byte is a token byte,
//! since words and separators are the maximal runs of token and other bytes; a number is a
//! word; no written piece is empty.
//!
//! A word is a value when it has a digit or is longer than 32 bytes. A number is a word of
//! one to 18 digits without a leading zero: it is stored as its value and needs no
//! dictionary entry. Other values are pieces, except words longer than 32 bytes and
//! numbers of more than 18 digits or with a leading zero and more than five digits (ids,
//! hashes, timestamps), which are always literals. Numbers of up to five digits and words
//! of up to 32 bytes are in the token filter; longer ones rarely repeat and are not.
//!
//! Format version 3 (ADR 0048) wrote every piece of every message as a code:
//!
//! ```text
//! count × codes in the message
//! every message's codes, in message order   (code 0 = literal, k = piece k - 1)
//! pieces and literals as above, literals in message order
//! ```
//!
//! Format version 2 also wrote one space between words, every separator, empty ones
//! included, as a run of its own:
//!
//! ```text
//! count × words in the message
//! (words + count) × separator code | words × word code      (code 0 = literal, k = piece k - 1)
//! pieces and literals as above
//! ```
//!
//! The encoder looks up every piece of every message but numbers, so the lookup is most
//! of its cost (ADR 0039). Pieces of up to [`SHORT_PIECE`] bytes (nearly all of them) are
//! keyed by their bytes packed into two 64-bit words held in the table entry itself: a
//! lookup hashes two words and compares two words, with no pointer into a byte arena. A
//! small direct-mapped cache of the last piece per hash slot sits in front of the table, so
//! the few hundred words that make up most of the text are found in L1 or L2 without a
//! probe. Longer pieces keep their 64-bit hash in the entry and compare bytes only when it
//! matches. Occurrences are counted when the block is written, from the templates and the
//! values, not per lookup.

use std::ops::Range;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use xxhash_rust::xxh3::xxh3_64;

use super::cut::ByteClasses;
use super::filter::{self, FilterBuilder};
use super::varint::{Reader, put_u64};
use super::{BlockError, MAX_BODY_BYTES};

/// Pieces up to this many bytes are keyed by value (the 16th byte of the key holds the length).
const SHORT_PIECE: usize = 15;

/// Slots of the direct-mapped cache in front of the short-piece table (64 KiB, so mostly in
/// L2: with 1,024 slots, one lookup in seven missed the cache by a conflict and paid for a
/// table probe, dearer than an L2 hit; ADR 0041).
const RECENT_SLOTS: usize = 4096;

/// A template item that is a value slot (other items are piece indexes).
const SLOT: u32 = u32::MAX;
/// A value is `payload << 2 | tag`.
const VALUE_PIECE: u64 = 0;
const VALUE_LITERAL: u64 = 1;
const VALUE_NUMBER: u64 = 2;
/// Longest number stored as a number: 18 digits are below 2^60, so a value keeps its tag
/// and the written `2 n + 1` cannot overflow.
const MAX_NUMBER_DIGITS: usize = 18;
/// Numbers below this have at most five digits: they are in the token filter
/// ([`filter::is_indexed_shape`]).
const INDEXED_NUMBERS: u64 = 100_000;

/// A piece of at most [`SHORT_PIECE`] bytes: its bytes and length are its key.
#[derive(Clone, Copy)]
struct ShortPiece {
    key: [u64; 2],
    index: u32,
}

/// A key no piece has (its length byte is past [`SHORT_PIECE`]): marks an empty cache slot.
const NO_PIECE: ShortPiece = ShortPiece { key: [u64::MAX; 2], index: u32::MAX };

/// A longer piece: its bytes live in the arena, its hash in the entry.
#[derive(Clone, Copy)]
struct LongPiece {
    hash: u64,
    index: u32,
}

/// A template in the lookup table: the hash of its items and its index.
#[derive(Clone, Copy)]
struct TemplateKey {
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
    /// Every distinct piece, back to back, and where each one lies (by piece index, which
    /// is the order of first occurrence).
    bytes: Vec<u8>,
    ranges: Vec<Range<u32>>,
    /// Numbers below [`INDEXED_NUMBERS`] already in the token filter, one bit each.
    numbers_seen: Vec<u64>,
    /// The items of the message being cut.
    items: Vec<u32>,
    templates: HashTable<TemplateKey>,
    /// Every distinct template's items, back to back, and where each one lies (by template
    /// index, the order of first occurrence).
    template_items: Vec<u32>,
    template_ranges: Vec<Range<u32>>,
    template_uses: Vec<u32>,
    /// Per message: its template index, and where its values start in `values`.
    message_templates: Vec<u32>,
    message_values: Vec<u32>,
    /// Every message's values in message order (`payload << 2 | tag`).
    values: Vec<u64>,
    /// Bytes of the words never looked up (long ones), in message order.
    literals: Vec<u8>,
    literal_ranges: Vec<Range<u32>>,
    /// Scratch for writing.
    counts: Vec<u32>,
    codes: Vec<u32>,
    ranked: Vec<u64>,
    template_codes: Vec<u32>,
    template_order: Vec<u32>,
    members: Vec<u32>,
    member_starts: Vec<u32>,
}

impl MessageCoder {
    pub(super) fn clear(&mut self) {
        self.short.clear();
        self.recent.clear();
        self.recent.resize(RECENT_SLOTS, NO_PIECE);
        self.long.clear();
        self.bytes.clear();
        self.ranges.clear();
        self.numbers_seen.clear();
        self.numbers_seen.resize((INDEXED_NUMBERS as usize).div_ceil(64), 0);
        self.templates.clear();
        self.template_items.clear();
        self.template_ranges.clear();
        self.template_uses.clear();
        self.message_templates.clear();
        self.message_values.clear();
        self.values.clear();
        self.literals.clear();
        self.literal_ranges.clear();
    }

    /// Adds one message; its words go into `token_filter` the first time the block sees them.
    pub(super) fn push(&mut self, message: &[u8], token_filter: &mut FilterBuilder) {
        self.classes.classify(message);
        self.items.clear();
        self.message_values.push(self.values.len() as u32);
        let mut position = self.classes.next_token(0);
        if position > 0 {
            let index = self.lookup(message, 0..position, None);
            self.items.push(index);
        }
        while position < message.len() {
            let start = position;
            position = self.classes.word_end(start);
            self.word(message, start..position, token_filter);
            let start = position;
            position = self.classes.next_token(start);
            // One space with a word after it is what a reader assumes between two words.
            let implied = position == start + 1 && message[start] == b' ' && position < message.len();
            if position > start && !implied {
                let index = self.lookup(message, start..position, None);
                self.items.push(index);
            }
        }
        let template = self.template();
        self.message_templates.push(template);
    }

    fn word(&mut self, message: &[u8], range: Range<usize>, token_filter: &mut FilterBuilder) {
        let (start, end) = (range.start, range.end);
        if !self.classes.has_digit(start, end) {
            if filter::is_indexed_shape(range.len(), false) {
                let index = self.lookup(message, range, Some(token_filter));
                self.items.push(index);
            } else {
                self.items.push(SLOT);
                self.push_literal(message, range);
            }
            return;
        }
        self.items.push(SLOT);
        let all_digits = self.classes.all_digits(start, end);
        if all_digits && range.len() <= MAX_NUMBER_DIGITS && (message[start] != b'0' || range.len() == 1) {
            let number = message[range.clone()]
                .iter()
                .fold(0u64, |value, &digit| value * 10 + u64::from(digit - b'0'));
            if number < INDEXED_NUMBERS {
                let (word, bit) = ((number / 64) as usize, number % 64);
                if let Some(seen) = self.numbers_seen.get_mut(word)
                    && *seen & (1 << bit) == 0
                {
                    *seen |= 1 << bit;
                    token_filter.insert(filter::token_hash(&message[range]));
                }
            }
            self.values.push(number << 2 | VALUE_NUMBER);
        } else if filter::is_indexed_shape(range.len(), all_digits) {
            let index = self.lookup(message, range, Some(token_filter));
            self.values.push(u64::from(index) << 2 | VALUE_PIECE);
        } else {
            self.push_literal(message, range);
        }
    }

    /// A value that is never looked up: its bytes go to the literals as they are.
    fn push_literal(&mut self, message: &[u8], range: Range<usize>) {
        let start = self.literals.len() as u32;
        self.literals.extend_from_slice(&message[range]);
        self.values.push(u64::from(self.literal_ranges.len() as u32) << 2 | VALUE_LITERAL);
        self.literal_ranges.push(start..self.literals.len() as u32);
    }

    /// The index of the current message's template (`items`), counting this use.
    fn template(&mut self) -> u32 {
        let hash = items_hash(&self.items);
        let next = self.template_ranges.len() as u32;
        let (stored, ranges, items) = (&self.template_items, &self.template_ranges, &self.items);
        let equal = |key: &TemplateKey| {
            let range = &ranges[key.index as usize];
            key.hash == hash && stored[range.start as usize..range.end as usize] == **items
        };
        match self.templates.entry(hash, equal, |key| key.hash) {
            Entry::Occupied(found) => {
                let index = found.get().index;
                self.template_uses[index as usize] += 1;
                index
            }
            Entry::Vacant(vacant) => {
                vacant.insert(TemplateKey { hash, index: next });
                let start = self.template_items.len() as u32;
                self.template_items.extend_from_slice(&self.items);
                self.template_ranges.push(start..self.template_items.len() as u32);
                self.template_uses.push(1);
                next
            }
        }
    }

    /// The index of `message[range]`; a new word goes into the filter. Inlined (into
    /// every caller) for the common case, a short piece found in the cache; the rest is out
    /// of line.
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
        if let Some(recent) = self.recent.get(slot)
            && recent.key == key
        {
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
        let (index, new) =
            match self.short.entry(hash, |piece| piece.key == key, |piece| short_hash(piece.key)) {
                Entry::Occupied(found) => (found.get().index, false),
                Entry::Vacant(vacant) => {
                    vacant.insert(ShortPiece { key, index: next });
                    (next, true)
                }
            };
        let slot = (hash >> (64 - RECENT_SLOTS.trailing_zeros())) as usize;
        if let Some(recent) = self.recent.get_mut(slot) {
            *recent = ShortPiece { key, index };
        }
        if new {
            self.add_piece(message, range, token_filter);
        }
        index
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
            Entry::Occupied(found) => found.get().index,
            Entry::Vacant(vacant) => {
                vacant.insert(LongPiece { hash, index: next });
                self.add_piece(message, range, token_filter);
                next
            }
        }
    }

    /// Records a piece the block has not seen before (already entered in its table).
    fn add_piece(&mut self, message: &[u8], range: Range<usize>, token_filter: Option<&mut FilterBuilder>) {
        let piece = &message[range];
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(piece);
        self.ranges.push(start..self.bytes.len() as u32);
        if let Some(token_filter) = token_filter {
            token_filter.insert(filter::token_hash(piece));
        }
    }

    /// Appends the message section (layout in the module documentation) to `body`.
    pub(super) fn write(&mut self, body: &mut Vec<u8>) {
        let templates = self.template_ranges.len();
        // Shared templates get codes, the most used the smallest, ties in order of first
        // use; single-use ones are code 0 and follow in message order, which is their
        // order of first use.
        self.ranked.clear();
        self.ranked.extend(
            self.template_uses
                .iter()
                .enumerate()
                .filter(|&(_, &uses)| uses > 1)
                .map(|(index, &uses)| (u64::from(u32::MAX - uses) << 32) | index as u64),
        );
        self.ranked.sort_unstable();
        let shared = self.ranked.len();
        self.template_codes.clear();
        self.template_codes.resize(templates, 0);
        self.template_order.clear();
        for (rank, &key) in self.ranked.iter().enumerate() {
            self.template_codes[key as u32 as usize] = rank as u32 + 1;
            self.template_order.push(key as u32);
        }
        self.template_order
            .extend((0..templates as u32).filter(|&index| self.template_uses[index as usize] == 1));

        // Pieces used twice or more (once per template, once per value) get codes, the most
        // used the smallest, ties in order of first occurrence.
        let pieces = self.ranges.len();
        self.counts.clear();
        self.counts.resize(pieces, 0);
        for &item in &self.template_items {
            if let Some(count) = self.counts.get_mut(item as usize) {
                *count += 1;
            }
        }
        for &value in &self.values {
            if value & 3 == VALUE_PIECE
                && let Some(count) = self.counts.get_mut((value >> 2) as usize)
            {
                *count += 1;
            }
        }
        self.ranked.clear();
        self.ranked.extend(
            self.counts
                .iter()
                .enumerate()
                .filter(|&(_, &count)| count > 1)
                .map(|(index, &count)| (u64::from(u32::MAX - count) << 32) | index as u64),
        );
        self.ranked.sort_unstable();
        self.codes.clear();
        self.codes.resize(pieces, 0);
        for (rank, &key) in self.ranked.iter().enumerate() {
            self.codes[key as u32 as usize] = rank as u32 + 1;
        }

        self.group_members();
        for &template in &self.message_templates {
            put_u64(body, u64::from(self.template_codes[template as usize]));
        }
        // Literals in the order the reader meets them: template items, then values.
        let mut literals: Vec<&[u8]> = Vec::new();
        put_u64(body, shared as u64);
        for &template in &self.template_order {
            let range = &self.template_ranges[template as usize];
            let items = &self.template_items[range.start as usize..range.end as usize];
            put_u64(body, items.len() as u64);
            for &item in items {
                let code = match item {
                    SLOT => 0,
                    piece => match self.codes[piece as usize] {
                        0 => {
                            literals.push(self.piece(piece));
                            1
                        }
                        code => code + 1,
                    },
                };
                put_u64(body, u64::from(code));
            }
        }
        self.write_values(body, &mut literals);
        put_u64(body, self.ranked.len() as u64);
        for &key in &self.ranked {
            put_u64(body, self.ranges[key as u32 as usize].len() as u64);
        }
        for &key in &self.ranked {
            body.extend_from_slice(self.piece(key as u32));
        }
        for piece in &literals {
            put_u64(body, piece.len() as u64);
        }
        for piece in &literals {
            body.extend_from_slice(piece);
        }
    }

    fn piece(&self, index: u32) -> &[u8] {
        let range = &self.ranges[index as usize];
        &self.bytes[range.start as usize..range.end as usize]
    }

    /// Each template's messages, in message order (`members`, from `member_starts[t]`): a
    /// counting sort by template index.
    fn group_members(&mut self) {
        let templates = self.template_ranges.len();
        self.member_starts.clear();
        self.member_starts.resize(templates + 1, 0);
        for &template in &self.message_templates {
            self.member_starts[template as usize + 1] += 1;
        }
        for index in 1..=templates {
            self.member_starts[index] += self.member_starts[index - 1];
        }
        self.members.clear();
        self.members.resize(self.message_templates.len(), 0);
        let mut next: Vec<u32> = self.member_starts[..templates].to_vec();
        for (message, &template) in self.message_templates.iter().enumerate() {
            let at = &mut next[template as usize];
            self.members[*at as usize] = message as u32;
            *at += 1;
        }
    }

    /// The values, template by template in `template_order`, slot by slot, message by
    /// message; literal ones added to `literals`.
    fn write_values<'a>(&'a self, body: &mut Vec<u8>, literals: &mut Vec<&'a [u8]>) {
        for &template in &self.template_order {
            let range = &self.template_ranges[template as usize];
            let slots = self.template_items[range.start as usize..range.end as usize]
                .iter()
                .filter(|&&item| item == SLOT)
                .count();
            let members = &self.members[self.member_starts[template as usize] as usize
                ..self.member_starts[template as usize + 1] as usize];
            for slot in 0..slots {
                for &message in members {
                    let value = self.values[self.message_values[message as usize] as usize + slot];
                    let payload = value >> 2;
                    let code = match value & 3 {
                        VALUE_NUMBER => 2 * payload + 1,
                        VALUE_PIECE => match self.codes[payload as usize] {
                            0 => {
                                literals.push(self.piece(payload as u32));
                                0
                            }
                            code => 2 * u64::from(code),
                        },
                        _ => {
                            let range = &self.literal_ranges[payload as usize];
                            literals.push(&self.literals[range.start as usize..range.end as usize]);
                            0
                        }
                    };
                    put_u64(body, code);
                }
            }
        }
    }
}

/// A folded multiply per two items (as in [`short_hash`]): templates are a few to a few
/// dozen items, hashed once per message, and each multiply waits for the one before.
#[inline]
fn items_hash(items: &[u32]) -> u64 {
    let mut hash = 0x4528_21e6_38d0_1377u64 ^ items.len() as u64;
    let (pairs, rest) = items.as_chunks::<2>();
    for &[low, high] in pairs {
        hash = fold_multiply(hash ^ (u64::from(high) << 32 | u64::from(low)));
    }
    for &item in rest {
        hash = fold_multiply(hash ^ u64::from(item));
    }
    hash
}

#[inline(always)]
fn fold_multiply(value: u64) -> u64 {
    let product = u128::from(value) * u128::from(0x9e37_79b9_7f4a_7c15u64);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The key of a piece of at most [`SHORT_PIECE`] bytes: its bytes, zero-padded, with the
/// length in the last byte (so pieces that differ only in trailing zero bytes differ).
#[inline(always)]
fn short_key(message: &[u8], range: Range<usize>) -> [u64; 2] {
    let len = range.len();
    debug_assert!(len <= SHORT_PIECE);
    let mut chunk = [0u8; 16];
    match message.get(range.start..range.start + 16) {
        // One unaligned load, masked to the piece; the piece is mid-message.
        Some(window) => chunk.copy_from_slice(window),
        None => chunk[..len].copy_from_slice(&message[range]),
    }
    let value = u128::from_le_bytes(chunk);
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

/// A value as the assembly reads it: `payload << 2 | tag`.
const READ_NUMBER: u64 = 1;
const READ_PIECE: u64 = 2;
const READ_LITERAL: u64 = 3;

/// Reads the message section of format 4: every message's text, back to back, and where
/// each lies. Items and values stay as small integers until a message is assembled (a
/// resolved slice per item was 16 bytes each, several megabytes a block to write and read
/// back).
pub(super) fn read(reader: &mut Reader<'_>, count: usize) -> Result<Messages, BlockError> {
    let mut message_templates = Vec::with_capacity(count);
    for _ in 0..count {
        message_templates.push(reader.len()?);
    }
    let shared = reader.len()?;
    let single = message_templates.iter().filter(|&&code| code == 0).count();
    let templates = shared.checked_add(single).ok_or(BlockError::Damaged("template count"))?;
    // Every template takes at least one byte (its item count).
    if templates > reader.remaining() {
        return Err(BlockError::Damaged("more templates than bytes"));
    }
    // Each message's template index: shared ones by code, single-use ones in turn.
    let mut next_single = shared;
    for template in &mut message_templates {
        *template = match *template {
            0 => {
                next_single += 1;
                next_single - 1
            }
            code if code <= shared => code - 1,
            _ => return Err(BlockError::Damaged("template code out of range")),
        };
    }
    let mut item_codes: Vec<u32> = Vec::new();
    let mut template_ranges = Vec::with_capacity(templates);
    let mut slots = Vec::with_capacity(templates);
    // Per template: where its literal items start among the literals (template order).
    let mut template_literals = Vec::with_capacity(templates);
    let mut literal_items = 0usize;
    for _ in 0..templates {
        let items = reader.len()?;
        let start = item_codes.len();
        let mut template_slots = 0;
        template_literals.push(literal_items);
        for _ in 0..items {
            let code = u32::try_from(reader.len()?).map_err(|_| BlockError::Damaged("item code"))?;
            template_slots += usize::from(code == 0);
            literal_items += usize::from(code == 1);
            item_codes.push(code);
        }
        slots.push(template_slots);
        template_ranges.push(start..item_codes.len());
    }
    // Where each template's values start: its slots times its messages, in template order.
    let mut uses = vec![0usize; templates];
    for &template in &message_templates {
        uses[template] += 1;
    }
    let mut value_starts = Vec::with_capacity(templates);
    let mut total = 0usize;
    for (template, &used) in uses.iter().enumerate() {
        value_starts.push(total);
        total = slots[template]
            .checked_mul(used)
            .and_then(|values| total.checked_add(values))
            .ok_or(BlockError::Damaged("value count"))?;
    }
    // Each value takes at least one byte.
    if total > reader.remaining() {
        return Err(BlockError::Damaged("more values than bytes"));
    }
    let mut values = Vec::with_capacity(total);
    for _ in 0..total {
        values.push(reader.u64()?);
    }
    let pieces = reader.len()?;
    let dictionary = read_strings(reader, pieces)?;
    if item_codes.iter().any(|&code| code as usize > pieces + 1) {
        return Err(BlockError::Damaged("piece code out of range"));
    }
    // Literals are used in this order: template items first, then values.
    let mut next_literal = literal_items as u64;
    for value in &mut values {
        *value = match *value {
            0 => {
                next_literal += 1;
                (next_literal - 1) << 2 | READ_LITERAL
            }
            // The writer's numbers are below 10^18; a larger one would not fit the tag.
            number if number & 1 == 1 && number >> 62 == 0 => (number >> 1) << 2 | READ_NUMBER,
            code if code & 1 == 0 && (code >> 1) as usize <= pieces => ((code >> 1) - 1) << 2 | READ_PIECE,
            _ => return Err(BlockError::Damaged("piece code out of range")),
        };
    }
    let literals = read_strings(reader, next_literal as usize)?;

    let mut text = Vec::with_capacity(count * 64);
    let mut ranges = Vec::with_capacity(count);
    let mut seen = vec![0usize; templates];
    let mut digits = itoa::Buffer::new();
    for &template in &message_templates {
        let start = text.len();
        // This message's first value; each next slot's lies `uses` values further on.
        let mut value = value_starts[template] + seen[template];
        seen[template] += 1;
        let stride = uses[template];
        let mut literal = template_literals[template];
        let mut after_word = false;
        for &code in &item_codes[template_ranges[template].clone()] {
            let piece = match code {
                0 => {
                    let found = values[value];
                    value += stride;
                    let payload = (found >> 2) as usize;
                    match found & 3 {
                        READ_NUMBER => digits.format(found >> 2).as_bytes(),
                        READ_PIECE => dictionary[payload],
                        _ => literals[payload],
                    }
                }
                1 => {
                    literal += 1;
                    literals[literal - 1]
                }
                code => dictionary[code as usize - 2],
            };
            let word = piece.first().is_some_and(|&byte| filter::is_token_byte(byte));
            if after_word && word {
                text.push(b' ');
            }
            text.extend_from_slice(piece);
            after_word = word;
        }
        if text.len() > MAX_BODY_BYTES {
            return Err(BlockError::Damaged("messages larger than any block"));
        }
        ranges.push(start..text.len());
    }
    Ok((text, ranges))
}

/// Reads the message section of format 3 (a code per piece).
pub(super) fn read_v3(reader: &mut Reader<'_>, count: usize) -> Result<Messages, BlockError> {
    let (code_counts, total) = read_counts(reader, count)?;
    let codes = read_codes(reader, total)?;
    let mut pieces = PieceReader::read(reader, &codes)?;
    let mut text = Vec::new();
    let mut ranges = Vec::with_capacity(count);
    let mut codes = codes.into_iter();
    for code_count in code_counts {
        let start = text.len();
        let mut after_word = false;
        for code in codes.by_ref().take(code_count) {
            let piece = pieces.piece(code)?;
            let word = piece.first().is_some_and(|&byte| filter::is_token_byte(byte));
            if after_word && word {
                text.push(b' ');
            }
            text.extend_from_slice(piece);
            after_word = word;
        }
        if text.len() > MAX_BODY_BYTES {
            return Err(BlockError::Damaged("messages larger than any block"));
        }
        ranges.push(start..text.len());
    }
    Ok((text, ranges))
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
    let mut lengths = Vec::with_capacity(count.min(reader.remaining()));
    for _ in 0..count {
        lengths.push(reader.len()?);
    }
    lengths.into_iter().map(|len| reader.take(len)).collect()
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

    fn coded(messages: &[&[u8]]) -> (MessageCoder, Vec<u8>) {
        let mut coder = MessageCoder::default();
        coder.clear();
        let mut filter = FilterBuilder::default();
        for message in messages {
            coder.push(message, &mut filter);
        }
        let mut body = Vec::new();
        coder.write(&mut body);
        (coder, body)
    }

    fn read_back(body: &[u8], count: usize) -> Vec<Vec<u8>> {
        let mut reader = Reader::new(body);
        let (text, ranges) = read(&mut reader, count).unwrap();
        assert_eq!(reader.remaining(), 0);
        ranges.into_iter().map(|range| text[range].to_vec()).collect()
    }

    /// Items per message: one per piece and per value slot, but none for one space
    /// between two words.
    #[test]
    fn one_space_between_words_is_not_written() {
        let mut coder = MessageCoder::default();
        coder.clear();
        let mut filter = FilterBuilder::default();
        for (message, items) in [
            (&b"the cat sat on the mat"[..], 6),
            (b"the  cat", 3),
            (b" the cat", 3),
            (b"the cat ", 3),
            (b"src=10.0.0.1 port 22", 11),
            (b"", 0),
            (b" ", 1),
        ] {
            coder.push(message, &mut filter);
            assert_eq!(coder.items.len(), items, "{}", String::from_utf8_lossy(message));
        }
    }

    /// Messages of one shape share a template; their digits are values, numbers stored as
    /// numbers, the rest as pieces or literals.
    #[test]
    fn messages_of_one_shape_share_a_template() {
        let messages: [&[u8]; 6] = [
            b"Accepted publickey for root from 10.1.2.3 port 52011 ssh2",
            b"Accepted publickey for root from 10.200.0.17 port 007 ssh2",
            b"Accepted publickey for root from 10.1.2.3 port 0 ssh2",
            b"Accepted publickey for ken from 10.1.2.3 port 123456789012345678 ssh2",
            b"Accepted publickey for root from 10.1.2.3 port 1234567890123456789 ssh2",
            b"link eth0 up after 00000012 s",
        ];
        let (coder, body) = coded(&messages);
        // "root" is part of the shape, so "ken" makes a second one; the last is a third.
        assert_eq!(coder.template_ranges.len(), 3);
        assert_eq!(coder.template_uses, [4, 1, 1]);
        let numbers: Vec<u64> = coder
            .values
            .iter()
            .filter(|&&value| value & 3 == VALUE_NUMBER)
            .map(|&value| value >> 2)
            .collect();
        assert!(
            numbers.contains(&52_011) && numbers.contains(&0) && numbers.contains(&123_456_789_012_345_678)
        );
        // A leading zero, 19 digits: not numbers (their text would not come back).
        assert!(!numbers.contains(&7) && !numbers.contains(&12));
        let back = read_back(&body, messages.len());
        assert_eq!(back, messages.map(<[u8]>::to_vec));
    }

    /// Indexed words, and numbers of up to five digits, are in the token filter once.
    #[test]
    fn numbers_of_up_to_five_digits_are_in_the_token_filter() {
        let mut coder = MessageCoder::default();
        coder.clear();
        let mut filter = FilterBuilder::default();
        coder.push(b"port 99999 port 100000 and 42", &mut filter);
        let bits = filter.finish();
        let has = |word: &[u8]| filter::may_contain(&bits, filter::token_hash(word));
        for word in [&b"port"[..], b"99999", b"42", b"and"] {
            assert!(has(word), "{}", String::from_utf8_lossy(word));
        }
    }

    /// Damaged sections are errors, never a panic: every truncation and every single-byte
    /// change of a small section.
    #[test]
    fn damage_is_an_error() {
        let messages: [&[u8]; 4] = [b"a 1 b", b"a 2 b", b"x=00 y", b"a 3 b"];
        let (_, body) = coded(&messages);
        for end in 0..body.len() {
            let mut reader = Reader::new(&body[..end]);
            assert!(read(&mut reader, messages.len()).is_err(), "truncated at {end}");
        }
        for at in 0..body.len() {
            for byte in [0u8, 1, 2, 3, 0x7f, 0x80, 0xff] {
                let mut damaged = body.clone();
                damaged[at] = byte;
                let mut reader = Reader::new(&damaged);
                let _ = read(&mut reader, messages.len());
            }
        }
    }
}
