//! The JSON log lines of ../shared/CONVENTIONS.md, written by `killkrill-logging` (shared
//! with the operator and the node agent).

use crate::SERVICE_NAME;

/// Installs the JSON logger at `level` (a level name or a tracing filter directive).
pub fn init(level: &str) -> Result<(), crate::Error> {
    killkrill_logging::init(SERVICE_NAME, level)
        .map_err(|error| crate::Error::Config(format!("log.level = {error}")))
}
