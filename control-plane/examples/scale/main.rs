//! The scale benchmark (`cargo xtask bench scale <fill|compact|query|api>`,
//! docs/performance.md "Scale"): a store of N messages, optionally compacted by host, then
//! search latency and API request rate through the real HTTP API of `killkrill serve` on it.

mod compact;
mod corpus;
mod fill;
mod queries;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use killkrill::config::{DbType, StoreConfig};

#[derive(Parser)]
struct Args {
    /// Where the store lives (reused when its marker file matches).
    #[arg(long, default_value = "/work/scale-data")]
    data_dir: PathBuf,
    /// Messages in the store.
    #[arg(long, default_value_t = 100_000_000)]
    messages: u64,
    /// How the fill groups messages into blocks.
    #[arg(long, value_enum, default_value = "arrival")]
    layout: fill::Layout,
    /// zstd level of the blocks (the appliance's default).
    #[arg(long, default_value_t = 1)]
    level: i32,
    /// The `killkrill` binary to serve the store with (query, api).
    #[arg(long)]
    killkrill: Option<PathBuf>,
    /// Keep the store in this PostgreSQL database instead of SQLite in `--data-dir` (which
    /// then holds only the marker file). A new fill needs a database without log blocks.
    #[arg(long)]
    database_url: Option<String>,
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Subcommand)]
enum Phase {
    /// Build (or reuse) the store.
    Fill,
    /// Compact the store by host, as `killkrill serve` does in the background.
    Compact {
        /// Data younger than this (seconds before the end of the filled day) stays as cut.
        #[arg(long, default_value_t = 30)]
        after_s: i64,
        /// Blocks that began within one window of receive time are compacted together.
        #[arg(long, default_value_t = 60)]
        window_s: i64,
        /// Messages per compacted block, about.
        #[arg(long, default_value_t = 1_024)]
        block_messages: usize,
        /// zstd level of compacted blocks.
        #[arg(long, default_value_t = 9)]
        compact_level: i32,
        /// Host-grouped blocks older than this (seconds before the end of the day) are
        /// merged into large blocks; 0: not merged.
        #[arg(long, default_value_t = 3_600)]
        merge_after_s: i64,
        /// Host-grouped blocks that began within one merge window are merged together.
        #[arg(long, default_value_t = 3_600)]
        merge_window_s: i64,
        /// Messages per merged block, about.
        #[arg(long, default_value_t = 16_384)]
        merge_block_messages: usize,
        /// zstd level of merged blocks.
        #[arg(long, default_value_t = 19)]
        merge_level: i32,
    },
    /// Selective and broad search latency.
    Query {
        #[arg(long, default_value_t = 300)]
        iterations: u64,
    },
    /// Request rate of a simple authenticated query from many keep-alive connections.
    Api {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "/api/v1/logs?limit=10")]
        path: String,
        /// A different simple search every request (hosts, apps, severities, limits,
        /// next pages) instead of `--path`: what the answer cache cannot serve.
        #[arg(long)]
        distinct: bool,
    },
}

impl Args {
    /// The store as `killkrill serve` would open it with the same settings.
    fn store_config(&self) -> StoreConfig {
        match &self.database_url {
            Some(url) => StoreConfig {
                db_type: DbType::Postgres,
                database_url: Some(url.clone()),
                ..StoreConfig::default()
            },
            None => StoreConfig::default(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = args.store_config();
    let filled = fill::fill(&args.data_dir, &store, args.messages, args.layout, args.level)?;
    let serve = || {
        let binary = args.killkrill.clone().ok_or_else(|| anyhow::anyhow!("--killkrill is needed"))?;
        server::Appliance::start(&binary, &args.data_dir, args.database_url.as_deref())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.phase {
        Phase::Fill => {}
        Phase::Compact {
            after_s,
            window_s,
            block_messages,
            compact_level,
            merge_after_s,
            merge_window_s,
            merge_block_messages,
            merge_level,
        } => {
            use killkrill::store::compaction::{CompactionSettings, PassSettings};
            let settings = CompactionSettings {
                by_host: PassSettings {
                    after_ns: after_s * 1_000_000_000,
                    window_ns: window_s * 1_000_000_000,
                    block_messages,
                    zstd_level: compact_level,
                },
                merge: (merge_after_s > 0).then_some(PassSettings {
                    after_ns: merge_after_s * 1_000_000_000,
                    window_ns: merge_window_s * 1_000_000_000,
                    block_messages: merge_block_messages,
                    zstd_level: merge_level,
                }),
            };
            compact::compact(&args.data_dir, &store, &filled, settings)?;
        }
        Phase::Query { iterations } => {
            let appliance = serve()?;
            for latencies in runtime.block_on(queries::run_queries(&appliance, &filled, iterations))? {
                println!("scale query, {} messages: {}", filled.messages, latencies.line());
            }
        }
        Phase::Api { connections, seconds, path, distinct } => {
            let requests = if distinct {
                queries::Requests::Distinct { day_end_ns: filled.day_start_ns + 86_400_000_000_000 }
            } else {
                queries::Requests::Fixed(path)
            };
            let appliance = serve()?;
            let result = runtime.block_on(queries::run_api(
                &appliance,
                &requests,
                connections,
                Duration::from_secs(seconds),
            ))?;
            println!(
                "scale api, {} messages, {connections} connections, {}: {}",
                filled.messages,
                requests.describe(),
                result.line()
            );
        }
    }
    Ok(())
}
