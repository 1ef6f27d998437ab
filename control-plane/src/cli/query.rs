//! `killkrill query logs`: searches a running appliance over its REST API and prints a
//! table (or the JSON rows), following cursors with `--all`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The appliance's API base URL.
    #[arg(long, env = "KILLKRILL_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// Access token (from POST /api/v1/auth/login) or API key (kk_...), sent as
    /// `Authorization: Bearer`; prefer the environment variable, which stays out of the
    /// shell history and the process list.
    #[arg(long, env = "KILLKRILL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// PEM file with the CA certificate that signed an https:// server's certificate, when
    /// the system's CAs do not include it.
    #[arg(long, env = "KILLKRILL_CA_CERT", value_name = "FILE", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Print one JSON object per row instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    what: QueryWhat,
}

#[derive(Debug, Subcommand)]
enum QueryWhat {
    /// Search stored log messages (the filters of GET /api/v1/logs).
    Logs(LogFilters),
}

#[derive(Debug, Args)]
struct LogFilters {
    /// From: RFC 3339 or relative, e.g. -15m.
    #[arg(long)]
    start: Option<String>,
    /// Until: RFC 3339, relative or `now`.
    #[arg(long)]
    end: Option<String>,
    /// Hostnames, comma-separated.
    #[arg(long)]
    host: Option<String>,
    /// App names, comma-separated.
    #[arg(long)]
    app: Option<String>,
    /// A level, a list (err,crit) or a comparison (<=warning).
    #[arg(long)]
    severity: Option<String>,
    /// Facility names or numbers, comma-separated.
    #[arg(long)]
    facility: Option<String>,
    /// Source address or CIDR network.
    #[arg(long)]
    source: Option<String>,
    /// Words, "phrases" and -excluded terms.
    #[arg(short, long)]
    q: Option<String>,
    /// Rows per page (1 to 10,000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// asc (oldest first) or desc (newest first, the default).
    #[arg(long)]
    order: Option<String>,
    /// Continue after this cursor (printed by an earlier run).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow next_cursor until every matching row is printed.
    #[arg(long)]
    all: bool,
}

impl LogFilters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("start", &self.start),
            ("end", &self.end),
            ("host", &self.host),
            ("app", &self.app),
            ("severity", &self.severity),
            ("facility", &self.facility),
            ("source", &self.source),
            ("q", &self.q),
            ("order", &self.order),
        ];
        let mut pairs: Vec<(&'static str, String)> = optional
            .into_iter()
            .filter_map(|(name, value)| value.clone().map(|value| (name, value)))
            .collect();
        pairs.push(("limit", self.limit.to_string()));
        pairs
    }
}

const SEVERITY_NAMES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

pub fn run(args: QueryArgs) -> ExitCode {
    match args.what {
        QueryWhat::Logs(ref filters) => match client(args.ca_cert.as_deref())
            .and_then(|client| logs(&client, &args.server, args.token.as_deref(), filters, args.json))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(QueryError::Usage(message)) => {
                eprintln!("killkrill: error: {message}");
                ExitCode::from(super::EXIT_CONFIG)
            }
            Err(QueryError::Failed(message)) => {
                eprintln!("killkrill: error: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

enum QueryError {
    /// The server refused the filters (400).
    Usage(String),
    Failed(String),
}

/// The HTTP client: https:// servers are checked against the system's CAs, plus `ca_cert`.
fn client(ca_cert: Option<&std::path::Path>) -> Result<reqwest::blocking::Client, QueryError> {
    let mut builder = reqwest::blocking::Client::builder();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .map_err(|error| QueryError::Usage(format!("--ca-cert {}: {error}", path.display())))?;
        let certificate = reqwest::Certificate::from_pem(&pem)
            .map_err(|error| QueryError::Usage(format!("--ca-cert {}: {error}", path.display())))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|error| QueryError::Failed(format!("cannot set up the HTTP client: {error}")))
}

fn logs(
    client: &reqwest::blocking::Client,
    server: &str,
    token: Option<&str>,
    filters: &LogFilters,
    json: bool,
) -> Result<(), QueryError> {
    let url = format!("{}/api/v1/logs", server.trim_end_matches('/'));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut cursor = filters.cursor.clone();
    if !json {
        let _ = writeln!(out, "{:<30}  {:<20}  {:<16}  {:<7}  MESSAGE", "RECEIVED", "HOST", "APP", "LEVEL");
    }
    loop {
        let mut pairs = filters.pairs();
        if let Some(cursor) = &cursor {
            pairs.push(("cursor", cursor.clone()));
        }
        let mut request = client.get(&url).query(&pairs);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response =
            request.send().map_err(|error| QueryError::Failed(format!("cannot reach {server}: {error}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .map_err(|error| QueryError::Failed(format!("unreadable answer from {server}: {error}")))?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
            return Err(if status.as_u16() == 400 {
                QueryError::Usage(message)
            } else if status.as_u16() == 401 && token.is_none() {
                QueryError::Failed(format!(
                    "{server} answered {status}: {message} (give --token or set KILLKRILL_TOKEN)"
                ))
            } else {
                QueryError::Failed(format!("{server} answered {status}: {message}"))
            });
        }
        for log in body["logs"].as_array().into_iter().flatten() {
            let written = if json {
                writeln!(out, "{log}")
            } else {
                let text = |name: &str| log[name].as_str().unwrap_or("-").to_owned();
                let level = log["severity"]
                    .as_u64()
                    .and_then(|severity| SEVERITY_NAMES.get(severity as usize))
                    .copied()
                    .unwrap_or("-");
                writeln!(
                    out,
                    "{:<30}  {:<20}  {:<16}  {:<7}  {}",
                    text("received_at"),
                    text("hostname"),
                    text("app_name"),
                    level,
                    text("message").replace(['\n', '\r'], " ")
                )
            };
            // A closed pipe (`| head`) ends the output quietly.
            if written.is_err() {
                return Ok(());
            }
        }
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        match (&cursor, filters.all) {
            (Some(_), true) => continue,
            (Some(next), false) => {
                if !json {
                    let _ = writeln!(out, "(more: --cursor {next}, or --all)");
                }
                break;
            }
            (None, _) => break,
        }
    }
    let _ = out.flush();
    Ok(())
}
