//! `killkrill-agent`: the per-node companion of the appliance. It loads the XDP program,
//! attaches it through a pinned bpf link so that it outlives the agent and the data plane,
//! keeps the program's maps in step with its configuration (re-read on SIGHUP), serves
//! `/health`, `/ready` and `/metrics`, and sends a heartbeat to the control plane.
//! docs/agent.md tells the whole story; docs/adr/0020 why it is built this way.

pub mod agent;
pub mod capture;
pub mod config;
pub mod heartbeat;
pub mod http;
pub mod live_config;
pub mod logging;

pub use agent::{Agent, run};
pub use config::AgentConfig;

/// The name in logs, `/health` and heartbeats.
pub const SERVICE_NAME: &str = "killkrill-agent";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("XDP: {0}")]
    Xdp(#[from] killkrill_dataplane::xdp::XdpError),
    #[error("cannot listen on health_listen {address}: {source}")]
    Listen { address: std::net::SocketAddr, source: std::io::Error },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
