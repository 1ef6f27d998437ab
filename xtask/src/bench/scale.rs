//! `cargo xtask bench scale <fill|compact|query|api>`: the scale benchmark
//! (docs/performance.md, "Scale"). Builds the appliance and the `scale` example of the
//! killkrill package, then runs the example, which fills a store of N messages through the
//! Store API (reusing a matching fill), compacts it by host as `killkrill serve` does in
//! the background, and measures searches and the API's request rate through
//! `killkrill serve` on it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::util::{cargo, exec, target_dir};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Phase {
    /// Build (or reuse) the store only.
    Fill,
    /// Compact the filled store by host (ADR 0037) and merge what is older than an hour
    /// (ADR 0055): throughput and size before and after.
    Compact,
    /// Selective and broad search latency (p50, p99, max).
    Query,
    /// Requests per second of a simple authenticated query.
    Api,
}

#[derive(Args, Clone)]
pub struct ScaleArgs {
    pub phase: Phase,
    /// Messages in the store.
    #[arg(long, default_value_t = 100_000_000)]
    pub messages: u64,
    /// Where the store lives; a fill with the same size and format is reused.
    #[arg(long, default_value = "/work/scale-data")]
    pub data_dir: PathBuf,
    /// How the fill groups messages into blocks: arrival (as the batch writer does) or
    /// host-groups (split by host, as a host-grouping writer would).
    #[arg(long, default_value = "arrival")]
    pub layout: String,
    /// Searches of each kind (query).
    #[arg(long, default_value_t = 300)]
    pub iterations: u64,
    /// Keep-alive connections (api).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds the clients run (api).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The path every client asks (api; default `/api/v1/logs?limit=10`).
    #[arg(long)]
    pub path: Option<String>,
    /// A different simple search every request instead of one path (api): hosts, apps,
    /// severities, limits and next pages that the answer cache cannot serve.
    #[arg(long)]
    pub distinct: bool,
    /// Data younger than this many seconds before the end of the filled day stays as cut
    /// (compact; the appliance's `store.compaction.after`).
    #[arg(long, default_value_t = 30)]
    pub after_s: i64,
    /// Compaction window in seconds of receive time (compact).
    #[arg(long, default_value_t = 60)]
    pub window_s: i64,
    /// Messages per compacted block, about (compact).
    #[arg(long, default_value_t = 1_024)]
    pub block_messages: usize,
    /// zstd level of compacted blocks (compact).
    #[arg(long, default_value_t = 9)]
    pub compact_level: i32,
    /// Host-grouped blocks older than this many seconds before the end of the filled day
    /// are merged into large blocks (compact; `store.compaction.merge_after`; 0: not merged).
    #[arg(long, default_value_t = 3_600)]
    pub merge_after_s: i64,
    /// Merge window in seconds of receive time (compact).
    #[arg(long, default_value_t = 3_600)]
    pub merge_window_s: i64,
    /// Messages per merged block, about (compact).
    #[arg(long, default_value_t = 16_384)]
    pub merge_block_messages: usize,
    /// zstd level of merged blocks (compact).
    #[arg(long, default_value_t = 19)]
    pub merge_level: i32,
    /// Keep the store in this PostgreSQL database (empty for a new fill) instead of SQLite
    /// in the data directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Debug builds (fast to build; for smoke runs, never for figures).
    #[arg(long)]
    pub debug_build: bool,
}

impl ScaleArgs {
    /// A few seconds' worth: 200,000 messages, debug builds (`cargo xtask test`).
    pub fn smoke(phase: Phase, data_dir: PathBuf) -> Self {
        Self {
            phase,
            messages: 200_000,
            data_dir,
            layout: "arrival".into(),
            iterations: 10,
            connections: 8,
            seconds: 2,
            path: None,
            distinct: false,
            after_s: 30,
            window_s: 60,
            block_messages: 1_024,
            compact_level: 9,
            merge_after_s: 3_600,
            merge_window_s: 3_600,
            merge_block_messages: 16_384,
            merge_level: 19,
            database_url: None,
            debug_build: true,
        }
    }
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    let profile = |command: &mut std::process::Command| {
        if !args.debug_build {
            command.arg("--release");
        }
    };
    let mut build = cargo();
    build.args(["build", "--package", "killkrill", "--bin", "killkrill", "--example", "scale"]);
    profile(&mut build);
    exec(&mut build)?;
    let dir = target_dir().join(if args.debug_build { "debug" } else { "release" });
    let phase = match args.phase {
        Phase::Fill => vec!["fill".to_owned()],
        Phase::Compact => vec![
            "compact".to_owned(),
            "--after-s".to_owned(),
            args.after_s.to_string(),
            "--window-s".to_owned(),
            args.window_s.to_string(),
            "--block-messages".to_owned(),
            args.block_messages.to_string(),
            "--compact-level".to_owned(),
            args.compact_level.to_string(),
            "--merge-after-s".to_owned(),
            args.merge_after_s.to_string(),
            "--merge-window-s".to_owned(),
            args.merge_window_s.to_string(),
            "--merge-block-messages".to_owned(),
            args.merge_block_messages.to_string(),
            "--merge-level".to_owned(),
            args.merge_level.to_string(),
        ],
        Phase::Query => vec!["query".to_owned(), "--iterations".to_owned(), args.iterations.to_string()],
        Phase::Api => {
            let mut api = vec![
                "api".to_owned(),
                "--connections".to_owned(),
                args.connections.to_string(),
                "--seconds".to_owned(),
                args.seconds.to_string(),
            ];
            if let Some(path) = &args.path {
                api.extend(["--path".to_owned(), path.clone()]);
            }
            if args.distinct {
                api.push("--distinct".to_owned());
            }
            api
        }
    };
    let mut scale = std::process::Command::new(dir.join("examples/scale"));
    scale
        .arg("--data-dir")
        .arg(&args.data_dir)
        .args(["--messages", &args.messages.to_string(), "--layout", &args.layout])
        .arg("--killkrill")
        .arg(dir.join("killkrill"));
    if let Some(url) = &args.database_url {
        scale.args(["--database-url", url]);
    }
    exec(scale.args(phase))
}

/// The smoke run of `cargo xtask test`: every phase on a small store.
pub fn smoke() -> anyhow::Result<()> {
    let data_dir = target_dir().join("bench-smoke/scale");
    for phase in [Phase::Fill, Phase::Compact, Phase::Query, Phase::Api] {
        run(&ScaleArgs::smoke(phase, data_dir.clone()))?;
    }
    // And the distinct searches, which exercise the searches the answer cache cannot serve.
    run(&ScaleArgs { distinct: true, ..ScaleArgs::smoke(Phase::Api, data_dir) })
}
