//! The ConfigMap's files: `killkrill.toml` holds only keys `killkrill serve` accepts.

use killkrill_operator::config::{render_appliance_config, render_node_config};
use killkrill_operator::crd::{CaptureMode, ListenerProtocol, ListenerSpec, StoreKind};
use toml::{Table, Value};

use crate::fixtures;

fn parse(text: &str) -> Table {
    text.parse::<Table>().unwrap_or_else(|error| panic!("rendered TOML does not parse: {error}\n{text}"))
}

#[test]
fn appliance_config_maps_the_syslog_listeners_and_the_api() {
    let config = parse(&render_appliance_config(&fixtures::spec()));
    assert_eq!(config["data_dir"].as_str(), Some("/var/lib/killkrill"));
    assert_eq!(config["api"]["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(config["api"]["metrics_listen"].as_str(), Some("0.0.0.0:9090"));
    assert_eq!(config["api"]["allow_http"].as_bool(), Some(true), "the appliance refuses 0.0.0.0 otherwise");
    assert_eq!(config["syslog"]["udp"].as_str(), Some("0.0.0.0:514"));
    assert_eq!(config["syslog"]["tcp"].as_str(), Some("0.0.0.0:514"));
    assert_eq!(config["store"]["db_type"].as_str(), Some("sqlite"));
    assert_eq!(config["store"]["retention_max_age"].as_str(), Some("14d"));
    assert_eq!(config["store"]["retention_max_bytes"].as_integer(), Some(200 << 30));
    assert_eq!(config["capture"]["mode"].as_str(), Some("auto"));
    assert_eq!(config["capture"]["interface"].as_str(), Some("eth0"));
    assert_eq!(config["capture"]["pin_maps"].as_str(), Some("/sys/fs/bpf/killkrill"));
    // Only keys `killkrill serve` knows (it refuses unknown ones; docs/configuration.md).
    let keys = |section: &str| -> Vec<String> {
        let mut keys: Vec<String> = config[section].as_table().expect("section").keys().cloned().collect();
        keys.sort_unstable();
        keys
    };
    let mut sections: Vec<&str> = config.keys().map(String::as_str).collect();
    sections.sort_unstable();
    assert_eq!(sections, vec!["api", "capture", "data_dir", "log", "store", "syslog"]);
    assert_eq!(keys("api"), vec!["allow_http", "listen", "metrics_listen"]);
    assert_eq!(keys("syslog"), vec!["tcp", "udp"]);
    assert_eq!(keys("store"), vec!["db_type", "retention_max_age", "retention_max_bytes"]);
    assert_eq!(keys("capture"), vec!["interface", "mode", "pin_maps"]);
    assert_eq!(keys("log"), vec!["level"]);
}

#[test]
fn a_missing_syslog_listener_is_off_and_postgres_is_named() {
    let mut spec = fixtures::spec();
    spec.listeners = vec![ListenerSpec { protocol: ListenerProtocol::SyslogTcp, port: 6601 }];
    spec.store.kind = StoreKind::Postgres;
    let config = parse(&render_appliance_config(&spec));
    assert_eq!(config["syslog"]["udp"].as_str(), Some("off"));
    assert_eq!(config["syslog"]["tcp"].as_str(), Some("0.0.0.0:6601"));
    assert_eq!(config["store"]["db_type"].as_str(), Some("postgres"));
    assert!(!render_appliance_config(&spec).contains("postgres://"), "no URL, it comes from a Secret");
}

#[test]
fn node_config_carries_capture_cores_listeners_and_retention() {
    let mut spec = fixtures::spec();
    spec.capture_mode = CaptureMode::Xdp;
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Statsd, port: 8125 });
    let config = parse(&render_node_config(&spec));
    assert_eq!(config["interface"].as_str(), Some("eth0"));
    assert_eq!(config["capture_mode"].as_str(), Some("xdp"));
    assert_eq!(config["data_plane_cores"], Value::Array(vec![Value::Integer(2), Value::Integer(3)]));
    assert_eq!(config["bpf_pin_dir"].as_str(), Some("/sys/fs/bpf/killkrill"));
    let listeners = config["listeners"].as_array().expect("listeners");
    assert_eq!(listeners.len(), 3);
    assert_eq!(listeners[2]["protocol"].as_str(), Some("statsd"));
    assert_eq!(listeners[2]["transport"].as_str(), Some("udp"));
    assert_eq!(listeners[2]["port"].as_integer(), Some(8125));
    assert_eq!(config["retention"]["max_age_seconds"].as_integer(), Some(14 * 86_400));
    assert_eq!(config["retention"]["max_bytes"].as_integer(), Some(200 << 30));
}

#[test]
fn without_retention_the_appliance_defaults_apply() {
    let mut spec = fixtures::spec();
    spec.retention = Default::default();
    let config = parse(&render_appliance_config(&spec));
    assert_eq!(config["store"].as_table().expect("store").keys().collect::<Vec<_>>(), vec!["db_type"]);
}
