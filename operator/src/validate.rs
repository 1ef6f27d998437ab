//! Checks of an `IngestorSpec` that the OpenAPI schema cannot express.
//!
//! Every problem is reported (not only the first), each naming the field, so that one
//! look at the `Degraded` condition or the Event tells the user everything to fix.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::crd::{IngestorSpec, ListenerProtocol, StoreKind, Transport};
use crate::resources::{AGENT_HEALTH_PORT, API_PORT, METRICS_PORT};

/// Cores above this are surely a typo (the kernel's default NR_CPUS is 8192, but no node
/// we target has more than a few hundred).
const MAX_CORE: u32 = 4095;

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, as a JSON path under `spec` (e.g. `spec.listeners[1].port`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of a spec, joined for a condition message or an Event note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<SpecProblem>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join("; "))
    }
}

/// Checks `spec`; `Ok` when the operator can build every object from it.
pub fn validate(spec: &IngestorSpec) -> Result<(), InvalidSpec> {
    let mut problems = Vec::new();
    let mut problem = |field: String, message: String| problems.push(SpecProblem { field, message });

    if spec.image.trim().is_empty() {
        problem("spec.image".into(), "must name a container image".into());
    }
    if spec.agent_image.as_deref().is_some_and(|image| image.trim().is_empty()) {
        problem("spec.agentImage".into(), "must name a container image when set".into());
    }
    if let Err(message) = check_interface_name(&spec.interface) {
        problem("spec.interface".into(), message);
    }

    if spec.data_plane_cores.is_empty() {
        problem("spec.dataPlaneCores".into(), "must list at least one core".into());
    }
    let mut cores_seen = HashSet::new();
    for (index, core) in spec.data_plane_cores.iter().enumerate() {
        if *core > MAX_CORE {
            problem(format!("spec.dataPlaneCores[{index}]"), format!("core {core} is above {MAX_CORE}"));
        }
        if !cores_seen.insert(*core) {
            problem(format!("spec.dataPlaneCores[{index}]"), format!("core {core} is listed twice"));
        }
    }

    if spec.listeners.is_empty() {
        problem("spec.listeners".into(), "must have at least one listener".into());
    }
    // The API, metrics and agent ports are taken on the node too (hostNetwork), over TCP.
    let mut ports_taken: HashMap<(Transport, i32), String> = HashMap::from([
        ((Transport::Tcp, i32::from(API_PORT)), "the API".to_string()),
        ((Transport::Tcp, i32::from(METRICS_PORT)), "the metrics endpoint".to_string()),
        ((Transport::Tcp, i32::from(AGENT_HEALTH_PORT)), "the agent's health endpoint".to_string()),
    ]);
    let mut protocols_seen: HashMap<ListenerProtocol, usize> = HashMap::new();
    for (index, listener) in spec.listeners.iter().enumerate() {
        let field = format!("spec.listeners[{index}]");
        if let Some(first) = protocols_seen.insert(listener.protocol, index) {
            problem(
                format!("{field}.protocol"),
                format!(
                    "{} is already used by spec.listeners[{first}]; one listener per protocol",
                    listener.protocol.as_str()
                ),
            );
        }
        if !(1..=65535).contains(&listener.port) {
            problem(format!("{field}.port"), format!("{} is not a port (1 to 65535)", listener.port));
            continue;
        }
        let key = (listener.protocol.transport(), listener.port);
        let owner = format!("{field} ({})", listener.protocol.as_str());
        if let Some(previous) = ports_taken.insert(key, owner) {
            problem(
                format!("{field}.port"),
                format!(
                    "{}/{} is already used by {previous}",
                    listener.port,
                    listener.protocol.transport().kubernetes_name()
                ),
            );
        }
    }

    match spec.store.kind {
        StoreKind::Embedded => {
            if let Some(path) = &spec.store.host_path
                && !path.starts_with('/')
            {
                problem("spec.store.hostPath".into(), format!("{path:?} is not an absolute path"));
            }
        }
        StoreKind::Postgres => {
            for (name, reference) in
                [("databaseUrl", &spec.store.database_url), ("redisUrl", &spec.store.redis_url)]
            {
                match reference {
                    None => problem(
                        format!("spec.store.{name}"),
                        "is required for the postgres store (a Secret name and key)".into(),
                    ),
                    Some(reference) if reference.name.is_empty() || reference.key.is_empty() => {
                        problem(format!("spec.store.{name}"), "needs both a Secret name and a key".into())
                    }
                    Some(_) => {}
                }
            }
        }
    }

    if let Some(reference) = &spec.api_key_secret_ref
        && (reference.name.is_empty() || reference.key.is_empty())
    {
        problem("spec.apiKeySecretRef".into(), "needs both a Secret name and a key".into());
    }

    if let Some(age) = &spec.retention.max_age
        && let Err(message) = parse_duration_seconds(age)
    {
        problem("spec.retention.maxAge".into(), message);
    }
    if let Some(bytes) = &spec.retention.max_bytes
        && let Err(message) = parse_quantity_bytes(bytes)
    {
        problem("spec.retention.maxBytes".into(), message);
    }

    if problems.is_empty() { Ok(()) } else { Err(InvalidSpec(problems)) }
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ less the NUL), no `/`, no whitespace.
fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must name a network interface (e.g. eth0)".into());
    }
    if name.len() > 15 {
        return Err(format!("{name:?} is longer than 15 bytes, the kernel's limit"));
    }
    if name == "."
        || name == ".."
        || name.contains('/')
        || name.contains(':')
        || name.chars().any(char::is_whitespace)
    {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

/// `14d`, `36h`, `90m`, `3600s`, `2w` -> seconds.
pub fn parse_duration_seconds(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: expected a whole number and a unit (s, m, h, d, w)")
    })?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{text:?} is not a duration: the unit must be s, m, h, d or w")),
    };
    match number.checked_mul(unit_seconds) {
        Some(0) => Err(format!("{text:?} must be more than zero")),
        Some(seconds) => Ok(seconds),
        None => Err(format!("{text:?} is too long")),
    }
}

/// A Kubernetes quantity of bytes: `500M`, `200Gi`, `1073741824` -> bytes.
pub fn parse_quantity_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size: expected a whole number and a suffix such as Gi or G")
    })?;
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: the suffix must be one of k, M, G, T, Ki, Mi, Gi, Ti"
            ));
        }
    };
    match number.checked_mul(multiplier) {
        Some(0) => Err(format!("{text:?} must be more than zero")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}
