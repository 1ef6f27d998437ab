//! `killkrill runtime-config show|reset`: the live settings kept in the store (changed
//! through `PUT /api/v1/config/*`), read and forgotten directly in the store. A reset
//! section follows the configuration file again from the next start (docs/adr/0024).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::{Config, FlagOverrides};
use crate::runtime_config;
use crate::store;

#[derive(Debug, Args)]
pub struct RuntimeConfigArgs {
    /// TOML configuration file: the store it names is used.
    #[arg(long, global = true, env = "KILLKRILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print every kept section, one JSON object per line.
    Show,
    /// Forget kept sections: the configuration's value applies from the next start.
    Reset {
        /// The sections to forget.
        #[arg(value_enum, required_unless_present = "all")]
        sections: Vec<Section>,
        /// Forget every section.
        #[arg(long, conflicts_with = "sections")]
        all: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Section {
    Listeners,
    Capture,
    Sources,
    RateLimits,
    Retention,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Listeners => runtime_config::LISTENERS_KEY,
            Section::Capture => runtime_config::CAPTURE_KEY,
            Section::Sources => runtime_config::SOURCES_KEY,
            Section::RateLimits => runtime_config::RATE_LIMITS_KEY,
            Section::Retention => runtime_config::RETENTION_KEY,
        }
    }
}

pub fn run(args: RuntimeConfigArgs) -> ExitCode {
    let flags = FlagOverrides { data_dir: args.data_dir.clone(), ..FlagOverrides::default() };
    let config = match super::load_config(args.config.as_deref(), flags) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let done = match super::block_on(act(&config, args.action)) {
        Ok(done) => done,
        Err(exit) => return exit,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("killkrill: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn act(config: &Config, action: Action) -> anyhow::Result<()> {
    if !config.data_dir.exists() && config.store.database_url.is_none() {
        anyhow::bail!("data directory {} does not exist", config.data_dir.display());
    }
    let store = store::open(&config.store, &config.data_dir).await?;
    match action {
        Action::Show => {
            for entry in store.runtime_config().await? {
                let value: serde_json::Value = serde_json::from_str(&entry.value)
                    .unwrap_or_else(|_| serde_json::Value::String(entry.value.clone()));
                println!(
                    "{}",
                    serde_json::json!({
                        "key": entry.key,
                        "value": value,
                        "updated_at": entry.updated_at,
                        "updated_by": entry.updated_by,
                    })
                );
            }
        }
        Action::Reset { sections, all } => {
            let keys: Vec<&str> =
                if all { runtime_config::KEYS.to_vec() } else { sections.iter().map(|s| s.key()).collect() };
            for key in keys {
                let removed = store.delete_runtime_config(key).await?;
                eprintln!(
                    "killkrill: {key}: {}",
                    if removed {
                        "reset; the configuration applies from the next start"
                    } else {
                        "was not set live"
                    }
                );
            }
        }
    }
    store.close().await;
    Ok(())
}
