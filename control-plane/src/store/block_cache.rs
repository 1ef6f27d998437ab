//! Recently decoded blocks, newest searches first in mind: a dashboard or a client polling
//! the newest messages asks for the same few blocks many times a second, and decoding one
//! (a few milliseconds) would otherwise be most of each answer's cost (docs/adr/0035).
//! Blocks never change once committed and a sequence number is never reused, so an entry
//! is never stale; retention only leaves entries nobody asks for, which age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::block::DecodedBlock;

/// Decoded bytes kept at most (about a dozen blocks of 16,384 typical messages).
const BUDGET_BYTES: usize = 64 << 20;

#[derive(Default)]
pub struct BlockCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// By block sequence number: the block, its estimated size and when it was last used.
    blocks: HashMap<i64, (Arc<DecodedBlock>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

impl BlockCache {
    pub fn get(&self, seq: i64) -> Option<Arc<DecodedBlock>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        let (block, _, used) = entries.blocks.get_mut(&seq)?;
        *used = now;
        Some(block.clone())
    }

    /// Keeps `block`, dropping the least recently used ones past the budget. A block
    /// larger than the whole budget is not kept.
    pub fn insert(&self, seq: i64, block: Arc<DecodedBlock>, body_bytes: usize) {
        let size = body_bytes + block.len() * ROW_OVERHEAD_BYTES;
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

/// The decoded columns' memory per row beyond the body (offsets and numbers).
const ROW_OVERHEAD_BYTES: usize = 96;

/// The decompressed size of a block's body, from its zstd frame header (0 if absent).
pub fn body_bytes(payload: &[u8]) -> usize {
    zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .and_then(|size| usize::try_from(size).ok())
        .unwrap_or(0)
}
