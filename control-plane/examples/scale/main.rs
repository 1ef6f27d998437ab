//! The scale benchmark (`cargo xtask bench scale <fill|query|api>`, docs/performance.md
//! "Scale"): a store of N messages, then search latency and API request rate through
//! the real HTTP API of `killkrill serve` on it.

mod corpus;
mod fill;
mod queries;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Subcommand)]
enum Phase {
    /// Build (or reuse) the store.
    Fill,
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
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filled = fill::fill(&args.data_dir, args.messages, args.layout, args.level)?;
    let serve = || {
        let binary = args.killkrill.clone().ok_or_else(|| anyhow::anyhow!("--killkrill is needed"))?;
        server::Appliance::start(&binary, &args.data_dir)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.phase {
        Phase::Fill => {}
        Phase::Query { iterations } => {
            let appliance = serve()?;
            for latencies in runtime.block_on(queries::run_queries(&appliance, &filled, iterations))? {
                println!("scale query, {} messages: {}", filled.messages, latencies.line());
            }
        }
        Phase::Api { connections, seconds, path } => {
            let appliance = serve()?;
            let result = runtime.block_on(queries::run_api(
                &appliance,
                &path,
                connections,
                Duration::from_secs(seconds),
            ))?;
            println!(
                "scale api, {} messages, {connections} connections, GET {path}: {}",
                filled.messages,
                result.line()
            );
        }
    }
    Ok(())
}
