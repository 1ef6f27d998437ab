//! The Grafana dashboard is valid JSON and queries only series the appliance serves
//! (control-plane/src/telemetry/metrics.rs), per listener.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{assert_no_problems, deploy_dir, read, repo_root};

const METRIC_PREFIXES: &[&str] = &["killkrill_", "http_", "process_"];

/// Suffixes the Prometheus exposition adds to a registered name: counters get `_total`,
/// histograms `_bucket`, `_sum` and `_count`.
const EXPOSITION_SUFFIXES: &[&str] = &["_total", "_bucket", "_sum", "_count"];

fn dashboard() -> Value {
    let path = deploy_dir().join("grafana/killkrill.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The names metrics.rs registers or encodes: every string literal that looks like one.
fn registered_names(metrics_rs: &str) -> BTreeSet<String> {
    metrics_rs
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| METRIC_PREFIXES.iter().any(|prefix| literal.starts_with(prefix)))
        .filter(|literal| literal.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        .map(str::to_owned)
        .collect()
}

/// Every metric name a PromQL expression mentions.
fn queried_names(expression: &str) -> BTreeSet<String> {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| METRIC_PREFIXES.iter().any(|prefix| token.starts_with(prefix)))
        .map(str::to_owned)
        .collect()
}

/// The query strings of a dashboard: panel targets and templating queries.
fn queries(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition" | "query", Value::String(text)) => found.push(text.clone()),
                    _ => queries(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| queries(item, found)),
        _ => {}
    }
}

fn unknown_metrics(queries: &[String], registered: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for query in queries {
        for name in queried_names(query) {
            let known = registered.contains(&name)
                || EXPOSITION_SUFFIXES
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix).is_some_and(|base| registered.contains(base)));
            if !known {
                problems.push(format!("{name} (in `{query}`) is not a series metrics.rs serves"));
            }
        }
    }
    problems
}

#[test]
fn dashboard_queries_only_series_the_appliance_serves() {
    let registered = registered_names(&read(&repo_root().join("control-plane/src/telemetry/metrics.rs")));
    assert!(registered.contains("killkrill_ingest_messages"), "metrics.rs moved? found {registered:?}");
    let mut found = Vec::new();
    queries(&dashboard(), &mut found);
    assert!(found.len() > 20, "the dashboard has only {} queries", found.len());
    assert_no_problems("deploy/grafana/killkrill.json", &unknown_metrics(&found, &registered));
    let queried: BTreeSet<String> = found.iter().flat_map(|q| queried_names(q)).collect();
    for series in [
        "killkrill_ingest_messages_total",
        "killkrill_dropped_messages_total",
        "killkrill_store_messages_total",
        "killkrill_store_write_errors_total",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_errors_total",
        "process_resident_memory_bytes",
    ] {
        assert!(queried.contains(series), "the dashboard never shows {series}");
    }
    assert!(
        found.iter().any(|q| q.contains("killkrill_ingest_messages_total") && q.contains("by (listener")),
        "ingest is shown per listener"
    );
}

#[test]
fn dashboard_panels_have_a_datasource_targets_and_unique_ids() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "killkrill-appliance");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if !ids.insert(panel["id"].as_u64()) {
            problems.push(format!("{title}: id {} is used twice", panel["id"]));
        }
        if panel["type"] == "row" {
            continue;
        }
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: not on the dashboard's datasource variable"));
        }
        if panel["targets"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{title}: no query"));
        }
        let position = &panel["gridPos"];
        let fits =
            position["x"].as_u64().zip(position["w"].as_u64()).is_some_and(|(x, w)| w > 0 && x + w <= 24);
        if !fits {
            problems.push(format!("{title}: gridPos {position} is outside the 24-column grid"));
        }
    }
    assert_no_problems("dashboard panels", &problems);
}

#[test]
fn a_query_for_a_series_nobody_serves_is_reported() {
    let registered = registered_names(
        r#"registry.register("http_requests", "help", x); counter_family(e, "killkrill_ingest_messages", "Messages", rows)"#,
    );
    let queries = [
        "sum(rate(killkrill_ingest_messages_total[5m])) / sum(rate(http_requests_total[5m]))".to_owned(),
        "rate(killkrill_ingest_mesages_total[5m])".to_owned(),
    ];
    let problems = unknown_metrics(&queries, &registered);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("killkrill_ingest_mesages_total"));
}
