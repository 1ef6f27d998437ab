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
            escape_cell(&label(t)),
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

    let peers: Vec<&TargetResult> = result.targets.iter().filter(|t| !t.is_killkrill()).collect();
    if !peers.is_empty() {
        for killkrill in result.targets.iter().filter(|t| t.is_killkrill()) {
            render_ratios(&mut md, killkrill, &peers);
        }
    }
    if result.targets.iter().any(|t| t.cpu_per_message.is_some()) {
        render_cpu_per_message(&mut md, result);
    }

    let with_stages: Vec<&TargetResult> =
        result.targets.iter().filter(|t| !t.loss_by_stage.is_empty()).collect();
    if !with_stages.is_empty() {
        md.push_str("\n## Loss by stage (messages)\n\n");
        for t in with_stages {
            let stages: Vec<String> =
                t.loss_by_stage.iter().map(|(stage, n)| format!("{stage} {n}")).collect();
            let _ = writeln!(md, "- {}: {}", escape_cell(&label(t)), stages.join(", "));
        }
    }
    let _ = writeln!(md, "\n![throughput and latency]({svg_name})\n\n[chart]({svg_name})");
    md
}

/// Killkrill ÷ peer for each measurement: above 1 is better for throughput, below 1 is
/// better for latency, CPU, memory and disk.
fn render_ratios(md: &mut String, killkrill: &TargetResult, peers: &[&TargetResult]) {
    let heading = label(killkrill).replacen(&killkrill.name, "Killkrill", 1);
    let _ = writeln!(md, "\n## {} / peer\n", escape_cell(&heading));
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

/// The question: CPU per message of Killkrill's data plane beside each target's
/// whole process, and how many times the peers' cost Killkrill's data plane is.
fn render_cpu_per_message(md: &mut String, result: &ScenarioResult) {
    md.push_str("\n## CPU per message (µs)\n\n");
    md.push_str(
        "Process: every thread of the receiver per stored message. Data plane: Killkrill's \
         `<listener>@<cpu>` threads per accepted message. Softirq: `/proc/stat` softirq time \
         of the receiver CPU, or of the rig's CPUs (receiver and sender: a veth delivers in the \
         sender CPU's softirq).\n\n",
    );
    md.push_str("| target | process | process + rig softirq | data plane | + receiver softirq | + rig softirq | data-plane CPU s | rest CPU s | softirq s by CPU |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for t in &result.targets {
        let Some(cpu) = &t.cpu_per_message else { continue };
        let softirq: Vec<String> = cpu
            .softirq_seconds_per_core
            .iter()
            .enumerate()
            .map(|(index, seconds)| format!("{index}: {seconds:.2}"))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            escape_cell(&label(t)),
            optional(cpu.process_per_stored, 3),
            optional(cpu.process_with_softirq_per_stored, 3),
            optional(cpu.dataplane_per_accepted, 3),
            optional(cpu.dataplane_with_receiver_softirq_per_accepted, 3),
            optional(cpu.dataplane_with_softirq_per_accepted, 3),
            optional(cpu.dataplane_cpu_seconds, 2),
            optional(cpu.rest_cpu_seconds, 2),
            softirq.join(", "),
        );
    }
    let peers: Vec<&TargetResult> =
        result.targets.iter().filter(|t| !t.is_killkrill() && t.cpu_per_message.is_some()).collect();
    let killkrills: Vec<&TargetResult> =
        result.targets.iter().filter(|t| t.is_killkrill() && t.cpu_per_message.is_some()).collect();
    if peers.is_empty() || killkrills.is_empty() {
        return;
    }
    md.push_str("\nPeer process ÷ Killkrill data plane (how many times cheaper Killkrill's data plane is; the issue asks for ≥ 2.5× on the socket path, ≥ 5× with AF_XDP):\n\n");
    md.push_str("| Killkrill | peer | without softirq | with the rig's softirq |\n|---|---|---:|---:|\n");
    for killkrill in &killkrills {
        let ours = killkrill.cpu_per_message.as_ref();
        for peer in &peers {
            let theirs = peer.cpu_per_message.as_ref();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                escape_cell(&label(killkrill)),
                escape_cell(&peer.name),
                ratio(theirs.and_then(|c| c.process_per_stored), ours.and_then(|c| c.dataplane_per_accepted)),
                ratio(
                    theirs.and_then(|c| c.process_with_softirq_per_stored),
                    ours.and_then(|c| c.dataplane_with_softirq_per_accepted)
                ),
            );
        }
    }
}

/// A target's name with how it captured and its layout: `killkrill (socket, split)`.
pub(super) fn label(t: &TargetResult) -> String {
    let details: Vec<&str> = [t.capture.as_deref(), t.layout.as_deref()].into_iter().flatten().collect();
    if details.is_empty() { t.name.clone() } else { format!("{} ({})", t.name, details.join(", ")) }
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
