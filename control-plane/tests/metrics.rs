//! Metrics end to end: statsd and Influx datagrams over UDP into the real binary, with a
//! short flush interval, read back through `GET /api/v1/metrics`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Appliance;

const FLUSH_MS: &str = "200";
/// One bucket holding everything the test sent: start ten minutes back, twenty wide.
const WINDOW: &str = "start=-10m&step=20m";
/// For tests with hour-long intervals: a point is stamped with its interval's start (the
/// top of the hour), which can be up to an hour back.
const LONG_WINDOW: &str = "start=-2h&step=4h";

fn start() -> Appliance {
    let temp = tempfile::tempdir().unwrap();
    let mut appliance =
        Appliance::start_in(&temp.path().join("data"), &["--metrics-flush-interval-ms", FLUSH_MS]);
    appliance.keep_temp(temp);
    appliance
}

fn send(target: SocketAddr, datagrams: &[String]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in datagrams {
        socket.send_to(datagram.as_bytes(), target).unwrap();
    }
}

/// The single value of the single series the query returns, once `ready` accepts it.
fn wait_for_value(appliance: &Appliance, query: &str, ready: impl Fn(f64) -> bool) -> (f64, Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // A query with its own `start` brings its own window.
        let window = if query.contains("start=") { "" } else { WINDOW };
        let (status, body) = appliance.get_json(&format!("/api/v1/metrics?{query}&{window}"));
        assert_eq!(status, 200, "{body}");
        let series = body["series"].as_array().cloned().unwrap_or_default();
        if let [only] = series.as_slice()
            && let Some(value) = only["points"][0]["value"].as_f64()
            && only["points"].as_array().map(Vec::len) == Some(1)
            && ready(value)
        {
            return (value, only.clone());
        }
        assert!(Instant::now() < deadline, "{query}: never ready; last answer {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn value(appliance: &Appliance, query: &str) -> f64 {
    wait_for_value(appliance, query, |_| true).0
}

#[test]
fn statsd_counters_timers_gauges_and_sets_are_aggregated_and_queryable() {
    let appliance = start();
    let statsd = appliance.listener("statsd-udp");
    let mut datagrams = Vec::new();
    // 10 hits of 1, and 5 of 2 sampled at 50% (each stands for two): sum 30, count 20.
    for _ in 0..10 {
        datagrams.push("e2e.hits:1|c|#env:test,host:a".to_owned());
    }
    for _ in 0..5 {
        datagrams.push("e2e.hits:2|c|@0.5|#host:a,env:test".to_owned());
    }
    datagrams.push("e2e.hits:7|c|#env:prod,host:a".to_owned());
    // Timings 1..=100 ms, 10 per datagram.
    for chunk in (1..=100).collect::<Vec<_>>().chunks(10) {
        datagrams.push(chunk.iter().map(|v| format!("e2e.lat:{v}|ms")).collect::<Vec<_>>().join("\n"));
    }
    datagrams.push("e2e.temp:10|g\ne2e.temp:+5|g\ne2e.temp:-3|g".to_owned());
    datagrams.push("e2e.users:alice|s\ne2e.users:bob|s\ne2e.users:alice|s\ne2e.users:carol|s".to_owned());
    send(statsd, &datagrams);

    let hits = "name=e2e.hits&tag.env=test";
    let (sum, series) = wait_for_value(&appliance, &format!("{hits}&agg=sum"), |v| v >= 30.0);
    assert_eq!(sum, 30.0, "sample rates scale the sum");
    assert_eq!(series["kind"], "counter");
    assert_eq!(series["tags"], serde_json::json!({"env": "test", "host": "a"}));
    assert_eq!(value(&appliance, &format!("{hits}&agg=count")), 20.0);
    assert_eq!(value(&appliance, &format!("{hits}&agg=rate")), 30.0 / 1200.0, "per second of the step");
    let (status, both) = appliance.get_json(&format!("/api/v1/metrics?name=e2e.hits&agg=sum&{WINDOW}"));
    assert_eq!(status, 200);
    assert_eq!(both["series"].as_array().unwrap().len(), 2, "one series per tag set: {both}");

    let lat = "name=e2e.lat";
    assert_eq!(wait_for_value(&appliance, &format!("{lat}&agg=count"), |v| v >= 100.0).0, 100.0);
    assert_eq!(value(&appliance, &format!("{lat}&agg=sum")), 5050.0);
    assert_eq!(value(&appliance, &format!("{lat}&agg=min")), 1.0);
    assert_eq!(value(&appliance, &format!("{lat}&agg=max")), 100.0);
    assert_eq!(value(&appliance, &format!("{lat}&agg=avg")), 50.5);
    for (agg, expected) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        let got = value(&appliance, &format!("{lat}&agg={agg}"));
        assert!((got - expected).abs() <= expected * 0.01, "{agg}: {got}, expected {expected}");
    }

    assert_eq!(wait_for_value(&appliance, "name=e2e.temp&agg=last", |_| true).0, 12.0, "10, +5, -3");
    assert_eq!(value(&appliance, "name=e2e.temp&agg=max"), 15.0);
    assert_eq!(value(&appliance, "name=e2e.users&agg=count"), 3.0, "distinct members");

    let (status, names) = appliance.get_json("/api/v1/metrics/names");
    assert_eq!(status, 200);
    for name in ["e2e.hits", "e2e.lat", "e2e.temp", "e2e.users"] {
        assert!(names["names"].as_array().unwrap().iter().any(|n| n == name), "{name} in {names}");
    }
}

#[test]
fn influx_fields_are_aggregated_per_tag_set() {
    let appliance = start();
    let influx = appliance.listener("influx-udp");
    let mut datagrams = Vec::new();
    for value in 1..=50 {
        datagrams.push(format!("e2e_cpu,host=a,dc=x usage={value},idle={}i", 100 - value));
    }
    datagrams.push("e2e_cpu,host=b usage=99 1700000000000000000".to_owned());
    send(influx, &datagrams);
    let usage = "name=e2e_cpu.usage&tag.host=a";
    let (count, series) = wait_for_value(&appliance, &format!("{usage}&agg=count"), |v| v >= 50.0);
    assert_eq!(count, 50.0);
    assert_eq!(series["kind"], "field");
    assert_eq!(series["tags"], serde_json::json!({"dc": "x", "host": "a"}));
    assert_eq!(value(&appliance, &format!("{usage}&agg=sum")), 1275.0);
    assert_eq!(value(&appliance, &format!("{usage}&agg=avg")), 25.5);
    let (status, p90) = appliance.get_json(&format!("/api/v1/metrics?{usage}&agg=p90&{WINDOW}"));
    assert_eq!(status, 200);
    assert_eq!(p90["series"][0]["points"][0]["value"], Value::Null, "Influx fields keep no histogram");
    assert_eq!(value(&appliance, "name=e2e_cpu.idle&tag.dc=x&agg=min"), 50.0);
    assert_eq!(wait_for_value(&appliance, "name=e2e_cpu.usage&tag.host=b&agg=max", |_| true).0, 99.0);
}

#[test]
fn malformed_lines_are_counted_and_their_neighbours_stored() {
    let appliance = start();
    send(
        appliance.listener("statsd-udp"),
        &["e2e.ok:1|c\nno_value_here\ne2e.bad:abc|c\ne2e.ok:1|zz".to_owned()],
    );
    send(appliance.listener("influx-udp"), &["e2e_m,host=a\ne2e_m v=1".to_owned()]);
    assert_eq!(wait_for_value(&appliance, "name=e2e.ok&agg=sum", |_| true).0, 1.0);
    assert_eq!(wait_for_value(&appliance, "name=e2e_m.v&agg=sum", |_| true).0, 1.0);
    let expected = [
        "killkrill_metric_lines_rejected_total{listener=\"statsd-udp\",reason=\"missing_type\"} 1",
        "killkrill_metric_lines_rejected_total{listener=\"statsd-udp\",reason=\"invalid_value\"} 1",
        "killkrill_metric_lines_rejected_total{listener=\"statsd-udp\",reason=\"unknown_type\"} 1",
        "killkrill_metric_lines_rejected_total{listener=\"influx-udp\",reason=\"missing_fields\"} 1",
        "killkrill_parse_errors_total{listener=\"statsd-udp\"} 3",
        "killkrill_metric_samples_total{listener=\"statsd-udp\"} 1",
        "killkrill_metric_lines_total{listener=\"statsd-udp\"} 4",
        "killkrill_metric_samples_total{listener=\"influx-udp\"} 1",
        "killkrill_ingest_messages_total{listener=\"statsd-udp\",capture=\"socket\"} 1",
        "killkrill_metric_dropped_total{listener=\"statsd-udp\",stage=\"handoff\",reason=\"ring_full\"} 0",
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text =
            reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics)).unwrap().text().unwrap();
        let missing: Vec<_> = expected.iter().filter(|line| !text.contains(*line)).collect();
        if missing.is_empty() {
            assert!(text.contains("killkrill_store_metric_points_total"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "missing {missing:?} in\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_metric_queries_are_400_naming_the_parameter() {
    let appliance = start();
    for (query, parameter) in [
        ("name=x&agg=median", "agg"),
        ("agg=sum", "name"),
        ("name=x&step=fortnight", "step"),
        ("name=x&start=yesterday", "start"),
        ("name=x&tag.=v", "tag"),
        ("name=x&colour=blue", "colour"),
    ] {
        let (status, body) = appliance.get_json(&format!("/api/v1/metrics?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(parameter), "{query}: {message}");
    }
    let (status, body) = appliance.get_json("/api/v1/metrics?name=nothing.sent");
    assert_eq!(status, 200);
    assert_eq!(body["series"], serde_json::json!([]));
}

#[test]
fn sigterm_flushes_the_interval_in_progress() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    // An interval far longer than the test: only the shutdown flush can store the points.
    let appliance = Appliance::start_in(&data_dir, &["--metrics-flush-interval-ms", "3600000"]);
    send(appliance.listener("statsd-udp"), &["e2e.before_stop:5|c\ne2e.before_stop:7|c".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let read = "killkrill_metric_samples_total{listener=\"statsd-udp\"} 2";
    while !reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics))
        .unwrap()
        .text()
        .unwrap()
        .contains(read)
    {
        assert!(Instant::now() < deadline, "the listener never read the datagram");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, before) = appliance.get_json(&format!("/api/v1/metrics?name=e2e.before_stop&{WINDOW}"));
    assert_eq!(before["series"], serde_json::json!([]), "nothing flushed before the interval ends");
    let status = appliance.terminate();
    assert!(status.success(), "{status}");
    let appliance = Appliance::start_in(&data_dir, &[]);
    assert_eq!(
        wait_for_value(&appliance, &format!("name=e2e.before_stop&agg=sum&{LONG_WINDOW}"), |_| true).0,
        12.0
    );
}

#[test]
fn several_receive_threads_each_flush_and_their_points_merge() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let config = temp.path().join("killkrill.toml");
    std::fs::write(&config, "[metrics]\nreceive_threads = 2\nflush_interval_ms = 3600000\n").unwrap();
    let appliance = Appliance::start_in(&data_dir, &["--config", config.to_str().unwrap()]);
    let target = appliance.listener("statsd-udp");
    // 32 senders (source ports): the kernel's flow hash leaves one thread idle with a
    // chance of 2^-31.
    for _ in 0..32 {
        send(target, &vec!["e2e.spread:1|c".to_owned(); 10]);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let read = "killkrill_metric_samples_total{listener=\"statsd-udp\"} 320";
    while !reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics))
        .unwrap()
        .text()
        .unwrap()
        .contains(read)
    {
        assert!(Instant::now() < deadline, "the listener threads never read every datagram");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(appliance.terminate().success());
    let rows = std::process::Command::new("sqlite3")
        .arg(data_dir.join("killkrill.db"))
        .arg("SELECT COUNT(*) FROM metric_points")
        .output()
        .expect("sqlite3 is installed by setup");
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "2", "one point per receive thread");
    let appliance = Appliance::start_in(&data_dir, &[]);
    assert_eq!(
        wait_for_value(&appliance, &format!("name=e2e.spread&agg=sum&{LONG_WINDOW}"), |_| true).0,
        320.0,
        "merged at query time"
    );
}

#[test]
fn stats_say_how_each_udp_socket_listener_reads_its_socket() {
    let method_of = |appliance: &Appliance, label: &str| -> (String, Value) {
        let (status, stats) = appliance.get_json("/api/v1/stats");
        assert_eq!(status, 200, "{stats}");
        let listener = stats["listeners"]
            .as_array()
            .and_then(|listeners| {
                listeners.iter().find(|l| l["listener"] == label && l["capture"] == "socket").cloned()
            })
            .unwrap_or_else(|| panic!("no {label} socket listener in {stats}"));
        (
            listener["socket_receive"].as_str().unwrap_or_default().to_owned(),
            listener["socket_receive_fallback"].clone(),
        )
    };
    let labels = ["syslog-udp", "statsd-udp", "influx-udp"];
    let appliance = start();
    for label in labels {
        assert_eq!(method_of(&appliance, label), ("recvmmsg".to_owned(), Value::Null), "{label}: auto");
    }
    assert!(appliance.terminate().success());

    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("KILLKRILL_CAPTURE__SOCKET_RECEIVE", "io_uring")],
    );
    let io_uring_works = killkrill_dataplane::listener::udp_receive::probe_io_uring().is_ok();
    for label in labels {
        let (method, fallback) = method_of(&appliance, label);
        if io_uring_works {
            assert_eq!((method.as_str(), &fallback), ("io_uring", &Value::Null), "{label}");
        } else {
            assert_eq!(method, "recvmmsg", "{label}");
            assert!(
                fallback.as_str().is_some_and(|reason| reason.contains("io_uring")),
                "{label}: {fallback}"
            );
        }
    }
    // Datagrams read through io_uring are stored like any others.
    let target = appliance.listener("statsd-udp");
    send(target, &["uring.hits:3|c".to_owned()]);
    let (value, _) = wait_for_value(&appliance, "name=uring.hits&agg=sum", |sum| sum >= 3.0);
    assert_eq!(value, 3.0);
    assert!(appliance.terminate().success());
}
