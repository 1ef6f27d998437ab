//! The configuration files the ConfigMap carries, rendered from an Ingestor's spec.
//!
//! `killkrill.toml` is read by `killkrill serve`, which refuses unknown keys
//! (docs/configuration.md), so it holds only keys that binary accepts: API, syslog
//! listeners, store and retention, capture (mode, interface, map pinning).
//! `node.toml` holds the whole node-level spec (also cores and the listeners the appliance
//! has no keys for yet: syslog-TLS, statsd, Influx) for the node agent, and for the
//! appliance as its keys land (docs/adr/0012-operator.md).

use toml::{Table, Value};

use crate::crd::{IngestorSpec, ListenerProtocol, StoreKind};
use crate::resources::{AGENT_HEALTH_PORT, API_PORT, DATA_DIR, METRICS_PORT};
use crate::validate::{parse_duration_seconds, parse_quantity_bytes};

/// The ConfigMap key of the appliance's configuration.
pub const APPLIANCE_CONFIG_KEY: &str = "killkrill.toml";
/// The ConfigMap key of the node-level configuration.
pub const NODE_CONFIG_KEY: &str = "node.toml";
/// Where the ConfigMap is mounted in both containers.
pub const CONFIG_DIR: &str = "/etc/killkrill";
/// Where the agent pins the XDP program's maps (bpffs), shared with the data plane.
pub const BPF_PIN_DIR: &str = "/sys/fs/bpf/killkrill";

/// `killkrill.toml` for `killkrill serve --config`.
pub fn render_appliance_config(spec: &IngestorSpec) -> String {
    let listen = |protocol: ListenerProtocol| {
        spec.listeners
            .iter()
            .find(|listener| listener.protocol == protocol)
            .map_or_else(|| "off".to_string(), |listener| format!("0.0.0.0:{}", listener.port))
    };
    let mut root = Table::new();
    root.insert("data_dir".into(), DATA_DIR.into());
    // Plain HTTP inside the cluster: the pod network (NetworkPolicy) carries it, and TLS
    // ends at the Ingress; without allow_http the appliance refuses a non-loopback API
    // without a certificate (docs/adr/0022).
    root.insert(
        "api".into(),
        table([
            ("listen", format!("0.0.0.0:{API_PORT}").into()),
            ("metrics_listen", format!("0.0.0.0:{METRICS_PORT}").into()),
            ("allow_http", true.into()),
        ]),
    );
    root.insert(
        "syslog".into(),
        table([
            ("udp", listen(ListenerProtocol::SyslogUdp).into()),
            ("tcp", listen(ListenerProtocol::SyslogTcp).into()),
        ]),
    );
    let db_type = match spec.store.kind {
        StoreKind::Embedded => "sqlite",
        // DATABASE_URL and REDIS_URL come from the Secrets as environment variables.
        StoreKind::Postgres => "postgres",
    };
    let mut store = Table::new();
    store.insert("db_type".into(), db_type.into());
    // Same grammar as the spec (a number and s, m, h, d or w), checked by validation.
    if let Some(age) = &spec.retention.max_age {
        store.insert("retention_max_age".into(), age.trim().into());
    }
    if let Some(bytes) = spec.retention.max_bytes.as_deref().and_then(|size| parse_quantity_bytes(size).ok())
    {
        store.insert("retention_max_bytes".into(), Value::Integer(saturating_i64(bytes)));
    }
    root.insert("store".into(), Value::Table(store));
    root.insert(
        "capture".into(),
        table([
            ("mode", spec.capture_mode.as_str().into()),
            ("interface", spec.interface.clone().into()),
            ("pin_maps", BPF_PIN_DIR.into()),
        ]),
    );
    root.insert("log".into(), table([("level", "info".into())]));
    header("killkrill serve", root)
}

/// `node.toml` for the node agent (and the data plane's capture settings).
pub fn render_node_config(spec: &IngestorSpec) -> String {
    let mut root = Table::new();
    root.insert("interface".into(), spec.interface.clone().into());
    root.insert("capture_mode".into(), spec.capture_mode.as_str().into());
    root.insert(
        "data_plane_cores".into(),
        Value::Array(spec.data_plane_cores.iter().map(|core| Value::Integer(i64::from(*core))).collect()),
    );
    root.insert("bpf_pin_dir".into(), BPF_PIN_DIR.into());
    root.insert("control_plane_url".into(), format!("http://127.0.0.1:{API_PORT}").into());
    root.insert("health_listen".into(), format!("0.0.0.0:{AGENT_HEALTH_PORT}").into());
    let listeners = spec
        .listeners
        .iter()
        .map(|listener| {
            table([
                ("protocol", listener.protocol.as_str().into()),
                ("transport", listener.protocol.transport().kubernetes_name().to_lowercase().into()),
                ("port", Value::Integer(i64::from(listener.port))),
            ])
        })
        .collect();
    root.insert("listeners".into(), Value::Array(listeners));
    let mut retention = Table::new();
    // The spec was validated before rendering; an unparsable value is left out rather
    // than rendered wrong.
    if let Some(seconds) = spec.retention.max_age.as_deref().and_then(|age| parse_duration_seconds(age).ok())
    {
        retention.insert("max_age_seconds".into(), Value::Integer(saturating_i64(seconds)));
    }
    if let Some(bytes) = spec.retention.max_bytes.as_deref().and_then(|size| parse_quantity_bytes(size).ok())
    {
        retention.insert("max_bytes".into(), Value::Integer(saturating_i64(bytes)));
    }
    root.insert("retention".into(), Value::Table(retention));
    header("the killkrill node agent", root)
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(entries.into_iter().map(|(key, value)| (key.to_string(), value)).collect())
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn header(reader: &str, root: Table) -> String {
    format!(
        "# Rendered by killkrill-operator from the Ingestor spec for {reader}; edits are overwritten.\n{}",
        root
    )
}
