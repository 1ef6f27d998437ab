//! The JSON log lines of ../shared/CONVENTIONS.md, written by `killkrill-logging` (shared
//! with the appliance and the operator).

use crate::{Error, SERVICE_NAME};

/// Installs the JSON logger at `level` (a level name or a tracing filter directive).
pub fn init(level: &str) -> Result<(), Error> {
    killkrill_logging::init(SERVICE_NAME, level)
        .map_err(|error| Error::Config(format!("LOG_LEVEL = {error}")))
}
