//! The crate's one error enum for validation failures the caller should see by name.
//!
//! I/O and run-time failures travel as `anyhow::Error` with context, since this is a tool.

use std::net::SocketAddr;

/// A value the load generator refuses before sending anything.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "refusing target {addr}: the load generators only send to loopback (127.0.0.0/8, ::1) \
         or the benchmark rig's network 10.203.0.0/16"
    )]
    TargetNotAllowed { addr: SocketAddr },
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    UnknownName { what: &'static str, value: String, expected: &'static str },
    #[error("invalid duration {value:?}: expected a number with a unit such as 500ms, 20s, 2m or 1h")]
    InvalidDuration { value: String },
    #[error("invalid CPU list {value:?}: expected numbers and ranges such as 0,2-3")]
    InvalidCpuList { value: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
