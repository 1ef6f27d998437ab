//! Killkrill's wire-format parsers.
//!
//! Every parser is a pure function over `&[u8]`: no I/O, no async, no logging and no
//! allocation per message. Results borrow from the input, so the data plane can copy a
//! frame once into its batch arena and keep offsets. Bad input never panics: it yields a
//! record flagged with the reason (syslog) or a reject naming the line (metrics), so that
//! nothing is dropped silently.

mod ascii;
mod datagram;
pub mod framing;
pub mod influx;
#[cfg(feature = "json")]
pub mod json;
pub mod prometheus;
pub mod statsd;
pub mod syslog;
