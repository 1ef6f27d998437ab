//! The `Ingestor` custom resource (`ingestors.killkrill.io/v1alpha1`).
//!
//! The schema is generated from these types (schemars through kube's derive); field doc
//! comments become the CRD's descriptions, so they are user documentation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Killkrill data plane on a set of nodes: one pod per node (a hostNetwork DaemonSet),
/// with the node agent beside it, configured from this spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[expect(
    clippy::duplicated_attributes,
    reason = "every printcolumn(...) repeats type_ = \"integer\" and clippy takes them for duplicates"
)]
#[kube(
    group = "killkrill.io",
    version = "v1alpha1",
    kind = "Ingestor",
    plural = "ingestors",
    singular = "ingestor",
    shortname = "ing",
    category = "killkrill",
    namespaced,
    status = "IngestorStatus",
    derive = "PartialEq",
    doc = "A Killkrill ingestion data plane run as a hostNetwork DaemonSet with its node agent.",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.nodesDesired"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.nodesReady"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct IngestorSpec {
    /// Container image of the appliance (`killkrill serve`), e.g. `registry.example/killkrill:0.1.0`.
    pub image: String,
    /// Container image of the node agent; defaults to `killkrill-agent:<operator version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_image: Option<String>,
    /// Only nodes with these labels run the data plane.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the data-plane pods (e.g. for dedicated ingest nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Network interface the XDP program attaches to on every node, e.g. `eth0`.
    pub interface: String,
    /// How packets reach the data plane: `auto` tries XDP and falls back to sockets,
    /// `xdp` requires XDP, `socket` never attaches XDP.
    #[serde(default)]
    pub capture_mode: CaptureMode,
    /// CPU cores (numbers as the kernel counts them) the data plane pins one shard to each.
    pub data_plane_cores: Vec<u32>,
    /// What the data plane listens to; at most one listener per protocol.
    pub listeners: Vec<ListenerSpec>,
    /// Where ingested data is stored.
    #[serde(default)]
    pub store: StoreSpec,
    /// How long and how much data is kept.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// Requests and limits of the data-plane container; defaults to 250m/1 CPU, 256Mi/512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Requests and limits of the agent container; defaults to 50m/200m CPU, 64Mi/128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_resources: Option<ResourceRequirements>,
    /// Secret key holding an API key (`kk_...`, maintainer role) for the control plane.
    /// The node agents send it with heartbeats and configuration polls (as
    /// `KILLKRILL_API_KEY`), and the operator with its reads of `GET /api/v1/nodes`, from
    /// which it reports `status.ingestRate`. Without it the operator reports no rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
}

/// How packets reach the data plane.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// XDP where the node allows it, the socket path otherwise.
    #[default]
    Auto,
    /// XDP only: a node where the program cannot attach reports itself not ready.
    Xdp,
    /// Kernel sockets only; the agent attaches nothing.
    Socket,
}

impl CaptureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Socket => "socket",
        }
    }
}

/// One input of the data plane.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// What is received on this port.
    pub protocol: ListenerProtocol,
    /// Port on the node (the pods use the host network), 1 to 65535.
    pub port: i32,
}

/// The protocols the data plane receives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ListenerProtocol {
    /// Syslog over UDP (RFC 5424, RFC 3164).
    #[serde(rename = "syslog-udp")]
    SyslogUdp,
    /// Syslog over TCP (RFC 6587 framing).
    #[serde(rename = "syslog-tcp")]
    SyslogTcp,
    /// Syslog over TLS (RFC 5425).
    #[serde(rename = "syslog-tls")]
    SyslogTls,
    /// statsd / DogStatsD over UDP.
    #[serde(rename = "statsd")]
    Statsd,
    /// Influx line protocol over UDP.
    #[serde(rename = "influx")]
    Influx,
}

/// The transport a listener uses; two listeners collide only on the same transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The spelling of `ContainerPort.protocol` and `NetworkPolicyPort.protocol`.
    pub fn kubernetes_name(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
        }
    }
}

impl ListenerProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SyslogUdp => "syslog-udp",
            Self::SyslogTcp => "syslog-tcp",
            Self::SyslogTls => "syslog-tls",
            Self::Statsd => "statsd",
            Self::Influx => "influx",
        }
    }

    pub fn transport(self) -> Transport {
        match self {
            Self::SyslogUdp | Self::Statsd | Self::Influx => Transport::Udp,
            Self::SyslogTcp | Self::SyslogTls => Transport::Tcp,
        }
    }
}

/// Where ingested data goes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// `embedded`: one SQLite store per node under `hostPath`; `postgres`: shared
    /// PostgreSQL, with Redis for the hand-off between nodes.
    #[serde(default)]
    pub kind: StoreKind,
    /// Node directory of the embedded store; defaults to `/var/lib/killkrill/<namespace>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Secret key holding `DATABASE_URL` (required for `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<SecretKeyRef>,
    /// Secret key holding `REDIS_URL` (required for `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<SecretKeyRef>,
}

/// Which store the nodes write to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Embedded,
    Postgres,
}

/// A key of a Secret in the Ingestor's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Retention; whichever limit is reached first removes the oldest data.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Oldest data kept, as a number and a unit: `s`, `m`, `h`, `d` or `w` (e.g. `14d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Most bytes kept per node, as a Kubernetes quantity (e.g. `200Gi`, `500M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<String>,
}

/// What the operator last saw of an Ingestor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestorStatus {
    /// `Ready`, `Progressing` and `Degraded`, as Kubernetes conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes that should run the data plane (from the DaemonSet).
    #[serde(default)]
    pub nodes_desired: i32,
    /// Nodes whose data plane answers `/ready`.
    #[serde(default)]
    pub nodes_ready: i32,
    /// Datagrams per second over all nodes, as their agents last reported it in their
    /// heartbeats (`GET /api/v1/nodes`, read with `spec.apiKeySecretRef`); absent until a
    /// node has reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_rate: Option<f64>,
    /// Nodes whose last heartbeat carried a rate and is not stale: the ones summed into
    /// `ingestRate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_reporting: Option<i32>,
}

impl IngestorStatus {
    /// The condition of type `kind`, if present.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|condition| condition.type_ == kind)
    }
}

/// The CRD as YAML, as `killkrill-operator crd` prints it and `deploy/crd/` holds it.
pub fn crd_yaml() -> crate::Result<String> {
    serde_yaml::to_string(&Ingestor::crd()).map_err(|error| crate::Error::Serialize {
        what: "the Ingestor CRD".into(),
        message: error.to_string(),
    })
}
