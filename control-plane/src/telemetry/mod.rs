//! Logs (structured JSON to stdout) and metrics (Prometheus text).
pub mod logging;
pub mod metric_pipeline;
pub mod metrics;
mod process;

pub(crate) use process::disk_percent_used as process_disk_percent_used;
