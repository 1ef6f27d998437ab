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
    let pass = |pass: &compaction::PassSettings| {
        format!(
            "after {} s, window {} s, {} messages a block, zstd {}",
            pass.after_ns / 1_000_000_000,
            pass.window_ns / 1_000_000_000,
            pass.block_messages,
            pass.zstd_level
        )
    };
    let merge = settings.merge.as_ref().map_or_else(|| "off".to_owned(), pass);
    println!(
        "scale compact: {} messages in {} windows ({} merged), {} blocks -> {} in {seconds:.1} s ({:.0} messages/s); \
         blocks in the store {} -> {} ({} compacted, {} merged); stored {:.2} GB -> {:.2} GB, ratio {:.2}x -> {:.2}x \
         (by host: {}; merge: {merge}); {} blocks could not be decoded",
        done.messages,
        done.windows,
        done.merged_windows,
        done.blocks_read,
        done.blocks_written,
        done.messages as f64 / seconds.max(1e-9),
        before.blocks,
        after.blocks,
        after.compacted_blocks,
        after.merged_blocks,
        before.stored_bytes as f64 / 1e9,
        after.stored_bytes as f64 / 1e9,
        ratio(&before),
        ratio(&after),
        pass(&settings.by_host),
        done.undecodable_blocks,
    );
    let path = data_dir.join(MARKER);
    let mut marker: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    marker["compacted"] = marker_pass(&settings.by_host);
    marker["merged"] = settings.merge.as_ref().map_or(Value::Null, marker_pass);
    std::fs::write(&path, serde_json::to_vec_pretty(&marker)?)?;
    Ok(())
}

/// A pass's settings as the marker file keeps them.
fn marker_pass(pass: &compaction::PassSettings) -> Value {
    json!({
        "after_s": pass.after_ns / 1_000_000_000,
        "window_s": pass.window_ns / 1_000_000_000,
        "block_messages": pass.block_messages,
        "zstd_level": pass.zstd_level,
    })
}
