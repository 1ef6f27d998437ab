//! The markdown summary: one table of all targets, Killkrill-to-peer ratios, loss by stage,
//! and a link to the chart.

use std::fmt::Write as _;

use super::{ScenarioResult, TargetResult};

const MIB: f64 = 1024.0 * 1024.0;

pub(super) fn render(result: &ScenarioResult, svg_name: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Scenario `{}`\n", result.scenario);
    let _ = writeln!(md, "- Machine: {}", result.machine.describe());
    let _ = writeln!(md, "- Date: {}", result.date);
    let offered =
        result.offered_rate.map_or_else(|| "flat out".to_owned(), |r| format!("{} msgs/s", rate(r)));
    let _ = writeln!(md, "- Offered: {offered}\n");

    md.push_str("| target | offered msgs/s | accepted msgs/s | stored msgs/s | loss % | p50 µs | p99 µs | p99.9 µs | CPU s | peak RSS MiB | on disk MiB |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for t in &result.targets {
        let latency = |f: fn(&crate::loss::LatencySummary) -> f64| t.latency_us.as_ref().map(f);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} |",
            escape_cell(
                &t.capture.as_ref().map_or_else(|| t.name.clone(), |path| format!("{} ({path})", t.name))
            ),
            rate(t.offered_msgs_per_sec),
            rate(t.accepted_msgs_per_sec),
            rate(t.stored_msgs_per_sec),
            t.loss_percent,
            optional(latency(|l| l.p50), 1),
            optional(latency(|l| l.p99), 1),
            optional(latency(|l| l.p999), 1),
            optional(t.cpu_seconds, 2),
            optional(t.peak_rss_bytes.map(|b| b as f64 / MIB), 1),
            optional(t.bytes_on_disk.map(|b| b as f64 / MIB), 1),
        );
    }

    if let Some(killkrill) = result.killkrill() {
        let peers: Vec<&TargetResult> = result.targets.iter().filter(|t| !t.is_killkrill()).collect();
        if !peers.is_empty() {
            render_ratios(&mut md, killkrill, &peers);
        }
    }

    let with_stages: Vec<&TargetResult> =
        result.targets.iter().filter(|t| !t.loss_by_stage.is_empty()).collect();
    if !with_stages.is_empty() {
        md.push_str("\n## Loss by stage (messages)\n\n");
        for t in with_stages {
            let stages: Vec<String> =
                t.loss_by_stage.iter().map(|(stage, n)| format!("{stage} {n}")).collect();
            let _ = writeln!(md, "- {}: {}", escape_cell(&t.name), stages.join(", "));
        }
    }
    let _ = writeln!(md, "\n![throughput and latency]({svg_name})\n\n[chart]({svg_name})");
    md
}

/// Killkrill ÷ peer for each measurement: above 1 is better for throughput, below 1 is
/// better for latency, CPU, memory and disk.
fn render_ratios(md: &mut String, killkrill: &TargetResult, peers: &[&TargetResult]) {
    md.push_str("\n## Killkrill / peer\n\n");
    md.push_str("Throughput: higher is better. Latency, CPU, memory, disk: lower is better.\n\n");
    md.push_str("| peer | stored msgs/s | p99 latency | CPU s | peak RSS | on disk |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    let p99 = |t: &TargetResult| t.latency_us.map(|l| l.p99);
    let as_f64 = |v: Option<u64>| v.map(|b| b as f64);
    for peer in peers {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            escape_cell(&peer.name),
            ratio(Some(killkrill.stored_msgs_per_sec), Some(peer.stored_msgs_per_sec)),
            ratio(p99(killkrill), p99(peer)),
            ratio(killkrill.cpu_seconds, peer.cpu_seconds),
            ratio(as_f64(killkrill.peak_rss_bytes), as_f64(peer.peak_rss_bytes)),
            ratio(as_f64(killkrill.bytes_on_disk), as_f64(peer.bytes_on_disk)),
        );
    }
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

fn optional(value: Option<f64>, places: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.places$}"))
}

/// `1234567.8` as `1,234,568`.
pub(super) fn rate(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}
