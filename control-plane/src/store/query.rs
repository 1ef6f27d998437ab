//! A log search, independent of the backend: which blocks may match (from their index
//! row) and which rows do (from the decoded block).

use std::net::IpAddr;

use ipnet::IpNet;

use super::block::{self, DecodedBlock, RefColumn, filter};

/// Newest first (the default) or oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    #[default]
    Descending,
    Ascending,
}

/// Where the previous page ended: the sort key of its last row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub received_ns: i64,
    pub id: i64,
}

impl Cursor {
    /// Opaque to clients: `<received_ns>.<id>` in hex.
    pub fn encode(&self) -> String {
        format!("{:x}.{:x}", self.received_ns, self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (received, id) = text.split_once('.')?;
        Some(Self {
            received_ns: i64::from_str_radix(received, 16).ok()?,
            id: i64::from_str_radix(id, 16).ok()?,
        })
    }
}

/// The words of `q`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TextQuery {
    /// Each must appear as a whole word (case-insensitive).
    pub words: Vec<String>,
    /// Each must appear as written, case-insensitive, anywhere in the message.
    pub phrases: Vec<String>,
    /// None of these may appear (as a word, or as a phrase when quoted).
    pub excluded_words: Vec<String>,
    pub excluded_phrases: Vec<String>,
}

impl TextQuery {
    /// Parses `error "link down" -debug -"health check"`. A bare term that is not a
    /// single word (`eth0/1`, `user@host`) is matched as a phrase.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut query = Self::default();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let (excluded, body) = match rest.strip_prefix('-') {
                Some(body) if !body.is_empty() && !body.starts_with(char::is_whitespace) => (true, body),
                _ => (false, rest),
            };
            let (term, quoted, remainder) = if let Some(quoted) = body.strip_prefix('"') {
                let end = quoted.find('"').ok_or_else(|| "a quoted phrase is not closed".to_owned())?;
                (&quoted[..end], true, &quoted[end + 1..])
            } else {
                let end = body.find(char::is_whitespace).unwrap_or(body.len());
                (&body[..end], false, &body[end..])
            };
            rest = remainder.trim_start();
            if term.is_empty() {
                continue;
            }
            let lower = term.to_lowercase();
            let single_word = !quoted
                && filter::tokens(lower.as_bytes()).count() == 1
                && filter::tokens(lower.as_bytes()).next().map(<[u8]>::len) == Some(lower.len());
            match (excluded, single_word) {
                (false, true) => query.words.push(lower),
                (false, false) => query.phrases.push(lower),
                (true, true) => query.excluded_words.push(lower),
                (true, false) => query.excluded_phrases.push(lower),
            }
        }
        Ok(query)
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
            && self.phrases.is_empty()
            && self.excluded_words.is_empty()
            && self.excluded_phrases.is_empty()
    }

    /// Token hashes every matching message must contain (for pruning).
    fn required_hashes(&self) -> Vec<u64> {
        let phrase_tokens = self.phrases.iter().flat_map(|phrase| filter::tokens(phrase.as_bytes()));
        self.words
            .iter()
            .map(|word| word.as_bytes())
            .chain(phrase_tokens)
            .filter(|token| filter::is_indexed(token))
            .map(filter::token_hash)
            .collect()
    }

    /// The check on a message's text, which `matches_row` makes from a block's codes.
    #[cfg(test)]
    fn matches(&self, message: &[u8]) -> bool {
        if self.is_empty() {
            return true;
        }
        let has_word =
            |word: &str| filter::tokens(message).any(|token| token.eq_ignore_ascii_case(word.as_bytes()));
        self.words.iter().all(|word| has_word(word))
            && !self.excluded_words.iter().any(|word| has_word(word))
            && self.phrases_match(message)
    }

    /// Whether `message` has every phrase and none of the excluded ones.
    fn phrases_match(&self, message: &[u8]) -> bool {
        let has_phrase = |phrase: &String| contains_ignore_ascii_case(message, phrase.as_bytes());
        self.phrases.iter().all(has_phrase) && !self.excluded_phrases.iter().any(has_phrase)
    }
}

/// A search's words made ready for one decoded block: the block's piece codes of each word,
/// found once per block, so that a row's words are read from its codes rather than from
/// its text; a row's text is built only for phrases (docs/adr/0051). Made by
/// [`LogQuery::block_text`] for the block it is then used with.
pub struct BlockText {
    /// Per word of the search, then per excluded word: its piece codes in the block.
    word_codes: Vec<Vec<u32>>,
    /// A row's message, for phrases.
    scratch: Vec<u8>,
}

impl TextQuery {
    /// `matches` for a row of a decoded block.
    fn matches_row(&self, block: &DecodedBlock, row: usize, text: &mut BlockText) -> bool {
        let (word_codes, excluded_codes) =
            text.word_codes.split_at(self.words.len().min(text.word_codes.len()));
        let has_word =
            |(word, codes): (&String, &Vec<u32>)| block.message_has_word(row, codes, word.as_bytes());
        if !self.words.iter().zip(word_codes).all(has_word)
            || self.excluded_words.iter().zip(excluded_codes).any(has_word)
        {
            return false;
        }
        if self.phrases.is_empty() && self.excluded_phrases.is_empty() {
            return true;
        }
        self.phrases_match(block.message_into(row, &mut text.scratch))
    }
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

/// A log search with every filter of `GET /api/v1/logs`. Equal searches give equal
/// answers over the same blocks (the answer cache's key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogQuery {
    /// Receive time, inclusive, Unix nanoseconds.
    pub start_ns: Option<i64>,
    /// Receive time, exclusive.
    pub end_ns: Option<i64>,
    /// Any of these hostnames (case-insensitive).
    pub hosts: Vec<String>,
    /// Any of these app names (case-insensitive).
    pub apps: Vec<String>,
    /// Bit n set: severity n is wanted.
    pub severity_mask: Option<u32>,
    /// Bit n set: facility n is wanted.
    pub facility_mask: Option<u32>,
    /// Source address inside this network (a single address is a /32 or /128).
    pub source: Option<IpNet>,
    pub text: TextQuery,
    pub limit: u32,
    pub order: Order,
    pub cursor: Option<Cursor>,
    /// Only blocks with a sequence number in (low, high]: the live tail reads what was
    /// committed since its last look.
    pub block_seqs: Option<(i64, i64)>,
}

impl Default for LogQuery {
    fn default() -> Self {
        Self {
            start_ns: None,
            end_ns: None,
            hosts: Vec::new(),
            apps: Vec::new(),
            severity_mask: None,
            facility_mask: None,
            source: None,
            text: TextQuery::default(),
            limit: 100,
            order: Order::Descending,
            cursor: None,
            block_seqs: None,
        }
    }
}

/// The part of a block's index row that pruning reads.
#[derive(Clone, Debug)]
pub struct BlockCandidate {
    pub seq: i64,
    pub min_received_ns: i64,
    pub max_received_ns: i64,
    /// Empty when not read (a block decoded in the cache): it then may match anything.
    pub field_filter: Vec<u8>,
    pub token_filter: Vec<u8>,
}

/// What pruning needs, computed once per query.
pub struct Plan {
    host_hashes: Vec<u64>,
    app_hashes: Vec<u64>,
    source_hash: Option<u64>,
    token_hashes: Vec<u64>,
}

impl Plan {
    /// Whether pruning reads the block's host, app and source filter.
    pub fn needs_field_filter(&self) -> bool {
        !self.host_hashes.is_empty() || !self.app_hashes.is_empty() || self.source_hash.is_some()
    }

    /// Whether pruning reads the block's word filter (tens of kilobytes a block: a query
    /// without words should not fetch them).
    pub fn needs_token_filter(&self) -> bool {
        !self.token_hashes.is_empty()
    }
}

impl LogQuery {
    pub fn plan(&self) -> Plan {
        let hash_all = |kind, values: &[String]| {
            values.iter().map(|value| filter::field_hash(kind, value.as_bytes())).collect()
        };
        // Only a single address can be probed; a wider network must read the block.
        let source_hash = self
            .source
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .map(|net| filter::field_hash(filter::FIELD_SOURCE, net.addr().to_string().as_bytes()));
        Plan {
            host_hashes: hash_all(filter::FIELD_HOST, &self.hosts),
            app_hashes: hash_all(filter::FIELD_APP, &self.apps),
            source_hash,
            token_hashes: self.text.required_hashes(),
        }
    }

    /// Whether the block may hold a matching row, from its filters alone.
    pub fn may_match(&self, plan: &Plan, block: &BlockCandidate) -> bool {
        self.fields_may_match(plan, block)
            && plan.token_hashes.iter().all(|&hash| filter::may_contain(&block.token_filter, hash))
    }

    /// Whether the block may hold a row of the hosts, apps and source asked for, from its
    /// field filter alone.
    pub fn fields_may_match(&self, plan: &Plan, block: &BlockCandidate) -> bool {
        let any_field = |hashes: &[u64]| {
            hashes.is_empty() || hashes.iter().any(|&hash| filter::may_contain(&block.field_filter, hash))
        };
        any_field(&plan.host_hashes)
            && any_field(&plan.app_hashes)
            && plan.source_hash.is_none_or(|hash| filter::may_contain(&block.field_filter, hash))
    }

    /// The search's words made ready for `block` (for `matches` on its rows).
    pub fn block_text(&self, block: &DecodedBlock) -> BlockText {
        let words = self.text.words.iter().chain(&self.text.excluded_words);
        BlockText {
            word_codes: words.map(|word| block.word_codes(word.as_bytes()).unwrap_or_default()).collect(),
            scratch: Vec::new(),
        }
    }

    /// Whether a row of a decoded block matches every filter (the cursor included).
    /// `text` comes from `block_text(block)`.
    pub fn matches(&self, block: &DecodedBlock, row: usize, id: i64, text: &mut BlockText) -> bool {
        let received = block.received_ns[row];
        if self.start_ns.is_some_and(|start| received < start)
            || self.end_ns.is_some_and(|end| received >= end)
        {
            return false;
        }
        if let Some(cursor) = self.cursor {
            let after_cursor = match self.order {
                Order::Descending => (received, id) < (cursor.received_ns, cursor.id),
                Order::Ascending => (received, id) > (cursor.received_ns, cursor.id),
            };
            if !after_cursor {
                return false;
            }
        }
        let in_mask = |mask: Option<u32>, value: Option<u8>, none_bit: u32| {
            mask.is_none_or(|mask| mask & (1 << value.map_or(none_bit, u32::from)) != 0)
        };
        if !in_mask(self.severity_mask, block.severity(row), block::SEVERITY_NONE_BIT)
            || !in_mask(self.facility_mask, block.facility(row), block::FACILITY_NONE_BIT)
        {
            return false;
        }
        let one_of = |wanted: &[String], value: Option<&str>| {
            wanted.is_empty()
                || value.is_some_and(|value| wanted.iter().any(|w| w.eq_ignore_ascii_case(value)))
        };
        // Looked up only when asked for: most searches have neither filter.
        if (!self.hosts.is_empty() && !one_of(&self.hosts, block.text(RefColumn::Hostname, row)))
            || (!self.apps.is_empty() && !one_of(&self.apps, block.text(RefColumn::AppName, row)))
        {
            return false;
        }
        if let Some(net) = self.source {
            let inside = block.source_ip(row).is_some_and(|ip: IpAddr| net.contains(&normalize(ip)));
            if !inside {
                return false;
            }
        }
        // Words last: every other filter is cheaper.
        self.text.is_empty() || self.text.matches_row(block, row, text)
    }
}

/// IPv4-mapped IPv6 sources (from dual-stack sockets) match IPv4 networks.
fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_queries_split_into_words_phrases_and_exclusions() {
        let query = TextQuery::parse(r#"Error "link down" -debug -"health check" eth0/1 "#).unwrap();
        assert_eq!(query.words, ["error"]);
        assert_eq!(query.phrases, ["link down", "eth0/1"]);
        assert_eq!(query.excluded_words, ["debug"]);
        assert_eq!(query.excluded_phrases, ["health check"]);
        assert!(TextQuery::parse(r#""open"#).is_err());
    }

    #[test]
    fn words_match_whole_words_and_phrases_match_anywhere() {
        let query = TextQuery::parse(r#"error "LINK down" -debug"#).unwrap();
        assert!(query.matches(b"kernel: Error: link down on eth0"));
        assert!(!query.matches(b"kernel: errors: link down on eth0"), "a word is a whole word");
        assert!(!query.matches(b"kernel: error: link is down"));
        assert!(!query.matches(b"debug error: link down"));
        assert!(TextQuery::default().matches(b"anything"));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor { received_ns: 1_700_000_000_123_456_789, id: 42 << 16 | 7 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("zz.1"), None);
        assert_eq!(Cursor::decode("12"), None);
    }

    #[test]
    fn unindexed_words_never_prune() {
        let query = TextQuery::parse("1700000000123 error").unwrap();
        assert_eq!(query.required_hashes(), vec![filter::token_hash(b"error")]);
    }
}
