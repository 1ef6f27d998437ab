//! The XDP program's life in the agent: load with maps pinned under `bpf_pin_dir`, attach
//! through a pinned link (taking over the one an earlier run left), keep the maps in step
//! with the configuration, and at exit either detach and unpin everything or leave it all
//! in place (`detach_on_exit`).

use std::path::{Path, PathBuf};

use killkrill_dataplane::xdp::{AttachMode, XdpCounters, XdpSteering};

use crate::config::{AgentConfig, CaptureMode, Filters};
use crate::{Error, Result};

/// Where XDP stands, for `/health`, `/metrics` and the heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureStatus {
    /// Not wanted: `capture_mode = "socket"` or no interface.
    Off,
    Attached {
        interface: String,
        mode: AttachMode,
        /// Held by a pin, so it outlives the agent.
        pinned: bool,
        /// Taken over from an earlier run without a gap.
        adopted: bool,
    },
    /// Wanted (`auto`) but refused; the appliance runs on its sockets.
    Failed { reason: String },
}

impl CaptureStatus {
    pub fn attach_mode(&self) -> Option<AttachMode> {
        match self {
            Self::Attached { mode, .. } => Some(*mode),
            _ => None,
        }
    }
}

/// The program and its state.
pub struct Capture {
    steering: Option<XdpSteering>,
    status: CaptureStatus,
    pin_dir: PathBuf,
    /// The ports this agent steers (from its listeners); others in the map are the data
    /// plane's, added while it runs, and are left alone.
    ports: Vec<u16>,
}

impl Capture {
    /// Loads, configures and attaches as `config` says. In `auto` mode a refusal is kept
    /// as [`CaptureStatus::Failed`]; in the other XDP modes it is the error.
    pub fn start(config: &AgentConfig, filters: &Filters) -> Result<Self> {
        let pin_dir = config.bpf_pin_dir.clone();
        if !config.wants_xdp() {
            tracing::info!(capture_mode = config.capture_mode.label(), "XDP is not wanted; reporting only.");
            return Ok(Self { steering: None, status: CaptureStatus::Off, pin_dir, ports: Vec::new() });
        }
        // Pins found at start may belong to a program that is running (an earlier agent's,
        // whose maps the data plane uses): a failed attach must leave them.
        let found_pins = pin_dir.join(killkrill_ebpf_common::COUNTERS_MAP_NAME).exists();
        match attach(config, filters) {
            Ok((steering, status)) => {
                if let CaptureStatus::Attached { interface, mode, pinned, adopted } = &status {
                    tracing::info!(
                        interface = %interface,
                        attach = mode.label(),
                        pinned = *pinned,
                        adopted = *adopted,
                        pin_dir = %pin_dir.display(),
                        "XDP attached."
                    );
                    if !pinned {
                        tracing::warn!(
                            "The kernel attached XDP through netlink: the program cannot outlive the agent."
                        );
                    }
                }
                let ports = filters.ports.iter().map(|(port, _)| *port).collect();
                Ok(Self { steering: Some(steering), status, pin_dir, ports })
            }
            Err(error) if config.capture_mode == CaptureMode::Auto => {
                tracing::warn!(
                    interface = %config.interface,
                    error = %error,
                    "XDP could not be attached; the appliance keeps its socket path."
                );
                // Nothing of ours should stay behind for a program that never ran.
                if !found_pins && let Err(error) = XdpSteering::remove_pins(&pin_dir) {
                    tracing::warn!(error = %error, "Removing the pins left by the failed attach failed.");
                }
                Ok(Self {
                    steering: None,
                    status: CaptureStatus::Failed { reason: error.to_string() },
                    pin_dir,
                    ports: Vec::new(),
                })
            }
            Err(error) => Err(error),
        }
    }

    pub fn status(&self) -> &CaptureStatus {
        &self.status
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The program's counters, when it runs.
    pub fn counters(&self) -> Option<XdpCounters> {
        let steering = self.steering.as_ref()?;
        match steering.counters() {
            Ok(counters) => Some(counters),
            Err(error) => {
                tracing::warn!(error = %error, "Reading the XDP counters failed.");
                None
            }
        }
    }

    /// Writes `filters` into the maps, without reloading the program.
    pub fn apply(&mut self, filters: &Filters) -> Result<()> {
        match &mut self.steering {
            Some(steering) => {
                apply_filters(steering, filters, &self.ports)?;
                self.ports = filters.ports.iter().map(|(port, _)| *port).collect();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Detaches and removes every pin (`detach = true`), or leaves the program attached
    /// with its pins for the next agent.
    pub fn stop(mut self, detach: bool) -> Result<()> {
        let Some(mut steering) = self.steering.take() else { return Ok(()) };
        if !detach {
            if steering.release() {
                tracing::info!(pin_dir = %self.pin_dir.display(), "XDP left attached (detach_on_exit = false).");
                return Ok(());
            }
            tracing::warn!("XDP is not pinned on this kernel and detaches with the agent.");
        }
        steering.detach()?;
        drop(steering);
        XdpSteering::remove_pins(&self.pin_dir)?;
        tracing::info!(pin_dir = %self.pin_dir.display(), "XDP detached and its pins removed.");
        Ok(())
    }
}

fn attach(config: &AgentConfig, filters: &Filters) -> Result<(XdpSteering, CaptureStatus)> {
    let policy = config.capture_mode.policy().ok_or_else(|| Error::Config("capture_mode = socket".into()))?;
    let mut steering = XdpSteering::load_with_pinned_maps(&config.bpf_pin_dir)?;
    // The maps come first: a link taken over keeps running on them, and a new one must
    // not steer before its lists are in.
    apply_filters(&mut steering, filters, &[])?;
    let attached = steering.attach_pinned(&config.interface, policy, &config.bpf_pin_dir)?;
    let status = CaptureStatus::Attached {
        interface: config.interface.clone(),
        mode: attached.mode,
        pinned: attached.pinned,
        adopted: attached.adopted,
    };
    Ok((steering, status))
}

/// `previous`: the ports this agent steered before; only those may be removed (the data
/// plane adds its own port to the shared map while it runs).
fn apply_filters(steering: &mut XdpSteering, filters: &Filters, previous: &[u16]) -> Result<()> {
    // Deny before allow and ports last: a tightened policy is in force before any newly
    // steered port is.
    steering.set_deny_list(&filters.deny)?;
    steering.set_allow_list(&filters.allow)?;
    steering.set_rate_limit(filters.rate_limit)?;
    steering.replace_own_ports(previous, &filters.ports)?;
    Ok(())
}
