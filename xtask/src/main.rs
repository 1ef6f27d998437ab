//! Project automation: `cargo xtask <command>`. One module per command.

mod bench;
mod ebpf;
mod fuzz;
mod run;
mod setup;
mod test;
mod ui;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Killkrill project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything building and testing need (idempotent; Debian 12, as root).
    Setup(setup::SetupArgs),
    /// Build the XDP program for bpfel-unknown-none (normally done by userspace/build.rs).
    BuildEbpf,
    /// Lint the XDP program for its own target with the nightly toolchain.
    LintEbpf,
    /// Build the web UI (web/ into web/dist, which the binary embeds).
    Ui,
    /// Run the appliance (release build) with a local data directory.
    Run(run::RunArgs),
    /// Run every check and test of the project (what CI runs).
    Test(test::TestArgs),
    /// Run the benchmarks.
    Bench(Box<bench::BenchArgs>),
    /// Fuzz every parser for SECONDS each.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup(args) => setup::run(&args),
        Command::BuildEbpf => ebpf::build(),
        Command::LintEbpf => ebpf::lint(),
        Command::Ui => ui::build(),
        Command::Run(args) => run::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Fuzz { seconds } => fuzz::run(seconds),
    }
}
