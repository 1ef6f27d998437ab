//! Benchmark results and their three renderings: JSON (for machines and later diffs),
//! markdown (for people and pull requests) and an SVG chart the markdown links to.

mod machine;
mod markdown;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use machine::MachineInfo;

use crate::civil_time::UtcDateTime;
use crate::loss::LatencySummary;

/// One scenario run against one or more targets (Killkrill and its peers).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub machine: MachineInfo,
    /// When the scenario ran, RFC 3339 in UTC.
    pub date: String,
    /// The same instant in Unix seconds; names the report files.
    pub unix_time: u64,
    /// Offered rate in messages per second; `None` for flat out.
    pub offered_rate: Option<f64>,
    pub targets: Vec<TargetResult>,
}

impl ScenarioResult {
    pub fn new(scenario: impl Into<String>, machine: MachineInfo, unix_time: u64) -> Self {
        let mut date = Vec::new();
        let time = UtcDateTime::from_unix_nanos(unix_time * 1_000_000_000);
        time.write_date(&mut date);
        date.push(b'T');
        time.write_time(&mut date);
        date.push(b'Z');
        Self {
            scenario: scenario.into(),
            machine,
            date: String::from_utf8(date).expect("dates are ASCII"),
            unix_time,
            offered_rate: None,
            targets: Vec::new(),
        }
    }

    /// The row of the system under test: the target named `killkrill` (any case).
    pub fn killkrill(&self) -> Option<&TargetResult> {
        self.targets.iter().find(|t| t.is_killkrill())
    }

    pub fn has_sweep(&self) -> bool {
        self.targets.iter().any(|t| !t.sweep.is_empty())
    }

    /// `<scenario>-<YYYYmmdd-HHMMSS>`, with anything but `[A-Za-z0-9._-]` in the name
    /// replaced so a scenario name cannot escape the report directory.
    pub fn file_stem(&self) -> String {
        let name: String = self
            .scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
            .collect();
        let t = UtcDateTime::from_unix_nanos(self.unix_time * 1_000_000_000);
        format!(
            "{}-{:04}{:02}{:02}-{:02}{:02}{:02}",
            name.trim_start_matches('.'),
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second
        )
    }
}

/// What one target did in a scenario. Rates are messages per second; unknown measurements
/// are `None` (a peer without a stage breakdown, a process whose RSS was not sampled).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TargetResult {
    /// `killkrill`, `rsyslog`, `syslog-ng`, `vector`, ...
    pub name: String,
    pub offered_msgs_per_sec: f64,
    /// Taken in by the target (its own receive counters).
    pub accepted_msgs_per_sec: f64,
    /// Found in the target's storage afterwards (by marker scan or count query).
    pub stored_msgs_per_sec: f64,
    /// Messages lost, by stage (`socket`, `xdp_rate_limit`, `ring_full`, `store`, ...).
    pub loss_by_stage: BTreeMap<String, u64>,
    /// All messages sent but not stored, in percent of those sent.
    pub loss_percent: f64,
    pub latency_us: Option<LatencySummary>,
    /// CPU time of the target's processes over the run, user plus system.
    pub cpu_seconds: Option<f64>,
    /// CPU time per core, where the target's threads are pinned.
    pub cpu_seconds_per_core: Vec<f64>,
    pub peak_rss_bytes: Option<u64>,
    pub bytes_on_disk: Option<u64>,
    /// A rate sweep, if the scenario ran one.
    pub sweep: Vec<SweepPoint>,
    /// How the target captured packets (Killkrill: `socket`, `xdp-native`, `xdp-generic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
    /// Killkrill: where its threads ran (`shared`: all on the receiver CPU; `split`: the
    /// data plane there, the control plane on the other rig CPU, beside the sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// What one message cost in CPU, in µs (see [`CpuPerMessage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_per_message: Option<CpuPerMessage>,
}

/// CPU per message over one run, in µs. Softirq time is what `/proc/stat` charged to the
/// rig's CPUs (the receiver's and the sender's) over the run: on a veth, the receive path
/// of a datagram (and the XDP program) runs in the softirq of the CPU that sent it, so
/// the receiver CPU's softirq alone undercounts it; the rig's CPUs together also hold
/// the sender's own transmit softirq and any other load on those CPUs, so they overcount.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuPerMessage {
    /// The whole receiver process (user + system, every thread) per stored message.
    pub process_per_stored: Option<f64>,
    /// The same plus the rig CPUs' softirq, per stored message.
    pub process_with_softirq_per_stored: Option<f64>,
    /// Killkrill: its data-plane threads (`<listener>@<cpu>`) per accepted message.
    pub dataplane_per_accepted: Option<f64>,
    /// The same plus the receiver CPU's softirq.
    pub dataplane_with_receiver_softirq_per_accepted: Option<f64>,
    /// The same plus the softirq of the rig's CPUs (receiver and sender).
    pub dataplane_with_softirq_per_accepted: Option<f64>,
    /// Killkrill: CPU seconds of its data-plane threads and of the rest of the process.
    pub dataplane_cpu_seconds: Option<f64>,
    pub rest_cpu_seconds: Option<f64>,
    /// Softirq seconds of every CPU over the run, by CPU number.
    pub softirq_seconds_per_core: Vec<f64>,
    /// The CPUs counted as the rig's: receiver first, then sender.
    pub rig_cpus: Vec<usize>,
}

impl CpuPerMessage {
    /// Softirq seconds of the rig's CPUs together.
    pub fn rig_softirq_seconds(&self) -> f64 {
        self.rig_cpus.iter().filter_map(|&cpu| self.softirq_seconds_per_core.get(cpu)).sum()
    }
}

impl TargetResult {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    pub fn is_killkrill(&self) -> bool {
        self.name.eq_ignore_ascii_case("killkrill")
    }
}

/// One step of a rate sweep.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepPoint {
    pub offered_msgs_per_sec: f64,
    pub achieved_msgs_per_sec: f64,
    pub loss_percent: f64,
}

/// Where [`write_reports`] put the three files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathsWritten {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub svg: PathBuf,
}

/// Writes `<stem>.json`, `<stem>.md` and `<stem>.svg` into `dir` (created if missing).
pub fn write_reports(dir: &Path, result: &ScenarioResult) -> anyhow::Result<PathsWritten> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating report directory {}", dir.display()))?;
    let stem = result.file_stem();
    let paths = PathsWritten {
        json: dir.join(format!("{stem}.json")),
        markdown: dir.join(format!("{stem}.md")),
        svg: dir.join(format!("{stem}.svg")),
    };
    let svg_name = format!("{stem}.svg");
    let mut json = serde_json::to_vec_pretty(result).context("serialising the scenario result")?;
    json.push(b'\n');
    write_file(&paths.json, &json)?;
    write_file(&paths.markdown, markdown::render(result, &svg_name).as_bytes())?;
    write_file(&paths.svg, svg::render(result).as_bytes())?;
    Ok(paths)
}

fn write_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
