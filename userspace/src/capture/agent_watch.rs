//! With the node agent's program: a thread that notices when the agent's maps are made
//! anew (an agent stopped with detach, which removes the pins, and started again) and
//! registers our sockets and port in the new maps, so AF_XDP resumes without restarting
//! serve. Until then the new program finds no socket and passes to the kernel, where the
//! socket listener receives (docs/adr/0028-serve-on-agent-pins.md).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use killkrill_ebpf_common::SOCKETS_MAP_NAME;

use crate::listener::StopSignal;
use crate::xdp::{XdpListener, XdpSteering};

/// How often the pins are looked at: a stat of one file.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What to register again, and where.
pub(super) struct Registration {
    pub pin_dir: PathBuf,
    pub interface: String,
    /// The ports we steer, and whose listener each is.
    pub ports: Vec<(u16, XdpListener)>,
    /// A duplicate of each queue's socket descriptor: the map holds the socket, so any
    /// descriptor of it registers it.
    pub sockets: Vec<(u32, OwnedFd)>,
    /// Shared with the capture: the maps stats and metrics read, and stop() unregisters in.
    pub steering: Arc<Mutex<XdpSteering>>,
    /// Ports we added (and remove at stop), in whichever maps are current.
    pub added_ports: Arc<Mutex<Vec<u16>>>,
}

/// The running watch; stopped (and its socket duplicates closed) by [`AgentWatch::stop`].
pub(super) struct AgentWatch {
    stop: StopSignal,
    thread: Option<JoinHandle<()>>,
}

/// Which socket map the pin names now: a new map gets a new bpffs inode.
fn sockets_pin_identity(pin_dir: &Path) -> Option<(u64, u64)> {
    let metadata = std::fs::metadata(pin_dir.join(SOCKETS_MAP_NAME)).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

impl AgentWatch {
    pub(super) fn start(registration: Registration) -> std::io::Result<Self> {
        let stop = StopSignal::default();
        let known = sockets_pin_identity(&registration.pin_dir);
        let thread = std::thread::Builder::new().name("agent-watch".into()).spawn({
            let stop = stop.clone();
            move || watch(registration, known, &stop)
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }

    pub(super) fn stop(&mut self) {
        self.stop.raise();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(registration: Registration, mut known: Option<(u64, u64)>, stop: &StopSignal) {
    while !stop.is_raised() {
        std::thread::sleep(CHECK_INTERVAL);
        let current = sockets_pin_identity(&registration.pin_dir);
        // Gone (the agent detached): nothing to register in; the kernel path receives.
        // Same: nothing changed. Otherwise wait for the agent's link too, so we register
        // in a program that is attached.
        if current.is_none() || current == known {
            continue;
        }
        if XdpSteering::pinned_attachment(&registration.pin_dir, &registration.interface).is_none() {
            continue;
        }
        match register_again(&registration) {
            Ok(()) => tracing::info!(
                pin_dir = %registration.pin_dir.display(),
                queues = registration.sockets.len(),
                "The node agent's XDP maps were made anew; our AF_XDP sockets are registered in them again."
            ),
            Err(error) => tracing::warn!(
                pin_dir = %registration.pin_dir.display(),
                error = %error,
                "Registering our AF_XDP sockets in the node agent's new maps failed; the kernel path receives until serve restarts."
            ),
        }
        // Once per set of maps, success or not: no retry storm against a bad layout.
        known = current;
    }
}

fn register_again(registration: &Registration) -> Result<(), crate::xdp::XdpError> {
    let mut fresh = XdpSteering::open_pinned(&registration.pin_dir)?;
    let added = fresh.add_ports(&registration.ports)?;
    for (queue, socket) in &registration.sockets {
        fresh.register_socket(*queue, socket.as_fd())?;
    }
    *registration.steering.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
    *registration.added_ports.lock().unwrap_or_else(PoisonError::into_inner) = added;
    Ok(())
}
