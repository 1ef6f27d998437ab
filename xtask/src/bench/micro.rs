//! `cargo xtask bench micro`: the criterion benchmarks of the parsers, the store, the
//! metrics aggregator, the UDP socket receive methods (recvmmsg against io_uring, on
//! loopback) and the TCP listener fed by 64 loopback connections.

use clap::Args;

use crate::util::{cargo, exec};

#[derive(Args)]
pub struct MicroArgs {
    /// Only benchmarks whose name contains this.
    pub filter: Option<String>,
    /// Shorter runs (1 s warm-up, 3 s measurement) for a quick look.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: &MicroArgs) -> anyhow::Result<()> {
    for package in [
        &["--package", "killkrill-parsers", "--features", "json"][..],
        &["--package", "killkrill"],
        // Not xdp_replay: it needs root and a veth rig.
        &["--package", "killkrill-dataplane", "--bench", "metrics_aggregate"],
        &["--package", "killkrill-dataplane", "--bench", "udp_receive"],
        &["--package", "killkrill-dataplane", "--bench", "tcp_replay"],
    ] {
        let mut command = cargo();
        command.arg("bench").args(package).arg("--");
        if let Some(filter) = &args.filter {
            command.arg(filter);
        }
        if args.quick {
            command.args(["--warm-up-time", "1", "--measurement-time", "3"]);
        }
        exec(&mut command)?;
    }
    Ok(())
}
