//! `fill`: builds a store of N messages straight through the `Store` API. Encoder
//! threads (one per core) turn numbered runs of messages into blocks; one task commits
//! them. A marker file says what the store holds, so a second run with the same size
//! and format reuses it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use killkrill::config::StoreConfig;
use killkrill::store::{self, BlockEncoder, EncodedBlock};
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;
use serde_json::{Value, json};

use crate::corpus;

/// Bump when the corpus or the layout of a fill changes: older fills are rebuilt.
const FILL_FORMAT: u64 = 1;
pub const MARKER: &str = "scale-fill.json";
/// Messages per block, as the appliance's default `store.block_max_messages`.
const BLOCK_MESSAGES: u64 = 16_384;
/// Host-grouped layout: this many blocks' worth of messages are split by host.
const HOST_GROUPS: u64 = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// Messages go into blocks in arrival order, as the batch writer makes them: every
    /// block holds nearly every host.
    Arrival,
    /// Each run of 32 blocks' worth of messages is split into 32 blocks by host (host
    /// number modulo 32), as a writer that groups by host would make them.
    HostGroups,
}

/// What a fill holds, as its marker file says.
#[derive(Clone, Debug)]
pub struct Filled {
    pub messages: u64,
    pub day_start_ns: i64,
}

pub fn read_marker(data_dir: &Path) -> Option<(Value, Filled)> {
    let marker: Value = serde_json::from_slice(&std::fs::read(data_dir.join(MARKER)).ok()?).ok()?;
    let filled =
        Filled { messages: marker["messages"].as_u64()?, day_start_ns: marker["day_start_ns"].as_i64()? };
    Some((marker, filled))
}

pub fn fill(
    data_dir: &Path,
    config: &StoreConfig,
    messages: u64,
    layout: Layout,
    level: i32,
) -> anyhow::Result<Filled> {
    let layout_name = format!("{layout:?}");
    let database_url = config.database_url.as_deref();
    if let Some((marker, filled)) = read_marker(data_dir)
        && marker["format"].as_u64() == Some(FILL_FORMAT)
        && filled.messages == messages
        && marker["layout"].as_str() == Some(layout_name.as_str())
        && marker["database_url"].as_str() == database_url
        && marker["complete"].as_bool() == Some(true)
    {
        let compacted = if marker["compacted"].is_object() { ", compacted by host" } else { "" };
        eprintln!(
            "scale fill: reusing {} ({messages} messages, {layout_name}{compacted})",
            data_dir.display()
        );
        return Ok(filled);
    }
    // A partial or different fill: start again from an empty directory (a PostgreSQL
    // database is checked for blocks once it is open: this does not drop anyone's data).
    if data_dir.exists() {
        for entry in std::fs::read_dir(data_dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if name.starts_with("killkrill.db") || name == MARKER {
                std::fs::remove_file(&path)?;
            }
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let day_start_ns = (jiff::Timestamp::now().as_second() - 86_400) * 1_000_000_000;
    let filled = Filled { messages, day_start_ns };
    let marker = |complete: bool| {
        json!({ "format": FILL_FORMAT, "messages": messages, "layout": layout_name,
                "database_url": database_url, "day_start_ns": day_start_ns,
                "block_messages": BLOCK_MESSAGES, "complete": complete })
    };
    std::fs::write(data_dir.join(MARKER), serde_json::to_vec_pretty(&marker(false))?)?;

    let unit_messages = match layout {
        Layout::Arrival => BLOCK_MESSAGES,
        Layout::HostGroups => BLOCK_MESSAGES * HOST_GROUPS,
    };
    let units = messages.div_ceil(unit_messages);
    let next_unit = Arc::new(AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let (sender, receiver) = mpsc::sync_channel::<EncodedBlock>(threads * 4);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (next_unit, sender) = (next_unit.clone(), sender.clone());
        workers.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let mut encoder = BlockEncoder::new(level)?;
            let mut frame = Vec::with_capacity(512);
            loop {
                let unit = next_unit.fetch_add(1, Ordering::Relaxed);
                if unit >= units {
                    return Ok(());
                }
                let first = unit * unit_messages;
                let last = (first + unit_messages).min(messages);
                let groups = match layout {
                    Layout::Arrival => 1,
                    Layout::HostGroups => HOST_GROUPS,
                };
                let limits =
                    BatchLimits { max_messages: 4096, max_bytes: 64 << 20, ..BatchLimits::default() };
                let mut batches: Vec<LogBatch> =
                    (0..groups).map(|_| LogBatch::new(ListenerKind::SyslogUdp, &limits)).collect();
                for index in first..last {
                    let received_ns = corpus::received_ns(day_start_ns, index, messages);
                    let host = corpus::write(index, received_ns, &mut frame);
                    let options = ParseOptions {
                        received_at: jiff::Timestamp::from_nanosecond(i128::from(received_ns))?,
                        ..ParseOptions::default()
                    };
                    batches[(host % groups) as usize].push_syslog(
                        &frame,
                        None,
                        corpus::source(host),
                        &options,
                    );
                }
                for batch in batches.iter().filter(|batch| !batch.is_empty()) {
                    let block = encoder.encode(batch.iter())?;
                    if sender.send(block).is_err() {
                        return Ok(());
                    }
                }
            }
        }));
    }
    drop(sender);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (committed, stats) = runtime.block_on(async {
        let store = store::open(config, data_dir).await?;
        let held = store.stats().await?.blocks;
        anyhow::ensure!(
            held == 0,
            "the store already holds {held} log blocks: a new fill needs an empty database"
        );
        let mut committed = 0u64;
        let mut reported = 0u64;
        // The channel is fed by threads: take blocks off it without blocking the runtime.
        let (async_sender, mut async_receiver) = tokio::sync::mpsc::channel::<EncodedBlock>(threads * 4);
        let forwarder = std::thread::spawn(move || {
            while let Ok(block) = receiver.recv() {
                if async_sender.blocking_send(block).is_err() {
                    return;
                }
            }
        });
        while let Some(block) = async_receiver.recv().await {
            store.insert_block(&block).await?;
            committed += u64::from(block.summary.message_count);
            if committed - reported >= messages / 20 {
                reported = committed;
                let elapsed = started.elapsed().as_secs_f64();
                eprintln!(
                    "scale fill: {committed} / {messages} messages in {elapsed:.0} s ({:.0} messages/s)",
                    committed as f64 / elapsed
                );
            }
        }
        let stats = store.stats().await?;
        store.close().await;
        let _ = forwarder.join();
        anyhow::Ok((committed, stats))
    })?;
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("an encoder thread panicked"))??;
    }
    anyhow::ensure!(committed == messages, "committed {committed} of {messages} messages");
    std::fs::write(data_dir.join(MARKER), serde_json::to_vec_pretty(&marker(true))?)?;
    let elapsed = started.elapsed().as_secs_f64();
    let on_disk = match database_url {
        // The database's own size is the server's business (`pg_database_size`).
        Some(_) => String::from("in PostgreSQL"),
        None => {
            let bytes: u64 = std::fs::read_dir(data_dir)?
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|metadata| metadata.len())
                .sum();
            format!("{:.2} GB on disk", bytes as f64 / 1e9)
        }
    };
    println!(
        "scale fill: {messages} messages ({layout_name}) in {elapsed:.1} s ({:.0} messages/s), \
         {:.2} GB of log blocks (ratio {:.2}x), {on_disk}",
        messages as f64 / elapsed,
        stats.stored_bytes as f64 / 1e9,
        stats.raw_bytes as f64 / stats.stored_bytes.max(1) as f64,
    );
    Ok(filled)
}
