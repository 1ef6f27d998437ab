//! One scenario: the same load offered to Killkrill and to each peer in turn, measured
//! the same way, reported side by side.

use std::io::BufReader;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use killkrill_perf::report::{CpuPerMessage, MachineInfo, ScenarioResult, SweepPoint, TargetResult};
use killkrill_perf::scan::{ScanOptions, WriteTime, scan};

use super::netns::NetnsRig;
use super::process::{
    cpu_seconds, data_plane_seconds, disk_bytes, peak_rss_bytes, per_cpu_busy_seconds,
    per_cpu_softirq_seconds, thread_cpu_seconds,
};
use super::targets::{Peer, Receiver, ReceiverSettings, RigCpus, RunningReceiver, start};
use super::{Binaries, ScenarioArgs};

/// Offered ingest rate of the `query` scenario when `--rate` is not given.
const QUERY_SCENARIO_RATE: u64 = 20_000;
/// Searches the `query` scenario rotates through: a word of most generated messages, a
/// rarer one, and a term that matches nothing (a full scan).
const QUERY_TERMS: [&str; 3] = ["kk", "failed", "no-such-term-anywhere"];

/// Searches `GET /api/v1/logs` back to back on one connection per request while the load
/// runs, recording each answer's latency.
struct QueryLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<killkrill_perf::loss::LatencyRecorder>>,
}

impl QueryLoad {
    fn start(api: Option<std::net::SocketAddr>, token: Option<String>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let api = api.context("no API address")?;
            let mut latency = killkrill_perf::loss::LatencyRecorder::new();
            let mut index = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/api/v1/logs?q={}&limit=100", QUERY_TERMS[index % QUERY_TERMS.len()]);
                let started = Instant::now();
                super::targets::http_get(api, &path, token.as_deref())?;
                latency.record(started.elapsed().as_nanos() as u64);
                index += 1;
            }
            Ok(latency)
        });
        Self { stop, thread }
    }

    fn finish(self) -> anyhow::Result<Option<killkrill_perf::loss::LatencySummary>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let latency = self.thread.join().map_err(|_| anyhow::anyhow!("the query thread panicked"))??;
        eprintln!("xtask bench: query: {} searches answered", latency.count());
        Ok(latency.summary())
    }
}

/// Loss under which a rate counts as sustained by `--find-max`.
const MAX_LOSS_PERCENT: f64 = 0.1;

pub struct Scenario {
    pub name: String,
    protocol: &'static str,
    mix: &'static str,
    rfc5424: bool,
}

impl Scenario {
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let (protocol, mix, rfc5424) = match name {
            "udp-5424" => ("udp", "rfc5424", true),
            "udp-3164" => ("udp", "rfc3164", false),
            "tcp-octet" => ("tcp-octet", "rfc5424", true),
            "tcp-lf" => ("tcp-lf", "rfc3164", false),
            "mixed" => ("udp", "mixed", false),
            "statsd" => ("statsd", "statsd", false),
            "influx" => ("influx", "influx", false),
            "query" => ("udp", "rfc5424", true),
            other => bail!(
                "unknown scenario {other:?}: udp-5424, udp-3164, tcp-octet, tcp-lf, mixed, statsd, influx, query"
            ),
        };
        Ok(Self { name: name.to_owned(), protocol, mix, rfc5424 })
    }

    /// Query latency under ingest: the API is searched while the load runs.
    fn is_query(&self) -> bool {
        self.name == "query"
    }

    /// statsd or Influx: the appliance aggregates, so loss comes from its own counters
    /// (lines read against lines sent), not from scanning the store.
    fn is_metrics(&self) -> bool {
        matches!(self.protocol, "statsd" | "influx")
    }

    /// Why this scenario cannot run against this build of the appliance, if it cannot.
    pub fn unavailable(&self) -> Option<&'static str> {
        None
    }
}

/// One measured run of one receiver at one offered rate.
struct Measurement {
    sent: u64,
    /// Metrics scenarios: samples refused by the series limit (a policy, not loss).
    series_limited: Option<u64>,
    elapsed: f64,
    received_by_receiver: Option<u64>,
    stored: u64,
    scan_missing: u64,
    dropped_in_pipeline: Option<u64>,
    /// Killkrill's capture path for the run.
    capture: Option<String>,
    receiver: Receiver,
    latency: Option<killkrill_perf::loss::LatencySummary>,
    cpu: CpuUsed,
    peak_rss: Option<u64>,
    disk: u64,
}

/// What the CPUs did while a receiver ran: read before the load and after it settled.
struct CpuReading {
    process: Option<f64>,
    threads: std::collections::BTreeMap<u32, (String, f64)>,
    busy: Vec<f64>,
    softirq: Vec<f64>,
}

impl CpuReading {
    fn take(pid: u32) -> Self {
        Self {
            process: cpu_seconds(pid),
            threads: thread_cpu_seconds(pid),
            busy: per_cpu_busy_seconds(),
            softirq: per_cpu_softirq_seconds(),
        }
    }

    /// The CPU used from `self` to `after`.
    fn until(&self, after: &CpuReading, rig: RigCpus) -> CpuUsed {
        let deltas = |before: &[f64], after: &[f64]| -> Vec<f64> {
            before.iter().zip(after).map(|(before, after)| after - before).collect()
        };
        CpuUsed {
            process: self.process.zip(after.process).map(|(before, after)| after - before),
            data_plane: data_plane_seconds(&self.threads, &after.threads),
            per_core: deltas(&self.busy, &after.busy),
            softirq_per_core: deltas(&self.softirq, &after.softirq),
            rig,
        }
    }
}

/// CPU seconds over one run.
struct CpuUsed {
    /// The receiver process, every thread.
    process: Option<f64>,
    /// Killkrill's data-plane threads (zero for a peer: no thread has such a name).
    data_plane: f64,
    /// Busy time of each CPU, whoever used it.
    per_core: Vec<f64>,
    softirq_per_core: Vec<f64>,
    rig: RigCpus,
}

impl CpuUsed {
    /// µs per message of each kind of CPU time (`accepted`/`stored`: message counts).
    fn per_message(&self, killkrill: bool, accepted: u64, stored: u64) -> CpuPerMessage {
        let softirq_of = |cpu: usize| self.softirq_per_core.get(cpu).copied().unwrap_or(0.0);
        let receiver_softirq = softirq_of(self.rig.receiver);
        let rig_softirq = if self.rig.sender == self.rig.receiver {
            receiver_softirq
        } else {
            receiver_softirq + softirq_of(self.rig.sender)
        };
        let micros = |seconds: f64, count: u64| (count > 0).then(|| seconds * 1e6 / count as f64);
        let data_plane = killkrill.then_some(self.data_plane);
        CpuPerMessage {
            process_per_stored: self.process.and_then(|cpu| micros(cpu, stored)),
            process_with_softirq_per_stored: self.process.and_then(|cpu| micros(cpu + rig_softirq, stored)),
            dataplane_per_accepted: data_plane.and_then(|cpu| micros(cpu, accepted)),
            dataplane_with_receiver_softirq_per_accepted: data_plane
                .and_then(|cpu| micros(cpu + receiver_softirq, accepted)),
            dataplane_with_softirq_per_accepted: data_plane
                .and_then(|cpu| micros(cpu + rig_softirq, accepted)),
            dataplane_cpu_seconds: data_plane,
            rest_cpu_seconds: data_plane.zip(self.process).map(|(data_plane, process)| process - data_plane),
            softirq_seconds_per_core: self.softirq_per_core.clone(),
            rig_cpus: vec![self.rig.receiver, self.rig.sender],
        }
    }
}

impl Measurement {
    fn loss_percent(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.scan_missing as f64 * 100.0 / self.sent as f64 }
    }
}

pub fn run(
    scenario: &Scenario,
    peers: &[Peer],
    args: &ScenarioArgs,
    rig: &NetnsRig,
    binaries: &Binaries,
) -> anyhow::Result<ScenarioResult> {
    let unix_time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut result = ScenarioResult::new(scenario.name.clone(), MachineInfo::detect(), unix_time);
    result.offered_rate = args.rate.map(|rate| rate as f64);
    let mut receivers: Vec<Receiver> =
        args.killkrill_layout.iter().map(|&layout| Receiver::Killkrill(layout)).collect();
    let peers = if scenario.is_query() || scenario.is_metrics() {
        if !peers.is_empty() {
            let why =
                if scenario.is_query() { "they have no query API" } else { "they are not metrics receivers" };
            eprintln!("xtask bench: {}: peers skipped: {why}", scenario.name);
        }
        &[][..]
    } else {
        peers
    };
    for peer in peers {
        match peer.missing() {
            Some(reason) => eprintln!("xtask bench: {}: peer skipped: {reason}", scenario.name),
            None => receivers.push(Receiver::Peer(*peer)),
        }
    }
    let scratch = std::env::temp_dir().join(format!("killkrill-bench-{}", std::process::id()));
    let mut run_id = (unix_time % 1_000_000) as u32 * 100;
    for receiver in receivers {
        let mut target = TargetResult::new(receiver.name());
        if args.find_max {
            let (best, sweep) = find_max(scenario, receiver, args, rig, binaries, &scratch, &mut run_id)?;
            target.sweep = sweep;
            fill(&mut target, &best);
        } else {
            run_id += 1;
            let measurement =
                measure(scenario, receiver, args.rate, args.duration, args, rig, binaries, &scratch, run_id)?;
            fill(&mut target, &measurement);
        }
        result.targets.push(target);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(result)
}

fn fill(target: &mut TargetResult, measurement: &Measurement) {
    target.capture.clone_from(&measurement.capture);
    let per_second =
        |count: u64| if measurement.elapsed > 0.0 { count as f64 / measurement.elapsed } else { 0.0 };
    target.offered_msgs_per_sec = per_second(measurement.sent);
    target.accepted_msgs_per_sec = per_second(measurement.received_by_receiver.unwrap_or(measurement.stored));
    target.stored_msgs_per_sec = per_second(measurement.stored);
    target.loss_percent = measurement.loss_percent();
    if let Some(received) = measurement.received_by_receiver {
        target.loss_by_stage.insert("network_and_socket".into(), measurement.sent.saturating_sub(received));
    }
    if let Some(dropped) = measurement.dropped_in_pipeline {
        target.loss_by_stage.insert("pipeline".into(), dropped);
    }
    if let Some(limited) = measurement.series_limited {
        target.loss_by_stage.insert("series_limit".into(), limited);
    }
    target.loss_by_stage.insert("missing_in_store".into(), measurement.scan_missing);
    target.latency_us = measurement.latency;
    target.cpu_seconds = measurement.cpu.process;
    target.cpu_seconds_per_core.clone_from(&measurement.cpu.per_core);
    let killkrill = matches!(measurement.receiver, Receiver::Killkrill(_));
    if let Receiver::Killkrill(layout) = measurement.receiver {
        target.layout = Some(layout.label().to_owned());
    }
    target.cpu_per_message = Some(measurement.cpu.per_message(
        killkrill,
        measurement.received_by_receiver.unwrap_or(measurement.stored),
        measurement.stored,
    ));
    target.peak_rss_bytes = measurement.peak_rss;
    target.bytes_on_disk = Some(measurement.disk);
}

#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename the list")]
fn measure(
    scenario: &Scenario,
    receiver: Receiver,
    rate: Option<u64>,
    duration: Duration,
    args: &ScenarioArgs,
    rig: &NetnsRig,
    binaries: &Binaries,
    scratch: &std::path::Path,
    run_id: u32,
) -> anyhow::Result<Measurement> {
    let workdir = scratch.join(format!("{}-{run_id}", receiver.name()));
    let settings = ReceiverSettings {
        rfc5424: scenario.rfc5424,
        octet_counted: scenario.protocol == "tcp-octet",
        capture_mode: args.capture.clone(),
        interface: rig.host_interface.clone(),
        metrics: scenario.is_metrics().then_some(scenario.protocol),
    };
    let cpus = RigCpus { receiver: args.receiver_cpu, sender: args.sender_cpu };
    let mut running = start(receiver, rig.host_address, cpus, binaries, &workdir, &settings)?;
    let cpu_before = CpuReading::take(running.process.pid());
    eprintln!(
        "xtask bench: {} → {} at {}, {:?}",
        scenario.name,
        receiver.name(),
        rate.map_or("full speed".to_owned(), |r| format!("{r} msgs/s")),
        duration
    );
    let queries = (scenario.is_query() && running.api.is_some())
        .then(|| QueryLoad::start(running.api, running.api_token.clone()));
    // Query latency is measured under a steady, moderate ingest unless a rate is given.
    let rate = if scenario.is_query() { rate.or(Some(QUERY_SCENARIO_RATE)) } else { rate };
    let report = send(scenario, rate, duration, args, rig, binaries, &running, run_id)?;
    let query_latency = queries.map(QueryLoad::finish).transpose()?;
    let sent = report["sent_messages"].as_u64().context("sender report has no sent_messages")?;
    let elapsed = report["elapsed"].as_f64().unwrap_or(duration.as_secs_f64());
    if scenario.is_metrics() {
        return measure_metrics(running, sent, elapsed, &cpu_before, cpus);
    }
    let stored = wait_until_settled(&running)?;
    let cpu = cpu_before.until(&CpuReading::take(running.process.pid()), cpus);
    let peak_rss = peak_rss_bytes(running.process.pid());
    let capture = match receiver {
        Receiver::Killkrill(_) => Some(running.killkrill_capture()?),
        Receiver::Peer(_) => None,
    };
    let (received_by_receiver, dropped_in_pipeline) = match receiver {
        Receiver::Killkrill(_) => (
            Some(running.killkrill_metric("killkrill_ingest_messages_total")?),
            Some(running.killkrill_metric("killkrill_dropped_messages_total")?),
        ),
        Receiver::Peer(_) => (None, None),
    };
    running.process.stop(Duration::from_secs(30));
    let scanned = scan_store(&running, &binaries.killkrill, run_id, sent)?;
    Ok(Measurement {
        sent,
        elapsed,
        received_by_receiver,
        stored: stored.max(scanned.received),
        scan_missing: scanned.missing,
        dropped_in_pipeline,
        capture,
        latency: query_latency.flatten().or(scanned.latency_us),
        cpu,
        receiver,
        peak_rss,
        disk: disk_bytes(&running.storage),
        series_limited: None,
    })
}

/// A metrics scenario's figures: lines the listener read against lines sent (every line
/// is one sample in the generator's mixes), and the points stored after a last flush.
fn measure_metrics(
    mut running: RunningReceiver,
    sent: u64,
    elapsed: f64,
    cpu_before: &CpuReading,
    cpus: RigCpus,
) -> anyhow::Result<Measurement> {
    let lines = wait_until_settled_on(&running, "killkrill_metric_lines_total")?;
    let cpu = cpu_before.until(&CpuReading::take(running.process.pid()), cpus);
    let peak_rss = peak_rss_bytes(running.process.pid());
    let rejected = running.killkrill_metric("killkrill_metric_lines_rejected_total")?;
    let dropped = running.killkrill_metric("killkrill_metric_dropped_total")?;
    let series_limited = running.killkrill_metric_with("killkrill_metric_dropped_total", "series_limit")?;
    let capture = Some(running.killkrill_capture()?);
    running.process.stop(Duration::from_secs(30));
    if rejected > 0 {
        eprintln!("xtask bench: {rejected} generated lines were rejected by the parser");
    }
    Ok(Measurement {
        sent,
        series_limited: Some(series_limited),
        elapsed,
        received_by_receiver: Some(lines),
        // Accepted lines: aggregated into points, nothing else to count per line.
        stored: lines.saturating_sub(rejected),
        scan_missing: sent.saturating_sub(lines),
        dropped_in_pipeline: Some(dropped.saturating_sub(series_limited)),
        capture,
        latency: None,
        cpu,
        receiver: running.receiver,
        peak_rss,
        disk: disk_bytes(&running.storage),
    })
}

/// Waits until a Killkrill counter stops moving.
fn wait_until_settled_on(running: &RunningReceiver, counter: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = running.killkrill_metric(counter)?;
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let now = running.killkrill_metric(counter)?;
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(1500) {
            break;
        }
    }
    Ok(last)
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
fn send(
    scenario: &Scenario,
    rate: Option<u64>,
    duration: Duration,
    args: &ScenarioArgs,
    rig: &NetnsRig,
    binaries: &Binaries,
    running: &RunningReceiver,
    run_id: u32,
) -> anyhow::Result<serde_json::Value> {
    let mut command = rig.command_in_namespace("taskset");
    command.args(["-c", &args.sender_cpu.to_string()]).arg(&binaries.perf).args([
        "send",
        "--mix",
        scenario.mix,
    ]);
    if args.afxdp_sender && scenario.protocol == "udp" {
        command.args(["--protocol", "udp-afxdp", "--interface", &rig.sender_interface]);
    } else {
        command.args(["--protocol", scenario.protocol]);
    }
    command
        .args(["--target", &running.address.to_string()])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .args(["--threads", &args.threads.to_string(), "--connections", &args.connections.to_string()])
        .args(["--run-id", &run_id.to_string()])
        .stdout(Stdio::piped());
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    let output = command.output().context("running the sender")?;
    if !output.status.success() {
        bail!("the sender failed: {}", String::from_utf8_lossy(&output.stdout));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line =
        stdout.lines().rev().find(|line| line.starts_with('{')).context("the sender printed no report")?;
    Ok(serde_json::from_str(line)?)
}

/// Waits until the receiver's stored count stops moving (its queues have drained).
fn wait_until_settled(running: &RunningReceiver) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = running.stored_messages()?;
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let now = running.stored_messages()?;
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(1500) {
            break;
        }
    }
    Ok(last)
}

/// Reads back what the receiver stored and checks every sequence number of the run.
fn scan_store(
    running: &RunningReceiver,
    killkrill: &std::path::Path,
    run_id: u32,
    sent: u64,
) -> anyhow::Result<killkrill_perf::scan::ScanSummary> {
    let options = |write_time| ScanOptions { run_id, first_seq: 0, expected: Some(sent), write_time };
    match running.receiver {
        Receiver::Killkrill(_) => {
            // The store is compressed blocks: read it back through the appliance itself.
            let mut child = std::process::Command::new(killkrill)
                .args(["export", "--format", "lines", "--data-dir"])
                .arg(&running.storage)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("killkrill export")?;
            let stdout = child.stdout.take().context("killkrill export stdout")?;
            let summary = scan(BufReader::new(stdout), &options(WriteTime::UnixPrefix))?;
            let status = child.wait()?;
            anyhow::ensure!(status.success(), "killkrill export failed: {status}");
            Ok(summary)
        }
        Receiver::Peer(_) => {
            let file = std::fs::File::open(&running.storage)
                .with_context(|| running.storage.display().to_string())?;
            Ok(scan(BufReader::new(file), &options(WriteTime::Rfc3339Prefix))?)
        }
    }
}

/// Doubles the offered rate until loss passes 0.1% or the sender saturates, then bisects.
fn find_max(
    scenario: &Scenario,
    receiver: Receiver,
    args: &ScenarioArgs,
    rig: &NetnsRig,
    binaries: &Binaries,
    scratch: &std::path::Path,
    run_id: &mut u32,
) -> anyhow::Result<(Measurement, Vec<SweepPoint>)> {
    let point_duration = (args.duration / 4).max(Duration::from_secs(3));
    let mut sweep = Vec::new();
    let mut best: Option<(u64, Measurement)> = None;
    let mut low = 0u64;
    let mut high: Option<u64> = None;
    let mut rate = args.rate.unwrap_or(50_000);
    for _ in 0..12 {
        *run_id += 1;
        let measurement =
            measure(scenario, receiver, Some(rate), point_duration, args, rig, binaries, scratch, *run_id)?;
        let achieved = measurement.sent as f64 / measurement.elapsed.max(1e-9);
        let loss = measurement.loss_percent();
        sweep.push(SweepPoint {
            offered_msgs_per_sec: rate as f64,
            achieved_msgs_per_sec: achieved,
            loss_percent: loss,
        });
        eprintln!(
            "xtask bench: {}: offered {rate}/s, sent {achieved:.0}/s, loss {loss:.3}%",
            receiver.name()
        );
        let sender_kept_up = achieved >= rate as f64 * 0.97;
        if loss < MAX_LOSS_PERCENT && sender_kept_up {
            low = rate;
            best = Some((rate, measurement));
        } else {
            high = Some(rate);
            if !sender_kept_up && loss < MAX_LOSS_PERCENT {
                // The sender is the limit, not the receiver: nothing higher can be offered.
                best.get_or_insert((rate, measurement));
                break;
            }
        }
        rate = match high {
            None => rate * 2,
            Some(high) if high - low > high / 20 => (low + high) / 2,
            Some(_) => break,
        };
    }
    let (_, best) = best.context("no offered rate was sustained with less than 0.1% loss")?;
    Ok((best, sweep))
}
