//! The `killkrill` command line.

mod admin;
mod export;
mod parse;
mod query;
mod runtime_config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, FlagOverrides, ListenAddress};
use crate::{VERSION, server};

#[derive(Debug, Parser)]
#[command(name = "killkrill", version = VERSION, about = "Log and metrics ingestion appliance", args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance: data plane and control plane in one process.
    Serve(ServeArgs),
    /// Show what Killkrill makes of your devices' output, one JSON object per input line,
    /// with the same parsers the ingest path uses.
    Parse(parse::ParseArgs),
    /// Write every stored message, oldest first, reading the store directly.
    Export(export::ExportArgs),
    /// Search a running appliance through its REST API.
    Query(query::QueryArgs),
    /// Manage users directly in the store (no server needed).
    Admin(admin::AdminArgs),
    /// Show or reset the live settings kept in the store (PUT /api/v1/config/*).
    RuntimeConfig(runtime_config::RuntimeConfigArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "KILLKRILL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded store and local state.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// REST API and web address, ADDR:PORT or "off" (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    api_listen: Option<ListenAddress>,
    /// Scrape-only metrics address, ADDR:PORT or "off".
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<ListenAddress>,
    /// Syslog over UDP, ADDR:PORT or "off".
    #[arg(long, value_name = "ADDR:PORT")]
    syslog_udp: Option<ListenAddress>,
    /// Syslog over TCP, ADDR:PORT or "off".
    #[arg(long, value_name = "ADDR:PORT")]
    syslog_tcp: Option<ListenAddress>,
    /// Syslog over TLS, ADDR:PORT or "off" (needs syslog.tls_cert and syslog.tls_key).
    #[arg(long, value_name = "ADDR:PORT")]
    syslog_tls: Option<ListenAddress>,
    /// statsd / DogStatsD over UDP, ADDR:PORT or "off".
    #[arg(long, value_name = "ADDR:PORT")]
    statsd_udp: Option<ListenAddress>,
    /// Influx line protocol over UDP, ADDR:PORT or "off".
    #[arg(long, value_name = "ADDR:PORT")]
    influx_udp: Option<ListenAddress>,
    /// Metrics aggregation interval in milliseconds (metrics.flush_interval_ms).
    #[arg(long, value_name = "MS")]
    metrics_flush_interval_ms: Option<u64>,
    /// PEM certificate chain for the API; with --api-tls-key it serves HTTPS (api.tls_cert).
    #[arg(long, value_name = "FILE")]
    api_tls_cert: Option<PathBuf>,
    /// PEM private key of the API certificate (api.tls_key).
    #[arg(long, value_name = "FILE")]
    api_tls_key: Option<PathBuf>,
    /// Serve the API over plain HTTP on a non-loopback address (api.allow_http).
    #[arg(long)]
    api_allow_http: bool,
    /// Data-plane CPUs: "auto" or a list such as "2-5,8" (dataplane.cores).
    #[arg(long, value_name = "CPUS")]
    dataplane_cores: Option<String>,
    /// Data-plane runtime: auto, glommio or threads (dataplane.runtime).
    #[arg(long, value_name = "KIND")]
    dataplane_runtime: Option<crate::config::DataplaneRuntimeSetting>,
}

/// The configuration a command runs with; a bad one is said on stderr and exits 2.
fn load_config(file: Option<&std::path::Path>, flags: FlagOverrides) -> Result<Config, ExitCode> {
    Config::load(file, flags).map_err(|error| {
        eprintln!("killkrill: error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Runs a one-shot command's async work on a runtime of its own (the commands that read or
/// write the store directly, without a server).
fn block_on<F: std::future::Future>(work: F) -> Result<F::Output, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| {
        eprintln!("killkrill: error: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })?;
    Ok(runtime.block_on(work))
}

/// Pins this (the start-up) thread to the CPUs the data plane leaves, before the async
/// runtime starts: its workers and blocking threads, the batch writer, the encoders and
/// SQLite's threads all start from here or from them and inherit the set, while the
/// data-plane threads pin themselves to their own cores (issue 5: "the rest run the
/// control plane"; ADR 0040). A failure is logged and leaves the threads unpinned; a bad
/// `dataplane.cores` is the data plane's error to report at start-up.
fn pin_control_plane(config: &Config) {
    use killkrill_dataplane::cores::format_cpu_list;
    let pinned = config
        .dataplane
        .cores()
        .map_err(|error| error.to_string())
        .and_then(|selection| killkrill_dataplane::cores::pin_control_plane(&selection));
    match pinned {
        Ok(cpus) => tracing::info!(cpus = %format_cpu_list(&cpus), "Control plane pinned."),
        Err(error) => tracing::warn!(error = %error, "The control plane's threads are not pinned."),
    }
}

/// Exit status for a configuration or usage problem (a runtime failure exits 1).
const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Parse(args) => parse::run(&args),
        Command::Export(args) => export::run(args),
        Command::Query(args) => query::run(args),
        Command::Admin(args) => admin::run(args),
        Command::RuntimeConfig(args) => runtime_config::run(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let flags = FlagOverrides {
        data_dir: args.data_dir,
        api_listen: args.api_listen,
        metrics_listen: args.metrics_listen,
        syslog_udp: args.syslog_udp,
        syslog_tcp: args.syslog_tcp,
        syslog_tls: args.syslog_tls,
        statsd_udp: args.statsd_udp,
        influx_udp: args.influx_udp,
        metrics_flush_interval_ms: args.metrics_flush_interval_ms,
        api_tls_cert: args.api_tls_cert,
        api_tls_key: args.api_tls_key,
        api_allow_http: args.api_allow_http.then_some(true),
        dataplane_cores: args.dataplane_cores,
        dataplane_runtime: args.dataplane_runtime,
    };
    let config = match load_config(args.config.as_deref(), flags) {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    if let Err(error) = crate::telemetry::logging::init(&config.log.level) {
        eprintln!("killkrill: error: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    pin_control_plane(&config);
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("control-plane").build() {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("killkrill: error: cannot start the async runtime: {error}");
                return ExitCode::FAILURE;
            }
        };
    match runtime.block_on(server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "Killkrill failed to start.");
            eprintln!("killkrill: error: {error}");
            match error {
                crate::Error::Config(_) | crate::Error::DataDir { .. } => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
