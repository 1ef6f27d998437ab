//! One integration binary for the operator (STYLE.md): modules per subject.

mod cli;
mod config_files;
mod crd_file;
mod fake_api;
mod fixtures;
mod ingest_rate;
mod reconcile;
mod resources;
mod validation;
