//! Capture through XDP and AF_XDP: the XDP program steers the UDP ports of the syslog,
//! statsd and Influx listeners to one AF_XDP socket per rx queue, each read on its own
//! thread into the same batches and aggregators as the socket listeners, which keep
//! running beside it and receive whatever the program passes (no socket for a queue,
//! fragments, during restarts).
//!
//! See docs/capture.md and docs/adr/0010-af-xdp-capture.md.

mod afxdp;
mod agent_watch;
mod frame;
mod ports;
mod umem;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

pub use frame::{UdpDatagram, udp_datagram};
use killkrill_parsers::syslog::ParseOptions;

use crate::listener::StopSignal;
use crate::xdp::{AttachMode, AttachPolicy, RateLimit, XdpError, XdpListener, XdpSteering, parse_prefixes};
pub(crate) use afxdp::QueueSinks;

/// How the data plane takes UDP syslog off the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureMode {
    /// Native XDP, then generic XDP, then sockets only; says which it got.
    Auto,
    /// Native XDP, then generic XDP; start-up fails if neither attaches.
    Xdp,
    /// Ordinary sockets only.
    #[default]
    Socket,
}

impl CaptureMode {
    pub const fn label(self) -> &'static str {
        match self {
            CaptureMode::Auto => "auto",
            CaptureMode::Xdp => "xdp",
            CaptureMode::Socket => "socket",
        }
    }
}

/// Whether the data plane uses the XDP program the node agent pinned
/// (docs/adr/0028-serve-on-agent-pins.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentPins {
    /// The agent's program when its link for the capture interface is pinned under
    /// `pin_dir`; our own program otherwise.
    #[default]
    Auto,
    /// Only the agent's program: without its pins, XDP capture fails (and `auto` capture
    /// falls back to sockets).
    Require,
    /// Always load our own program; `pin_dir` is never looked at.
    Ignore,
}

impl AgentPins {
    pub const fn label(self) -> &'static str {
        match self {
            AgentPins::Auto => "auto",
            AgentPins::Require => "require",
            AgentPins::Ignore => "ignore",
        }
    }
}

/// Where the node agent pins its program's maps and link (its `bpf_pin_dir`).
pub const DEFAULT_AGENT_PIN_DIR: &str = "/sys/fs/bpf/killkrill";

/// AF_XDP ring and UMEM sizes, per rx queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpSettings {
    /// Bytes per UMEM frame: 2048 or 4096 (a frame holds one packet).
    pub frame_size: u32,
    /// Frames in each queue's UMEM (memory per queue = frames * frame_size).
    pub umem_frames: u32,
    /// Entries in the fill ring (and completion ring); a power of two.
    pub fill_ring_size: u32,
    /// Entries in the RX ring; a power of two.
    pub rx_ring_size: u32,
}

impl Default for AfXdpSettings {
    fn default() -> Self {
        Self { frame_size: 2048, umem_frames: 4096, fill_ring_size: 2048, rx_ring_size: 2048 }
    }
}

impl AfXdpSettings {
    pub fn validate(&self) -> Result<(), CaptureError> {
        let invalid = |reason: String| Err(CaptureError::Settings(reason));
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return invalid(format!("frame_size must be 2048 or 4096, not {}", self.frame_size));
        }
        for (name, size) in [("fill_ring_size", self.fill_ring_size), ("rx_ring_size", self.rx_ring_size)] {
            if !size.is_power_of_two() || !(64..=65_536).contains(&size) {
                return invalid(format!("{name} must be a power of two from 64 to 65536, not {size}"));
            }
        }
        if self.umem_frames < self.fill_ring_size || self.umem_frames > 1 << 20 {
            return invalid(format!(
                "umem_frames must be at least fill_ring_size ({}) and at most 1048576, not {}",
                self.fill_ring_size, self.umem_frames
            ));
        }
        Ok(())
    }
}

/// Everything about capture the data plane is told at start.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub mode: CaptureMode,
    /// The interface XDP attaches to; required unless the mode is `Socket`.
    pub interface: Option<String>,
    /// How many rx queues get an AF_XDP socket (0, 1, ... n-1); `None`: all of them.
    pub queues: Option<u32>,
    pub af_xdp: AfXdpSettings,
    /// Sources whose datagrams are dropped (CIDR strings).
    pub deny: Vec<String>,
    /// When non-empty, only these sources are accepted (CIDR strings).
    pub allow: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    /// Whether to use the node agent's pinned program instead of loading our own.
    pub agent: AgentPins,
    /// The agent's pin folder (a bpffs directory).
    pub pin_dir: PathBuf,
    /// How UDP socket listeners read their sockets (`capture.socket_receive`).
    pub socket_receive: crate::listener::udp_receive::SocketReceive,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            mode: CaptureMode::default(),
            interface: None,
            queues: None,
            af_xdp: AfXdpSettings::default(),
            deny: Vec::new(),
            allow: Vec::new(),
            rate_limit: None,
            agent: AgentPins::default(),
            pin_dir: PathBuf::from(DEFAULT_AGENT_PIN_DIR),
            socket_receive: crate::listener::udp_receive::SocketReceive::default(),
        }
    }
}

/// How an AF_XDP socket moves frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// The driver writes into the UMEM directly.
    ZeroCopy,
    /// The kernel copies each frame into the UMEM (any driver).
    Copy,
}

impl BindMode {
    pub const fn label(self) -> &'static str {
        match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        }
    }
}

/// What capture the data plane got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureStatus {
    /// Sockets only; `fallback` says why XDP was not used when it was asked for.
    Socket { fallback: Option<String> },
    /// XDP steering to AF_XDP sockets, with the socket listener beside it.
    Xdp { interface: String, attach: AttachMode, queues: Vec<(u32, BindMode)>, program: XdpProgram },
}

/// Whose XDP program steers to our sockets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XdpProgram {
    /// Loaded and attached by this process; detached when it stops.
    Own,
    /// Loaded, attached and pinned by the node agent under `pin_dir`; this process only
    /// registers its sockets and port in the pinned maps.
    Agent { pin_dir: PathBuf },
}

impl XdpProgram {
    /// `own` or `agent`.
    pub const fn label(&self) -> &'static str {
        match self {
            XdpProgram::Own => "own",
            XdpProgram::Agent { .. } => "agent",
        }
    }
}

impl CaptureStatus {
    /// `socket`, `xdp-native` or `xdp-generic`.
    pub fn label(&self) -> &'static str {
        match self {
            CaptureStatus::Socket { .. } => "socket",
            CaptureStatus::Xdp { attach: AttachMode::Native, .. } => "xdp-native",
            CaptureStatus::Xdp { attach: AttachMode::Generic, .. } => "xdp-generic",
        }
    }

    /// The label, with whose program it is when that is the agent's: `xdp-native (agent)`.
    pub fn summary(&self) -> String {
        match self {
            CaptureStatus::Xdp { program: XdpProgram::Agent { .. }, .. } => {
                format!("{} (agent)", self.label())
            }
            _ => self.label().to_owned(),
        }
    }
}

/// Why XDP capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture: {0}")]
    Settings(String),
    #[error("capture: {0}")]
    Xdp(#[from] XdpError),
    #[error("capture: AF_XDP socket on {interface} queue {queue}: {reason}")]
    Socket { interface: String, queue: u32, reason: String },
    #[error("capture: cannot start the receiver thread for queue {queue}: {source}")]
    Spawn { queue: u32, source: std::io::Error },
}

/// The running XDP capture: the program, its AF_XDP receivers and their threads.
pub(crate) struct XdpCapture {
    steering: Arc<Mutex<XdpSteering>>,
    receivers: Vec<afxdp::XskReceiver>,
    queues: Vec<u32>,
    stop: StopSignal,
    threads: Vec<JoinHandle<()>>,
    status: CaptureStatus,
    /// Ports this process added to a shared (agent's) ports map, removed again at stop.
    added_ports: Arc<Mutex<Vec<u16>>>,
    /// With the agent's program: registers us again when its maps are made anew.
    watch: Option<agent_watch::AgentWatch>,
    /// Which listener each steered port belongs to, for the receivers.
    ports: Arc<ports::PortTable>,
    /// Set once stop() ran, so Drop does not repeat it.
    stopped: bool,
}

impl XdpCapture {
    /// Loads and configures the program, opens an AF_XDP socket per rx queue, registers
    /// them and attaches (native, then generic). Receiving starts with [`Self::spawn`].
    /// `ports`: the UDP ports to steer and whose listener each is.
    pub(crate) fn open(config: &CaptureConfig, ports: &[(u16, XdpListener)]) -> Result<Self, CaptureError> {
        let interface = config
            .interface
            .as_deref()
            .ok_or_else(|| CaptureError::Settings("XDP capture needs an interface".to_owned()))?;
        config.af_xdp.validate()?;
        let agent_attach = match config.agent {
            AgentPins::Ignore => None,
            AgentPins::Auto => XdpSteering::pinned_attachment(&config.pin_dir, interface),
            AgentPins::Require => wait_for_agent(&config.pin_dir, interface, AGENT_PIN_WAIT),
        };
        if let Some(attach) = agent_attach {
            return Self::open_on_agent(config, interface, attach, ports);
        }
        if config.agent == AgentPins::Require {
            return Err(CaptureError::Settings(format!(
                "capture.agent = \"require\" but no node agent program for {interface} is pinned under {}",
                config.pin_dir.display()
            )));
        }
        let mut steering = XdpSteering::load()?;
        steering.set_deny_list(&parse_prefixes(&config.deny)?)?;
        steering.set_allow_list(&parse_prefixes(&config.allow)?)?;
        steering.set_rate_limit(config.rate_limit)?;
        steering.set_ports(ports)?;
        let receivers = open_receivers(config, interface, &mut steering)?;
        let attach = steering.attach(interface, AttachPolicy::NativeThenGeneric)?;
        Ok(Self::assemble(steering, receivers, interface, attach, XdpProgram::Own, Vec::new(), ports))
    }

    /// Uses the program the node agent attached and pinned: opens its maps, adds the
    /// syslog port to its ports map when it is not there, and registers a socket per
    /// queue. The agent's allow/deny lists and rate limit stay in force; ours are not
    /// written (the agent owns them).
    fn open_on_agent(
        config: &CaptureConfig,
        interface: &str,
        attach: AttachMode,
        ports: &[(u16, XdpListener)],
    ) -> Result<Self, CaptureError> {
        let mut steering = XdpSteering::open_pinned(&config.pin_dir)?;
        if !config.deny.is_empty() || !config.allow.is_empty() || config.rate_limit.is_some() {
            tracing::warn!(
                pin_dir = %config.pin_dir.display(),
                "capture.allow, capture.deny and the rate limit are not applied: the node agent's lists and limit are in force."
            );
        }
        let added_ports = steering.add_ports(ports)?;
        let receivers = match open_receivers(config, interface, &mut steering) {
            Ok(receivers) => receivers,
            Err(error) => {
                let _ = steering.remove_ports(&added_ports);
                return Err(error);
            }
        };
        let socket_error = |queue: u32, error: std::io::Error| CaptureError::Socket {
            interface: interface.to_owned(),
            queue,
            reason: format!("duplicating the descriptor: {error}"),
        };
        let mut sockets = Vec::with_capacity(receivers.len());
        for receiver in &receivers {
            let socket = receiver.socket_fd().try_clone_to_owned();
            sockets.push((receiver.queue(), socket.map_err(|error| socket_error(receiver.queue(), error))?));
        }
        let program = XdpProgram::Agent { pin_dir: config.pin_dir.clone() };
        let mut capture = Self::assemble(steering, receivers, interface, attach, program, added_ports, ports);
        let registration = agent_watch::Registration {
            pin_dir: config.pin_dir.clone(),
            interface: interface.to_owned(),
            ports: ports.to_vec(),
            sockets,
            steering: capture.steering.clone(),
            added_ports: capture.added_ports.clone(),
        };
        capture.watch = Some(agent_watch::AgentWatch::start(registration).map_err(|error| {
            CaptureError::Settings(format!("cannot start the agent watch thread: {error}"))
        })?);
        Ok(capture)
    }

    fn assemble(
        steering: XdpSteering,
        receivers: Vec<afxdp::XskReceiver>,
        interface: &str,
        attach: AttachMode,
        program: XdpProgram,
        added_ports: Vec<u16>,
        ports: &[(u16, XdpListener)],
    ) -> Self {
        let status = CaptureStatus::Xdp {
            interface: interface.to_owned(),
            attach,
            queues: receivers.iter().map(|receiver| (receiver.queue(), receiver.bind_mode())).collect(),
            program,
        };
        Self {
            steering: Arc::new(Mutex::new(steering)),
            queues: receivers.iter().map(|receiver| receiver.queue()).collect(),
            receivers,
            stop: StopSignal::default(),
            threads: Vec::new(),
            status,
            added_ports: Arc::new(Mutex::new(added_ports)),
            watch: None,
            ports: Arc::new(ports::PortTable::new(ports)),
            stopped: false,
        }
    }

    /// Starts one thread per queue; `sinks_for` gives each its batch sink and aggregators,
    /// `core_for` the data-plane core it is pinned to.
    pub(crate) fn spawn(
        &mut self,
        mut sinks_for: impl FnMut(u32) -> QueueSinks,
        core_for: impl Fn(u32) -> crate::cores::Core,
        options: &ParseOptions,
    ) -> Result<(), CaptureError> {
        for receiver in self.receivers.drain(..) {
            let queue = receiver.queue();
            let thread = afxdp::spawn_receiver(
                receiver,
                sinks_for(queue),
                self.ports.clone(),
                options.clone(),
                self.stop.clone(),
                core_for(queue),
            )
            .map_err(|source| CaptureError::Spawn { queue, source })?;
            self.threads.push(thread);
        }
        Ok(())
    }

    pub(crate) fn status(&self) -> &CaptureStatus {
        &self.status
    }

    pub(crate) fn steering(&self) -> &Arc<Mutex<XdpSteering>> {
        &self.steering
    }

    /// Steers `ports` (a live change of the listeners): the program's ports map and the
    /// receivers' table. With the node agent's program only the ports we added change.
    pub(crate) fn steer(&self, ports: &[(u16, XdpListener)]) -> Result<(), XdpError> {
        let mut steering = self.steering.lock().unwrap_or_else(PoisonError::into_inner);
        if steering.owns_program() {
            steering.set_ports(ports)?;
        } else {
            // Ports found in the agent's map stay the agent's: only those we put there are
            // ours to move and, at stop, to remove.
            let mut added = self.added_ports.lock().unwrap_or_else(PoisonError::into_inner);
            let before = steering.ports()?;
            steering.replace_own_ports(&added, ports)?;
            *added = ports
                .iter()
                .map(|&(port, _)| port)
                .filter(|port| added.contains(port) || !before.iter().any(|(steered, _)| steered == port))
                .collect();
        }
        // What the map now holds (the agent's ports too), so that every steered frame
        // finds its listener.
        let steered = steering.ports().unwrap_or_else(|_| ports.to_vec());
        self.ports.set(&steered);
        Ok(())
    }

    /// Unregisters the sockets first, so that what arrives from now on goes to the kernel
    /// and the socket listener; then the receivers read what their rings hold and stop.
    /// With the agent's program, the ports this process added are removed too; the
    /// program stays attached and passes what arrives to the kernel.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // First, so it cannot register the sockets again behind our back.
        if let Some(watch) = &mut self.watch {
            watch.stop();
        }
        {
            let mut steering = self.steering.lock().unwrap_or_else(PoisonError::into_inner);
            for &queue in &self.queues {
                if let Err(error) = steering.unregister_socket(queue) {
                    tracing::warn!(queue, error = %error, "Removing an AF_XDP socket from the XDP map failed.");
                }
            }
            let added_ports = self.added_ports.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = steering.remove_ports(&added_ports) {
                tracing::warn!(error = %error, "Removing our port from the agent's XDP map failed.");
            }
        }
        self.stop.raise();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for XdpCapture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens an AF_XDP socket per rx queue and registers each in the program's socket map.
fn open_receivers(
    config: &CaptureConfig,
    interface: &str,
    steering: &mut XdpSteering,
) -> Result<Vec<afxdp::XskReceiver>, CaptureError> {
    let queue_count = match config.queues {
        Some(count) => count.max(1),
        None => rx_queue_count(interface).unwrap_or(1),
    };
    let mut receivers: Vec<afxdp::XskReceiver> = Vec::new();
    for queue in 0..queue_count {
        let registered = afxdp::XskReceiver::open(interface, queue, &config.af_xdp).and_then(|receiver| {
            steering.register_socket(queue, receiver.socket_fd())?;
            Ok(receiver)
        });
        match registered {
            Ok(receiver) => receivers.push(receiver),
            Err(error) => {
                // Shared maps outlive us: leave no entry behind for a socket about to close.
                for receiver in &receivers {
                    let _ = steering.unregister_socket(receiver.queue());
                }
                return Err(error);
            }
        }
    }
    Ok(receivers)
}

/// How long `capture.agent = "require"` waits at start for the agent's pins: in a pod
/// both containers start together and the agent may still be attaching.
pub const AGENT_PIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn wait_for_agent(directory: &Path, interface: &str, wait: std::time::Duration) -> Option<AttachMode> {
    let deadline = std::time::Instant::now() + wait;
    let mut said = false;
    loop {
        if let Some(mode) = XdpSteering::pinned_attachment(directory, interface) {
            return Some(mode);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        if !said {
            tracing::info!(
                pin_dir = %directory.display(),
                interface,
                wait_seconds = wait.as_secs(),
                "Waiting for the node agent to pin its XDP program."
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Says whether `directory` holds the node agent's program for `interface`, and in
/// which mode; for start-up messages and checks.
pub fn agent_attachment(directory: &Path, interface: &str) -> Option<AttachMode> {
    XdpSteering::pinned_attachment(directory, interface)
}

/// The interface's rx queue count (rx + combined channels), from the ethtool ioctl of the
/// calling thread's network namespace; None when the driver does not say.
pub fn rx_queue_count(interface: &str) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    let mut channels = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..EthtoolChannels::default() };
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = interface.as_bytes();
    if name.is_empty() || name.len() >= request.ifr_name.len() || name.contains(&0) {
        return None;
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL reads the name and writes the ethtool_channels struct that
    // ifru_data points at, which outlives the call.
    let rc = unsafe {
        libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::SIOCETHTOOL as _, &mut request)
    };
    if rc < 0 {
        return None;
    }
    let count = channels.rx_count + channels.combined_count;
    (count > 0).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af_xdp_settings_are_checked() {
        AfXdpSettings::default().validate().unwrap();
        let bad = [
            (AfXdpSettings { frame_size: 1000, ..AfXdpSettings::default() }, "frame_size"),
            (AfXdpSettings { rx_ring_size: 1000, ..AfXdpSettings::default() }, "rx_ring_size"),
            (AfXdpSettings { fill_ring_size: 32, ..AfXdpSettings::default() }, "fill_ring_size"),
            (AfXdpSettings { umem_frames: 100, ..AfXdpSettings::default() }, "umem_frames"),
        ];
        for (settings, field) in bad {
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn loopback_has_a_queue_count_or_none() {
        // lo has no channels to report; the caller then assumes one queue.
        assert!(rx_queue_count("lo").is_none_or(|count| count >= 1));
        assert_eq!(rx_queue_count("no-such-interface-x"), None);
        assert_eq!(rx_queue_count(""), None);
    }
}
