//! influx conformance tests.
