//! `killkrill-operator`: runs Killkrill on a Kubernetes fleet from `Ingestor` objects.
//!
//! The shape follows kube-rs's controller-rs: the CRD types ([`crd`]), pure builders of
//! every owned object ([`resources`], [`config`]), a reconciler ([`controller`]) that
//! applies them with server-side apply and reports status, and the process around it
//! ([`telemetry`], [`http`]).

pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod node_rates;
pub mod resources;
pub mod telemetry;
pub mod validate;

pub use error::{Error, Result};

/// The `service` field of every log line and health document.
pub const SERVICE_NAME: &str = "killkrill-operator";

/// The release version, from the repository's `.version` file (build.rs).
pub const VERSION: &str = env!("RELEASE_VERSION_FROM_FILE");

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "killkrill-operator";
