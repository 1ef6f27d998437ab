//! JSON renderings of parsed records, in the shapes `killkrill parse` documents
//! (docs/parsers.md). Not used on the ingest hot path.
mod metrics;
mod syslog;

pub use metrics::*;
pub use syslog::*;
