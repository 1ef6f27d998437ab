//! `killkrill query logs` and `killkrill query metrics`: ask a running appliance over its
//! REST API and print a table (or the JSON rows); `logs --all` follows cursors.

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
    /// A metric's values per tag set (GET /api/v1/metrics); without --name, the metric names.
    Metrics(MetricFilters),
}

#[derive(Debug, Args)]
struct MetricFilters {
    /// The metric; without it, every stored metric name is listed.
    #[arg(long)]
    name: Option<String>,
    /// Only series with this tag value, KEY=VALUE; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// From: RFC 3339 or relative, e.g. -1h (default: an hour before --end).
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// Until: RFC 3339, relative or `now`.
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    /// Bucket width, e.g. 10s, 1m, 1h.
    #[arg(long)]
    step: Option<String>,
    /// sum, avg, min, max, count, rate, last, p50, p90 or p99.
    #[arg(long)]
    agg: Option<String>,
}

impl MetricFilters {
    fn pairs(&self, name: &str) -> Result<Vec<(String, String)>, QueryError> {
        let mut pairs = vec![("name".to_owned(), name.to_owned())];
        for tag in &self.tags {
            let (key, value) = tag
                .split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .ok_or_else(|| QueryError::Usage(format!("--tag `{tag}`: write it KEY=VALUE")))?;
            pairs.push((format!("tag.{key}"), value.to_owned()));
        }
        let optional = [("start", &self.start), ("end", &self.end), ("step", &self.step), ("agg", &self.agg)];
        pairs.extend(optional.into_iter().filter_map(|(key, value)| Some((key.to_owned(), value.clone()?))));
        Ok(pairs)
    }
}

#[derive(Debug, Args)]
struct LogFilters {
    /// From: RFC 3339 or relative, e.g. -15m.
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    /// Until: RFC 3339, relative or `now`.
    #[arg(long, allow_hyphen_values = true)]
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
    let done = client(args.ca_cert.as_deref()).and_then(|client| match &args.what {
        QueryWhat::Logs(filters) => logs(&client, &args.server, args.token.as_deref(), filters, args.json),
        QueryWhat::Metrics(filters) => {
            metrics(&client, &args.server, args.token.as_deref(), filters, args.json)
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(QueryError::Usage(message)) => {
            eprintln!("killkrill: error: {message}");
            ExitCode::from(super::EXIT_CONFIG)
        }
        Err(QueryError::Failed(message)) => {
            eprintln!("killkrill: error: {message}");
            ExitCode::FAILURE
        }
    }
}

enum QueryError {
    /// The server refused the filters (400).
    Usage(String),
    Failed(String),
}

/// The HTTP client: the system's CAs, plus `--ca-cert` when given.
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

/// GETs `url` with `pairs`; a 400 is a usage error (the server names the parameter).
fn get_json<K: serde::Serialize, V: serde::Serialize>(
    client: &reqwest::blocking::Client,
    server: &str,
    token: Option<&str>,
    url: &str,
    pairs: &[(K, V)],
) -> Result<Value, QueryError> {
    let mut request = client.get(url).query(pairs);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response =
        request.send().map_err(|error| QueryError::Failed(format!("cannot reach {server}: {error}")))?;
    let status = response.status();
    let body: Value = response
        .json()
        .map_err(|error| QueryError::Failed(format!("unreadable answer from {server}: {error}")))?;
    if status.is_success() {
        return Ok(body);
    }
    let message = body["error"]["message"].as_str().unwrap_or("no message").to_owned();
    Err(if status.as_u16() == 400 {
        QueryError::Usage(message)
    } else if status.as_u16() == 401 && token.is_none() {
        QueryError::Failed(format!(
            "{server} answered {status}: {message} (give --token or set KILLKRILL_TOKEN)"
        ))
    } else {
        QueryError::Failed(format!("{server} answered {status}: {message}"))
    })
}

/// `name{key=value,...}`, the way the table names a series.
fn series_label(name: &str, tags: &Value) -> String {
    let tags: Vec<String> = tags
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    if tags.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", tags.join(",")) }
}

fn metrics(
    client: &reqwest::blocking::Client,
    server: &str,
    token: Option<&str>,
    filters: &MetricFilters,
    json: bool,
) -> Result<(), QueryError> {
    let base = server.trim_end_matches('/');
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let Some(name) = &filters.name else {
        let body =
            get_json::<&str, &str>(client, server, token, &format!("{base}/api/v1/metrics/names"), &[])?;
        for name in body["names"].as_array().into_iter().flatten() {
            let written =
                if json { writeln!(out, "{name}") } else { writeln!(out, "{}", name.as_str().unwrap_or("")) };
            if written.is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
        return Ok(());
    };
    let body = get_json(client, server, token, &format!("{base}/api/v1/metrics"), &filters.pairs(name)?)?;
    if !json {
        let _ = writeln!(out, "{:<30}  {:>16}  SERIES", "TIME", "VALUE");
    }
    for series in body["series"].as_array().into_iter().flatten() {
        let written = if json {
            writeln!(out, "{series}")
        } else {
            let label = series_label(name, &series["tags"]);
            series["points"].as_array().into_iter().flatten().try_for_each(|point| {
                let value = point["value"].as_f64().map_or_else(|| "-".to_owned(), |v| v.to_string());
                writeln!(out, "{:<30}  {value:>16}  {label}", point["time"].as_str().unwrap_or("-"))
            })
        };
        if written.is_err() {
            return Ok(());
        }
    }
    let _ = out.flush();
    Ok(())
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
        let body = get_json(client, server, token, &url, &pairs)?;
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
