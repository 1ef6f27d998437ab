//! `killkrill-agent`: the node agent (XDP lifecycle, live filter config, heartbeat).
//!
//! The crate exists so the workspace's walls are in place;
//! its commands arrive with the data-plane and Kubernetes work (docs/architecture.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "killkrill-agent {}: the agent is not part of this release yet; see docs/architecture.md",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
