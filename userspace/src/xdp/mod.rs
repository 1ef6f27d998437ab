//! The XDP program: the object built from `ebpf/program` by build.rs, and [`XdpSteering`],
//! the handle that loads it, attaches it and changes what it does while it runs.
//!
//! Everything the program reads (ports, allow and deny lists, rate limit, AF_XDP sockets)
//! lives in maps, so every change here takes effect on the next packet without reloading.
//! See docs/capture.md.

mod counters;
mod policy;

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, LpmTrie, PerCpuArray, XskMap};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
pub use counters::XdpCounters;
use killkrill_ebpf_common::{
    ALLOW_V4_MAP_NAME, ALLOW_V6_MAP_NAME, COUNTER_SLOTS, COUNTERS_MAP_NAME, DENY_V4_MAP_NAME,
    DENY_V6_MAP_NAME, MAP_NAMES, MAX_PORTS, MAX_QUEUES, PORTS_MAP_NAME, SETTINGS_MAP_NAME, SOCKETS_MAP_NAME,
    XDP_PROGRAM_NAME, XdpSettings,
};
pub use killkrill_ebpf_common::{MAX_BURST, MAX_PREFIXES, MAX_RATE_PER_SECOND, XdpListener, XdpReason};
pub use policy::{RateLimit, SourcePrefix, parse_prefixes};

/// The compiled XDP object file (ELF), aligned as aya requires.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/killkrill-ebpf"));

/// XDP actions, as `BPF_PROG_TEST_RUN` reports them.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Why the XDP program could not be loaded, attached or configured.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program was rejected: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("updating an XDP map failed: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the XDP object has no {0}")]
    Missing(&'static str),
    #[error("cannot attach XDP to {interface}: {reasons}")]
    Attach { interface: String, reasons: String },
    #[error("invalid source prefix '{text}': {reason}")]
    InvalidPrefix { text: String, reason: String },
    #[error("invalid rate limit: {0}")]
    InvalidRateLimit(String),
    #[error("invalid port list: {0}")]
    InvalidPorts(String),
    #[error("rx queue {queue} is out of range (the socket map holds queues 0 to {max})", max = MAX_QUEUES - 1)]
    QueueOutOfRange { queue: u32 },
    #[error("too many {what}: {count}, at most {max}")]
    TooMany { what: &'static str, count: usize, max: u32 },
    #[error("pinning the XDP maps under {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("the kernel attached XDP through netlink, which cannot be pinned (bpf links need Linux 5.9)")]
    Unpinnable,
}

/// How the program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before any socket buffer exists (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// In the kernel stack after the socket buffer is built (`XDP_FLAGS_SKB_MODE`); works
    /// on every interface, slower.
    Generic,
}

impl AttachMode {
    pub const fn label(self) -> &'static str {
        match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Which modes [`XdpSteering::attach`] may try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachPolicy {
    NativeOnly,
    GenericOnly,
    /// Native, and generic when the driver refuses native.
    NativeThenGeneric,
}

struct Attachment {
    interface: String,
    mode: AttachMode,
    link: AttachmentLink,
}

/// Who keeps the program attached.
enum AttachmentLink {
    /// aya holds the link: it detaches when this handle drops.
    Owned(aya::programs::xdp::XdpLinkId),
    /// A bpf link pinned on a bpffs: it stays attached until the pin is removed, whatever
    /// becomes of this process.
    Pinned(PinnedLink),
}

/// The pin of the XDP link is named `link_<mode>_<interface>`: a bpf_link's kernel info
/// names neither the interface nor the mode, so the next agent learns them from the name.
/// bpffs refuses names with '.', so dots in the interface name (VLANs: `eth0.100`) are
/// written ':', which interface names cannot hold; the mode comes first and has no '_'.
pub const LINK_PIN_PREFIX: &str = "link_";

/// The pin file name of the link for `interface` in `mode`.
pub fn link_pin_name(interface: &str, mode: AttachMode) -> String {
    format!("{LINK_PIN_PREFIX}{}_{}", mode.label(), interface.replace('.', ":"))
}

/// What [`XdpSteering::attach_pinned`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinnedAttach {
    pub mode: AttachMode,
    /// True when a link pinned by an earlier run was taken over: the new program replaced
    /// the old one in place (`bpf_link_update`), the interface never went without one.
    pub adopted: bool,
    /// False when the kernel attached through netlink (no bpf_link, kernels before 5.9):
    /// the program then cannot outlive this process.
    pub pinned: bool,
}

/// The loaded XDP program and its maps. Detaches from its interface on drop; the maps
/// live on while pinned.
pub struct XdpSteering {
    ebpf: Ebpf,
    attachment: Option<Attachment>,
    settings: XdpSettings,
}

impl XdpSteering {
    /// Loads the object and the program into the kernel (the verifier runs here). Needs
    /// CAP_BPF and CAP_NET_ADMIN (or root). Nothing is steered until ports are set and
    /// the program is attached.
    pub fn load() -> Result<Self, XdpError> {
        raise_memlock_limit();
        let mut ebpf = Ebpf::load(XDP_OBJECT)?;
        let program: &mut Xdp =
            ebpf.program_mut(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?;
        program.load()?;
        let mut steering = Self { ebpf, attachment: None, settings: XdpSettings::default() };
        steering.write_settings()?;
        Ok(steering)
    }

    fn program_mut(&mut self) -> Result<&mut Xdp, XdpError> {
        Ok(self.ebpf.program_mut(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, XdpError> {
        self.ebpf.map_mut(name).ok_or(XdpError::Missing(name))
    }

    /// Attaches to `interface` (detaching from where it was first) and says which mode
    /// it got. The error lists why each mode tried was refused.
    pub fn attach(&mut self, interface: &str, policy: AttachPolicy) -> Result<AttachMode, XdpError> {
        self.detach()?;
        let modes: &[AttachMode] = match policy {
            AttachPolicy::NativeOnly => &[AttachMode::Native],
            AttachPolicy::GenericOnly => &[AttachMode::Generic],
            AttachPolicy::NativeThenGeneric => &[AttachMode::Native, AttachMode::Generic],
        };
        let mut reasons = Vec::new();
        for &mode in modes {
            let flags = match mode {
                AttachMode::Native => XdpMode::Driver,
                AttachMode::Generic => XdpMode::Skb,
            };
            match self.program_mut()?.attach(interface, flags) {
                Ok(link) => {
                    self.attachment = Some(Attachment {
                        interface: interface.to_owned(),
                        mode,
                        link: AttachmentLink::Owned(link),
                    });
                    return Ok(mode);
                }
                Err(error) => reasons.push(format!("{mode}: {}", error_chain(&error))),
            }
        }
        Err(XdpError::Attach { interface: interface.to_owned(), reasons: reasons.join("; ") })
    }

    /// Where the program is attached and how, if it is.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attachment.as_ref().map(|attachment| (attachment.interface.as_str(), attachment.mode))
    }

    /// Detaches from the interface, if attached; a pinned link loses its pin first.
    pub fn detach(&mut self) -> Result<(), XdpError> {
        if let Some(attachment) = self.attachment.take() {
            match attachment.link {
                AttachmentLink::Owned(link) => self.program_mut()?.detach(link)?,
                AttachmentLink::Pinned(link) => {
                    // The pin was the last holder but our fd: closing it detaches.
                    let fd_link = link.unpin().map_err(|error| XdpError::Pin {
                        path: PathBuf::from(&attachment.interface),
                        reason: format!("removing the link pin: {error}"),
                    })?;
                    drop(fd_link);
                }
            }
        }
        Ok(())
    }

    /// Loads the program like [`XdpSteering::load`], but with its maps taken from
    /// `directory` (on a bpffs) where an earlier run pinned them, and created and pinned
    /// there otherwise: counters, lists, rate-limit buckets and registered AF_XDP sockets
    /// carry over. Map layouts must match; after an upgrade that changes them, detach
    /// (and so unpin) with the old version first.
    pub fn load_with_pinned_maps(directory: &Path) -> Result<Self, XdpError> {
        raise_memlock_limit();
        let pin_error = |reason: String| XdpError::Pin { path: directory.to_owned(), reason };
        std::fs::create_dir_all(directory).map_err(|error| pin_error(error.to_string()))?;
        let paths: Vec<(&'static str, PathBuf)> =
            MAP_NAMES.iter().map(|&name| (name, directory.join(name))).collect();
        let mut loader = EbpfLoader::new();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(XDP_OBJECT).map_err(|error| match error {
            aya::EbpfError::MapError(error) => {
                pin_error(format!("{} (is it on a bpf filesystem?)", error_chain(&error)))
            }
            other => XdpError::Load(other),
        })?;
        let program: &mut Xdp =
            ebpf.program_mut(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?;
        program.load()?;
        // What an earlier run left in the settings map (allow-list flag, rate limit) stays.
        let settings = {
            let map = ebpf.map(SETTINGS_MAP_NAME).ok_or(XdpError::Missing(SETTINGS_MAP_NAME))?;
            let array: Array<_, XdpSettings> = Array::try_from(map)?;
            array.get(&0, 0)?
        };
        Ok(Self { ebpf, attachment: None, settings })
    }

    /// Attaches to `interface` through a bpf link pinned in `directory`, so the program
    /// stays attached after this process exits (see [`XdpSteering::release`]). A link an
    /// earlier run pinned for the same interface, in a mode the policy allows, is taken
    /// over: the program is swapped inside it atomically. Links pinned for another
    /// interface or a refused mode are removed (which detaches them).
    pub fn attach_pinned(
        &mut self,
        interface: &str,
        policy: AttachPolicy,
        directory: &Path,
    ) -> Result<PinnedAttach, XdpError> {
        self.detach()?;
        let pin_error = |reason: String| XdpError::Pin { path: directory.to_owned(), reason };
        let allowed = |mode: AttachMode| match policy {
            AttachPolicy::NativeOnly => mode == AttachMode::Native,
            AttachPolicy::GenericOnly => mode == AttachMode::Generic,
            AttachPolicy::NativeThenGeneric => true,
        };
        let mut adoptable = None;
        for (path, pinned_mode, pinned_interface) in pinned_links(directory)? {
            if adoptable.is_none() && pinned_interface == interface && pinned_mode.is_some_and(allowed) {
                adoptable = pinned_mode.map(|mode| (path, mode));
            } else {
                let link = PinnedLink::from_pin(&path).map_err(|error| {
                    pin_error(format!("opening {}: {}", path.display(), error_chain(&error)))
                })?;
                drop(
                    link.unpin()
                        .map_err(|error| pin_error(format!("removing {}: {error}", path.display())))?,
                );
            }
        }
        if let Some((path, mode)) = adoptable {
            let link = PinnedLink::from_pin(&path)
                .map_err(|error| pin_error(format!("opening {}: {}", path.display(), error_chain(&error))))?;
            // The pin goes for the moment of the swap (aya takes the link by value) and
            // comes back right after; our fd holds the link meanwhile.
            let fd_link =
                link.unpin().map_err(|error| pin_error(format!("removing {}: {error}", path.display())))?;
            let xdp_link = XdpLink::try_from(fd_link)
                .map_err(|error| pin_error(format!("{} is not an XDP link: {error}", path.display())))?;
            let link_id = self.program_mut()?.attach_to_link(xdp_link)?;
            self.pin_link(interface, mode, link_id, directory)?;
            return Ok(PinnedAttach { mode, adopted: true, pinned: true });
        }
        let mode = self.attach(interface, policy)?;
        let Some(Attachment { link: AttachmentLink::Owned(link_id), .. }) = self.attachment.take() else {
            return Err(XdpError::Missing("the link just attached"));
        };
        match self.pin_link(interface, mode, link_id, directory) {
            Ok(()) => Ok(PinnedAttach { mode, adopted: false, pinned: true }),
            Err(XdpError::Unpinnable) => {
                // A netlink attachment (old kernel): converting it detached it; attach
                // again, owned by this process.
                let mode = self.attach(interface, policy)?;
                Ok(PinnedAttach { mode, adopted: false, pinned: false })
            }
            Err(error) => Err(error),
        }
    }

    fn pin_link(
        &mut self,
        interface: &str,
        mode: AttachMode,
        link_id: aya::programs::xdp::XdpLinkId,
        directory: &Path,
    ) -> Result<(), XdpError> {
        let link = self.program_mut()?.take_link(link_id)?;
        let fd_link = FdLink::try_from(link).map_err(|_| XdpError::Unpinnable)?;
        let path = directory.join(link_pin_name(interface, mode));
        let pinned = fd_link.pin(&path).map_err(|error| XdpError::Pin {
            path: directory.to_owned(),
            reason: format!("pinning the link: {}", error_chain(&error)),
        })?;
        self.attachment =
            Some(Attachment { interface: interface.to_owned(), mode, link: AttachmentLink::Pinned(pinned) });
        Ok(())
    }

    /// Lets go of a pinned attachment without detaching: the program stays attached after
    /// this handle drops. False when the attachment is not pinned (it detaches on drop).
    pub fn release(&mut self) -> bool {
        match self.attachment.take() {
            Some(Attachment { link: AttachmentLink::Pinned(link), .. }) => {
                drop(link);
                true
            }
            other => {
                self.attachment = other;
                self.attachment.is_none()
            }
        }
    }

    /// Whether the attachment is held by a pinned link.
    pub fn is_pinned(&self) -> bool {
        matches!(self.attachment, Some(Attachment { link: AttachmentLink::Pinned(_), .. }))
    }

    /// Removes the map pins and any link pins from `directory`, then the directory when
    /// nothing else is left in it. Removing a link pin detaches that link.
    pub fn remove_pins(directory: &Path) -> Result<(), XdpError> {
        let pin_error = |reason: String| XdpError::Pin { path: directory.to_owned(), reason };
        if !directory.exists() {
            return Ok(());
        }
        for (path, _, _) in pinned_links(directory)? {
            std::fs::remove_file(&path)
                .map_err(|error| pin_error(format!("removing {}: {error}", path.display())))?;
        }
        for name in MAP_NAMES {
            let path = directory.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(pin_error(format!("removing {name}: {error}"))),
            }
        }
        // Left in place when something else lives there (not ours to remove).
        let _ = std::fs::remove_dir(directory);
        Ok(())
    }

    /// Replaces the steered ports. New ports are added before old ones are removed, so a
    /// port kept across the change is never unsteered for a moment.
    pub fn set_ports(&mut self, ports: &[(u16, XdpListener)]) -> Result<(), XdpError> {
        let mut wanted = std::collections::HashMap::new();
        for &(port, listener) in ports {
            if listener == XdpListener::None {
                return Err(XdpError::InvalidPorts(format!("port {port} has no listener")));
            }
            if port == 0 {
                return Err(XdpError::InvalidPorts("port 0 cannot be steered".to_owned()));
            }
            if let Some(other) = wanted.insert(port, listener)
                && other != listener
            {
                return Err(XdpError::InvalidPorts(format!(
                    "port {port} is given to both {} and {}",
                    other.label(),
                    listener.label()
                )));
            }
        }
        if wanted.len() > MAX_PORTS as usize {
            return Err(XdpError::TooMany { what: "ports", count: wanted.len(), max: MAX_PORTS });
        }
        let mut map: HashMap<_, u16, u32> = HashMap::try_from(self.map_mut(PORTS_MAP_NAME)?)?;
        let old: Vec<u16> = map.keys().collect::<Result<_, _>>()?;
        for (&port, &listener) in &wanted {
            map.insert(port, listener as u32, 0)?;
        }
        for port in old.into_iter().filter(|port| !wanted.contains_key(port)) {
            map.remove(&port)?;
        }
        Ok(())
    }

    /// The steered ports, sorted.
    pub fn ports(&self) -> Result<Vec<(u16, XdpListener)>, XdpError> {
        let map: HashMap<_, u16, u32> =
            HashMap::try_from(self.ebpf.map(PORTS_MAP_NAME).ok_or(XdpError::Missing(PORTS_MAP_NAME))?)?;
        let mut ports = Vec::new();
        for entry in map.iter() {
            let (port, listener) = entry?;
            if let Some(listener) = XdpListener::from_u32(listener) {
                ports.push((port, listener));
            }
        }
        ports.sort_unstable_by_key(|(port, _)| *port);
        Ok(ports)
    }

    /// Replaces the deny list: datagrams from these sources to steered ports are dropped
    /// (and counted `denied`). New entries go in before stale ones come out.
    pub fn set_deny_list(&mut self, prefixes: &[SourcePrefix]) -> Result<(), XdpError> {
        self.replace_prefixes(DENY_V4_MAP_NAME, DENY_V6_MAP_NAME, prefixes)
    }

    /// Replaces the allow list. Non-empty, it admits only the sources it lists (both
    /// families: an IPv4-only list refuses every IPv6 source); empty, it admits all.
    /// The switch is ordered so no packet sees a half-made list: entries go in before the
    /// list is switched on, and it is switched off before its entries come out.
    pub fn set_allow_list(&mut self, prefixes: &[SourcePrefix]) -> Result<(), XdpError> {
        if prefixes.is_empty() {
            self.settings.allow_list_active = 0;
            self.write_settings()?;
            return self.replace_prefixes(ALLOW_V4_MAP_NAME, ALLOW_V6_MAP_NAME, prefixes);
        }
        self.replace_prefixes(ALLOW_V4_MAP_NAME, ALLOW_V6_MAP_NAME, prefixes)?;
        self.settings.allow_list_active = 1;
        self.write_settings()
    }

    fn replace_prefixes(
        &mut self,
        v4_name: &'static str,
        v6_name: &'static str,
        prefixes: &[SourcePrefix],
    ) -> Result<(), XdpError> {
        let (mut v4, mut v6) = (HashSet::new(), HashSet::new());
        for prefix in prefixes {
            let length = u32::from(prefix.prefix_len());
            match prefix.address() {
                std::net::IpAddr::V4(address) => v4.insert((length, address.octets())),
                std::net::IpAddr::V6(address) => v6.insert((length, address.octets())),
            };
        }
        for (what, count) in [("IPv4 prefixes", v4.len()), ("IPv6 prefixes", v6.len())] {
            if count > MAX_PREFIXES as usize {
                return Err(XdpError::TooMany { what, count, max: MAX_PREFIXES });
            }
        }
        replace_trie::<4>(self.map_mut(v4_name)?, &v4)?;
        replace_trie::<16>(self.map_mut(v6_name)?, &v6)
    }

    /// Checks a rate limit without applying it (for configuration validation).
    pub fn check_rate_limit(limit: &RateLimit) -> Result<(), XdpError> {
        limit.validate()
    }

    /// Sets or clears the per-source rate limit; buckets already filled keep their tokens
    /// (capped at the new burst on their next packet).
    pub fn set_rate_limit(&mut self, limit: Option<RateLimit>) -> Result<(), XdpError> {
        if let Some(limit) = &limit {
            limit.validate()?;
        }
        RateLimit::apply(limit, &mut self.settings);
        self.write_settings()
    }

    fn write_settings(&mut self) -> Result<(), XdpError> {
        let settings = self.settings;
        let mut map: Array<_, XdpSettings> = Array::try_from(self.map_mut(SETTINGS_MAP_NAME)?)?;
        map.set(0, settings, 0)?;
        Ok(())
    }

    /// Registers the AF_XDP socket bound to rx queue `queue`: matched datagrams arriving
    /// on that queue go to it from the next packet on.
    pub fn register_socket(&mut self, queue: u32, socket: impl AsRawFd) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        let mut map = XskMap::try_from(self.map_mut(SOCKETS_MAP_NAME)?)?;
        map.set(queue, socket.as_raw_fd(), 0)?;
        Ok(())
    }

    /// Removes the socket of rx queue `queue`: its datagrams go to the kernel stack again
    /// (counted `passed_no_socket`). Removing a queue with no socket is not an error.
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::QueueOutOfRange { queue });
        }
        let mut map = XskMap::try_from(self.map_mut(SOCKETS_MAP_NAME)?)?;
        match map.unset(queue) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, XdpError> {
        let map = self.ebpf.map(COUNTERS_MAP_NAME).ok_or(XdpError::Missing(COUNTERS_MAP_NAME))?;
        let per_cpu: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut slots = [0u64; COUNTER_SLOTS as usize];
        for (index, slot) in slots.iter_mut().enumerate() {
            *slot = per_cpu.get(&(index as u32), 0)?.iter().sum();
        }
        Ok(XdpCounters::from_slots(slots))
    }

    /// Pins every map under `directory` (which must be on a BPF filesystem, e.g.
    /// /sys/fs/bpf/killkrill), creating it, so another process (the node agent) can open
    /// them and they outlive this one. Existing pins of the same names are replaced.
    pub fn pin_maps(&self, directory: &Path) -> Result<(), XdpError> {
        let pin_error = |reason: String| XdpError::Pin { path: directory.to_owned(), reason };
        std::fs::create_dir_all(directory).map_err(|error| pin_error(error.to_string()))?;
        for name in MAP_NAMES {
            let path = directory.join(name);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(|error| pin_error(format!("removing old {name}: {error}")))?;
            }
            let map = self.ebpf.map(name).ok_or(XdpError::Missing(name))?;
            map.pin(&path).map_err(|error| {
                pin_error(format!("{name}: {} (is it on a bpf filesystem?)", error_chain(&error)))
            })?;
        }
        Ok(())
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN) and returns its action; the
    /// counters and rate-limit buckets move as for a real packet. For tests and
    /// diagnostics: no packet goes anywhere.
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, XdpError> {
        let program: &Xdp =
            self.ebpf.program(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?;
        // Room for what the program could write back (it never grows the frame).
        let mut out = vec![0u8; frame.len() + 256];
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })?;
        Ok(result.return_value)
    }

    /// Injects `frame` `repeat` times as if it arrived on `interface_index`, rx queue
    /// `queue` (BPF_PROG_TEST_RUN with live frames): the program runs and its verdicts take
    /// effect for real, redirects to AF_XDP sockets included. For replay benchmarks and
    /// tests; needs root.
    pub fn replay_live(
        &self,
        frame: &[u8],
        interface_index: u32,
        queue: u32,
        repeat: u32,
    ) -> Result<(), XdpError> {
        let program: &Xdp =
            self.ebpf.program(XDP_PROGRAM_NAME).ok_or(XdpError::Missing("XDP program"))?.try_into()?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex; the kernel wants data 0 and data_end the frame's length.
        let context: [u32; 6] = [0, frame.len() as u32, 0, interface_index, queue, 0];
        let context_bytes: Vec<u8> = context.iter().flat_map(|field| field.to_ne_bytes()).collect();
        program.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&context_bytes),
            repeat,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::new()
        })?;
        Ok(())
    }
}

impl Drop for XdpSteering {
    fn drop(&mut self) {
        // aya detaches owned links when the program drops too; this makes the order explicit.
        let _ = self.detach();
    }
}

/// The link pins in `directory`: path, mode (None when the name carries an unknown one)
/// and interface.
fn pinned_links(directory: &Path) -> Result<Vec<(PathBuf, Option<AttachMode>, String)>, XdpError> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(XdpError::Pin { path: directory.to_owned(), reason: error.to_string() }),
    };
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(LINK_PIN_PREFIX) else { continue };
        let (mode, interface) = rest.split_once('_').unwrap_or((rest, ""));
        let interface = interface.replace(':', ".");
        let mode = match mode {
            "native" => Some(AttachMode::Native),
            "generic" => Some(AttachMode::Generic),
            _ => None,
        };
        links.push((entry.path(), mode, interface));
    }
    links.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(links)
}

/// Inserts the wanted prefixes, then removes the rest.
fn replace_trie<const N: usize>(
    map: &mut aya::maps::Map,
    wanted: &HashSet<(u32, [u8; N])>,
) -> Result<(), XdpError> {
    let mut trie: LpmTrie<_, [u8; N], u32> = LpmTrie::try_from(map)?;
    let old: Vec<Key<[u8; N]>> = trie.keys().collect::<Result<_, _>>()?;
    for &(length, address) in wanted {
        trie.insert(&Key::new(length, address), 1, 0)?;
    }
    for key in old {
        if !wanted.contains(&(key.prefix_len(), key.data())) {
            trie.remove(&key)?;
        }
    }
    Ok(())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it. Raising it
/// may be refused (no CAP_SYS_RESOURCE), in which case loading says what failed.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct we pass and has no other preconditions.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pin_names_carry_mode_and_interface_without_dots() {
        let directory = tempfile::tempdir().unwrap();
        for (interface, mode) in [("eth0.100", AttachMode::Native), ("veth_a", AttachMode::Generic)] {
            let name = link_pin_name(interface, mode);
            assert!(!name.contains('.'), "bpffs refuses dots: {name}");
            std::fs::write(directory.path().join(name), b"").unwrap();
        }
        std::fs::write(directory.path().join("link_turbo_eth1"), b"").unwrap();
        std::fs::write(directory.path().join("KILLKRILL_COUNTERS"), b"").unwrap();
        let links: Vec<(Option<AttachMode>, String)> = pinned_links(directory.path())
            .unwrap()
            .into_iter()
            .map(|(_, mode, interface)| (mode, interface))
            .collect();
        assert_eq!(
            links,
            [
                (Some(AttachMode::Generic), "veth_a".to_owned()),
                (Some(AttachMode::Native), "eth0.100".to_owned()),
                (None, "eth1".to_owned()),
            ]
        );
        assert!(pinned_links(&directory.path().join("absent")).unwrap().is_empty());
    }
}
