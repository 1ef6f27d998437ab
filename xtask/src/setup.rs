//! `cargo xtask setup`: installs what building and testing need, idempotently, and says
//! what it did. A second run finds everything in place and changes nothing.

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::util::{cargo, exec, is_root, output, succeeds};

#[derive(Args)]
pub struct SetupArgs {
    /// Only report what is missing; install nothing.
    #[arg(long)]
    pub check: bool,
}

/// Debian packages: the LLVM that bpf-linker links against, servers the tests start on
/// their own ports (never the system services), and the clients tests drive.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM for bpf-linker"),
    ("libpolly-22-dev", "LLVM Polly for bpf-linker"),
    ("libzstd-dev", "zstd for bpf-linker"),
    ("postgresql", "PostgreSQL server for store tests"),
    ("redis-server", "Redis server for hand-off tests"),
    ("bsdutils", "logger(1) for syslog tests"),
    ("iproute2", "ip(8) for network-namespace tests"),
    ("openssl", "openssl(1): certificates and s_client for the syslog-over-TLS tests"),
    ("sqlite3", "reading the embedded store in benchmarks"),
    ("systemd", "systemd-analyze verify for the unit files in deploy/systemd"),
    ("chromium", "headless browser for the web UI's end-to-end tests (driven by playwright-core)"),
    ("jq", "the README's quick-start examples read the login token with it"),
    // Libraries the benchmark peers (unpacked below, not installed) link against.
    ("libestr0", "rsyslog peer"),
    ("libfastjson4", "rsyslog peer"),
    ("liblognorm5", "rsyslog peer"),
    ("libivykis0", "syslog-ng peer"),
    ("libnet1", "syslog-ng peer"),
    ("libjson-c5", "syslog-ng peer"),
    ("libwrap0", "syslog-ng peer"),
    ("libpcre3", "syslog-ng peer"),
    ("libglib2.0-0", "syslog-ng peer"),
];

/// Where the benchmark peers are unpacked. rsyslog and syslog-ng conflict as Debian
/// packages (each is "the" system log daemon) and installing either would start a daemon,
/// so each is unpacked from its package into its own folder and only run by the rig.
pub const PEERS_ROOT: &str = "/opt/killkrill-peers";

/// (peer, Debian package, daemon inside the unpacked tree)
pub const PEERS: &[(&str, &str, &str)] =
    &[("rsyslog", "rsyslog", "usr/sbin/rsyslogd"), ("syslog-ng", "syslog-ng-core", "usr/sbin/syslog-ng")];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run(args: &SetupArgs) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    debian_packages(args.check, &mut missing)?;
    nightly_rust_src(args.check, &mut missing)?;
    bpf_linker(args.check, &mut missing)?;
    crate::fuzz::ensure_cargo_fuzz(args.check, &mut missing)?;
    benchmark_peers(args.check, &mut missing)?;
    kubectl(args.check, &mut missing)?;
    node_and_npm(args.check, &mut missing)?;
    if args.check && !missing.is_empty() {
        bail!("missing: {}; run `cargo xtask setup`", missing.join(", "));
    }
    eprintln!("xtask setup: everything is in place.");
    Ok(())
}

/// True when every tool is already installed (used by `run` and `test` to skip setup).
pub fn is_complete() -> bool {
    let mut missing = Vec::new();
    debian_packages(true, &mut missing).is_ok()
        && nightly_rust_src(true, &mut missing).is_ok()
        && bpf_linker(true, &mut missing).is_ok()
        && crate::fuzz::ensure_cargo_fuzz(true, &mut missing).is_ok()
        && benchmark_peers(true, &mut missing).is_ok()
        && kubectl(true, &mut missing).is_ok()
        && node_and_npm(true, &mut missing).is_ok()
        && missing.is_empty()
}

fn debian_package_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

fn debian_packages(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    let absent: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(package, _)| !debian_package_installed(package))
        .map(|(package, _)| *package)
        .collect();
    for (package, why) in DEBIAN_PACKAGES {
        if !absent.contains(package) && !check {
            eprintln!("xtask setup: ok: {package} ({why})");
        }
    }
    if absent.is_empty() {
        return Ok(());
    }
    if check {
        missing.extend(absent.iter().map(|p| (*p).to_owned()));
        return Ok(());
    }
    if !is_root() {
        bail!("these Debian packages are missing and installing them needs root: {}", absent.join(" "));
    }
    eprintln!("xtask setup: installing Debian packages: {}", absent.join(" "));
    exec(Command::new("apt-get").arg("update").arg("-q"))?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&absent),
    )
}

fn nightly_rust_src(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    let toolchains =
        output(Command::new("rustup").args(["toolchain", "list"])).context("rustup is required")?;
    if !toolchains.lines().any(|line| line.starts_with("nightly")) {
        if check {
            missing.push("nightly toolchain".into());
            return Ok(());
        }
        eprintln!("xtask setup: installing the nightly toolchain (for the eBPF crate only)");
        exec(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let components =
        output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    // rust-src for build-std (bpfel-unknown-none ships no prebuilt core), clippy to lint
    // the program for its own target.
    let absent: Vec<&str> = ["rust-src", "clippy"]
        .into_iter()
        .filter(|component| !components.lines().any(|line| line.starts_with(component)))
        .collect();
    if absent.is_empty() {
        if !check {
            eprintln!("xtask setup: ok: nightly rust-src and clippy (for the eBPF crate)");
        }
        return Ok(());
    }
    if check {
        missing.extend(absent.iter().map(|component| format!("nightly {component}")));
        return Ok(());
    }
    eprintln!("xtask setup: installing nightly components: {}", absent.join(" "));
    exec(Command::new("rustup").args(["component", "add", "--toolchain", "nightly"]).args(&absent))
}

fn bpf_linker(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        if !check {
            eprintln!("xtask setup: ok: bpf-linker");
        }
        return Ok(());
    }
    if check {
        missing.push("bpf-linker".into());
        return Ok(());
    }
    // The build ARCHITECTURE.md records as tried on this machine kind.
    eprintln!("xtask setup: building bpf-linker against Debian's LLVM 22 (a few minutes)");
    exec(cargo().env("LLVM_PREFIX", LLVM_PREFIX).args([
        "install",
        "bpf-linker",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]))
}

/// `kubectl kustomize` renders the overlays in deploy/kubernetes for the manifest tests.
/// Any kubectl that has it will do (one may come with a cloud SDK and own /usr/bin/kubectl,
/// so Debian's package is only installed when none is there); the manifests are written
/// for the kustomize v2.0.3 inside Debian's kubectl 1.20 (docs/adr/0015).
fn kubectl(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    if succeeds(Command::new("kubectl").args(["kustomize", "--help"])) {
        if !check {
            eprintln!("xtask setup: ok: kubectl kustomize (deploy manifest tests)");
        }
        return Ok(());
    }
    if check {
        missing.push("kubectl".into());
        return Ok(());
    }
    if !is_root() {
        bail!("kubectl is missing and installing Debian's kubernetes-client needs root");
    }
    eprintln!("xtask setup: installing kubectl (Debian's kubernetes-client) for the manifest tests");
    let install = || {
        exec(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "kubernetes-client",
        ]))
    };
    if install().is_err() {
        exec(Command::new("apt-get").args(["update", "-q"]))?;
        install()?;
    }
    Ok(())
}

fn benchmark_peers(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    for (peer, package, daemon) in PEERS {
        let root = std::path::Path::new(PEERS_ROOT).join(peer);
        if root.join(daemon).is_file() {
            if !check {
                eprintln!("xtask setup: ok: {peer} (benchmark peer, unpacked in {})", root.display());
            }
            continue;
        }
        if check {
            missing.push(format!("{peer} benchmark peer"));
            continue;
        }
        eprintln!("xtask setup: unpacking {package} into {} (benchmark peer, not installed)", root.display());
        let download_dir = std::env::temp_dir().join(format!("killkrill-peer-{peer}"));
        std::fs::create_dir_all(&download_dir)?;
        let download =
            || succeeds(Command::new("apt-get").current_dir(&download_dir).args(["download", package]));
        if !download() {
            exec(Command::new("apt-get").args(["update", "-q"]))?;
            if !download() {
                bail!("apt-get download {package} failed");
            }
        }
        std::fs::create_dir_all(&root)?;
        for entry in std::fs::read_dir(&download_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|extension| extension == "deb") {
                exec(Command::new("dpkg").arg("-x").arg(&path).arg(&root))?;
            }
        }
        let _ = std::fs::remove_dir_all(&download_dir);
    }
    Ok(())
}

/// Node.js and npm build the web UI (`cargo xtask ui`) and run its browser tests. A recent
/// enough node may come from elsewhere (NodeSource, nvm) and then stays; Debian's
/// `nodejs` and `npm` are installed only when node is missing or too old.
fn node_and_npm(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    let (major, minor) = crate::ui::MIN_NODE;
    let node_ok = crate::ui::node_is_recent_enough();
    let npm_ok = succeeds(Command::new("npm").arg("--version"));
    if node_ok && npm_ok {
        if !check {
            let version = crate::ui::node_version().map_or_else(String::new, |(a, b)| format!(" {a}.{b}"));
            eprintln!("xtask setup: ok: node{version} and npm (web UI build and browser tests)");
        }
        return Ok(());
    }
    let packages: &[&str] = if node_ok { &["npm"] } else { &["nodejs", "npm"] };
    if check {
        missing.extend(packages.iter().map(|package| format!("{package} (Node.js {major}.{minor}+)")));
        return Ok(());
    }
    if !is_root() {
        bail!(
            "Node.js {major}.{minor}+ and npm are missing; installing Debian's {} needs root",
            packages.join(" ")
        );
    }
    eprintln!("xtask setup: installing Debian's {} for the web UI", packages.join(" "));
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages),
    )?;
    if !crate::ui::node_is_recent_enough() {
        bail!("the installed node is older than {major}.{minor}, which the web UI's build needs");
    }
    Ok(())
}
