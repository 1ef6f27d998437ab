//! `killkrill serve` with `capture.mode = "xdp"` on a veth pair between two namespaces the
//! test creates: syslog sent from the peer arrives through AF_XDP, is searchable through
//! the API, statsd and Influx arrive the same way and are queryable as metrics, and the XDP
//! counters and capture path are in /metrics. Needs root; skipped
//! with a printed reason otherwise.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use killkrill_dataplane::testing::{APPLIANCE_V4, rig_or_skip};

use crate::harness::Appliance;

#[test]
fn serve_with_xdp_capture_stores_syslog_from_the_wire_and_counts_it() {
    let Some(rig) = rig_or_skip() else { return };
    let temp = tempfile::tempdir().unwrap();
    let config = crate::harness::xdp_config(temp.path(), &rig.appliance_if);
    // The appliance process and every HTTP client thread start inside the namespace.
    let _inside = rig.enter(&rig.appliance);
    let appliance = Appliance::start_in(&temp.path().join("data"), &["--config", config.to_str().unwrap()]);
    let capture = appliance
        .log_lines
        .iter()
        .find(|line| line["message"].as_str().is_some_and(|m| m.starts_with("Capture:")))
        .cloned()
        .expect("a start-up line says which capture path is used");
    assert_eq!(capture["capture"], "xdp-native", "{capture}");
    assert_eq!(capture["interface"], rig.appliance_if.as_str());
    assert_eq!(appliance.captures.get("syslog-udp").map(String::as_str), Some("socket"));
    assert!(
        appliance.log_lines.iter().any(|line| line["message"] == "Listener started."
            && line["listener"] == "syslog-udp"
            && line["capture"] == "af_xdp"),
        "an AF_XDP listener line"
    );

    // The steered port is the syslog UDP listener's, whatever address it is bound to.
    let port = appliance.listener("syslog-udp").port();
    const COUNT: usize = 50;
    {
        let _peer = rig.enter(&rig.peer);
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        for seq in 0..COUNT {
            let message = format!("<13>1 2026-11-23T10:00:00Z peer app - - - xdpwireword {seq}");
            sender.send_to(message.as_bytes(), (APPLIANCE_V4, port)).unwrap();
        }
    }
    let logs = appliance.wait_for_logs("q=xdpwireword&limit=1000", COUNT);
    assert_eq!(logs.len(), COUNT, "every datagram stored once");

    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = [
        "killkrill_capture_path{path=\"xdp-native\"} 1".to_owned(),
        format!("killkrill_xdp_packets_total{{listener=\"syslog\",reason=\"redirected\"}} {COUNT}"),
        format!("killkrill_xdp_packets_total{{listener=\"syslog\",reason=\"matched\"}} {COUNT}"),
        "killkrill_xdp_packets_total{listener=\"syslog\",reason=\"passed_no_socket\"} 0".to_owned(),
        format!("killkrill_ingest_messages_total{{listener=\"syslog-udp\",capture=\"af_xdp\"}} {COUNT}"),
        "killkrill_ingest_messages_total{listener=\"syslog-udp\",capture=\"socket\"} 0".to_owned(),
        "killkrill_dropped_messages_total{listener=\"syslog-udp\",capture=\"af_xdp\",stage=\"capture\",reason=\"ring_full\"} 0"
            .to_owned(),
    ];
    let text = loop {
        let text =
            reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics)).unwrap().text().unwrap();
        if expected.iter().all(|series| text.contains(series.as_str())) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for series in &expected {
        assert!(text.contains(series.as_str()), "missing {series} in:\n{text}");
    }
    assert!(appliance.terminate().success());
}

#[test]
fn serve_with_xdp_capture_takes_statsd_and_influx_from_the_wire() {
    let Some(rig) = rig_or_skip() else { return };
    let temp = tempfile::tempdir().unwrap();
    let config = crate::harness::xdp_config(temp.path(), &rig.appliance_if);
    let _inside = rig.enter(&rig.appliance);
    let appliance = Appliance::start_in(
        &temp.path().join("data"),
        &["--config", config.to_str().unwrap(), "--metrics-flush-interval-ms", "200"],
    );
    for label in ["statsd-udp", "influx-udp"] {
        assert!(
            appliance.log_lines.iter().any(|line| line["message"] == "Listener started."
                && line["listener"] == label
                && line["capture"] == "af_xdp"),
            "an AF_XDP listener line for {label}"
        );
    }
    // XDP steers by port: the listeners' ports, whatever address they are bound to.
    let (statsd, influx) = (appliance.listener("statsd-udp").port(), appliance.listener("influx-udp").port());
    const COUNT: usize = 30;
    {
        let _peer = rig.enter(&rig.peer);
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..COUNT {
            sender.send_to(b"wire.hits:2|c|#via:xdp", (APPLIANCE_V4, statsd)).unwrap();
            sender.send_to(b"wire_cpu,host=peer usage=5", (APPLIANCE_V4, influx)).unwrap();
        }
    }
    for (query, expected) in
        [("name=wire.hits&agg=sum", 2.0 * COUNT as f64), ("name=wire_cpu.usage&agg=sum", 5.0 * COUNT as f64)]
    {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = appliance.get_json(&format!("/api/v1/metrics?{query}&start=-10m&step=20m"));
            assert_eq!(status, 200, "{body}");
            let total: f64 = body["series"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|series| series["points"].as_array().cloned().unwrap_or_default())
                .filter_map(|point| point["value"].as_f64())
                .sum();
            if total >= expected {
                assert_eq!(total, expected, "{query}: nothing twice");
                break;
            }
            assert!(Instant::now() < deadline, "{query}: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let expected = [
        format!("killkrill_xdp_packets_total{{listener=\"statsd\",reason=\"redirected\"}} {COUNT}"),
        format!("killkrill_xdp_packets_total{{listener=\"influx\",reason=\"redirected\"}} {COUNT}"),
        format!("killkrill_ingest_messages_total{{listener=\"statsd-udp\",capture=\"af_xdp\"}} {COUNT}"),
        format!("killkrill_ingest_messages_total{{listener=\"influx-udp\",capture=\"af_xdp\"}} {COUNT}"),
        "killkrill_ingest_messages_total{listener=\"statsd-udp\",capture=\"socket\"} 0".to_owned(),
    ];
    let text =
        reqwest::blocking::get(format!("http://{}/metrics", appliance.metrics)).unwrap().text().unwrap();
    for series in &expected {
        assert!(text.contains(series.as_str()), "missing {series} in:\n{text}");
    }
    let (status, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(status, 200);
    assert_eq!(stats["xdp"]["statsd"]["redirected"], COUNT as u64, "{stats}");
    assert_eq!(stats["xdp"]["influx"]["redirected"], COUNT as u64, "{stats}");
    assert!(appliance.terminate().success());
}
