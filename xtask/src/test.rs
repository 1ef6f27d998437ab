//! `cargo xtask test`: every check and test of the project, as CI runs it.

use clap::Args;

use crate::util::{cargo, exec};

#[derive(Args)]
pub struct TestArgs {
    /// Skip formatting and lint checks (tests only).
    #[arg(long)]
    pub no_lint: bool,
    /// Seconds of fuzzing per parser; 0 skips.
    #[arg(long, default_value_t = 10)]
    pub fuzz_seconds: u64,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    if !crate::setup::is_complete() {
        crate::setup::run(&crate::setup::SetupArgs { check: false })?;
    }
    if !args.no_lint {
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        exec(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]))?;
        crate::ebpf::lint()?;
    }
    exec(cargo().args(["test", "--workspace", "--all-features", "--no-fail-fast"]))?;
    crate::fuzz::run(args.fuzz_seconds)?;
    eprintln!("xtask test: all checks and tests passed.");
    Ok(())
}
