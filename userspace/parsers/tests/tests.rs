//! Conformance tests over the corpus in tests/data. One integration binary for the crate.
mod corpus;
mod framing;
mod influx;
mod statsd;
mod syslog;
