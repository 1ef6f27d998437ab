//! `killkrill-perf`: load generators and benchmark scenarios.
//!
//! The crate exists so the workspace's walls are in place; the senders and the
//! scenarios arrive with the performance harness (docs/architecture.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "killkrill-perf {}: the load generators are not part of this release yet; see docs/architecture.md",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
