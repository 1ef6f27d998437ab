//! `killkrill-operator`: the Kubernetes operator for `Ingestor` objects.
//!
//! The crate exists so the workspace's walls are in place; the reconciler, CRD types and
//! `crd` subcommand arrive with the Kubernetes work (docs/architecture.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "killkrill-operator {}: the operator is not part of this release yet; see docs/architecture.md",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
