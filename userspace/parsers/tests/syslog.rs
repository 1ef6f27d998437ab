//! syslog conformance tests.
