//! The checks, as functions from rendered objects to a list of problems, so that a test
//! can show every problem at once and another can prove each check fires.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::deploy::{at, read, repo_root, seq_at, str_at};

pub const ALLOWED_CAPABILITIES: &[&str] =
    &["NET_ADMIN", "BPF", "PERFMON", "NET_RAW", "IPC_LOCK", "SYS_RESOURCE", "NET_BIND_SERVICE"];

pub const NAMESPACE: &str = "killkrill";

pub const CLUSTER_SCOPED: &[&str] =
    &["Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"];

/// What CONVENTIONS.md and docs/deploy.md expect of one Killkrill container.
pub struct ContainerRole {
    pub app: &'static str,
    pub container: &'static str,
    pub image: &'static str,
    /// Where /health and /ready answer.
    pub probe_port: u16,
    /// Starting requests and limits: cpu, memory, cpu, memory.
    pub resources: [&'static str; 4],
    pub capabilities: &'static [&'static str],
    pub non_root: bool,
}

pub const KILLKRILL_CONTAINERS: &[ContainerRole] = &[
    ContainerRole {
        app: "killkrill",
        container: "killkrill",
        image: "killkrill-control-plane",
        probe_port: 8080,
        resources: ["250m", "256Mi", "1", "512Mi"],
        capabilities: &[],
        non_root: true,
    },
    ContainerRole {
        app: "killkrill-dataplane",
        container: "dataplane",
        image: "killkrill-data-plane",
        probe_port: 8080,
        resources: ["250m", "256Mi", "1", "512Mi"],
        capabilities: &["NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK", "SYS_RESOURCE", "NET_BIND_SERVICE"],
        non_root: false,
    },
    ContainerRole {
        app: "killkrill-dataplane",
        container: "agent",
        image: "killkrill-agent",
        probe_port: 8081,
        resources: ["50m", "64Mi", "200m", "128Mi"],
        capabilities: &["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"],
        non_root: false,
    },
    ContainerRole {
        app: "killkrill-operator",
        container: "operator",
        image: "killkrill-operator",
        probe_port: 8080,
        resources: ["100m", "128Mi", "500m", "256Mi"],
        capabilities: &[],
        non_root: true,
    },
];

/// Services from elsewhere (dev only): probes by command, no Prometheus endpoint.
pub const THIRD_PARTY_APPS: &[&str] = &["postgres", "redis"];

pub fn kind(object: &Value) -> &str {
    str_at(object, &["kind"]).unwrap_or("")
}

pub fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"]).unwrap_or("")
}

pub fn id(object: &Value) -> String {
    format!("{}/{}", kind(object), name(object))
}

pub fn find<'a>(objects: &'a [Value], kind_: &str, name_: &str) -> Option<&'a Value> {
    objects.iter().find(|object| kind(object) == kind_ && name(object) == name_)
}

pub fn of_kind<'a>(objects: &'a [Value], kind_: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |object| kind(object) == kind_)
}

fn is_workload(object: &Value) -> bool {
    matches!(kind(object), "Deployment" | "DaemonSet" | "StatefulSet")
}

/// A Kubernetes scalar (quantity, port, label value) as text, whether YAML typed it as a
/// string or a number.
pub fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(mapping) = value.and_then(Value::as_mapping) {
        for (key, value) in mapping {
            if let (Some(key), Some(value)) = (key.as_str(), scalar(Some(value))) {
                map.insert(key.to_owned(), value);
            }
        }
    }
    map
}

/// True when every pair of `selector` is in `labels` (and the selector is not empty).
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

fn label_problems(what: &str, labels: &BTreeMap<String, String>, version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for key in [
        "app",
        "app.kubernetes.io/name",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/component",
        "app.kubernetes.io/version",
    ] {
        if labels.get(key).is_none_or(String::is_empty) {
            problems.push(format!("{what}: label {key} is missing"));
        }
    }
    if labels.get("app") != labels.get("app.kubernetes.io/name") {
        problems.push(format!("{what}: labels app and app.kubernetes.io/name differ"));
    }
    if labels.get("app.kubernetes.io/part-of").is_some_and(|v| v != "killkrill") {
        problems.push(format!("{what}: app.kubernetes.io/part-of is not killkrill"));
    }
    if labels.get("app.kubernetes.io/version").is_some_and(|v| v != version) {
        problems.push(format!("{what}: app.kubernetes.io/version is not {version} (.version)"));
    }
    problems
}

/// The names CONVENTIONS.md gives each kind, from the object's `app` label.
fn naming_problems(object: &Value) -> Vec<String> {
    let labels = string_map(at(object, &["metadata", "labels"]));
    let app = labels.get("app").map(String::as_str).unwrap_or("");
    let name = name(object);
    let expected = match kind(object) {
        "Deployment" | "DaemonSet" | "StatefulSet" | "Service" => app.to_owned(),
        "HorizontalPodAutoscaler" => {
            format!("{}-hpa", str_at(object, &["spec", "scaleTargetRef", "name"]).unwrap_or(""))
        }
        "ServiceMonitor" => format!("{app}-monitor"),
        "PodDisruptionBudget" => format!("{app}-pdb"),
        "NetworkPolicy" => format!("{app}-netpol"),
        "ConfigMap" if !name.ends_with("-config") => format!("<app>-config, not {name}"),
        "Secret" if !name.ends_with("-secret") => format!("<app>-secret, not {name}"),
        "PersistentVolumeClaim" if !name.ends_with("-data") => format!("<app>-data, not {name}"),
        _ => return Vec::new(),
    };
    if name == expected { Vec::new() } else { vec![format!("{}: should be named {expected}", id(object))] }
}

fn container_port_numbers(container: &Value) -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    for port in seq_at(container, &["ports"]) {
        let number = at(port, &["containerPort"]).and_then(Value::as_u64).unwrap_or(0) as u16;
        let name = str_at(port, &["name"]).unwrap_or("").to_owned();
        ports.insert(if name.is_empty() { number.to_string() } else { name }, number);
    }
    ports
}

/// A probe's or Service's port, named or numbered, as a number.
fn resolve_port(port: Option<&Value>, ports: &BTreeMap<String, u16>) -> Option<u16> {
    match port? {
        Value::Number(number) => number.as_u64().map(|n| n as u16),
        Value::String(name) => ports.get(name).copied(),
        _ => None,
    }
}

fn capability_set(container: &Value, which: &str) -> BTreeSet<String> {
    seq_at(container, &["securityContext", "capabilities", which])
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect()
}

fn container_problems(
    what: &str,
    pod_spec: &Value,
    container: &Value,
    role: Option<&ContainerRole>,
    version: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let ports = container_port_numbers(container);
    for (bound, resource) in
        [("requests", "cpu"), ("requests", "memory"), ("limits", "cpu"), ("limits", "memory")]
    {
        if scalar(at(container, &["resources", bound, resource])).is_none() {
            problems.push(format!("{what}: no resources.{bound}.{resource}"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe"] {
        if at(container, &[probe]).is_none() {
            problems.push(format!("{what}: no {probe}"));
        }
    }
    let security = |key: &str| at(container, &["securityContext", key]).and_then(Value::as_bool);
    if security("allowPrivilegeEscalation") != Some(false) {
        problems.push(format!("{what}: allowPrivilegeEscalation is not false"));
    }
    if security("privileged") == Some(true) {
        problems.push(format!("{what}: privileged"));
    }
    if security("readOnlyRootFilesystem") != Some(true) {
        problems.push(format!("{what}: readOnlyRootFilesystem is not true"));
    }
    if !capability_set(container, "drop").contains("ALL") {
        problems.push(format!("{what}: capabilities do not drop ALL"));
    }
    let added = capability_set(container, "add");
    for capability in &added {
        if !ALLOWED_CAPABILITIES.contains(&capability.as_str()) {
            problems.push(format!("{what}: capability {capability} is not one XDP or the syslog port needs"));
        }
    }
    let effective = |key: &str| {
        at(container, &["securityContext", key]).or_else(|| at(pod_spec, &["securityContext", key]))
    };
    let Some(role) = role else {
        if !added.is_empty() {
            problems.push(format!("{what}: a third-party container adds capabilities"));
        }
        if effective("runAsNonRoot").and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{what}: not runAsNonRoot"));
        }
        return problems;
    };
    let image = str_at(container, &["image"]).unwrap_or("");
    let expected_image = format!("{}:{version}", role.image);
    if image != expected_image && !image.ends_with(&format!("/{expected_image}")) {
        problems.push(format!("{what}: image {image}, expected {expected_image}"));
    }
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        let Some(get) = at(container, &[probe, "httpGet"]) else {
            problems.push(format!("{what}: {probe} is not an HTTP GET"));
            continue;
        };
        if str_at(get, &["path"]) != Some(path) {
            problems.push(format!("{what}: {probe} does not ask {path}"));
        }
        let port = resolve_port(at(get, &["port"]), &ports);
        if port != Some(role.probe_port) {
            problems.push(format!("{what}: {probe} asks port {port:?}, not {}", role.probe_port));
        }
    }
    let expected_capabilities: BTreeSet<String> = role.capabilities.iter().map(|c| (*c).to_owned()).collect();
    if added != expected_capabilities {
        problems
            .push(format!("{what}: adds capabilities {added:?}, expected exactly {expected_capabilities:?}"));
    }
    if role.non_root {
        if effective("runAsNonRoot").and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{what}: not runAsNonRoot"));
        }
        if effective("runAsUser").and_then(Value::as_u64).is_none_or(|uid| uid < 1000) {
            problems.push(format!("{what}: runAsUser is not a UID of 1000 or more"));
        }
    }
    problems
}

/// The variables in the environment column of docs/configuration.md's settings table.
fn documented_variables(configuration_md: &str) -> BTreeSet<String> {
    configuration_md
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|row| row.split('|').nth(3))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .map(str::to_owned)
        .collect()
}

/// Environment variables the appliance reads must be ones docs/configuration.md
/// documents: a misspelt KILLKRILL_* variable fails start-up.
fn environment_problems(what: &str, container: &Value, documented: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for variable in seq_at(container, &["env"]) {
        let Some(name) = str_at(variable, &["name"]) else { continue };
        let is_setting = name.starts_with("KILLKRILL_")
            || ["DB_TYPE", "DATABASE_URL", "REDIS_URL", "LOG_LEVEL"].contains(&name);
        if is_setting && !documented.contains(name) {
            problems.push(format!("{what}: {name} is not in docs/configuration.md"));
        }
    }
    problems
}

fn workload_problems(object: &Value, version: &str, documented_config: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let what = id(object);
    let template_labels = string_map(at(object, &["spec", "template", "metadata", "labels"]));
    problems.extend(label_problems(&format!("{what} pod template"), &template_labels, version));
    let selector = string_map(at(object, &["spec", "selector", "matchLabels"]));
    if !selects(&selector, &template_labels) {
        problems.push(format!("{what}: selector does not match its pod template's labels"));
    }
    if selector.contains_key("app.kubernetes.io/version") {
        problems.push(format!("{what}: selector holds the version label (selectors are immutable)"));
    }
    let app = template_labels.get("app").cloned().unwrap_or_default();
    let pod_spec = at(object, &["spec", "template", "spec"]).cloned().unwrap_or(Value::Null);
    if str_at(&pod_spec, &["securityContext", "seccompProfile", "type"]) != Some("RuntimeDefault") {
        problems.push(format!("{what}: pod seccompProfile is not RuntimeDefault"));
    }
    let third_party = THIRD_PARTY_APPS.contains(&app.as_str());
    let mut pod_ports = BTreeSet::new();
    for container in seq_at(&pod_spec, &["containers"]) {
        let container_name = str_at(container, &["name"]).unwrap_or("");
        let what = format!("{what} container {container_name}");
        pod_ports.extend(container_port_numbers(container).into_values());
        let role = KILLKRILL_CONTAINERS.iter().find(|r| r.app == app && r.container == container_name);
        if role.is_none() && !third_party {
            problems.push(format!("{what}: not a container docs/deploy.md describes"));
        }
        problems.extend(container_problems(&what, &pod_spec, container, role, version));
        if role.is_some_and(|r| r.image == "killkrill-control-plane" || r.image == "killkrill-data-plane") {
            problems.extend(environment_problems(&what, container, documented_config));
        }
    }
    if !third_party {
        let annotations = string_map(at(object, &["spec", "template", "metadata", "annotations"]));
        if annotations.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
            problems.push(format!("{what}: pod lacks prometheus.io/scrape: \"true\""));
        }
        if annotations.get("prometheus.io/path").map(String::as_str) != Some("/metrics") {
            problems.push(format!("{what}: pod lacks prometheus.io/path: /metrics"));
        }
        let port = annotations.get("prometheus.io/port").and_then(|p| p.parse::<u16>().ok());
        if !port.is_some_and(|p| pod_ports.contains(&p)) {
            problems.push(format!("{what}: prometheus.io/port {port:?} is not a port of the pod"));
        }
        let token = at(&pod_spec, &["automountServiceAccountToken"]).and_then(Value::as_bool);
        if app != "killkrill-operator" && token != Some(false) {
            problems.push(format!("{what}: mounts a service account token it does not need"));
        }
    }
    if kind(object) == "DaemonSet" {
        if at(&pod_spec, &["hostNetwork"]).and_then(Value::as_bool) != Some(true) {
            problems.push(format!("{what}: not on the host network"));
        }
        if str_at(&pod_spec, &["dnsPolicy"]) != Some("ClusterFirstWithHostNet") {
            problems.push(format!("{what}: dnsPolicy is not ClusterFirstWithHostNet"));
        }
        let bpffs = seq_at(&pod_spec, &["volumes"])
            .iter()
            .find(|v| str_at(v, &["hostPath", "path"]) == Some("/sys/fs/bpf"))
            .and_then(|v| str_at(v, &["name"]));
        for container in seq_at(&pod_spec, &["containers"]) {
            let mounted = seq_at(container, &["volumeMounts"])
                .iter()
                .any(|m| str_at(m, &["name"]) == bpffs && str_at(m, &["mountPath"]) == Some("/sys/fs/bpf"));
            if capability_set(container, "add").contains("BPF") && !mounted {
                problems.push(format!(
                    "{what}: container {} has BPF but not /sys/fs/bpf",
                    str_at(container, &["name"]).unwrap_or("")
                ));
            }
        }
    }
    problems
}

/// Everything CONVENTIONS.md asks of a rendered set of objects.
pub fn object_problems(objects: &[Value], version: &str) -> Vec<String> {
    let documented_config = documented_variables(&read(&repo_root().join("docs/configuration.md")));
    assert!(
        documented_config.contains("KILLKRILL_DATA_DIR"),
        "docs/configuration.md lost its settings table"
    );
    let mut problems = Vec::new();
    let pods: Vec<(&Value, BTreeMap<String, String>)> = objects
        .iter()
        .filter(|o| is_workload(o))
        .map(|o| (o, string_map(at(o, &["spec", "template", "metadata", "labels"]))))
        .collect();
    for object in objects {
        let what = id(object);
        problems.extend(label_problems(&what, &string_map(at(object, &["metadata", "labels"])), version));
        problems.extend(naming_problems(object));
        let namespace = str_at(object, &["metadata", "namespace"]);
        if CLUSTER_SCOPED.contains(&kind(object)) {
            if namespace.is_some() {
                problems.push(format!("{what}: cluster-scoped but has a namespace"));
            }
        } else if namespace != Some(NAMESPACE) {
            problems.push(format!("{what}: namespace {namespace:?}, not {NAMESPACE}"));
        }
        if is_workload(object) {
            problems.extend(workload_problems(object, version, &documented_config));
        }
        if kind(object) == "Service" {
            let selector = string_map(at(object, &["spec", "selector"]));
            match pods.iter().find(|(_, labels)| selects(&selector, labels)) {
                None => problems.push(format!("{what}: selects no workload")),
                Some((workload, _)) => {
                    let containers = seq_at(workload, &["spec", "template", "spec", "containers"]);
                    let ports: BTreeMap<String, u16> =
                        containers.iter().flat_map(container_port_numbers).collect();
                    for port in seq_at(object, &["spec", "ports"]) {
                        let target = at(port, &["targetPort"]).or_else(|| at(port, &["port"]));
                        let number = resolve_port(target, &ports);
                        if !number.is_some_and(|n| ports.values().any(|p| *p == n)) {
                            problems.push(format!(
                                "{what}: port {:?} is not a port of {}",
                                target,
                                id(workload)
                            ));
                        }
                    }
                }
            }
        }
        if kind(object) == "ServiceMonitor" {
            let selector = string_map(at(object, &["spec", "selector", "matchLabels"]));
            let service = of_kind(objects, "Service")
                .find(|s| selects(&selector, &string_map(at(s, &["metadata", "labels"]))));
            match service {
                None => problems.push(format!("{what}: selects no Service")),
                Some(service) => {
                    for endpoint in seq_at(object, &["spec", "endpoints"]) {
                        let port = str_at(endpoint, &["port"]);
                        if !seq_at(service, &["spec", "ports"]).iter().any(|p| str_at(p, &["name"]) == port) {
                            problems.push(format!(
                                "{what}: endpoint port {port:?} is not a port of {}",
                                id(service)
                            ));
                        }
                        if str_at(endpoint, &["path"]) != Some("/metrics") {
                            problems.push(format!("{what}: endpoint path is not /metrics"));
                        }
                    }
                }
            }
        }
        if kind(object) == "Secret" {
            problems.extend(secret_problems(object));
        }
    }
    for (workload, labels) in &pods {
        let what = id(workload);
        let covered_by = |kind_: &str, path: &[&str]| {
            of_kind(objects, kind_).any(|o| selects(&string_map(at(o, path)), labels))
        };
        if !covered_by("PodDisruptionBudget", &["spec", "selector", "matchLabels"]) {
            problems.push(format!("{what}: no PodDisruptionBudget"));
        }
        let policies: Vec<&Value> = of_kind(objects, "NetworkPolicy")
            .filter(|o| selects(&string_map(at(o, &["spec", "podSelector", "matchLabels"])), labels))
            .collect();
        if policies.is_empty() {
            problems.push(format!("{what}: no NetworkPolicy"));
        }
        for policy in policies {
            let types: Vec<&str> =
                seq_at(policy, &["spec", "policyTypes"]).iter().filter_map(Value::as_str).collect();
            if !(types.contains(&"Ingress") && types.contains(&"Egress")) {
                problems.push(format!("{}: does not restrict both Ingress and Egress", id(policy)));
            }
        }
        if kind(workload) == "Deployment" && labels.get("app").map(String::as_str) == Some("killkrill") {
            let scaled = of_kind(objects, "HorizontalPodAutoscaler").any(|h| {
                str_at(h, &["spec", "scaleTargetRef", "kind"]) == Some("Deployment")
                    && str_at(h, &["spec", "scaleTargetRef", "name"]) == Some(name(workload))
            });
            if !scaled {
                problems.push(format!("{what}: the stateless control plane has no HPA"));
            }
        }
    }
    problems
}

/// Secrets are referenced, never committed: a generated Secret may name servers, but a
/// URL in it must carry no password.
pub fn secret_problems(secret: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut values: Vec<String> = string_map(at(secret, &["stringData"])).into_values().collect();
    for encoded in string_map(at(secret, &["data"])).into_values() {
        match decode_base64(&encoded) {
            Some(text) => values.push(text),
            None => problems.push(format!("{}: data is not base64 text", id(secret))),
        }
    }
    for value in values {
        let credentials =
            value.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(user, _)| user);
        if credentials.is_some_and(|user| user.contains(':')) {
            problems.push(format!("{}: a committed URL carries a password", id(secret)));
        }
    }
    problems
}

pub fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for byte in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|b| *b == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(bytes).ok()
}

pub fn resources_of<'a>(objects: &'a [Value], app: &str, container: &str) -> Option<&'a Value> {
    objects
        .iter()
        .filter(|o| is_workload(o))
        .filter(|o| str_at(o, &["spec", "template", "metadata", "labels", "app"]) == Some(app))
        .flat_map(|o| seq_at(o, &["spec", "template", "spec", "containers"]))
        .find(|c| str_at(c, &["name"]) == Some(container))
        .and_then(|c| at(c, &["resources"]))
}
