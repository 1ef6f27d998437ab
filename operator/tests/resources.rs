//! The owned objects, field by field.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use killkrill_operator::crd::{ListenerProtocol, ListenerSpec, SecretKeyRef, StoreKind};
use killkrill_operator::resources::{self, OwnedObjects};
use kube::Resource;

use crate::fixtures::{self, NAME, NAMESPACE, UID};

fn built(spec: killkrill_operator::crd::IngestorSpec) -> OwnedObjects {
    resources::build(&fixtures::ingestor(spec)).expect("build owned objects")
}

fn pod_spec(objects: &OwnedObjects) -> &PodSpec {
    objects.daemon_set.spec.template.spec.as_ref().expect("pod spec")
}

fn container<'a>(objects: &'a OwnedObjects, name: &str) -> &'a Container {
    pod_spec(objects).containers.iter().find(|container| container.name == name).expect("container")
}

fn capabilities(container: &Container) -> (BTreeSet<String>, Vec<String>) {
    let capabilities = container
        .security_context
        .as_ref()
        .and_then(|context| context.capabilities.clone())
        .expect("capabilities");
    (capabilities.add.unwrap_or_default().into_iter().collect(), capabilities.drop.unwrap_or_default())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

fn http_get(probe: &Probe) -> (String, IntOrString) {
    let action = probe.http_get.clone().expect("HTTP probe");
    (action.path.unwrap_or_default(), action.port)
}

/// Every object's metadata, with its kind.
fn metadata_of(
    objects: &OwnedObjects,
) -> Vec<(&'static str, &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta)> {
    vec![
        ("ServiceAccount", objects.service_account.meta()),
        ("Role", objects.role.meta()),
        ("RoleBinding", objects.role_binding.meta()),
        ("ConfigMap", objects.config_map.meta()),
        ("Service", objects.service.meta()),
        ("DaemonSet", objects.daemon_set.meta()),
        ("PodDisruptionBudget", objects.pod_disruption_budget.meta()),
        ("NetworkPolicy", objects.network_policy.meta()),
    ]
}

#[test]
fn every_object_is_owned_by_the_ingestor_and_carries_the_convention_labels() {
    let objects = built(fixtures::spec());
    for (kind, metadata) in metadata_of(&objects) {
        let owners = metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{kind}: one owner");
        let owner = &owners[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Ingestor", NAME, UID),
            "{kind}"
        );
        assert_eq!(owner.api_version, "killkrill.io/v1alpha1", "{kind}");
        assert_eq!(owner.controller, Some(true), "{kind}: controller reference");
        assert_eq!(metadata.namespace.as_deref(), Some(NAMESPACE), "{kind}");
        let labels = metadata.labels.clone().unwrap_or_default();
        for (key, value) in [
            ("app", NAME),
            ("app.kubernetes.io/name", NAME),
            ("app.kubernetes.io/part-of", "killkrill"),
            ("app.kubernetes.io/component", "dataplane"),
            ("app.kubernetes.io/version", "0.1.0"),
            ("app.kubernetes.io/managed-by", "killkrill-operator"),
        ] {
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{kind}: label {key}");
        }
    }
    let names: Vec<_> = metadata_of(&objects)
        .into_iter()
        .map(|(kind, metadata)| (kind, metadata.name.clone().unwrap_or_default()))
        .collect();
    assert!(
        names.iter().all(|(kind, name)| if *kind == "ConfigMap" {
            name == "edge-config"
        } else {
            name == NAME
        }),
        "{names:?}"
    );
}

#[test]
fn daemon_set_runs_on_the_host_network_with_the_cluster_dns() {
    let objects = built(fixtures::spec());
    let pod = pod_spec(&objects);
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    assert_eq!(pod.service_account_name.as_deref(), Some(NAME));
    assert_eq!(
        pod.node_selector.clone().unwrap_or_default().get("killkrill.io/ingest").map(String::as_str),
        Some("true")
    );
    let names: Vec<&str> = pod.containers.iter().map(|container| container.name.as_str()).collect();
    assert_eq!(names, vec!["killkrill", "killkrill-agent"], "the data plane and the agent sidecar");
    // The selector is only the stable labels, and the pods carry them.
    let selector = objects.daemon_set.spec.selector.match_labels.clone().unwrap_or_default();
    assert_eq!(
        selector.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["app.kubernetes.io/instance", "app.kubernetes.io/name"]
    );
    let pod_labels = objects
        .daemon_set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default();
    assert!(selector.iter().all(|(key, value)| pod_labels.get(key) == Some(value)));
}

#[test]
fn containers_get_exactly_the_capabilities_xdp_needs_and_drop_all_others() {
    let mut spec = fixtures::spec();
    spec.listeners = vec![ListenerSpec { protocol: ListenerProtocol::SyslogUdp, port: 5514 }];
    let objects = built(spec);
    let data_plane = container(&objects, "killkrill");
    let (added, dropped) = capabilities(data_plane);
    assert_eq!(added, set(&["NET_ADMIN", "BPF", "PERFMON", "NET_RAW", "IPC_LOCK", "SYS_RESOURCE"]));
    assert_eq!(dropped, vec!["ALL"]);
    let context = data_plane.security_context.clone().expect("security context");
    assert_eq!(context.privileged, Some(false));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.read_only_root_filesystem, Some(true));

    let (agent_added, agent_dropped) = capabilities(container(&objects, "killkrill-agent"));
    assert_eq!(agent_added, set(&["NET_ADMIN", "BPF", "PERFMON", "SYS_RESOURCE"]));
    assert_eq!(agent_dropped, vec!["ALL"]);
}

#[test]
fn a_port_below_1024_adds_only_net_bind_service() {
    let objects = built(fixtures::spec()); // syslog on 514
    let (added, _) = capabilities(container(&objects, "killkrill"));
    assert_eq!(
        added,
        set(&["NET_ADMIN", "BPF", "PERFMON", "NET_RAW", "IPC_LOCK", "SYS_RESOURCE", "NET_BIND_SERVICE"])
    );
    let (agent_added, _) = capabilities(container(&objects, "killkrill-agent"));
    assert!(!agent_added.contains("NET_BIND_SERVICE"), "the agent binds no low port");
}

#[test]
fn probes_use_health_and_ready_on_the_api_port() {
    let objects = built(fixtures::spec());
    let data_plane = container(&objects, "killkrill");
    assert_eq!(
        http_get(data_plane.liveness_probe.as_ref().expect("liveness")),
        ("/health".into(), IntOrString::Int(8080))
    );
    assert_eq!(
        http_get(data_plane.readiness_probe.as_ref().expect("readiness")),
        ("/ready".into(), IntOrString::Int(8080))
    );
    let agent = container(&objects, "killkrill-agent");
    assert_eq!(
        http_get(agent.liveness_probe.as_ref().expect("agent liveness")),
        ("/health".into(), IntOrString::Int(8081))
    );
}

#[test]
fn bpffs_config_and_data_are_mounted() {
    let objects = built(fixtures::spec());
    let volumes = pod_spec(&objects).volumes.clone().unwrap_or_default();
    let bpffs = volumes.iter().find(|volume| volume.name == "bpffs").expect("bpffs volume");
    let host_path = bpffs.host_path.clone().expect("hostPath");
    assert_eq!((host_path.path.as_str(), host_path.type_.as_deref()), ("/sys/fs/bpf", Some("Directory")));
    let data = volumes
        .iter()
        .find(|volume| volume.name == "data")
        .and_then(|volume| volume.host_path.clone())
        .expect("data hostPath");
    assert_eq!(data.path, "/var/lib/killkrill/logs-edge", "embedded store per node and per Ingestor");
    let config = volumes
        .iter()
        .find(|volume| volume.name == "config")
        .and_then(|volume| volume.config_map.clone())
        .expect("config");
    assert_eq!(config.name, "edge-config");

    for name in ["killkrill", "killkrill-agent"] {
        let mounts = container(&objects, name).volume_mounts.clone().unwrap_or_default();
        let bpf_mount = mounts
            .iter()
            .find(|mount| mount.name == "bpffs")
            .unwrap_or_else(|| panic!("{name} mounts bpffs"));
        assert_eq!(bpf_mount.mount_path, "/sys/fs/bpf");
        assert_ne!(bpf_mount.read_only, Some(true), "{name}: maps are pinned there");
        let config_mount = mounts.iter().find(|mount| mount.name == "config").expect("config mount");
        assert_eq!(
            (config_mount.mount_path.as_str(), config_mount.read_only),
            ("/etc/killkrill", Some(true))
        );
    }
    let data_plane = container(&objects, "killkrill");
    assert_eq!(
        data_plane.args.clone().unwrap_or_default(),
        vec!["serve", "--config", "/etc/killkrill/killkrill.toml"]
    );
}

#[test]
fn resources_default_to_the_conventions_and_follow_the_spec() {
    let objects = built(fixtures::spec());
    let resources = container(&objects, "killkrill").resources.clone().expect("resources");
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    assert_eq!((requests["cpu"].0.as_str(), requests["memory"].0.as_str()), ("250m", "256Mi"));
    assert_eq!((limits["cpu"].0.as_str(), limits["memory"].0.as_str()), ("1", "512Mi"));
    let agent = container(&objects, "killkrill-agent").resources.clone().expect("agent resources");
    assert_eq!(agent.limits.unwrap_or_default()["memory"].0, "128Mi");

    let mut spec = fixtures::spec();
    let custom = k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(
            [("cpu".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("4".into()))].into(),
        ),
        ..Default::default()
    };
    spec.resources = Some(custom.clone());
    let objects = built(spec);
    assert_eq!(container(&objects, "killkrill").resources.clone(), Some(custom));
}

#[test]
fn listener_ports_are_host_ports_with_their_transport() {
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Influx, port: 8089 });
    let objects = built(spec);
    let ports = container(&objects, "killkrill").ports.clone().unwrap_or_default();
    let summary: Vec<(String, i32, Option<i32>, String)> = ports
        .into_iter()
        .map(|port| {
            (
                port.name.unwrap_or_default(),
                port.container_port,
                port.host_port,
                port.protocol.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("http".into(), 8080, Some(8080), "TCP".into()),
            ("metrics".into(), 9090, Some(9090), "TCP".into()),
            ("syslog-udp".into(), 514, Some(514), "UDP".into()),
            ("syslog-tcp".into(), 514, Some(514), "TCP".into()),
            ("influx".into(), 8089, Some(8089), "UDP".into()),
        ]
    );
}

#[test]
fn postgres_store_takes_urls_from_secrets_and_keeps_no_host_data() {
    let mut spec = fixtures::spec();
    spec.store.kind = StoreKind::Postgres;
    spec.store.database_url =
        Some(SecretKeyRef { name: "killkrill-secret".into(), key: "database-url".into() });
    spec.store.redis_url = Some(SecretKeyRef { name: "killkrill-secret".into(), key: "redis-url".into() });
    let objects = built(spec);
    let env = container(&objects, "killkrill").env.clone().unwrap_or_default();
    let database = env.iter().find(|var| var.name == "DATABASE_URL").expect("DATABASE_URL");
    assert_eq!(database.value, None, "never a literal secret");
    let selector =
        database.value_from.clone().and_then(|source| source.secret_key_ref).expect("secretKeyRef");
    assert_eq!((selector.name.as_str(), selector.key.as_str()), ("killkrill-secret", "database-url"));
    assert!(env.iter().any(|var| var.name == "REDIS_URL" && var.value_from.is_some()));
    assert!(env.iter().any(|var| var.name == "DB_TYPE" && var.value.as_deref() == Some("postgres")));
    let volumes = pod_spec(&objects).volumes.clone().unwrap_or_default();
    let data = volumes.iter().find(|volume| volume.name == "data").expect("data volume");
    assert!(data.empty_dir.is_some() && data.host_path.is_none());
}

#[test]
fn service_pdb_and_network_policy() {
    let objects = built(fixtures::spec());
    let service = objects.service.spec.clone().expect("service spec");
    let ports: Vec<i32> = service.ports.unwrap_or_default().iter().map(|port| port.port).collect();
    assert_eq!(ports, vec![8080, 9090]);
    assert_eq!(service.selector, Some(resources::selector_labels(NAME)));
    let annotations = objects.service.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"));
    assert_eq!(annotations.get("prometheus.io/port").map(String::as_str), Some("9090"));
    assert_eq!(annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"));

    let pdb = objects.pod_disruption_budget.spec.clone().expect("pdb spec");
    assert_eq!(pdb.max_unavailable, None, "not honoured for DaemonSet pods");
    assert_eq!(pdb.min_available, Some(IntOrString::Int(0)), "no node count observed yet");
    assert_eq!(
        pdb.selector.and_then(|selector| selector.match_labels),
        Some(resources::selector_labels(NAME))
    );

    let policy = objects.network_policy.spec.clone().expect("policy spec");
    assert_eq!(policy.policy_types, Some(vec!["Ingress".to_string()]));
    let allowed: Vec<(String, i32)> = policy
        .ingress
        .unwrap_or_default()
        .into_iter()
        .flat_map(|rule| rule.ports.unwrap_or_default())
        .map(|port| {
            let number = match port.port {
                Some(IntOrString::Int(number)) => number,
                other => panic!("numeric port expected, got {other:?}"),
            };
            (port.protocol.unwrap_or_default(), number)
        })
        .collect();
    assert_eq!(
        allowed,
        vec![
            ("UDP".into(), 514),
            ("TCP".into(), 514),
            ("TCP".into(), 8080),
            ("TCP".into(), 9090),
            ("TCP".into(), 8081)
        ]
    );
}

#[test]
fn role_grants_only_reading_its_config_map_and_writing_events() {
    let objects = built(fixtures::spec());
    let rules = objects.role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].resources, Some(vec!["configmaps".to_string()]));
    assert_eq!(rules[0].resource_names, Some(vec!["edge-config".to_string()]));
    assert_eq!(rules[0].verbs, vec!["get", "watch"]);
    assert_eq!(rules[1].api_groups, Some(vec!["events.k8s.io".to_string()]));
    let binding = &objects.role_binding;
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("Role", NAME));
    let subject = &binding.subjects.clone().unwrap_or_default()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str(), subject.namespace.as_deref()),
        ("ServiceAccount", NAME, Some(NAMESPACE))
    );
}

#[test]
fn a_config_change_changes_the_pod_template_hash() {
    let hash = |objects: &OwnedObjects| {
        objects
            .daemon_set
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.annotations.clone())
            .unwrap_or_default()[resources::CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let before = built(fixtures::spec());
    let mut spec = fixtures::spec();
    spec.data_plane_cores.push(4);
    let after = built(spec);
    assert_ne!(hash(&before), hash(&after), "pods restart to read the new configuration");
    assert_eq!(hash(&before), hash(&built(fixtures::spec())), "and only then");
}

#[test]
fn version_label_comes_from_the_image_tag_when_it_is_one() {
    assert_eq!(resources::version_label("registry.example:5000/killkrill:1.2.3"), "1.2.3");
    assert_eq!(resources::version_label("registry.example:5000/killkrill"), killkrill_operator::VERSION);
    assert_eq!(resources::version_label("killkrill@sha256:abcd"), killkrill_operator::VERSION);
    assert_eq!(resources::version_label("killkrill:1.2.3@sha256:abcd"), "1.2.3");
}

#[test]
fn agent_image_defaults_to_the_operator_version() {
    let objects = built(fixtures::spec());
    assert_eq!(
        container(&objects, "killkrill-agent").image,
        Some(format!("killkrill-agent:{}", killkrill_operator::VERSION))
    );
    let mut spec = fixtures::spec();
    spec.agent_image = Some("registry.example/killkrill-agent:9.9.9".into());
    let objects = built(spec);
    assert_eq!(
        container(&objects, "killkrill-agent").image.as_deref(),
        Some("registry.example/killkrill-agent:9.9.9")
    );
}

#[test]
fn an_ingestor_without_a_namespace_or_uid_is_an_error_not_a_panic() {
    let mut ingestor = fixtures::ingestor(fixtures::spec());
    ingestor.metadata.uid = None;
    let error = resources::build(&ingestor).expect_err("no uid");
    assert_eq!(error.to_string(), "Ingestor has no metadata.uid");
    ingestor.metadata.namespace = None;
    assert!(resources::build(&ingestor).is_err());
}

#[test]
fn pdb_lets_one_node_at_a_time_go() {
    for (desired, min_available) in [(0, 0), (1, 0), (2, 1), (40, 39)] {
        let mut ingestor = fixtures::ingestor(fixtures::spec());
        ingestor.status =
            Some(killkrill_operator::crd::IngestorStatus { nodes_desired: desired, ..Default::default() });
        let pdb = resources::build(&ingestor).expect("build").pod_disruption_budget.spec.expect("pdb spec");
        assert_eq!(pdb.min_available, Some(IntOrString::Int(min_available)), "{desired} nodes");
    }
}

#[test]
fn the_agent_is_configured_like_the_static_manifests() {
    let objects = built(fixtures::spec());
    let agent = container(&objects, "killkrill-agent");
    assert_eq!(agent.args, None, "settings come from the environment");
    let env = agent.env.clone().unwrap_or_default();
    let value = |name: &str| env.iter().find(|var| var.name == name).and_then(|var| var.value.clone());
    assert_eq!(value("KILLKRILL_AGENT__HEALTH_LISTEN").as_deref(), Some("0.0.0.0:8081"));
    assert_eq!(value("KILLKRILL_AGENT__CONTROL_PLANE_URL").as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(value("KILLKRILL_AGENT_CONFIG").as_deref(), Some("/etc/killkrill/node.toml"));
    let node = env.iter().find(|var| var.name == "KILLKRILL_AGENT__NODE_NAME").expect("node name");
    let field = node.value_from.clone().and_then(|source| source.field_ref).expect("downward API");
    assert_eq!(field.field_path, "spec.nodeName");
}

#[test]
fn the_agent_gets_the_api_key_from_the_referenced_secret() {
    let without = built(fixtures::spec());
    let env = container(&without, "killkrill-agent").env.clone().unwrap_or_default();
    assert!(env.iter().all(|var| var.name != "KILLKRILL_API_KEY"), "no reference, no key");

    let spec = killkrill_operator::crd::IngestorSpec {
        api_key_secret_ref: Some(killkrill_operator::crd::SecretKeyRef {
            name: "killkrill-api".into(),
            key: "api-key".into(),
        }),
        ..fixtures::spec()
    };
    let objects = built(spec);
    let env = container(&objects, "killkrill-agent").env.clone().unwrap_or_default();
    let key = env.iter().find(|var| var.name == "KILLKRILL_API_KEY").expect("KILLKRILL_API_KEY");
    assert_eq!(key.value, None, "never a literal");
    let selector =
        key.value_from.clone().and_then(|source| source.secret_key_ref).expect("a Secret reference");
    assert_eq!((selector.name.as_str(), selector.key.as_str()), ("killkrill-api", "api-key"));
    let appliance = container(&objects, "killkrill").env.clone().unwrap_or_default();
    assert!(appliance.iter().all(|var| var.name != "KILLKRILL_API_KEY"), "only the agent needs it");
}
