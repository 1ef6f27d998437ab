//! Spec validation: every problem named by its field.

use killkrill_operator::crd::{ListenerProtocol, ListenerSpec, SecretKeyRef, StoreKind};
use killkrill_operator::validate::{parse_duration_seconds, parse_quantity_bytes, validate};

use crate::fixtures;

fn problems(spec: killkrill_operator::crd::IngestorSpec) -> Vec<String> {
    match validate(&spec) {
        Ok(()) => Vec::new(),
        Err(invalid) => invalid.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(problems(fixtures::spec()), Vec::<String>::new());
}

#[test]
fn ports_must_be_in_range() {
    for port in [0, -1, 65536] {
        let mut spec = fixtures::spec();
        spec.listeners[0].port = port;
        assert_eq!(
            problems(spec),
            vec![format!("spec.listeners[0].port: {port} is not a port (1 to 65535)")]
        );
    }
}

#[test]
fn the_same_port_twice_on_one_transport_is_refused_but_udp_and_tcp_may_share() {
    // syslog-udp and syslog-tcp both on 514 is the classic setup.
    assert!(problems(fixtures::spec()).is_empty());
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Statsd, port: 514 });
    assert_eq!(
        problems(spec),
        vec!["spec.listeners[2].port: 514/UDP is already used by spec.listeners[0] (syslog-udp)"]
    );
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::SyslogTls, port: 8080 });
    assert_eq!(problems(spec), vec!["spec.listeners[2].port: 8080/TCP is already used by the API"]);
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::SyslogTls, port: 8081 });
    assert_eq!(
        problems(spec),
        vec!["spec.listeners[2].port: 8081/TCP is already used by the agent's health endpoint"]
    );
    // The same numbers over UDP are free.
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Statsd, port: 8080 });
    assert!(problems(spec).is_empty());
}

#[test]
fn one_listener_per_protocol() {
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::SyslogUdp, port: 1514 });
    assert_eq!(
        problems(spec),
        vec![
            "spec.listeners[2].protocol: syslog-udp is already used by spec.listeners[0]; one listener per protocol"
        ]
    );
}

#[test]
fn cores_must_be_listed_once_each() {
    let mut spec = fixtures::spec();
    spec.data_plane_cores.clear();
    assert_eq!(problems(spec), vec!["spec.dataPlaneCores: must list at least one core"]);
    let mut spec = fixtures::spec();
    spec.data_plane_cores = vec![1, 2, 1];
    assert_eq!(problems(spec), vec!["spec.dataPlaneCores[2]: core 1 is listed twice"]);
}

#[test]
fn image_interface_listeners_and_postgres_secrets_are_required() {
    let mut spec = fixtures::spec();
    spec.image = " ".into();
    spec.interface = "a-name-far-too-long".into();
    spec.listeners.clear();
    spec.store.kind = StoreKind::Postgres;
    spec.store.redis_url = Some(SecretKeyRef { name: "secret".into(), key: String::new() });
    assert_eq!(
        problems(spec),
        vec![
            "spec.image: must name a container image",
            "spec.interface: \"a-name-far-too-long\" is longer than 15 bytes, the kernel's limit",
            "spec.listeners: must have at least one listener",
            "spec.store.databaseUrl: is required for the postgres store (a Secret name and key)",
            "spec.store.redisUrl: needs both a Secret name and a key",
        ]
    );
}

#[test]
fn retention_values_are_parsed_with_units() {
    assert_eq!(parse_duration_seconds("14d"), Ok(14 * 86_400));
    assert_eq!(parse_duration_seconds("90m"), Ok(5_400));
    assert!(parse_duration_seconds("14 days").is_err());
    assert!(parse_duration_seconds("0s").is_err());
    assert!(parse_duration_seconds("d").is_err());
    assert_eq!(parse_quantity_bytes("200Gi"), Ok(200 << 30));
    assert_eq!(parse_quantity_bytes("500M"), Ok(500_000_000));
    assert_eq!(parse_quantity_bytes("1024"), Ok(1024));
    assert!(parse_quantity_bytes("1.5Gi").is_err());
    assert!(parse_quantity_bytes("99999999999Ti").is_err(), "overflow is an error");
    let mut spec = fixtures::spec();
    spec.retention.max_age = Some("forever".into());
    spec.retention.max_bytes = Some("lots".into());
    let found = problems(spec);
    assert_eq!(found.len(), 2);
    assert!(found[0].starts_with("spec.retention.maxAge: \"forever\" is not a duration"), "{found:?}");
    assert!(found[1].starts_with("spec.retention.maxBytes: \"lots\" is not a size"), "{found:?}");
}

#[test]
fn a_relative_host_path_is_refused() {
    let mut spec = fixtures::spec();
    spec.store.host_path = Some("data/killkrill".into());
    assert_eq!(problems(spec), vec!["spec.store.hostPath: \"data/killkrill\" is not an absolute path"]);
}

#[test]
fn an_api_key_reference_needs_a_name_and_a_key() {
    let mut spec = fixtures::spec();
    spec.api_key_secret_ref = Some(SecretKeyRef { name: "killkrill-api".into(), key: String::new() });
    assert_eq!(problems(spec), vec!["spec.apiKeySecretRef: needs both a Secret name and a key"]);
    let mut spec = fixtures::spec();
    spec.api_key_secret_ref = Some(SecretKeyRef { name: "killkrill-api".into(), key: "api-key".into() });
    assert_eq!(problems(spec), Vec::<String>::new());
}
