//! Recently decoded blocks, newest searches first in mind: a dashboard or a client polling
//! the newest messages asks for the same few blocks many times a second, and decoding one
//! (a few milliseconds) would otherwise be most of each answer's cost (docs/adr/0035).
//! Blocks never change once committed and a sequence number is never reused, so an entry
//! is never stale; retention only leaves entries nobody asks for, which age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::block::{DecodedBlock, RefColumn};

/// Decoded bytes kept at most: about 60 blocks of 16,384 typical messages, the newest
/// hour of a 10-million-message day. With 64 MiB (a dozen blocks), clients paging back or
/// asking for one host each spent a third of the server's time decoding blocks again
/// (docs/adr/0042).
const BUDGET_BYTES: usize = 256 << 20;

/// A decoded block and what a search wants to know of it once rather than per search.
pub struct CachedBlock {
    pub block: DecodedBlock,
    /// Whether the rows lie in order of receive time (never decreasing), as a writer
    /// cutting blocks in arrival order leaves them: a search then finds the rows of its
    /// time range and cursor by binary search and takes the first that match in its
    /// order, instead of walking every row of the block (docs/adr/0042). Compacted blocks
    /// (ordered by host) are not.
    pub in_time_order: bool,
    /// The rows of each hostname and of each app name, made by the first search that
    /// filters on one: a search for one host then looks at that host's few rows instead
    /// of the name of every row (docs/adr/0042).
    hosts: OnceLock<NameIndex>,
    apps: OnceLock<NameIndex>,
}

impl CachedBlock {
    pub fn new(block: DecodedBlock) -> Self {
        let in_time_order = block.received_ns.is_sorted();
        Self { block, in_time_order, hosts: OnceLock::new(), apps: OnceLock::new() }
    }

    /// The rows of the block whose `column` (hostname or app name) is one of `names`
    /// (case-insensitive), ascending.
    pub fn rows_named(&self, column: RefColumn, names: &[String]) -> Vec<u32> {
        let index = match column {
            RefColumn::AppName => &self.apps,
            _ => &self.hosts,
        };
        index.get_or_init(|| NameIndex::new(&self.block, column)).rows_named(names)
    }
}

/// A block's rows grouped by the distinct values of one text column.
struct NameIndex {
    /// The numbers of the distinct values, by their text in lower case.
    numbers: HashMap<String, Vec<u32>>,
    /// `rows[starts[n]..starts[n + 1]]`: the rows whose value is name `n`, ascending.
    starts: Vec<u32>,
    rows: Vec<u32>,
}

impl NameIndex {
    fn new(block: &DecodedBlock, column: RefColumn) -> Self {
        // Values are slices of the block's dictionary: the same entry is the same slice,
        // so the slice's place tells values apart without hashing their text. (Two equal
        // entries would only make two names of one text, both compared below.)
        let mut numbers: HashMap<(usize, usize), u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let mut row_names: Vec<u32> = Vec::with_capacity(block.len());
        let mut counts: Vec<u32> = Vec::new();
        for row in 0..block.len() {
            let number = match block.text(column, row) {
                None => u32::MAX,
                Some(text) => *numbers.entry((text.as_ptr() as usize, text.len())).or_insert_with(|| {
                    names.push(text);
                    counts.push(0);
                    (names.len() - 1) as u32
                }),
            };
            if let Some(count) = counts.get_mut(number as usize) {
                *count += 1;
            }
            row_names.push(number);
        }
        let mut starts = Vec::with_capacity(names.len() + 1);
        let mut total = 0u32;
        starts.push(0);
        for count in &counts {
            total += count;
            starts.push(total);
        }
        let mut next: Vec<u32> = starts[..names.len()].to_vec();
        let mut rows = vec![0u32; total as usize];
        for (row, &number) in row_names.iter().enumerate() {
            if let Some(slot) = next.get_mut(number as usize) {
                rows[*slot as usize] = row as u32;
                *slot += 1;
            }
        }
        // Case-insensitive, as the search compares them.
        let mut by_text: HashMap<String, Vec<u32>> = HashMap::new();
        for (number, name) in names.iter().enumerate() {
            by_text.entry(name.to_ascii_lowercase()).or_default().push(number as u32);
        }
        Self { numbers: by_text, starts, rows }
    }

    fn rows_named(&self, wanted: &[String]) -> Vec<u32> {
        let mut rows: Vec<u32> = Vec::new();
        let mut lists = 0;
        let mut seen: Vec<&String> = Vec::new();
        for name in wanted {
            let lower = name.to_ascii_lowercase();
            let Some((text, numbers)) = self.numbers.get_key_value(&lower) else { continue };
            // The same name twice in the filter is one list.
            if seen.contains(&text) {
                continue;
            }
            seen.push(text);
            for &number in numbers {
                let number = number as usize;
                rows.extend_from_slice(
                    &self.rows[self.starts[number] as usize..self.starts[number + 1] as usize],
                );
                lists += 1;
            }
        }
        if lists > 1 {
            rows.sort_unstable();
        }
        rows
    }
}

#[derive(Default)]
pub struct BlockCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// By block sequence number: the block, its estimated size and when it was last used.
    blocks: HashMap<i64, (Arc<CachedBlock>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

impl BlockCache {
    pub fn get(&self, seq: i64) -> Option<Arc<CachedBlock>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        let (block, _, used) = entries.blocks.get_mut(&seq)?;
        *used = now;
        Some(block.clone())
    }

    /// Whether the block is kept now (without counting as a use).
    pub fn contains(&self, seq: i64) -> bool {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).blocks.contains_key(&seq)
    }

    /// Keeps `block`, dropping the least recently used ones past the budget. A block
    /// larger than the whole budget is not kept.
    pub fn insert(&self, seq: i64, block: Arc<CachedBlock>, body_bytes: usize) {
        let size = body_bytes + block.block.len() * ROW_OVERHEAD_BYTES;
        if size > BUDGET_BYTES {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        if let Some((_, old_size, _)) = entries.blocks.insert(seq, (block, size, now)) {
            entries.bytes -= old_size;
        }
        entries.bytes += size;
        while entries.bytes > BUDGET_BYTES {
            let Some(oldest) =
                entries.blocks.iter().min_by_key(|(_, (_, _, used))| *used).map(|(seq, _)| *seq)
            else {
                break;
            };
            if let Some((_, size, _)) = entries.blocks.remove(&oldest) {
                entries.bytes -= size;
            }
        }
    }
}

/// The decoded columns' memory per row beyond the body (offsets and numbers), and the
/// host and app name indexes a search may add (4 bytes a row each).
const ROW_OVERHEAD_BYTES: usize = 104;

/// The decompressed size of a block's body, from its zstd frame header (0 if absent).
pub fn body_bytes(payload: &[u8]) -> usize {
    zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .and_then(|size| usize::try_from(size).ok())
        .unwrap_or(0)
}
