//! `cargo xtask run`: the appliance in its default single-box form, from a release build,
//! with its data in ./data.

use std::process::Command;

use clap::Args;

use crate::util::{cargo, exec, workspace_root};

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
    exec(cargo().args(["build", "--release", "--package", "killkrill"]))?;
    let root = workspace_root();
    let binary = root.join("target/release/killkrill");
    let mut command = Command::new(binary);
    command.current_dir(&root).arg("serve").arg("--data-dir").arg(root.join("data")).args(&args.serve_args);
    eprintln!("xtask run: data in {}; stop with Ctrl-C", root.join("data").display());
    exec(&mut command)
}
