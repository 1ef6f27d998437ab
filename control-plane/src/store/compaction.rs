//! Compaction: blocks older than a few minutes are written again grouped by host, so that
//! a search for one host decodes one small block per window instead of every block of the
//! hour (docs/adr/0037); blocks older than an hour are merged into large blocks, which
//! take a quarter less room (docs/adr/0055).
//!
//! The writer cuts blocks in arrival order, so every block holds nearly every host. The
//! first pass takes the blocks that began in the oldest `window` of receive time once that
//! window has ended `after` ago and each of those blocks' newest message is that old too
//! (so a window is rewritten whole, however often compaction looks), decodes them, sorts
//! their rows by host, cuts the sorted rows into blocks of about `block_messages` rows at
//! host boundaries (a host larger than that is cut into several), puts each new block's
//! rows back in receive-time order (the search walks a block's rows newest first), encodes
//! them at `zstd_level`, and replaces the old blocks with the new ones in one transaction.
//! The merge pass does the same to those blocks once they are older than its own `after`,
//! with its longer window, larger blocks and higher level.

use std::ops::Range;
use std::time::Instant;

use super::block::{self, BlockEncoder, DecodedBlock, EncodedBlock, RefColumn, RowRef};
use super::{BlockMeta, BlockTier, Store};
use crate::{Error, Result};

/// Index rows read per look for work: more than one window holds (the writer's blocks of
/// a minute; the first pass's blocks of an hour, up to 2^19 messages of them).
const CANDIDATES: i64 = 512;
const MERGE_CANDIDATES: i64 = 4096;
/// At most this many messages are decoded at once, however busy a window was.
const MAX_WINDOW_MESSAGES: i64 = 1 << 20;
/// At most this many messages are merged at once: every merged block of a group spans
/// the group's time, so the first page of a search without a host filter that ends in it
/// decodes all of them (ADR 0055).
const MAX_MERGE_MESSAGES: i64 = 1 << 19;

/// Which blocks one pass takes, and how it writes them again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassSettings {
    /// A window is rewritten once it ended this long ago and the newest message of every
    /// block that began in it is this old. Younger blocks are left as they are (the live
    /// tail and the newest-first search read the writer's blocks).
    pub after_ns: i64,
    /// Blocks that began within one window of receive time are rewritten together.
    pub window_ns: i64,
    /// Rows per new block, about (at most 65,536).
    pub block_messages: usize,
    pub zstd_level: i32,
}

/// How compaction groups and encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionSettings {
    /// The writer's blocks, grouped by host.
    pub by_host: PassSettings,
    /// Blocks grouped by host, merged into large ones when they are older than its `after`
    /// (at least the first pass's `after` plus its `window`); None: not merged.
    pub merge: Option<PassSettings>,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        Self {
            by_host: PassSettings {
                after_ns: 30_000_000_000,
                window_ns: 60_000_000_000,
                block_messages: 1_024,
                zstd_level: 9,
            },
            merge: Some(PassSettings {
                after_ns: 3_600_000_000_000,
                window_ns: 3_600_000_000_000,
                block_messages: 16_384,
                zstd_level: 19,
            }),
        }
    }
}

/// What compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Windows rewritten by either pass, and of those, by the merge pass.
    pub windows: u64,
    pub merged_windows: u64,
    pub blocks_read: u64,
    pub blocks_written: u64,
    /// Messages rewritten (a message merged later is counted again).
    pub messages: u64,
    /// Blocks left as they were because they could not be decoded.
    pub undecodable_blocks: u64,
    /// Stored bytes of the blocks read and of the blocks written.
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Compacted {
    fn add(&mut self, other: &Compacted) {
        self.windows += other.windows;
        self.merged_windows += other.merged_windows;
        self.blocks_read += other.blocks_read;
        self.blocks_written += other.blocks_written;
        self.messages += other.messages;
        self.undecodable_blocks += other.undecodable_blocks;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }
}

/// Compacts windows, then merges, until none is old enough, `keep_going` says stop, or a
/// store error. Returns what it did and how long it took.
pub async fn compact_pending(
    store: &dyn Store,
    settings: &CompactionSettings,
    now_ns: i64,
    mut keep_going: impl FnMut(&Compacted) -> bool,
) -> Result<(Compacted, std::time::Duration)> {
    let started = Instant::now();
    let mut total = Compacted::default();
    while keep_going(&total) {
        match compact_next_window(store, settings, now_ns).await? {
            Some(done) => total.add(&done),
            None => break,
        }
    }
    Ok((total, started.elapsed()))
}

/// Rewrites the oldest window ready for either pass (grouping by host first, since the
/// merge reads its output); None when there is none.
pub async fn compact_next_window(
    store: &dyn Store,
    settings: &CompactionSettings,
    now_ns: i64,
) -> Result<Option<Compacted>> {
    let by_host = (BlockTier::Arrival, BlockTier::ByHost);
    if let Some(done) = rewrite_next_window(store, &settings.by_host, by_host, now_ns).await? {
        return Ok(Some(done));
    }
    let Some(merge) = &settings.merge else { return Ok(None) };
    let merged = (BlockTier::ByHost, BlockTier::Merged);
    Ok(rewrite_next_window(store, merge, merged, now_ns)
        .await?
        .map(|done| Compacted { merged_windows: done.windows, ..done }))
}

/// Rewrites the oldest window of `from` blocks as `to` blocks if it is ready (see
/// [`PassSettings`]).
async fn rewrite_next_window(
    store: &dyn Store,
    pass: &PassSettings,
    (from, to): (BlockTier, BlockTier),
    now_ns: i64,
) -> Result<Option<Compacted>> {
    let window_ns = pass.window_ns.max(1);
    let horizon = now_ns.saturating_sub(pass.after_ns);
    let (limit, max_messages) = if from == BlockTier::Arrival {
        (CANDIDATES, MAX_WINDOW_MESSAGES)
    } else {
        (MERGE_CANDIDATES, MAX_MERGE_MESSAGES)
    };
    let candidates = store.compaction_candidates(from, limit).await?;
    let Some(first) = candidates.first() else { return Ok(None) };
    let window_end = first.min_received_ns - first.min_received_ns.rem_euclid(window_ns) + window_ns;
    let in_window = candidates.iter().take_while(|candidate| candidate.min_received_ns < window_end);
    // A window is rewritten whole: not before it has ended, nor while one of its blocks
    // still holds young messages.
    if window_end > horizon || in_window.clone().any(|candidate| candidate.max_received_ns >= horizon) {
        return Ok(None);
    }
    let mut group: Vec<BlockMeta> = Vec::new();
    let mut messages = 0i64;
    for candidate in in_window {
        if !group.is_empty() && messages + candidate.message_count > max_messages {
            break;
        }
        messages += candidate.message_count;
        group.push(candidate.clone());
    }
    let mut done = Compacted { windows: 1, ..Compacted::default() };
    let mut payloads = Vec::with_capacity(group.len());
    let mut present = Vec::with_capacity(group.len());
    for meta in group {
        // Gone since the look (retention): not ours to rewrite.
        if let Some(payload) = store.block_payload(meta.seq).await? {
            payloads.push(payload);
            present.push(meta);
        }
    }
    let pass = *pass;
    let (decodable, new_blocks, undecodable) =
        tokio::task::spawn_blocking(move || regroup(present, &payloads, &pass))
            .await
            .map_err(|error| Error::Internal(format!("compaction stopped: {error}")))??;
    for meta in &undecodable {
        tracing::warn!(seq = meta.seq, block_id = %meta.block_id, "A log block could not be decoded; compaction leaves it as it is.");
        store.mark_undecodable(meta.seq, from).await?;
        done.undecodable_blocks += 1;
    }
    if decodable.is_empty() {
        return Ok(Some(done));
    }
    if store.replace_blocks(&decodable, from, &new_blocks, to).await? {
        done.blocks_read = decodable.len() as u64;
        done.blocks_written = new_blocks.len() as u64;
        done.messages = decodable.iter().map(|meta| meta.message_count as u64).sum();
        done.bytes_read = decodable.iter().map(|meta| meta.stored_bytes as u64).sum();
        done.bytes_written = new_blocks.iter().map(stored_bytes).sum();
    }
    Ok(Some(done))
}

fn stored_bytes(block: &EncodedBlock) -> u64 {
    (block.payload.len() + block.summary.field_filter.len() + block.summary.token_filter.len()) as u64
}

/// Decodes the group's blocks and writes their rows again grouped by host. Returns the
/// blocks it decoded, the new blocks, and the blocks it could not decode.
fn regroup(
    group: Vec<BlockMeta>,
    payloads: &[Vec<u8>],
    settings: &PassSettings,
) -> Result<(Vec<BlockMeta>, Vec<EncodedBlock>, Vec<BlockMeta>)> {
    let mut decoded: Vec<DecodedBlock> = Vec::with_capacity(group.len());
    let mut decodable = Vec::with_capacity(group.len());
    let mut undecodable = Vec::new();
    for (meta, payload) in group.into_iter().zip(payloads) {
        match block::decode(payload) {
            // A block whose row count disagrees with its index row is damaged too: the
            // totals would change under compaction.
            Ok(block) if block.len() as i64 == meta.message_count => {
                decoded.push(block);
                decodable.push(meta);
            }
            Ok(_) | Err(_) => undecodable.push(meta),
        }
    }
    if decodable.is_empty() {
        return Ok((decodable, Vec::new(), undecodable));
    }
    let blocks: Vec<&DecodedBlock> = decoded.iter().collect();
    let new_block_rows = rows_by_host(&blocks, settings.block_messages);
    let total_rows: u64 = new_block_rows.iter().map(|rows| rows.len() as u64).sum();
    let total_raw: u64 = decodable.iter().map(|meta| meta.raw_bytes.max(0) as u64).sum();
    let mut encoder = BlockEncoder::new(settings.zstd_level)?;
    let mut new_blocks = Vec::with_capacity(new_block_rows.len());
    let mut raw_left = total_raw;
    for (position, refs) in new_block_rows.iter().enumerate() {
        // The frames of clean rows are not kept: the old blocks' raw size is shared out
        // by rows, so the store's total stays exact.
        let raw_bytes = if position + 1 == new_block_rows.len() {
            raw_left
        } else {
            (total_raw as u128 * refs.len() as u128 / total_rows.max(1) as u128) as u64
        };
        raw_left = raw_left.saturating_sub(raw_bytes);
        new_blocks.push(encoder.encode_rows(&blocks, refs, raw_bytes)?);
    }
    Ok((decodable, new_blocks, undecodable))
}

/// The rows of each new block of a window: every row of `blocks` sorted by hostname, cut
/// at host boundaries into runs of at most `per_block` rows ([`cut_by_host`]), each run
/// in receive-time order. Public for the compaction benchmark.
pub fn rows_by_host(blocks: &[&DecodedBlock], per_block: usize) -> Vec<Vec<RowRef>> {
    // (host, received, block, row): unique, so an unstable sort is deterministic.
    let mut rows: Vec<(Option<&str>, i64, u32, u32)> =
        Vec::with_capacity(blocks.iter().map(|b| b.len()).sum());
    for (index, block) in blocks.iter().enumerate() {
        for row in 0..block.len() {
            rows.push((
                block.text(RefColumn::Hostname, row),
                block.received_ns[row],
                index as u32,
                row as u32,
            ));
        }
    }
    rows.sort_unstable();
    let per_block = per_block.clamp(1, block::MAX_ROWS);
    let mut chunk_rows: Vec<(i64, u32, u32)> = Vec::with_capacity(per_block);
    cut_by_host(&rows, per_block, |row| row.0)
        .into_iter()
        .map(|chunk| {
            chunk_rows.clear();
            chunk_rows.extend(rows[chunk].iter().map(|&(_, received, block, row)| (received, block, row)));
            chunk_rows.sort_unstable();
            chunk_rows.iter().map(|&(_, block, row)| RowRef { block, row }).collect()
        })
        .collect()
}

/// Cuts rows sorted by host into runs of at most `per_block` rows, at host boundaries: a
/// host with more rows than that gets blocks of its own, cut into equal parts (so no block
/// is a small remainder).
fn cut_by_host<T, K: PartialEq>(rows: &[T], per_block: usize, host: impl Fn(&T) -> K) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut run_start = 0;
    while run_start < rows.len() {
        let key = host(&rows[run_start]);
        let mut run_end = run_start + 1;
        while run_end < rows.len() && host(&rows[run_end]) == key {
            run_end += 1;
        }
        let run = run_end - run_start;
        if run > per_block {
            if start < run_start {
                chunks.push(start..run_start);
            }
            let parts = run.div_ceil(per_block);
            for part in 0..parts {
                chunks.push(run_start + run * part / parts..run_start + run * (part + 1) / parts);
            }
            start = run_end;
        } else if run_end - start > per_block {
            chunks.push(start..run_start);
            start = run_start;
        }
        run_start = run_end;
    }
    if start < rows.len() {
        chunks.push(start..rows.len());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::cut_by_host;

    #[test]
    fn hosts_stay_whole_where_they_fit() {
        let rows = [1, 1, 1, 2, 2, 3, 3, 3, 3];
        assert_eq!(cut_by_host(&rows, 5, |&row| row), vec![0..5, 5..9]);
        assert_eq!(cut_by_host(&rows, 100, |&row| row), vec![0..9]);
    }

    #[test]
    fn a_host_larger_than_a_block_is_cut() {
        let rows = [1, 2, 2, 2, 2, 2, 2, 2, 3];
        assert_eq!(cut_by_host(&rows, 3, |&row| row), vec![0..1, 1..3, 3..5, 5..8, 8..9]);
        assert_eq!(cut_by_host(&rows, 4, |&row| row), vec![0..1, 1..4, 4..8, 8..9]);
        assert!(cut_by_host::<u8, u8>(&[], 3, |&row| row).is_empty());
    }
}
