//! `cargo xtask run`: the appliance in its default single-box form, from a release build
//! with the web UI built and embedded, with its data in ./data.

use std::process::Command;

use clap::Args;

use crate::util::{cargo, exec, target_dir, workspace_root};

#[derive(Args)]
pub struct RunArgs {
    /// Extra arguments for `killkrill serve` (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if !crate::setup::is_complete() {
        crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    }
    // The binary embeds web/dist, so the UI is built first.
    crate::ui::build()?;
    exec(cargo().args(["build", "--release", "--package", "killkrill"]))?;
    let root = workspace_root();
    let binary = target_dir().join("release/killkrill");
    let mut command = Command::new(binary);
    // The API on loopback: plain HTTP is allowed there without TLS (docs/adr/0022); later
    // arguments (e.g. `-- --api-listen 0.0.0.0:8080 --api-tls-cert ...`) win.
    command
        .current_dir(&root)
        .arg("serve")
        .arg("--data-dir")
        .arg(root.join("data"))
        .args(["--api-listen", "127.0.0.1:8080"])
        .args(&args.serve_args);
    eprintln!(
        "xtask run: data in {}; API on http://127.0.0.1:8080; stop with Ctrl-C",
        root.join("data").display()
    );
    if std::env::var_os("KILLKRILL_ADMIN_PASSWORD").is_none() {
        eprintln!(
            "xtask run: no KILLKRILL_ADMIN_PASSWORD: on first start the log shows a one-time setup token \
             (also in data/setup-token) for POST /api/v1/auth/setup (docs/security.md)"
        );
    }
    exec(&mut command)
}
