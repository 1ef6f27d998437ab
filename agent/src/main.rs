//! `killkrill-agent`: configured by `KILLKRILL_AGENT_CONFIG` (a TOML file) and
//! `KILLKRILL_AGENT__*` variables, logs JSON to stdout at `LOG_LEVEL` (docs/agent.md).

use std::process::ExitCode;

use killkrill_agent::{AgentConfig, Error, SERVICE_NAME, VERSION, logging};

const USAGE: &str = "usage: killkrill-agent [--version]
Configured through KILLKRILL_AGENT_CONFIG (TOML file) and KILLKRILL_AGENT__<KEY> variables;
SIGHUP re-reads the configuration, SIGTERM stops (docs/agent.md).";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["--version"] => {
            println!("{SERVICE_NAME} {VERSION}");
            return ExitCode::SUCCESS;
        }
        ["--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
    if let Err(error) = logging::init(&level) {
        eprintln!("{SERVICE_NAME}: {error}");
        return ExitCode::from(2);
    }
    let config = match AgentConfig::load() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(error = %error, "The configuration is not valid.");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(error = %error, "Cannot start the runtime.");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(killkrill_agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ Error::Config(_)) => {
            tracing::error!(error = %error, "The configuration is not valid.");
            ExitCode::from(2)
        }
        Err(error) => {
            tracing::error!(error = %error, "The agent stopped on an error.");
            ExitCode::FAILURE
        }
    }
}
