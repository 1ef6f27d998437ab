//! /health, /ready, /metrics and the JSON log, in the shapes CONVENTIONS.md sets.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::Appliance;

#[test]
fn health_reports_status_version_and_checks() {
    let appliance = Appliance::start();
    let (status, body) = appliance.get_json("/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["service"], "killkrill");
    let version = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.version")).unwrap();
    assert_eq!(body["version"], version.trim());
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    for check in ["store", "listeners", "disk"] {
        assert_eq!(body["checks"][check]["status"], "ok", "{check}: {body}");
    }
    assert!(body["checks"]["disk"]["percent_used"].is_number());
}

#[test]
fn ready_answers_200_once_started() {
    let appliance = Appliance::start();
    let (status, body) = appliance.get_json("/ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["service"], "killkrill");
    // The scrape port answers too.
    let response = reqwest::blocking::get(format!("http://{}/ready", appliance.metrics)).unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn metrics_carry_http_process_and_ingest_series() {
    let appliance = Appliance::start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"<13>counted message metricsword", appliance.listener("syslog-udp")).unwrap();
    appliance.wait_for_logs("q=metricsword", 1);
    let _ = appliance.get_json("/health");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text =
            reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics)).unwrap().text().unwrap();
        if text.contains("killkrill_store_messages_total 1") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for series in [
        "http_requests_total{method=\"GET\",endpoint=\"/health\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "http_requests_active",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "killkrill_ingest_messages_total{listener=\"syslog-udp\",capture=\"socket\"} 1",
        "killkrill_ingest_messages_total{listener=\"syslog-tcp\",capture=\"socket\"} 0",
        "killkrill_dropped_messages_total{listener=\"syslog-udp\",stage=\"handoff\",reason=\"ring_full\"} 0",
        "killkrill_parse_errors_total{listener=\"syslog-udp\"}",
        "killkrill_store_messages_total 1",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
}

#[test]
fn unknown_endpoint_is_a_json_404() {
    let appliance = Appliance::start();
    let (status, body) = appliance.get_json("/api/v1/nothing-here");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[test]
fn every_log_line_is_json_with_the_convention_fields() {
    let appliance = Appliance::start();
    assert!(!appliance.log_lines.is_empty());
    for line in &appliance.log_lines {
        for field in ["timestamp", "level", "service", "message"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["service"], "killkrill");
        assert!(["debug", "info", "warn", "error"].contains(&line["level"].as_str().unwrap()));
    }
    assert_eq!(appliance.captures["syslog-udp"], "socket", "the capture path is reported per listener");
    assert_eq!(appliance.captures["syslog-tcp"], "socket");
}

#[test]
fn stats_and_metrics_report_the_data_plane_runtime_and_cores() {
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_in(
        &temp.path().join("data"),
        &["--dataplane-cores", "0-1", "--dataplane-runtime", "auto"],
    );
    let (status, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(status, 200, "{stats}");
    let runtime = &stats["runtime"];
    let cpus: Vec<u64> =
        runtime["cores"].as_array().unwrap().iter().map(|core| core["cpu"].as_u64().unwrap()).collect();
    assert_eq!(cpus, [0, 1], "{runtime}");
    assert!(runtime["cores"].as_array().unwrap().iter().all(|core| core["node"].is_u64()), "{runtime}");
    let kind = runtime["kind"].as_str().unwrap();
    // auto: glommio where io_uring works, else threads with the reason why.
    match kind {
        "glommio" => assert!(runtime["fallback_reason"].is_null(), "{runtime}"),
        "threads" => assert!(runtime["fallback_reason"].is_string(), "{runtime}"),
        other => panic!("unknown runtime {other}"),
    }
    let fallback = if kind == "threads" { "true" } else { "false" };
    let info = format!("killkrill_dataplane_runtime_info{{kind=\"{kind}\",fallback=\"{fallback}\"}}");
    assert_eq!(appliance.metric(&info), 1.0, "{info}");
    assert_eq!(appliance.metric("killkrill_dataplane_cores"), 2.0);
}

#[test]
fn the_threads_runtime_asked_for_is_reported_without_a_fallback_reason() {
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_in(&temp.path().join("data"), &["--dataplane-runtime", "threads"]);
    let (_, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(stats["runtime"]["kind"], "threads", "{stats}");
    assert!(stats["runtime"]["fallback_reason"].is_null());
    assert_eq!(
        appliance.metric("killkrill_dataplane_runtime_info{kind=\"threads\",fallback=\"false\"}"),
        1.0
    );
}

/// The CPUs a thread may run on, from /proc/PID/task/TID/status (`Cpus_allowed_list`).
fn thread_cpus(pid: u32, tid: &str) -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let list = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    killkrill_dataplane::cores::parse_cpu_list(list).ok()
}

/// Every thread of a process as (name, allowed CPUs).
fn thread_affinities(pid: u32) -> Vec<(String, Vec<usize>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| {
            let tid = entry.ok()?.file_name().into_string().ok()?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            Some((name.trim_end().to_owned(), thread_cpus(pid, &tid)?))
        })
        .collect()
}

/// A data-plane thread's core, from its name (`syslog-udp@0`, `statsd-udp@0`).
fn data_plane_core(name: &str) -> Option<usize> {
    name.rsplit_once('@')?.1.parse().ok()
}

#[test]
fn control_plane_threads_run_on_the_cpus_the_data_plane_leaves() {
    let allowed = killkrill_dataplane::cores::topology::allowed_cpus().unwrap();
    if !(allowed.contains(&0) && allowed.contains(&1)) {
        eprintln!("skipped: CPUs 0 and 1 are not both allowed here ({allowed:?})");
        return;
    }
    let control: Vec<usize> = allowed.iter().copied().filter(|&cpu| cpu != 0).collect();
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_in(&temp.path().join("data"), &["--dataplane-cores", "0"]);
    let (_, stats) = appliance.get_json("/api/v1/stats");
    let reported: Vec<usize> = stats["runtime"]["control_plane_cpus"]
        .as_array()
        .unwrap_or_else(|| panic!("no runtime.control_plane_cpus: {stats}"))
        .iter()
        .map(|cpu| cpu.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(reported, control, "{stats}");
    // A new thread has its name before it pins itself: wait for the data-plane threads to
    // be on their core rather than looking once.
    let deadline = Instant::now() + Duration::from_secs(10);
    let threads = loop {
        let threads = thread_affinities(appliance.pid());
        let settled = threads
            .iter()
            .all(|(name, cpus)| data_plane_core(name).is_none_or(|core| cpus.as_slice() == [core]));
        if settled || Instant::now() >= deadline {
            break threads;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for listener in ["syslog-udp@0", "syslog-tcp@0", "statsd-udp@0", "influx-udp@0"] {
        assert!(threads.iter().any(|(name, _)| name == listener), "no thread {listener}: {threads:?}");
    }
    for (name, cpus) in &threads {
        match data_plane_core(name) {
            Some(core) => assert_eq!(cpus, &[core], "data-plane thread {name}"),
            None => assert_eq!(cpus, &control, "control-plane thread {name}"),
        }
    }
    assert!(threads.iter().any(|(name, _)| name == "control-plane"), "tokio workers: {threads:?}");
}
