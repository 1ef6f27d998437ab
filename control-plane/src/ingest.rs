//! The batch writer: takes closed batches off every listener's hand-off ring, packs what
//! is waiting into one compressed block, and commits it. A failed write is retried (and
//! counted), never dropped; while it retries, the rings fill and the listeners apply their
//! full-ring policy (UDP counts, TCP stops reading).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use killkrill_dataplane::batch::LogBatch;
use killkrill_dataplane::handoff::BatchConsumer;

use crate::store::block::MAX_ROWS;
use crate::store::{BlockEncoder, EncodedBlock, Store};
use crate::telemetry::metrics::StoreCounters;
use crate::{Error, Result};

const IDLE_POLL: Duration = Duration::from_millis(2);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How blocks are cut and compressed.
#[derive(Clone, Copy, Debug)]
pub struct BlockSettings {
    /// A block takes the batches waiting, up to this many messages.
    pub max_messages: usize,
    pub compression_level: i32,
}

/// Runs until every ring's producer is gone (its listener stopped) and the ring is
/// empty: it never abandons an accepted batch on its own.
pub async fn run_batch_writer(
    mut consumers: Vec<BatchConsumer>,
    store: Arc<dyn Store>,
    counters: Arc<StoreCounters>,
    settings: BlockSettings,
) -> Result<()> {
    let max_messages = settings.max_messages.clamp(1, MAX_ROWS);
    let mut encoder =
        Some(BlockEncoder::new(settings.compression_level).map_err(|e| Error::Internal(e.to_string()))?);
    let mut next_ring = 0;
    loop {
        // Take what is waiting, round-robin over the rings so no listener starves.
        let mut taken: Vec<(usize, LogBatch)> = Vec::new();
        let mut messages = 0;
        let mut empty_rings = 0;
        while messages < max_messages && empty_rings < consumers.len() {
            let ring = next_ring % consumers.len();
            next_ring += 1;
            match consumers[ring].peek_len() {
                Some(len) if messages == 0 || messages + len <= max_messages => {
                    if let Some(batch) = consumers[ring].pop() {
                        messages += batch.len();
                        taken.push((ring, batch));
                        empty_rings = 0;
                        continue;
                    }
                    empty_rings += 1;
                }
                Some(_) => break,
                None => empty_rings += 1,
            }
        }
        if taken.is_empty() {
            if consumers.iter().all(BatchConsumer::is_finished) {
                return Ok(());
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        let mut block_encoder = encoder.take().expect("the encoder is returned after every block");
        let (block_encoder, taken, encoded) = tokio::task::spawn_blocking(move || {
            let encoded = block_encoder.encode(taken.iter().flat_map(|(_, batch)| batch.iter()));
            (block_encoder, taken, encoded)
        })
        .await
        .map_err(|error| Error::Internal(format!("block encoder stopped: {error}")))?;
        encoder = Some(block_encoder);
        let encoded = encoded.map_err(|error| Error::Internal(error.to_string()))?;
        commit(&*store, &counters, &encoded).await;
        counters.stored_batches.fetch_add(taken.len() as u64, Ordering::Relaxed);
        for (ring, batch) in taken {
            consumers[ring].give_back(batch);
        }
    }
}

/// Stores the block, retrying with back-off until the store takes it.
async fn commit(store: &dyn Store, counters: &StoreCounters, block: &EncodedBlock) {
    let mut delay = RETRY_FIRST;
    loop {
        match store.insert_block(block).await {
            Ok(_) => {
                // A duplicate (false) means an earlier attempt committed after all.
                let summary = &block.summary;
                counters.stored_messages.fetch_add(u64::from(summary.message_count), Ordering::Relaxed);
                counters.stored_blocks.fetch_add(1, Ordering::Relaxed);
                counters.stored_raw_bytes.fetch_add(summary.raw_bytes, Ordering::Relaxed);
                counters.stored_block_bytes.fetch_add(block.payload.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, messages = block.summary.message_count, retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}
