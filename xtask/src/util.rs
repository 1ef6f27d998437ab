//! Running commands and finding the workspace.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(PathBuf::from).unwrap_or(manifest_dir)
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set, else `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        // Cargo reads a relative one from the directory it was started in.
        Some(dir) => std::env::current_dir().unwrap_or_else(|_| workspace_root()).join(dir),
        None => workspace_root().join("target"),
    }
}

/// The cargo that runs us (so the same toolchain builds the rest).
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs `command`, echoing it, and fails if it fails.
pub fn exec(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", describe(command));
    let status = command.status().with_context(|| format!("cannot start {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns whether it succeeded (a missing program is false).
pub fn succeeds(command: &mut Command) -> bool {
    command.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|status| status.success())
}

/// Runs `command` quietly and returns its standard output.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {}", describe(command)))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for argument in command.get_args() {
        text.push(' ');
        text.push_str(&argument.to_string_lossy());
    }
    text
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}
