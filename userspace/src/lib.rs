//! The Killkrill data plane: capture, framing, parsing, batching and the hand-off to the
//! control plane.
//!
//! This crate knows sockets and BPF, never HTTP or SQL. Each listener runs on its own
//! thread, owns its socket, its parser state, its batch builder and its counters, and
//! hands closed batches to the control plane through a bounded single-producer ring
//! ([`handoff`]). Nothing is dropped without a counter saying where and why.

pub mod batch;
pub mod capture;
pub mod cores;
pub mod counters;
mod error;
pub mod handoff;
pub mod journal;
pub mod listener;
pub mod metrics;
mod runtime;
pub mod sources;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod xdp;

pub use error::{Error, Result};
pub use runtime::{CaptureNow, DataPlane, DataPlaneConfig, ListenerSpec, SharedCapture, TlsListenerConfig};
