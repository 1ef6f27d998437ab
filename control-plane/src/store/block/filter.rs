//! Bloom filters stored in each block's index row, so that a query skips blocks that
//! cannot match before it reads or decompresses them.
//!
//! The hash (XXH3-64) and the layout are part of the on-disk format: changing either
//! needs a new block format version. Two layouts exist, told apart by the filter's length:
//! a power of two takes each probe's low bits (all filters before ADR 0056, and those
//! whose exact size happens to be one); any other length maps each probe onto its bits by
//! multiplying and keeping the high word, so that a filter is sized to the bits per
//! distinct key it is built for instead of the power of two above that (which left 14 to
//! 16 bits per key in practice for ten wanted, and false positives well under the 1.2%
//! aimed at).

use xxhash_rust::xxh3::xxh3_64;

/// Probes per key. With about 10 bits per distinct key this gives 1-2% false positives.
const PROBES: u64 = 4;
/// Bits per distinct key of a word filter: with four probes, about 1.2% false positives.
pub const TOKEN_BITS_PER_KEY: f64 = 10.0;
/// Bits per distinct key of a host, app and source filter: about 0.1% false positives. A
/// block has few such keys, so this costs a few hundred bytes, and a search by host, the
/// commonest narrow search, skips nearly every block it should.
pub const FIELD_BITS_PER_KEY: f64 = 20.0;
const MIN_BYTES: usize = 64;
/// Caps a block's filter; past this the false-positive rate rises instead of the size.
const MAX_BYTES: usize = 64 << 10;

/// Words of a message as the text search sees them: runs of ASCII letters and digits and
/// of any non-ASCII bytes (so words in other scripts are words too), lower-cased.
pub fn tokens(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|byte| !is_token_byte(*byte)).filter(|token| !token.is_empty())
}

pub fn is_token_byte(byte: u8) -> bool {
    TOKEN_BYTES[usize::from(byte)]
}

/// ASCII letters and digits, and every non-ASCII byte.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b >= 0x80;
        byte += 1;
    }
    table
};

/// Whether a token goes into the filter. Long numbers and long tokens (ids, hashes,
/// timestamps) are nearly all distinct and would only grow the filter; a search for one
/// still works, it just cannot skip blocks.
pub fn is_indexed(token: &[u8]) -> bool {
    is_indexed_shape(token.len(), token.iter().all(u8::is_ascii_digit))
}

/// [`is_indexed`] for a token whose length and digits-only-ness the caller already knows
/// (the block encoder learns both while cutting the message).
pub fn is_indexed_shape(len: usize, all_digits: bool) -> bool {
    len <= 32 && !(all_digits && len > 5)
}

/// The hash of a lower-cased token, as used both when building and when probing.
pub fn token_hash(token: &[u8]) -> u64 {
    // Most words are lower-case already: hash them in place instead of copying.
    if token.len() <= 32 && !token.iter().any(u8::is_ascii_uppercase) {
        return xxh3_64(token);
    }
    let mut lower = [0u8; 32];
    let lower = &mut lower[..token.len().min(32)];
    for (slot, byte) in lower.iter_mut().zip(token) {
        *slot = byte.to_ascii_lowercase();
    }
    xxh3_64(lower)
}

/// The hash of a field value (host, app, source address), kept apart from message tokens
/// by a prefix byte.
/// Values longer than 255 bytes are hashed on their first 255.
pub fn field_hash(kind: u8, value: &[u8]) -> u64 {
    let mut key = [0u8; 256];
    let value = &value[..value.len().min(255)];
    key[0] = kind;
    for (slot, byte) in key[1..].iter_mut().zip(value) {
        *slot = byte.to_ascii_lowercase();
    }
    xxh3_64(&key[..value.len() + 1])
}

pub const FIELD_HOST: u8 = b'h';
pub const FIELD_APP: u8 = b'a';
pub const FIELD_SOURCE: u8 = b's';

/// Builds a filter for keys added one by one: their hashes are kept, and the filter is
/// made at the end in the size their number calls for. Each insert counts as a key, so
/// callers insert each distinct key once (a piece when the block first meets it, a host or
/// app once per role, an address once); a repeat only makes the filter a little larger.
pub struct FilterBuilder {
    hashes: Vec<u64>,
    bits_per_key: f64,
}

impl FilterBuilder {
    pub fn new(bits_per_key: f64) -> Self {
        Self { hashes: Vec::new(), bits_per_key }
    }

    pub fn clear(&mut self) {
        self.hashes.clear();
    }

    pub fn insert(&mut self, hash: u64) {
        self.hashes.push(hash);
    }

    /// The finished filter, `bits_per_key` bits per key ([`MIN_BYTES`] to [`MAX_BYTES`],
    /// a multiple of 8 bytes).
    pub fn finish(&mut self) -> Vec<u8> {
        let wanted = (self.hashes.len() as f64 * self.bits_per_key / 8.0).ceil() as usize;
        let len = wanted.next_multiple_of(8).clamp(MIN_BYTES, MAX_BYTES);
        let mut filter = vec![0u8; len];
        for &hash in &self.hashes {
            for position in probe_positions(hash, len) {
                filter[position / 8] |= 1 << (position % 8);
            }
        }
        filter
    }
}

/// A word filter's builder.
impl Default for FilterBuilder {
    fn default() -> Self {
        Self::new(TOKEN_BITS_PER_KEY)
    }
}

/// Builds a filter from a list of hashes (for tests and small key sets).
pub fn build(hashes: &[u64]) -> Vec<u8> {
    let mut builder = FilterBuilder::default();
    hashes.iter().for_each(|&hash| builder.insert(hash));
    builder.finish()
}

/// False means the key is certainly absent. An empty filter says "maybe".
pub fn may_contain(filter: &[u8], hash: u64) -> bool {
    if filter.is_empty() {
        return true;
    }
    probe_positions(hash, filter.len()).all(|position| filter[position / 8] & (1 << (position % 8)) != 0)
}

fn probe_positions(hash: u64, size_bytes: usize) -> impl Iterator<Item = usize> {
    let bits = size_bytes as u64 * 8;
    let masked = size_bytes.is_power_of_two();
    let first = hash;
    // Odd, so every probe lands on a different bit for power-of-two sizes.
    let step = hash.rotate_left(32) | 1;
    (0..PROBES).map(move |probe| {
        let value = first.wrapping_add(probe.wrapping_mul(step));
        if masked {
            (value & (bits - 1)) as usize
        } else {
            ((u128::from(value) * u128::from(bits)) >> 64) as usize
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_on_punctuation_and_keep_other_scripts() {
        let found: Vec<&[u8]> = tokens("Link eth0/1 down; état=über-1 ".as_bytes()).collect();
        let expected: Vec<&[u8]> =
            vec![b"Link", b"eth0", b"1", b"down", "état".as_bytes(), "über".as_bytes(), b"1"];
        assert_eq!(found, expected);
    }

    #[test]
    fn ids_and_long_numbers_are_not_indexed() {
        assert!(is_indexed(b"error"));
        assert!(is_indexed(b"404"));
        assert!(is_indexed(b"51400"));
        assert!(!is_indexed(b"1700000000"));
        assert!(!is_indexed(&[b'a'; 33]));
    }

    #[test]
    fn a_filter_has_every_key_and_rejects_most_others() {
        let keys: Vec<String> = (0..2000).map(|n| format!("word{n}")).collect();
        let hashes: Vec<u64> = keys.iter().map(|key| token_hash(key.as_bytes())).collect();
        let filter = build(&hashes);
        assert!(
            (2_400..=2_600).contains(&filter.len()) && !filter.len().is_power_of_two(),
            "about ten bits a key: {} bytes",
            filter.len()
        );
        for key in &keys {
            assert!(may_contain(&filter, token_hash(key.as_bytes())), "{key}");
        }
        let false_positives =
            (0..10_000).filter(|n| may_contain(&filter, token_hash(format!("other{n}").as_bytes()))).count();
        assert!(false_positives < 250, "{false_positives} false positives in 10,000");
    }

    #[test]
    fn field_filters_have_twice_the_bits_and_few_false_positives() {
        let hashes: Vec<u64> =
            (0..300).map(|n| field_hash(FIELD_HOST, format!("host-{n}").as_bytes())).collect();
        let mut builder = FilterBuilder::new(FIELD_BITS_PER_KEY);
        hashes.iter().for_each(|&hash| builder.insert(hash));
        let filter = builder.finish();
        assert!((720..=800).contains(&filter.len()), "about 20 bits a key: {} bytes", filter.len());
        assert!(hashes.iter().all(|&hash| may_contain(&filter, hash)));
        let false_positives = (0..10_000)
            .filter(|n| may_contain(&filter, field_hash(FIELD_HOST, format!("other-{n}").as_bytes())))
            .count();
        assert!(false_positives < 40, "{false_positives} false positives in 10,000");
    }

    #[test]
    fn filters_of_a_power_of_two_keep_the_masked_layout() {
        // A filter as blocks before ADR 0056 stored it: the largest size, probes masked.
        let hashes: Vec<u64> = (0..500).map(|n| token_hash(format!("old{n}").as_bytes())).collect();
        let mut old = vec![0u8; MAX_BYTES];
        for &hash in &hashes {
            for position in probe_positions(hash, MAX_BYTES) {
                old[position / 8] |= 1 << (position % 8);
            }
        }
        assert!(hashes.iter().all(|&hash| may_contain(&old, hash)));
        let absent =
            (0..10_000).filter(|n| may_contain(&old, token_hash(format!("new{n}").as_bytes()))).count();
        assert!(absent < 10, "{absent}");
        // And a new filter whose size is a power of two is laid out the same way.
        let few = build(&hashes[..3]);
        assert_eq!(few.len(), MIN_BYTES);
        assert!(hashes[..3].iter().all(|&hash| may_contain(&few, hash)));
    }

    #[test]
    fn case_does_not_matter() {
        let hashes = vec![token_hash(b"Error"), field_hash(FIELD_HOST, b"Web-01")];
        let filter = build(&hashes);
        assert!(may_contain(&filter, token_hash(b"ERROR")));
        assert!(may_contain(&filter, field_hash(FIELD_HOST, b"web-01")));
        assert!(!may_contain(&filter, field_hash(FIELD_APP, b"web-01")), "fields of different kinds differ");
    }

    #[test]
    fn filters_shrink_with_few_keys_and_stop_at_the_cap() {
        let few = build(&[token_hash(b"one"), token_hash(b"two")]);
        assert_eq!(few.len(), MIN_BYTES);
        assert!(may_contain(&few, token_hash(b"one")) && may_contain(&few, token_hash(b"two")));
        let many: Vec<u64> = (0..200_000).map(|n| token_hash(format!("k{n}").as_bytes())).collect();
        assert_eq!(build(&many).len(), MAX_BYTES, "a full filter stays at the cap");
    }

    #[test]
    fn an_empty_filter_never_hides_a_block() {
        assert!(may_contain(&[], 42));
    }
}
