//! `compact`: runs the appliance's compaction (`killkrill::store::compaction`, ADR 0037)
//! over the filled store, as `killkrill serve` would once the data is older than
//! `after`: everything but the last `after` of the day is rewritten grouped by host. It
//! reports throughput and the store's size before and after, and notes in the marker
//! file that the store is compacted.

use std::path::Path;
use std::time::Instant;

use killkrill::config::StoreConfig;
use killkrill::store::{self, compaction};
use serde_json::{Value, json};

use crate::fill::{Filled, MARKER};

pub fn compact(
    data_dir: &Path,
    config: &StoreConfig,
    filled: &Filled,
    settings: compaction::CompactionSettings,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The appliance's clock at the end of the filled day: the newest `after` stays as cut.
    let now_ns = filled.day_start_ns + 86_400 * 1_000_000_000;
    let (before, after, done, seconds) = runtime.block_on(async {
        let store = store::open(config, data_dir).await?;
        let before = store.stats().await?;
        let started = Instant::now();
        let mut reported = 0u64;
        let (done, _) = compaction::compact_pending(store.as_ref(), &settings, now_ns, |total| {
            if total.messages - reported >= filled.messages / 20 {
                reported = total.messages;
                let elapsed = started.elapsed().as_secs_f64();
                eprintln!(
                    "scale compact: {} messages in {elapsed:.0} s ({:.0} messages/s)",
                    total.messages,
                    total.messages as f64 / elapsed
                );
            }
            true
        })
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        let after = store.stats().await?;
        store.close().await;
        anyhow::Ok((before, after, done, seconds))
    })?;
    let ratio = |stats: &store::StoreStats| stats.raw_bytes as f64 / stats.stored_bytes.max(1) as f64;
    println!(
        "scale compact: {} messages in {} windows, {} blocks -> {} in {seconds:.1} s ({:.0} messages/s); \
         blocks in the store {} -> {} ({} compacted); stored {:.2} GB -> {:.2} GB, ratio {:.2}x -> {:.2}x \
         (after {} s, window {} s, {} messages a block, zstd {}); {} blocks could not be decoded",
        done.messages,
        done.windows,
        done.blocks_read,
        done.blocks_written,
        done.messages as f64 / seconds.max(1e-9),
        before.blocks,
        after.blocks,
        after.compacted_blocks,
        before.stored_bytes as f64 / 1e9,
        after.stored_bytes as f64 / 1e9,
        ratio(&before),
        ratio(&after),
        settings.after_ns / 1_000_000_000,
        settings.window_ns / 1_000_000_000,
        settings.block_messages,
        settings.zstd_level,
        done.undecodable_blocks,
    );
    let path = data_dir.join(MARKER);
    let mut marker: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    marker["compacted"] = json!({
        "after_s": settings.after_ns / 1_000_000_000,
        "window_s": settings.window_ns / 1_000_000_000,
        "block_messages": settings.block_messages,
        "zstd_level": settings.zstd_level,
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&marker)?)?;
    Ok(())
}
