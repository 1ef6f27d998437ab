//! The Killkrill appliance: configuration, the store, the batch writer, the REST API and
//! the `killkrill` command line. The data plane (`killkrill-dataplane`) captures and
//! parses; this crate stores and serves.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
mod error;
pub mod handoff;
pub mod ingest;
pub mod live;
pub mod metric_writer;
pub mod runtime_config;
pub mod server;
pub mod spool;
pub mod store;
pub mod telemetry;
pub mod tls;

pub use error::{Error, Result};

/// The release version, from the repository's `.version` file.
pub const VERSION: &str = env!("RELEASE_VERSION_FROM_FILE");
/// The service name used in logs and health answers.
pub const SERVICE_NAME: &str = "killkrill";
