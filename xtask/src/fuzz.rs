//! `cargo xtask fuzz`: every cargo-fuzz target of the parsers for a fixed time each.
//!
//! The targets live in `userspace/parsers/fuzz`, a workspace of their own (they build only
//! on nightly, with a sanitizer). libFuzzer writes every new interesting input into the
//! corpus folder it is given, so it gets a git-ignored working copy of the committed seeds,
//! never the seeds themselves. See docs/fuzzing.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{cargo, exec, output, succeeds, workspace_root};

/// Variables that `cargo xtask` (a stable cargo) leaves in our environment and that would
/// make the nightly cargo run the stable compiler, or mix stable-built flags into the
/// sanitizer build: `+nightly` only picks which cargo the rustup proxy starts.
const TOOLCHAIN_VARIABLES: &[&str] = &[
    "CARGO",
    "RUSTC",
    "RUSTDOC",
    "RUSTUP_TOOLCHAIN",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTFLAGS",
];

/// libFuzzer's limit on one input, in seconds. The parsers take microseconds per input, so
/// anything near this is a hang; libFuzzer's default (20 minutes) would outlast the run.
const INPUT_TIMEOUT_SECONDS: u64 = 10;

fn fuzz_dir() -> PathBuf {
    workspace_root().join("userspace/parsers/fuzz")
}

/// The nightly cargo, run from the fuzz workspace with the stable toolchain's traces removed.
fn nightly_cargo() -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(fuzz_dir());
    for variable in TOOLCHAIN_VARIABLES {
        command.env_remove(variable);
    }
    command.arg("+nightly");
    command
}

/// Fuzzes every target for `seconds_per_target` seconds; 0 skips fuzzing. All targets run
/// even when one fails, so that one report names every failing target.
pub fn run(seconds_per_target: u64) -> anyhow::Result<()> {
    if seconds_per_target == 0 {
        eprintln!("xtask fuzz: skipped (0 seconds per target).");
        return Ok(());
    }
    if !cargo_fuzz_installed() {
        ensure_cargo_fuzz(false, &mut Vec::new())?;
    }
    let targets = targets()?;
    let mut failed = Vec::new();
    for target in &targets {
        let corpus = working_corpus(target)?;
        let result = exec(
            nightly_cargo().arg("fuzz").arg("run").arg("--debug-assertions").arg(target).arg(&corpus).args([
                "--".to_owned(),
                format!("-max_total_time={seconds_per_target}"),
                format!("-timeout={INPUT_TIMEOUT_SECONDS}"),
                "-rss_limit_mb=2048".to_owned(),
            ]),
        );
        if let Err(error) = result {
            eprintln!("xtask fuzz: {target} failed: {error:#}");
            failed.push(target.as_str());
        }
    }
    if !failed.is_empty() {
        let artifacts = fuzz_dir().join("artifacts");
        bail!(
            "fuzz target(s) {} failed; the crashing inputs are in {}/<target>/ (docs/fuzzing.md says how to \
             reproduce them and turn them into regression tests)",
            failed.join(", "),
            artifacts.display()
        );
    }
    eprintln!("xtask fuzz: {} targets ran {seconds_per_target} s each without a failure.", targets.len());
    Ok(())
}

/// The targets, as cargo-fuzz reads them from the fuzz crate's manifest, so that a new
/// `[[bin]]` is fuzzed without touching this file.
fn targets() -> anyhow::Result<Vec<String>> {
    let listed = output(nightly_cargo().args(["fuzz", "list"]))?;
    let targets: Vec<String> =
        listed.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect();
    if targets.is_empty() {
        bail!("`cargo +nightly fuzz list` in {} named no target", fuzz_dir().display());
    }
    Ok(targets)
}

/// `target/fuzz-corpus/<target>` of the fuzz workspace (git-ignored), with the committed
/// seeds copied in. What earlier runs found there is kept, so repeated runs build on it.
fn working_corpus(target: &str) -> anyhow::Result<PathBuf> {
    let seeds = fuzz_dir().join("corpus").join(target);
    let working = fuzz_dir().join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&working).with_context(|| format!("cannot create {}", working.display()))?;
    if seeds.is_dir() {
        copy_files(&seeds, &working)?;
    }
    Ok(working)
}

fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let destination = to.join(entry.file_name());
            std::fs::copy(entry.path(), &destination).with_context(|| {
                format!("cannot copy {} to {}", entry.path().display(), destination.display())
            })?;
        }
    }
    Ok(())
}

/// cargo-fuzz, a cargo subcommand in ~/.cargo/bin; built with the running (stable) cargo,
/// it drives the nightly one.
pub fn ensure_cargo_fuzz(check: bool, missing: &mut Vec<String>) -> anyhow::Result<()> {
    if cargo_fuzz_installed() {
        if !check {
            eprintln!("xtask setup: ok: cargo-fuzz");
        }
        return Ok(());
    }
    if check {
        missing.push("cargo-fuzz".into());
        return Ok(());
    }
    eprintln!("xtask setup: installing cargo-fuzz");
    exec(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

fn cargo_fuzz_installed() -> bool {
    succeeds(cargo().args(["fuzz", "--version"]))
}
