//! The objects an Ingestor owns, built as pure functions of it.
//!
//! Nothing here talks to the API server, so every field is checked by plain unit tests
//! (tests/resources.rs). Names and labels follow ../shared/CONVENTIONS.md: the workload,
//! Service, ServiceAccount, RBAC, PDB and NetworkPolicy are named after the Ingestor, the
//! ConfigMap `<name>-config`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::config::{
    APPLIANCE_CONFIG_KEY, CONFIG_DIR, NODE_CONFIG_KEY, render_appliance_config, render_node_config,
};
use crate::crd::{Ingestor, SecretKeyRef, StoreKind};
use crate::{Error, Result};

/// The appliance's API port (and `/health`, `/ready`, `/metrics`), on the node.
pub const API_PORT: u16 = 8080;
/// The scrape-only metrics port, on the node.
pub const METRICS_PORT: u16 = 9090;
/// The node agent's `/health` port, on the node.
pub const AGENT_HEALTH_PORT: u16 = 8081;
/// The appliance's data directory inside the container.
pub const DATA_DIR: &str = "/var/lib/killkrill";
/// `app.kubernetes.io/component` of the data-plane pods.
pub const COMPONENT: &str = "dataplane";
/// Pod-template annotation carrying a hash of the rendered configuration, so a changed
/// ConfigMap rolls the pods (they read the file only at start-up).
pub const CONFIG_HASH_ANNOTATION: &str = "killkrill.io/config-hash";

/// What XDP and AF_XDP need in the data-plane container (docs/adr/0012-operator.md):
/// attach and query XDP (NET_ADMIN, BPF, PERFMON), AF_XDP and raw sockets (NET_RAW), lock
/// UMEM and io_uring memory (IPC_LOCK) and raise RLIMIT_MEMLOCK (SYS_RESOURCE).
pub const DATA_PLANE_CAPABILITIES: [&str; 6] =
    ["NET_ADMIN", "BPF", "PERFMON", "NET_RAW", "IPC_LOCK", "SYS_RESOURCE"];
/// The agent loads, attaches and pins the program and its maps: no sockets, no UMEM.
pub const AGENT_CAPABILITIES: [&str; 4] = ["NET_ADMIN", "BPF", "PERFMON", "SYS_RESOURCE"];
/// Added to the data plane only when a listener uses a port below 1024 (syslog's 514):
/// without it even root cannot bind there once ALL is dropped.
pub const BIND_LOW_PORT_CAPABILITY: &str = "NET_BIND_SERVICE";

/// Every object the reconciler applies for one Ingestor.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedObjects {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    pub service: Service,
    pub daemon_set: DaemonSet,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

/// Builds every owned object of `ingestor` (whose spec was validated).
pub fn build(ingestor: &Ingestor) -> Result<OwnedObjects> {
    let context = BuildContext::new(ingestor)?;
    let appliance_config = render_appliance_config(&ingestor.spec);
    let node_config = render_node_config(&ingestor.spec);
    let config_hash = format!("{:016x}", fnv1a64(format!("{appliance_config}\0{node_config}").as_bytes()));
    Ok(OwnedObjects {
        service_account: ServiceAccount {
            metadata: context.metadata(&context.name),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: context.role(),
        role_binding: context.role_binding(),
        config_map: ConfigMap {
            metadata: context.metadata(&config_map_name(&context.name)),
            data: Some(BTreeMap::from([
                (APPLIANCE_CONFIG_KEY.to_string(), appliance_config),
                (NODE_CONFIG_KEY.to_string(), node_config),
            ])),
            ..ConfigMap::default()
        },
        service: context.service(),
        daemon_set: context.daemon_set(ingestor, &config_hash),
        pod_disruption_budget: PodDisruptionBudget {
            metadata: context.metadata(&context.name),
            spec: Some(PodDisruptionBudgetSpec {
                // One pod per node: let one node at a time go. A DaemonSet has no scale
                // subresource, and for such pods Kubernetes honours only an integer
                // minAvailable (not maxUnavailable), so it is derived from the node count
                // last seen in the status and follows it.
                min_available: Some(IntOrString::Int(pdb_min_available(ingestor))),
                selector: Some(context.selector()),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        },
        network_policy: context.network_policy(ingestor),
    })
}

/// `minAvailable` of the PodDisruptionBudget: all nodes but one, as last observed.
pub fn pdb_min_available(ingestor: &Ingestor) -> i32 {
    let desired = ingestor.status.as_ref().map_or(0, |status| status.nodes_desired);
    desired.saturating_sub(1).max(0)
}

/// The ConfigMap's name for an Ingestor named `name`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}

/// The labels CONVENTIONS.md puts on every object, plus the instance and manager.
pub fn labels(name: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
        ("app.kubernetes.io/part-of".to_string(), "killkrill".to_string()),
        ("app.kubernetes.io/component".to_string(), COMPONENT.to_string()),
        ("app.kubernetes.io/version".to_string(), version.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), crate::SERVICE_NAME.to_string()),
    ])
}

/// The pod selector: only labels that never change, since a DaemonSet's selector is
/// immutable (the version label would otherwise break every upgrade).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// The `app.kubernetes.io/version` value: the image tag when it is one, else the
/// operator's own version; always a valid label value.
pub fn version_label(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let tag = last_segment.split_once(':').map(|(_, tag)| tag);
    let candidate = tag.unwrap_or(crate::VERSION);
    let valid = !candidate.is_empty()
        && candidate.len() <= 63
        && candidate.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && candidate.starts_with(|c: char| c.is_ascii_alphanumeric())
        && candidate.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid { candidate.to_string() } else { crate::VERSION.to_string() }
}

/// A stable 64-bit hash (FNV-1a): stable across Rust releases, unlike `DefaultHasher`,
/// so an operator upgrade does not see every object as changed.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

struct BuildContext {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
}

impl BuildContext {
    fn new(ingestor: &Ingestor) -> Result<Self> {
        let name = ingestor.metadata.name.clone().ok_or(Error::MissingMetadata("metadata.name"))?;
        let namespace = ingestor.namespace().ok_or(Error::MissingMetadata("metadata.namespace"))?;
        let owner = ingestor.controller_owner_ref(&()).ok_or(Error::MissingMetadata("metadata.uid"))?;
        let labels = labels(&name, &version_label(&ingestor.spec.image));
        Ok(Self { name, namespace, labels, owner })
    }

    fn metadata(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn selector(&self) -> LabelSelector {
        LabelSelector { match_labels: Some(selector_labels(&self.name)), ..LabelSelector::default() }
    }

    /// The pods read their own ConfigMap and report what they do as Events; nothing else.
    fn role(&self) -> Role {
        Role {
            metadata: self.metadata(&self.name),
            rules: Some(vec![
                PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".into()]),
                    resource_names: Some(vec![config_map_name(&self.name)]),
                    verbs: vec!["get".into(), "watch".into()],
                    ..PolicyRule::default()
                },
                PolicyRule {
                    api_groups: Some(vec!["events.k8s.io".into()]),
                    resources: Some(vec!["events".into()]),
                    verbs: vec!["create".into(), "patch".into()],
                    ..PolicyRule::default()
                },
            ]),
        }
    }

    fn role_binding(&self) -> RoleBinding {
        RoleBinding {
            metadata: self.metadata(&self.name),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: self.name.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: self.name.clone(),
                namespace: Some(self.namespace.clone()),
                ..Subject::default()
            }]),
        }
    }

    fn service(&self) -> Service {
        let mut metadata = self.metadata(&self.name);
        metadata.annotations = Some(scrape_annotations());
        Service {
            metadata,
            spec: Some(ServiceSpec {
                selector: Some(selector_labels(&self.name)),
                ports: Some(vec![service_port("http", API_PORT), service_port("metrics", METRICS_PORT)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// Ingress only to what the pods serve: the listeners from anywhere (devices send
    /// from outside the cluster), the API and metrics from anywhere in the cluster.
    /// Most CNIs do not enforce policies on hostNetwork pods; this still documents intent
    /// and binds where the CNI does (docs/operator.md).
    fn network_policy(&self, ingestor: &Ingestor) -> NetworkPolicy {
        let listener_ports = ingestor
            .spec
            .listeners
            .iter()
            .map(|listener| NetworkPolicyPort {
                port: Some(IntOrString::Int(listener.port)),
                protocol: Some(listener.protocol.transport().kubernetes_name().into()),
                ..NetworkPolicyPort::default()
            })
            .collect();
        let tcp = |port: u16| NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some("TCP".into()),
            ..NetworkPolicyPort::default()
        };
        NetworkPolicy {
            metadata: self.metadata(&self.name),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(self.selector()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![
                    NetworkPolicyIngressRule { ports: Some(listener_ports), from: None },
                    NetworkPolicyIngressRule {
                        ports: Some(vec![tcp(API_PORT), tcp(METRICS_PORT), tcp(AGENT_HEALTH_PORT)]),
                        from: None,
                    },
                ]),
                ..NetworkPolicySpec::default()
            }),
        }
    }

    fn daemon_set(&self, ingestor: &Ingestor, config_hash: &str) -> DaemonSet {
        let spec = &ingestor.spec;
        let mut pod_labels = self.labels.clone();
        pod_labels.extend(selector_labels(&self.name));
        let mut pod_annotations = scrape_annotations();
        pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.to_string());

        let data_volume = match spec.store.kind {
            StoreKind::Embedded => {
                let path = spec
                    .store
                    .host_path
                    .clone()
                    .unwrap_or_else(|| format!("{DATA_DIR}/{}-{}", self.namespace, self.name));
                host_path_volume("data", &path, "DirectoryOrCreate")
            }
            // With a shared store the node keeps only scratch state.
            StoreKind::Postgres => empty_dir_volume("data"),
        };

        let volumes = vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name(&self.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            host_path_volume("bpffs", "/sys/fs/bpf", "Directory"),
            data_volume,
            empty_dir_volume("tmp"),
        ];

        let pod_spec = PodSpec {
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".into()),
            service_account_name: Some(self.name.clone()),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            // Time for the agent to detach XDP and the data plane to flush on SIGTERM.
            termination_grace_period_seconds: Some(30),
            containers: vec![self.data_plane_container(ingestor), self.agent_container(ingestor)],
            volumes: Some(volumes),
            ..PodSpec::default()
        };

        DaemonSet {
            metadata: self.metadata(&self.name),
            spec: DaemonSetSpec {
                selector: self.selector(),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(pod_labels),
                        annotations: Some(pod_annotations),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod_spec),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(1)),
                        ..RollingUpdateDaemonSet::default()
                    }),
                }),
                ..DaemonSetSpec::default()
            },
            ..DaemonSet::default()
        }
    }

    fn data_plane_container(&self, ingestor: &Ingestor) -> Container {
        let spec = &ingestor.spec;
        let mut ports = vec![
            container_port("http", API_PORT.into(), "TCP"),
            container_port("metrics", METRICS_PORT.into(), "TCP"),
        ];
        ports.extend(spec.listeners.iter().map(|listener| {
            container_port(
                listener.protocol.as_str(),
                listener.port,
                listener.protocol.transport().kubernetes_name(),
            )
        }));

        let mut env = vec![node_name_env("NODE_NAME")];
        if spec.store.kind == StoreKind::Postgres {
            env.push(EnvVar { name: "DB_TYPE".into(), value: Some("postgres".into()), ..EnvVar::default() });
            if let Some(reference) = &spec.store.database_url {
                env.push(secret_env("DATABASE_URL", reference));
            }
            if let Some(reference) = &spec.store.redis_url {
                env.push(secret_env("REDIS_URL", reference));
            }
        }

        let mut capabilities: Vec<&str> = DATA_PLANE_CAPABILITIES.to_vec();
        if spec.listeners.iter().any(|listener| listener.port < 1024) {
            capabilities.push(BIND_LOW_PORT_CAPABILITY);
        }

        Container {
            name: "killkrill".into(),
            image: Some(spec.image.clone()),
            args: Some(vec![
                "serve".into(),
                "--config".into(),
                format!("{CONFIG_DIR}/{APPLIANCE_CONFIG_KEY}"),
            ]),
            env: Some(env),
            ports: Some(ports),
            liveness_probe: Some(http_probe("/health", API_PORT, 10, 3)),
            readiness_probe: Some(http_probe("/ready", API_PORT, 5, 3)),
            resources: Some(
                spec.resources.clone().unwrap_or_else(|| requirements(("250m", "1"), ("256Mi", "512Mi"))),
            ),
            security_context: Some(security_context(&capabilities)),
            volume_mounts: Some(vec![
                mount("config", CONFIG_DIR, true),
                mount("bpffs", "/sys/fs/bpf", false),
                mount("data", DATA_DIR, false),
                mount("tmp", "/tmp", false),
            ]),
            ..Container::default()
        }
    }

    fn agent_container(&self, ingestor: &Ingestor) -> Container {
        let spec = &ingestor.spec;
        let image = spec.agent_image.clone().unwrap_or_else(|| format!("killkrill-agent:{}", crate::VERSION));
        Container {
            name: "killkrill-agent".into(),
            image: Some(image),
            // The agent's settings come as KILLKRILL_AGENT__* variables, as in the static
            // manifests under deploy/; the node-level spec is in the file named by
            // KILLKRILL_AGENT_CONFIG (like KILLKRILL_CONFIG for the appliance).
            env: Some(
                [
                    node_name_env("KILLKRILL_AGENT__NODE_NAME"),
                    plain_env("KILLKRILL_AGENT__HEALTH_LISTEN", &format!("0.0.0.0:{AGENT_HEALTH_PORT}")),
                    // The appliance on the same node (host network).
                    plain_env("KILLKRILL_AGENT__CONTROL_PLANE_URL", &format!("http://127.0.0.1:{API_PORT}")),
                    plain_env("KILLKRILL_AGENT_CONFIG", &format!("{CONFIG_DIR}/{NODE_CONFIG_KEY}")),
                ]
                .into_iter()
                // Heartbeats and configuration polls carry it (docs/agent.md).
                .chain(spec.api_key_secret_ref.as_ref().map(|key| secret_env("KILLKRILL_API_KEY", key)))
                .collect(),
            ),
            ports: Some(vec![container_port("agent-http", AGENT_HEALTH_PORT.into(), "TCP")]),
            liveness_probe: Some(http_probe("/health", AGENT_HEALTH_PORT, 10, 3)),
            resources: Some(
                spec.agent_resources
                    .clone()
                    .unwrap_or_else(|| requirements(("50m", "200m"), ("64Mi", "128Mi"))),
            ),
            security_context: Some(security_context(&AGENT_CAPABILITIES)),
            volume_mounts: Some(vec![
                mount("config", CONFIG_DIR, true),
                mount("bpffs", "/sys/fs/bpf", false),
            ]),
            ..Container::default()
        }
    }
}

fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), METRICS_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// With hostNetwork the host port must equal the container port; it is set explicitly
/// so the scheduler never puts two pods claiming the same node port together.
fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        host_port: Some(port),
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, port: u16, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn requirements(cpu: (&str, &str), memory: (&str, &str)) -> ResourceRequirements {
    let pair = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(cpu.0, memory.0)),
        limits: Some(pair(cpu.1, memory.1)),
        ..ResourceRequirements::default()
    }
}

/// Root without privileges: every capability dropped but the listed ones. Root because
/// Kubernetes gives added capabilities to non-root processes only through file
/// capabilities, which `allowPrivilegeEscalation: false` disables (docs/adr/0012-operator.md).
fn security_context(capabilities: &[&str]) -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities {
            add: Some(capabilities.iter().map(|capability| (*capability).to_string()).collect()),
            drop: Some(vec!["ALL".into()]),
        }),
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn host_path_volume(name: &str, path: &str, kind: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some(kind.into()) }),
        ..Volume::default()
    }
}

fn empty_dir_volume(name: &str) -> Volume {
    Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..EnvVar::default() }
}

fn node_name_env(name: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, reference: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}
