//! The bare-metal units: a dedicated user with ambient capabilities instead of root,
//! the same capabilities as the matching Kubernetes container, hardening, and
//! `systemd-analyze verify` clean.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::kubernetes::checks::{ALLOWED_CAPABILITIES, KILLKRILL_CONTAINERS};
use super::{assert_no_problems, deploy_dir, read};

/// (unit, the DaemonSet container whose capabilities it must have)
const UNITS: &[(&str, &str)] = &[("killkrill.service", "dataplane"), ("killkrill-agent.service", "agent")];

/// Settings every unit must carry, as `systemd-analyze security` weighs them.
const HARDENING: &[(&str, &str)] = &[
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
];

/// `[Section]` → key → values in order (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let values = unit.entry(section.clone()).or_default().entry(key.trim().to_owned()).or_default();
            values.push(value.trim().to_owned());
        }
    }
    unit
}

fn service_value<'a>(unit: &'a Unit, key: &str) -> Option<&'a str> {
    unit.get("Service")?.get(key)?.last().map(String::as_str)
}

fn capabilities(unit: &Unit, key: &str) -> BTreeSet<String> {
    service_value(unit, key)
        .unwrap_or("")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect()
}

fn unit_problems(name: &str, unit: &Unit, expected_capabilities: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    match service_value(unit, "User") {
        None | Some("root" | "0") => problems.push(format!("{name}: no dedicated User=")),
        Some(_) => {}
    }
    if service_value(unit, "DynamicUser") == Some("yes") {
        problems.push(format!("{name}: DynamicUser would lose the state directory's owner"));
    }
    let ambient = capabilities(unit, "AmbientCapabilities");
    let bounding = capabilities(unit, "CapabilityBoundingSet");
    if ambient != bounding {
        problems.push(format!(
            "{name}: AmbientCapabilities {ambient:?} differ from CapabilityBoundingSet {bounding:?}"
        ));
    }
    for capability in &ambient {
        if !ALLOWED_CAPABILITIES.contains(&capability.as_str()) {
            problems.push(format!("{name}: capability {capability} is not one XDP or the syslog port needs"));
        }
    }
    if &ambient != expected_capabilities {
        problems.push(format!(
            "{name}: capabilities {ambient:?}, the Kubernetes container has {expected_capabilities:?}"
        ));
    }
    for (key, value) in HARDENING {
        if service_value(unit, key) != Some(value) {
            problems.push(format!("{name}: {key}={value} is missing"));
        }
    }
    for key in ["RestrictAddressFamilies", "SystemCallFilter", "ReadWritePaths", "ExecStart"] {
        if service_value(unit, key).is_none() {
            problems.push(format!("{name}: no {key}="));
        }
    }
    if unit
        .get("Install")
        .and_then(|s| s.get("WantedBy"))
        .is_none_or(|w| !w.iter().any(|t| t == "multi-user.target"))
    {
        problems.push(format!("{name}: not WantedBy=multi-user.target"));
    }
    problems
}

fn expected_capabilities(container: &str) -> BTreeSet<String> {
    let role = KILLKRILL_CONTAINERS.iter().find(|r| r.container == container).expect("a known container");
    role.capabilities.iter().map(|c| (*c).to_owned()).collect()
}

#[test]
fn units_run_as_a_dedicated_user_with_the_containers_capabilities_and_hardening() {
    let mut problems = Vec::new();
    for (name, container) in UNITS {
        let unit = parse_unit(&read(&deploy_dir().join("systemd").join(name)));
        problems.extend(unit_problems(name, &unit, &expected_capabilities(container)));
    }
    assert_no_problems("deploy/systemd", &problems);
}

#[test]
fn a_root_unit_or_an_extra_capability_is_reported() {
    let text = read(&deploy_dir().join("systemd/killkrill.service"))
        .replace("User=killkrill", "User=root")
        .replace(
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "AmbientCapabilities=CAP_SYS_ADMIN CAP_NET_BIND_SERVICE",
        )
        .replace("ProtectSystem=strict", "ProtectSystem=full");
    let problems =
        unit_problems("killkrill.service", &parse_unit(&text), &expected_capabilities("dataplane"));
    for expected in [
        "no dedicated User=",
        "differ from CapabilityBoundingSet",
        "capability SYS_ADMIN is not one",
        "ProtectSystem=strict is missing",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected:?} not in {problems:#?}");
    }
}

/// `systemd-analyze verify` in a scratch root holding the units, stand-ins for the
/// binaries they start (verify insists they exist) and the system's own units.
fn verify(units: &[(&str, String)]) -> Result<(), String> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copy_tree = |from: &Path, to: &Path| -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))?;
            }
        }
        Ok(())
    };
    let system_units =
        ["/usr/lib/systemd/system", "/lib/systemd/system"].into_iter().map(Path::new).find(|p| p.is_dir());
    if let Some(system_units) = system_units {
        copy_tree(system_units, &root.path().join("usr/lib/systemd/system")).map_err(|e| e.to_string())?;
    }
    let unit_dir = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&unit_dir).map_err(|e| e.to_string())?;
    let mut paths = Vec::new();
    for (name, text) in units {
        std::fs::write(unit_dir.join(name), text).map_err(|e| e.to_string())?;
        paths.push(format!("/etc/systemd/system/{name}"));
        for line in text.lines() {
            let Some(command) =
                line.split_once("Exec").and_then(|(_, rest)| rest.split_once('=')).map(|(_, c)| c)
            else {
                continue;
            };
            let program =
                command.trim_start_matches(['-', '+', '!', '@', ':']).split_whitespace().next().unwrap_or("");
            if program.starts_with('/') {
                let stand_in = root.path().join(program.trim_start_matches('/'));
                std::fs::create_dir_all(stand_in.parent().expect("a parent")).map_err(|e| e.to_string())?;
                std::fs::write(&stand_in, "#!/bin/sh\n").map_err(|e| e.to_string())?;
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(&paths)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() || !stderr.is_empty() {
        return Err(format!("systemd-analyze verify: {} {stderr}", output.status));
    }
    Ok(())
}

fn systemd_analyze_is_here() -> bool {
    Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !systemd_analyze_is_here() {
        eprintln!("skipped: systemd-analyze is not installed (`cargo xtask setup` installs systemd)");
        return;
    }
    let units: Vec<(&str, String)> =
        UNITS.iter().map(|(name, _)| (*name, read(&deploy_dir().join("systemd").join(name)))).collect();
    verify(&units).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn systemd_analyze_verify_catches_a_misspelt_directive() {
    if !systemd_analyze_is_here() {
        eprintln!("skipped: systemd-analyze is not installed (`cargo xtask setup` installs systemd)");
        return;
    }
    let text =
        read(&deploy_dir().join("systemd/killkrill.service")).replace("ProtectHome=yes", "ProtectHomme=yes");
    let error = verify(&[("killkrill.service", text)]).expect_err("a misspelt key is reported");
    assert!(error.contains("ProtectHomme"), "{error}");
}
