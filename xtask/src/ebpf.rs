//! Building and linting the XDP program.

use crate::util::{cargo, exec, workspace_root};

/// The normal build builds it through userspace/build.rs; this forces that step alone.
pub fn build() -> anyhow::Result<()> {
    exec(cargo().args(["build", "--package", "killkrill-dataplane"]))
}

/// Clippy for the program's own target; the host-wide clippy only sees its host stub.
pub fn lint() -> anyhow::Result<()> {
    let mut command = std::process::Command::new("cargo");
    command
        .current_dir(workspace_root().join("ebpf/program"))
        .env_remove("RUSTC")
        .env_remove("CARGO")
        .env("CARGO_TARGET_DIR", workspace_root().join("target/ebpf-lint"))
        .args([
            "+nightly",
            "clippy",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]);
    exec(&mut command)
}
