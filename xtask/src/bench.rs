//! `cargo xtask bench`: the criterion benchmarks (parsers, framing, batches).

use clap::Args;

use crate::util::{cargo, exec};

#[derive(Args)]
pub struct BenchArgs {
    /// Only benchmarks whose name contains this.
    pub filter: Option<String>,
    /// Shorter runs (1 s warm-up, 3 s measurement) for a quick look.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["bench", "--package", "killkrill-parsers", "--features", "json", "--"]);
    if let Some(filter) = &args.filter {
        command.arg(filter);
    }
    if args.quick {
        command.args(["--warm-up-time", "1", "--measurement-time", "3"]);
    }
    exec(&mut command)
}
