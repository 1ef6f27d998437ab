//! statsd conformance tests.
