use std::collections::BTreeMap;

use super::*;

fn machine() -> MachineInfo {
    MachineInfo { cores: 16, cpu_model: "Test CPU <v2>".to_owned(), kernel: "6.8.0".to_owned() }
}

fn target(name: &str, stored: f64, p99: f64) -> TargetResult {
    TargetResult {
        offered_msgs_per_sec: 100_000.0,
        accepted_msgs_per_sec: stored * 1.01,
        stored_msgs_per_sec: stored,
        loss_by_stage: BTreeMap::from([("socket".to_owned(), 120), ("store".to_owned(), 3)]),
        loss_percent: 0.5,
        latency_us: Some(LatencySummary { p50: p99 / 4.0, p99, p999: p99 * 2.0, max: p99 * 3.0 }),
        cpu_seconds: Some(12.5),
        peak_rss_bytes: Some(200 << 20),
        bytes_on_disk: Some(1 << 30),
        ..TargetResult::new(name)
    }
}

fn scenario(with_sweep: bool) -> ScenarioResult {
    let mut result = ScenarioResult::new("udp-5424 sweep/1", machine(), 1_704_190_272);
    result.offered_rate = Some(100_000.0);
    result.targets = vec![target("killkrill", 99_500.0, 250.0), target("rsyslog", 61_000.0, 900.0)];
    if with_sweep {
        for t in &mut result.targets {
            t.sweep = (1..=5)
                .map(|step| SweepPoint {
                    offered_msgs_per_sec: 50_000.0 * f64::from(step),
                    achieved_msgs_per_sec: (50_000.0 * f64::from(step)).min(t.stored_msgs_per_sec * 2.0),
                    loss_percent: f64::from(step - 1) * 3.0,
                })
                .collect();
        }
    }
    result
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Self(std::env::temp_dir().join(format!("killkrill-perf-{tag}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks that every element closes in order: enough XML to catch a broken writer.
fn assert_balanced_xml(text: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn writers_produce_the_three_files() {
    for with_sweep in [false, true] {
        let dir = TempDir::new(if with_sweep { "sweep" } else { "bars" });
        let result = scenario(with_sweep);
        let paths = write_reports(&dir.0, &result).unwrap();

        assert_eq!(paths.json.file_name().unwrap(), "udp-5424_sweep_1-20240102-101112.json");
        let json: ScenarioResult = serde_json::from_slice(&std::fs::read(&paths.json).unwrap()).unwrap();
        assert_eq!(json, result);

        let md = std::fs::read_to_string(&paths.markdown).unwrap();
        assert!(md.contains("| killkrill | 100,000 | 100,495 | 99,500 |"), "{md}");
        assert!(md.contains("## Killkrill / peer"), "{md}");
        assert!(md.contains("| rsyslog | 1.63× | 0.28× |"), "{md}");
        assert!(md.contains("16 cores, Test CPU <v2>, Linux 6.8.0"), "{md}");
        assert!(md.contains("(udp-5424_sweep_1-20240102-101112.svg)"), "{md}");
        assert!(md.contains("- killkrill: socket 120, store 3"), "{md}");

        let svg = std::fs::read_to_string(&paths.svg).unwrap();
        assert!(svg.starts_with("<svg"));
        assert_balanced_xml(&svg);
        assert!(svg.contains("Test CPU &lt;v2&gt;"));
        for name in ["killkrill", "rsyslog"] {
            let series = svg.matches(&format!(r#"class="series" data-target="{name}""#)).count();
            assert_eq!(series, 2, "{name}: throughput and latency series");
        }
        assert_eq!(svg.contains("<polyline"), with_sweep);
    }
}

#[test]
fn markdown_without_peers_has_no_ratios_and_svg_copes_without_latency() {
    let mut result = ScenarioResult::new("solo", machine(), 0);
    result.targets = vec![TargetResult { latency_us: None, ..target("killkrill", 10.0, 1.0) }];
    let dir = TempDir::new("solo");
    let paths = write_reports(&dir.0, &result).unwrap();
    assert!(!std::fs::read_to_string(&paths.markdown).unwrap().contains("Killkrill / peer"));
    let svg = std::fs::read_to_string(&paths.svg).unwrap();
    assert_balanced_xml(&svg);
    assert!(svg.contains("no latency measured"));
}

#[test]
fn cpu_per_message_is_reported_per_layout_with_the_peer_ratio() {
    let mut result = ScenarioResult::new("udp-5424", machine(), 0);
    let cpu = |process: f64, dataplane: Option<f64>| CpuPerMessage {
        process_per_stored: Some(process),
        process_with_softirq_per_stored: Some(process + 0.5),
        dataplane_per_accepted: dataplane,
        dataplane_with_receiver_softirq_per_accepted: dataplane.map(|d| d + 0.1),
        dataplane_with_softirq_per_accepted: dataplane.map(|d| d + 0.5),
        dataplane_cpu_seconds: dataplane.map(|_| 4.0),
        rest_cpu_seconds: dataplane.map(|_| 6.0),
        softirq_seconds_per_core: vec![0.25, 1.5],
        rig_cpus: vec![0, 1],
    };
    let mut split = target("killkrill", 99_500.0, 250.0);
    split.capture = Some("socket".into());
    split.layout = Some("split".into());
    split.cpu_per_message = Some(cpu(2.0, Some(0.5)));
    let mut peer = target("rsyslog", 61_000.0, 900.0);
    peer.cpu_per_message = Some(cpu(2.0, None));
    result.targets = vec![split, peer];
    assert_eq!(result.targets[0].cpu_per_message.as_ref().unwrap().rig_softirq_seconds(), 1.75);

    let dir = TempDir::new("cpu");
    let paths = write_reports(&dir.0, &result).unwrap();
    let json: ScenarioResult = serde_json::from_slice(&std::fs::read(&paths.json).unwrap()).unwrap();
    assert_eq!(json, result);
    let md = std::fs::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("## Killkrill (socket, split) / peer"), "{md}");
    assert!(md.contains("## CPU per message (µs)"), "{md}");
    assert!(
        md.contains("| killkrill (socket, split) | 2.000 | 2.500 | 0.500 | 0.600 | 1.000 | 4.00 | 6.00 | 0: 0.25, 1: 1.50 |"),
        "{md}"
    );
    assert!(md.contains("| rsyslog | 2.000 | 2.500 | – | – | – | – | – | 0: 0.25, 1: 1.50 |"), "{md}");
    // rsyslog 2.0 µs ÷ Killkrill's data plane 0.5 µs; with softirq 2.5 ÷ 1.0.
    assert!(md.contains("| killkrill (socket, split) | rsyslog | 4.00× | 2.50× |"), "{md}");
    let svg = std::fs::read_to_string(&paths.svg).unwrap();
    assert_balanced_xml(&svg);
    assert!(svg.contains(">killkrill (socket, split)</text>"), "the chart names the layout: {svg}");
}

#[test]
fn reports_written_before_the_cpu_fields_still_read() {
    let old = r#"{"name":"rsyslog","offered_msgs_per_sec":1.0,"accepted_msgs_per_sec":1.0,
        "stored_msgs_per_sec":1.0,"loss_by_stage":{},"loss_percent":0.0,"latency_us":null,
        "cpu_seconds":null,"cpu_seconds_per_core":[],"peak_rss_bytes":null,"bytes_on_disk":null,
        "sweep":[]}"#;
    let target: TargetResult = serde_json::from_str(old).unwrap();
    assert_eq!(target.cpu_per_message, None);
    assert_eq!(target.layout, None);
}
