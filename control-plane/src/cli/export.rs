//! `killkrill export`: reads the store directly (no server needed) and writes every
//! stored message, oldest first, for backups, migrations and the benchmark's loss scan.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::{Config, FlagOverrides};
use crate::store::{self, LogQuery, Order, TextQuery};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// TOML configuration file: the store it names is read.
    #[arg(long, env = "KILLKRILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `jsonl`: one JSON object per message, as the API returns it; `lines`: the receive
    /// time in Unix nanoseconds, a space and the message text.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    format: ExportFormat,
    /// Only messages matching this search (the API's `q`).
    #[arg(long, value_name = "TERMS")]
    q: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExportFormat {
    Jsonl,
    Lines,
}

const PAGE: u32 = 10_000;

pub fn run(args: ExportArgs) -> ExitCode {
    let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
    let config = match super::load_config(args.config.as_deref(), flags) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let text = match TextQuery::parse(args.q.as_deref().unwrap_or_default()) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("killkrill: error: --q: {message}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let exported = match super::block_on(export(&config, text, args.format)) {
        Ok(exported) => exported,
        Err(exit) => return exit,
    };
    match exported {
        Ok(count) => {
            eprintln!("killkrill: exported {count} messages");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("killkrill: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn export(config: &Config, text: TextQuery, format: ExportFormat) -> anyhow::Result<u64> {
    if !config.data_dir.exists() && config.store.database_url.is_none() {
        anyhow::bail!("data directory {} does not exist", config.data_dir.display());
    }
    let store = store::open(&config.store, &config.data_dir).await?;
    let mut query = LogQuery { text, limit: PAGE, order: Order::Ascending, ..LogQuery::default() };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    loop {
        let page = store.query_logs(&query).await?;
        for log in &page.logs {
            match format {
                ExportFormat::Jsonl => {
                    serde_json::to_writer(&mut out, log)?;
                    out.write_all(b"\n")?;
                }
                ExportFormat::Lines => {
                    let nanos =
                        log.received_at.parse::<jiff::Timestamp>().map_or(0, |time| time.as_nanosecond());
                    // One line per message: line breaks inside a message become spaces.
                    let message = log.message.replace(['\n', '\r'], " ");
                    writeln!(out, "{nanos} {message}")?;
                }
            }
        }
        count += page.logs.len() as u64;
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    out.flush()?;
    store.close().await;
    Ok(count)
}
