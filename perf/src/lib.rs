//! Killkrill load generators, loss and latency accounting, and the benchmark report writer.
//!
//! The senders only ever talk to loopback or the benchmark rig's own network namespaces
//! (see [`target`]); everything else here is pure and testable without a network.

pub mod ascii;
pub mod civil_time;
pub mod cli_value;
pub mod error;
pub mod loss;
pub mod mix;
pub mod prng;
pub mod rate;
pub mod report;
pub mod scan;
pub mod send;
pub mod target;

pub use error::{Error, Result};
