//! Renders every kustomization with `kubectl kustomize` and checks the objects one by
//! one against CONVENTIONS.md: labels, names, probes, resources, security contexts,
//! capabilities, Prometheus annotations, and that each workload has its PDB, NetworkPolicy
//! (and HPA for the control plane).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;

pub mod checks;

use checks::*;

use super::{assert_no_problems, at, deploy_dir, seq_at, str_at, version, yaml_documents};

/// Every capability any Killkrill container may add: what XDP/AF_XDP need, and the low
/// syslog port on the host network.
fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// `kubectl kustomize deploy/<dir>`, parsed.
fn kustomize(dir: &str) -> Result<Vec<Value>, String> {
    let path = deploy_dir().join(dir);
    let output = Command::new(kubectl()).arg("kustomize").arg(&path).output().map_err(|e| {
        format!("cannot run `{} kustomize` ({e}); `cargo xtask setup` installs kubectl", kubectl())
    })?;
    if !output.status.success() {
        return Err(format!(
            "kubectl kustomize {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    yaml_documents(&String::from_utf8_lossy(&output.stdout))
        .map_err(|e| format!("kubectl kustomize {dir} printed YAML that does not parse: {e}"))
}

/// Each tree rendered once per test binary.
fn rendered(dir: &'static str) -> &'static [Value] {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<&'static str, &'static [Value]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(objects) = cache.get(dir) {
        return objects;
    }
    let objects: &'static [Value] = kustomize(dir).unwrap_or_else(|e| panic!("{e}")).leak();
    cache.insert(dir, objects);
    objects
}

#[test]
fn base_renders_and_every_object_follows_the_conventions() {
    let objects = rendered("kubernetes/base");
    assert_no_problems("kubernetes/base", &object_problems(objects, &version()));
    for kind_name in [
        ("Namespace", NAMESPACE),
        ("Deployment", "killkrill"),
        ("Service", "killkrill"),
        ("HorizontalPodAutoscaler", "killkrill-hpa"),
        ("ConfigMap", "killkrill-config"),
        ("DaemonSet", "killkrill-dataplane"),
        ("Deployment", "killkrill-operator"),
        ("ServiceAccount", "killkrill-operator"),
        ("ClusterRole", "killkrill-operator"),
        ("ClusterRoleBinding", "killkrill-operator"),
        ("CustomResourceDefinition", "ingestors.killkrill.io"),
    ] {
        assert!(find(objects, kind_name.0, kind_name.1).is_some(), "base has no {kind_name:?}");
    }
    assert!(of_kind(objects, "Secret").next().is_none(), "the base must only reference killkrill-secret");
}

#[test]
fn base_resources_are_the_conventions_starting_values() {
    let objects = rendered("kubernetes/base");
    for role in KILLKRILL_CONTAINERS {
        let resources = resources_of(objects, role.app, role.container)
            .unwrap_or_else(|| panic!("no container {} in {}", role.container, role.app));
        let actual = [
            scalar(at(resources, &["requests", "cpu"])),
            scalar(at(resources, &["requests", "memory"])),
            scalar(at(resources, &["limits", "cpu"])),
            scalar(at(resources, &["limits", "memory"])),
        ];
        let expected = role.resources.map(|v| Some(v.to_owned()));
        assert_eq!(
            actual, expected,
            "{}/{}: requests cpu, memory, limits cpu, memory",
            role.app, role.container
        );
    }
}

#[test]
fn operator_rbac_binds_the_operators_service_account_and_the_crd_is_ingestor() {
    let objects = rendered("kubernetes/base");
    let binding = find(objects, "ClusterRoleBinding", "killkrill-operator").expect("binding");
    let subject = &seq_at(binding, &["subjects"])[0];
    assert_eq!(str_at(subject, &["kind"]), Some("ServiceAccount"));
    assert_eq!(str_at(subject, &["namespace"]), Some(NAMESPACE));
    let account = str_at(subject, &["name"]).expect("subject name");
    let deployment = find(objects, "Deployment", "killkrill-operator").expect("operator");
    assert_eq!(str_at(deployment, &["spec", "template", "spec", "serviceAccountName"]), Some(account));
    assert!(find(objects, "ServiceAccount", account).is_some());
    let role = find(objects, "ClusterRole", "killkrill-operator").expect("role");
    let grants = |group: &str, resource: &str, verb: &str| {
        seq_at(role, &["rules"]).iter().any(|rule| {
            let has =
                |key: &str, wanted: &str| seq_at(rule, &[key]).iter().any(|v| v.as_str() == Some(wanted));
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for (group, resource, verb) in [
        ("killkrill.io", "ingestors", "watch"),
        ("killkrill.io", "ingestors/status", "patch"),
        ("killkrill.io", "ingestors/finalizers", "update"),
        ("apps", "daemonsets", "create"),
        ("", "configmaps", "patch"),
        ("policy", "poddisruptionbudgets", "create"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("events.k8s.io", "events", "create"),
    ] {
        assert!(grants(group, resource, verb), "the operator may not {verb} {group}/{resource}");
    }
    for rule in seq_at(role, &["rules"]) {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !seq_at(rule, &[field]).iter().any(|v| v.as_str() == Some("*")),
                "wildcard {field} in {rule:?}"
            );
        }
    }
    let crd = find(objects, "CustomResourceDefinition", "ingestors.killkrill.io").expect("CRD");
    assert_eq!(str_at(crd, &["spec", "group"]), Some("killkrill.io"));
    assert_eq!(str_at(crd, &["spec", "names", "kind"]), Some("Ingestor"));
}

#[test]
fn dev_overlay_adds_postgres_and_redis_and_a_passwordless_secret() {
    let objects = rendered("kubernetes/overlays/dev");
    assert_no_problems("kubernetes/overlays/dev", &object_problems(objects, &version()));
    for (kind_, name_) in [
        ("Deployment", "postgres"),
        ("Service", "postgres"),
        ("PersistentVolumeClaim", "postgres-data"),
        ("Deployment", "redis"),
        ("Service", "redis"),
        ("Secret", "killkrill-secret"),
    ] {
        assert!(find(objects, kind_, name_).is_some(), "dev has no {kind_}/{name_}");
    }
    assert!(
        of_kind(objects, "ServiceMonitor").next().is_none(),
        "dev clusters may lack the Prometheus operator"
    );
    let control_plane = find(objects, "Deployment", "killkrill").expect("control plane");
    assert_eq!(at(control_plane, &["spec", "replicas"]).and_then(Value::as_u64), Some(1));
    let config = find(objects, "ConfigMap", "killkrill-config").expect("config");
    assert_eq!(str_at(config, &["data", "LOG_LEVEL"]), Some("debug"));
}

#[test]
fn production_overlay_scales_out_and_scrapes_every_service() {
    let objects = rendered("kubernetes/overlays/production");
    assert_no_problems("kubernetes/overlays/production", &object_problems(objects, &version()));
    assert!(
        find(objects, "Deployment", "postgres").is_none() && find(objects, "Deployment", "redis").is_none()
    );
    assert!(
        of_kind(objects, "Secret").next().is_none(),
        "production references killkrill-secret, never ships it"
    );
    let control_plane = find(objects, "Deployment", "killkrill").expect("control plane");
    assert!(at(control_plane, &["spec", "replicas"]).and_then(Value::as_u64) >= Some(3));
    let hpa = find(objects, "HorizontalPodAutoscaler", "killkrill-hpa").expect("HPA");
    assert!(at(hpa, &["spec", "minReplicas"]).and_then(Value::as_u64) >= Some(3));
    let pdb = find(objects, "PodDisruptionBudget", "killkrill-pdb").expect("PDB");
    assert_eq!(scalar(at(pdb, &["spec", "minAvailable"])).as_deref(), Some("2"));
    let monitored: BTreeSet<&str> = of_kind(objects, "ServiceMonitor")
        .filter_map(|m| str_at(m, &["spec", "selector", "matchLabels", "app"]))
        .collect();
    assert_eq!(monitored, BTreeSet::from(["killkrill", "killkrill-dataplane", "killkrill-operator"]));
    // Guaranteed QoS in whole CPUs, so that the static CPU manager pins the receivers.
    let resources = resources_of(objects, "killkrill-dataplane", "dataplane").expect("data plane");
    let cpu = scalar(at(resources, &["requests", "cpu"])).expect("cpu request");
    assert!(cpu.parse::<u32>().is_ok_and(|cores| cores >= 1), "whole cores, not {cpu}");
    for dataplane_or_agent in ["dataplane", "agent"] {
        let r = resources_of(objects, "killkrill-dataplane", dataplane_or_agent).expect("container");
        assert_eq!(at(r, &["requests"]), at(r, &["limits"]), "{dataplane_or_agent}: requests equal limits");
    }
}

#[test]
fn every_part_renders_on_its_own() {
    for dir in [
        "kubernetes/base/control-plane",
        "kubernetes/base/data-plane",
        "kubernetes/base/operator",
        "kubernetes/monitoring",
        "crd",
    ] {
        let objects = kustomize(dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(!objects.is_empty(), "{dir} renders nothing");
    }
}

#[test]
fn a_broken_object_is_reported_object_by_object() {
    let version = version();
    let mut objects = rendered("kubernetes/base").to_vec();
    assert_no_problems("base before breaking it", &object_problems(&objects, &version));
    let control_plane = objects
        .iter_mut()
        .find(|o| kind(o) == "Deployment" && name(o) == "killkrill")
        .expect("control plane");
    let labels = control_plane["metadata"]["labels"].as_mapping_mut().expect("labels");
    labels.remove("app.kubernetes.io/component");
    let container = &mut control_plane["spec"]["template"]["spec"]["containers"][0];
    container.as_mapping_mut().expect("container").remove("readinessProbe");
    container["securityContext"]["capabilities"]["add"] = serde_yaml::from_str("[SYS_ADMIN]").expect("YAML");
    container["env"]
        .as_sequence_mut()
        .expect("env")
        .push(serde_yaml::from_str("{name: KILLKRILL_SYSLOG_UDP, value: \"off\"}").expect("YAML"));
    control_plane["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = Value::from("1234");
    objects.retain(|o| kind(o) != "HorizontalPodAutoscaler" && name(o) != "killkrill-operator-pdb");
    let problems = object_problems(&objects, &version);
    for expected in [
        "Deployment/killkrill: label app.kubernetes.io/component is missing",
        "container killkrill: no readinessProbe",
        "capability SYS_ADMIN is not one XDP or the syslog port needs",
        "KILLKRILL_SYSLOG_UDP is not in docs/configuration.md",
        "prometheus.io/port Some(1234) is not a port of the pod",
        "the stateless control plane has no HPA",
        "Deployment/killkrill-operator: no PodDisruptionBudget",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected:?} not reported in {problems:#?}");
    }
    assert!(object_problems(&objects, "9.9.9").iter().any(|p| p.contains("is not 9.9.9 (.version)")));
}

#[test]
fn a_committed_password_in_a_secret_is_reported() {
    let secret: Value = serde_yaml::from_str(
        "kind: Secret\nmetadata: {name: killkrill-secret}\nstringData: {DATABASE_URL: 'postgres://killkrill:hunter2@db/killkrill'}\ndata: {REDIS_URL: cmVkaXM6Ly9yZWRpczo2Mzc5}\n",
    )
    .expect("YAML");
    assert_eq!(secret_problems(&secret), ["Secret/killkrill-secret: a committed URL carries a password"]);
    assert_eq!(decode_base64("cmVkaXM6Ly9yZWRpczo2Mzc5").as_deref(), Some("redis://redis:6379"));
}
