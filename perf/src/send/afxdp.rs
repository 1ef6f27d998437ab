//! The AF_XDP transmit sender (`--protocol udp-afxdp`): the `udp` sender's messages, one
//! per datagram, but each Ethernet + IPv4 + UDP frame is built here ([`super::frame`]) and
//! handed to an AF_XDP socket on queue 0 of `--interface`, bypassing the socket layer.
//!
//! The socket binds in copy mode (`XDP_COPY`) with `need_wakeup`: copy mode works on any
//! driver, veth included, and transmits from inside `sendto`, so every batch is followed by
//! `sendto` kicks until the kernel has taken the TX ring (it takes up to 32 frames a kick).
//! Frames come back on the completion ring and go back on the free list; a message counts as
//! sent when its frame completes.
//!
//! Addressing: the source MAC, MTU and (without `--source`) source IPv4 come from the
//! interface (`SIOCGIF*` ioctls, which answer for the calling thread's network namespace,
//! unlike `/sys/class/net` whose view is fixed when sysfs was mounted); the destination MAC is
//! `--dest-mac` or the kernel's neighbour entry for the target, which one ordinary UDP
//! datagram to the target's discard port (9) triggers when missing. The target must be
//! on-link on the interface (there is no route lookup) and pass the address rule like every
//! other target. The source port is an ephemeral port held by a bound UDP socket for the run.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::frame::{FrameTemplate, HEADERS_LEN, IP_UDP_HEADERS_LEN, MacAddr};
use super::{Protocol, SendConfig, Worker, WorkerTotals};
use crate::mix::{Marker, write_marker};
use crate::rate::Pacer;

/// What the AF_XDP sender needs beyond the target; unused by the other protocols.
#[derive(Debug, Clone, Default)]
pub struct AfXdpOptions {
    /// The interface whose queue 0 the socket binds (`--interface`); required.
    pub interface: Option<String>,
    /// Source IPv4 (`--source`) [default: the interface's address].
    pub source: Option<Ipv4Addr>,
    /// Next hop's MAC (`--dest-mac`) [default: the neighbour entry for the target].
    pub dest_mac: Option<MacAddr>,
}

impl AfXdpOptions {
    fn is_empty(&self) -> bool {
        self.interface.is_none() && self.source.is_none() && self.dest_mac.is_none()
    }
}

/// UMEM frame size: a 1,514-byte frame (1,500 MTU) fits, and 2048 is the smallest the kernel
/// takes for aligned chunks.
pub const FRAME_SIZE: u32 = 2048;
/// Frames in the UMEM (8 MiB); more than the TX ring, so a full ring still leaves frames to
/// fill while the kernel completes.
const FRAMES: u32 = 4096;
const TX_RING_SIZE: u32 = 2048;
/// Frames claimed, built and submitted per batch.
const FRAMES_PER_BATCH: u64 = 64;
/// A TX ring that makes no progress for this long is an error, not a slow run.
const STALL_LIMIT: Duration = Duration::from_secs(1);
/// How long the end of a run waits for frames still in flight; those left are failed.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How long to wait for ARP to fill in the target's neighbour entry.
const NEIGHBOUR_WAIT: Duration = Duration::from_secs(1);
/// The discard port, where the datagram that triggers ARP goes.
const DISCARD_PORT: u16 = 9;

/// Checks what only this protocol needs, and refuses its options on other protocols.
pub(super) fn validate(config: &SendConfig) -> anyhow::Result<()> {
    if config.protocol != Protocol::UdpAfXdp {
        if !config.afxdp.is_empty() {
            bail!("--interface, --source and --dest-mac only apply to --protocol udp-afxdp");
        }
        return Ok(());
    }
    if config.afxdp.interface.is_none() {
        bail!("--protocol udp-afxdp needs --interface (the AF_XDP socket binds its queue 0)");
    }
    if !config.target.is_ipv4() {
        bail!("--protocol udp-afxdp builds IPv4 frames; target {} is not IPv4", config.target);
    }
    if config.threads != 1 {
        bail!("--protocol udp-afxdp sends from one thread (one AF_XDP socket on queue 0)");
    }
    Ok(())
}

pub(super) fn run(worker: &mut Worker<'_>) -> anyhow::Result<WorkerTotals> {
    let options = &worker.config.afxdp;
    let interface = options.interface.as_deref().context("--protocol udp-afxdp needs --interface")?;
    let SocketAddr::V4(dest) = worker.config.target else { bail!("udp-afxdp needs an IPv4 target") };
    let link = LinkInfo::query(interface)?;
    let source_ip = match options.source {
        Some(ip) => ip,
        None => {
            link.ipv4.with_context(|| format!("{interface} has no IPv4 address; give one with --source"))?
        }
    };
    // Holds the source port for the run, so no local socket gets the target's replies.
    let port_holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("reserving a UDP source port")?;
    let source = SocketAddrV4::new(source_ip, port_holder.local_addr()?.port());
    let dest_mac = match options.dest_mac {
        Some(mac) => mac,
        None => resolve_neighbour(interface, *dest.ip(), &port_holder)?,
    };
    let payload_limit = (link.mtu.saturating_sub(IP_UDP_HEADERS_LEN)).min(FRAME_SIZE as usize - HEADERS_LEN);
    let template = FrameTemplate::new(link.mac, dest_mac, source, dest);
    let mut xsk = XskTx::open(interface)?;

    let mut pacer = Pacer::new(worker.rate, FRAMES_PER_BATCH);
    let mut totals = WorkerTotals::default();
    let mut message = Vec::with_capacity(4096);
    let mut marker = Vec::with_capacity(64);
    let mut ident: u16 = 0;
    while !worker.past_deadline() {
        let tokens = pacer.acquire(FRAMES_PER_BATCH, worker.deadline);
        let Some(offsets) = worker.claimer.claim(tokens) else { break };
        let send_unix_nanos = Worker::unix_nanos_now();
        for offset in offsets {
            let seq = worker.seq(offset);
            message.clear();
            worker.mix.write_message(seq, send_unix_nanos, &mut message);
            let marker_at = Marker { run_id: worker.mix.run_id(), seq, send_unix_nanos };
            if !fit_payload(&mut message, payload_limit, marker_at, &mut marker) {
                totals.failed_messages += 1;
                continue;
            }
            let frame = xsk.free_frame(worker, &mut totals)?;
            let len = template.write(ident, &message, xsk.frame_mut(frame));
            ident = ident.wrapping_add(1);
            xsk.stage(frame, len, message.len());
        }
        xsk.submit(worker, &mut totals)?;
    }
    xsk.drain(worker, &mut totals)?;
    totals.forfeited_tokens = pacer.forfeited();
    Ok(totals)
}

/// Cuts `message` to `limit` bytes, from the padded end, never through the marker. False
/// when the marker itself ends past the limit (the message is not sent).
fn fit_payload(message: &mut Vec<u8>, limit: usize, marker: Marker, scratch: &mut Vec<u8>) -> bool {
    if message.len() <= limit {
        return true;
    }
    scratch.clear();
    write_marker(scratch, marker);
    let marker_end =
        message.windows(scratch.len()).position(|w| w == scratch.as_slice()).map(|at| at + scratch.len());
    if marker_end.is_some_and(|end| end > limit) {
        return false;
    }
    message.truncate(limit);
    true
}

/// The interface facts a frame needs, from the calling thread's network namespace.
#[derive(Debug, Clone, Copy)]
struct LinkInfo {
    mac: MacAddr,
    mtu: usize,
    ipv4: Option<Ipv4Addr>,
}

impl LinkInfo {
    fn query(interface: &str) -> anyhow::Result<Self> {
        let socket =
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("opening a socket for interface ioctls")?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let ioctl = |request: libc::c_ulong| -> io::Result<libc::ifreq> {
            // SAFETY: ifreq is a plain C struct (a name and a union of plain fields) for which
            // all-zeroes is valid.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            let name = interface.as_bytes();
            if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains(&0) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
            }
            for (dst, src) in req.ifr_name.iter_mut().zip(name) {
                *dst = *src as libc::c_char;
            }
            // SAFETY: the SIOCGIF* requests read the NUL-terminated name and write one union
            // field of `req`, which outlives the call.
            let rc = unsafe { libc::ioctl(fd, request as _, &mut req) };
            if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(req) }
        };
        let hw =
            ioctl(libc::SIOCGIFHWADDR).with_context(|| format!("reading the MAC address of {interface}"))?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        let hwaddr = unsafe { hw.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(hwaddr.sa_data) {
            *dst = src as u8;
        }
        let mtu = ioctl(libc::SIOCGIFMTU).with_context(|| format!("reading the MTU of {interface}"))?;
        // SAFETY: SIOCGIFMTU filled the mtu member of the union.
        let mtu = usize::try_from(unsafe { mtu.ifr_ifru.ifru_mtu }).unwrap_or(0);
        let ipv4 = match ioctl(libc::SIOCGIFADDR) {
            Ok(req) => {
                // SAFETY: SIOCGIFADDR filled the addr member with a sockaddr_in, which is no
                // larger than sockaddr.
                let addr: libc::sockaddr_in = unsafe { std::mem::transmute_copy(&req.ifr_ifru.ifru_addr) };
                Some(Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)))
            }
            Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => None,
            Err(error) => {
                return Err(error).with_context(|| format!("reading the IPv4 address of {interface}"));
            }
        };
        Ok(Self { mac: MacAddr(mac), mtu, ipv4 })
    }
}

/// The complete neighbour entry for `ip` on `interface`, from the calling thread's network
/// namespace (`/proc/thread-self/net/arp`).
fn neighbour_entry(interface: &str, ip: Ipv4Addr) -> Option<MacAddr> {
    let table = fs::read_to_string("/proc/thread-self/net/arp")
        .or_else(|_| fs::read_to_string("/proc/net/arp"))
        .ok()?;
    let wanted = ip.to_string();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let &[address, _hw_type, flags, mac, _mask, device] = fields.as_slice() else { return None };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        let complete = flags & 0x2 != 0; // ATF_COM
        let mac: MacAddr = mac.parse().ok()?;
        (address == wanted && device == interface && complete && !mac.is_zero()).then_some(mac)
    })
}

/// The target's MAC: the neighbour table's entry, after one datagram to the target's
/// discard port to make the kernel ARP for it when there is none.
fn resolve_neighbour(interface: &str, ip: Ipv4Addr, socket: &UdpSocket) -> anyhow::Result<MacAddr> {
    let started = Instant::now();
    let mut last_probe: Option<Instant> = None;
    loop {
        if let Some(mac) = neighbour_entry(interface, ip) {
            return Ok(mac);
        }
        if started.elapsed() >= NEIGHBOUR_WAIT {
            bail!(
                "no neighbour entry for {ip} on {interface} after {NEIGHBOUR_WAIT:?} (ARP got no answer; \
                 the target must be on-link); give the next hop's MAC with --dest-mac"
            );
        }
        if last_probe.is_none_or(|at| at.elapsed() >= Duration::from_millis(200)) {
            // Errors are fine (no route yet, ICMP from an earlier probe): the table decides.
            let _ = socket.send_to(b"", (ip, DISCARD_PORT));
            last_probe = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Anonymous, page-aligned memory for the UMEM; unmapped on drop.
struct UmemArea {
    base: NonNull<u8>,
    len: usize,
}

impl UmemArea {
    fn new(len: usize) -> anyhow::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mapping the UMEM");
        }
        let base = NonNull::new(ptr.cast::<u8>()).context("mmap returned null")?;
        Ok(Self { base, len })
    }
}

impl Drop for UmemArea {
    fn drop(&mut self) {
        // SAFETY: the mapping came from mmap with this length, and every socket that used it
        // has been closed (the area is the last field of `XskTx`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One AF_XDP socket with its TX ring, completion ring and UMEM, and the free frames.
struct XskTx {
    // Field order is drop order: rings and sockets close before the memory is unmapped.
    tx: RingTx,
    device: DeviceQueue,
    _user: User,
    _socket: Socket,
    _umem: Umem,
    area: UmemArea,
    interface: String,
    /// UMEM offsets of frames neither staged nor in flight.
    free: Vec<u64>,
    /// Descriptors built this batch, not yet on the TX ring.
    staged: Vec<XdpDesc>,
    /// Payload bytes of each frame in flight, by frame index.
    payload_len: Vec<u16>,
    /// Frames on the TX ring or being transmitted, not yet completed.
    in_flight: u32,
    /// Frames the kernel completed without sending (`sendto` said EBUSY).
    dropped: u64,
}

fn xdp_error(what: &str, interface: &str, errno: xdpilone::Errno) -> anyhow::Error {
    anyhow!("{what} on {interface}: {errno} (AF_XDP sockets need root or CAP_NET_RAW)")
}

impl XskTx {
    fn open(interface: &str) -> anyhow::Result<Self> {
        let area = UmemArea::new(FRAMES as usize * FRAME_SIZE as usize)?;
        let config = UmemConfig {
            fill_size: 64,
            complete_size: FRAMES,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned (mmap) and outlives the Umem and every socket on it
        // (`area` is dropped last).
        let umem = unsafe { Umem::new(config, NonNull::slice_from_raw_parts(area.base, area.len)) }
            .map_err(|e| xdp_error("registering the UMEM", interface, e))?;
        let name = std::ffi::CString::new(interface).context("interface name contains a NUL")?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(|e| xdp_error("looking up the interface", interface, e))?;
        info.set_queue(0);
        let socket =
            Socket::with_shared(&info, &umem).map_err(|e| xdp_error("opening the socket", interface, e))?;
        let device =
            umem.fq_cq(&socket).map_err(|e| xdp_error("creating the completion ring", interface, e))?;
        let socket_config = SocketConfig {
            rx_size: None,
            tx_size: NonZeroU32::new(TX_RING_SIZE),
            bind_flags: SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
        };
        let user = umem
            .rx_tx(&socket, &socket_config)
            .map_err(|e| xdp_error("creating the TX ring", interface, e))?;
        let tx = user.map_tx().map_err(|e| xdp_error("mapping the TX ring", interface, e))?;
        umem.bind(&user).map_err(|e| xdp_error("binding queue 0 in copy mode", interface, e))?;
        Ok(Self {
            tx,
            device,
            _user: user,
            _socket: socket,
            _umem: umem,
            area,
            interface: interface.to_owned(),
            free: (0..u64::from(FRAMES)).rev().map(|i| i * u64::from(FRAME_SIZE)).collect(),
            staged: Vec::with_capacity(FRAMES_PER_BATCH as usize),
            payload_len: vec![0; FRAMES as usize],
            in_flight: 0,
            dropped: 0,
        })
    }

    fn frame_mut(&mut self, offset: u64) -> &mut [u8] {
        assert!(offset + u64::from(FRAME_SIZE) <= self.area.len as u64);
        // SAFETY: the frame lies inside the mapping (checked above) and came off the free
        // list, so neither the kernel nor another descriptor uses it until it is submitted;
        // the borrow of `self` keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts_mut(self.area.base.as_ptr().add(offset as usize), FRAME_SIZE as usize)
        }
    }

    fn stage(&mut self, offset: u64, frame_len: usize, payload_len: usize) {
        self.payload_len[(offset / u64::from(FRAME_SIZE)) as usize] = payload_len as u16;
        self.staged.push(XdpDesc { addr: offset, len: frame_len as u32, options: 0 });
    }

    /// A free frame, reaping completions (and pushing staged frames out) until one is.
    fn free_frame(&mut self, worker: &Worker<'_>, totals: &mut WorkerTotals) -> anyhow::Result<u64> {
        if let Some(frame) = self.free.pop() {
            return Ok(frame);
        }
        let mut last_progress = Instant::now();
        loop {
            let moved = self.push_staged() + self.kick(totals)? + self.reap(worker, totals);
            if let Some(frame) = self.free.pop() {
                return Ok(frame);
            }
            self.check_stall(moved, &mut last_progress)?;
        }
    }

    /// Puts every staged frame on the TX ring and has the kernel transmit them.
    fn submit(&mut self, worker: &Worker<'_>, totals: &mut WorkerTotals) -> anyhow::Result<()> {
        let mut last_progress = Instant::now();
        while !self.staged.is_empty() {
            let moved = self.push_staged() + self.kick(totals)? + self.reap(worker, totals);
            self.check_stall(moved, &mut last_progress)?;
        }
        self.kick(totals)?;
        self.reap(worker, totals);
        Ok(())
    }

    /// Waits for the frames in flight; those still out after [`DRAIN_LIMIT`] are failed.
    fn drain(&mut self, worker: &Worker<'_>, totals: &mut WorkerTotals) -> anyhow::Result<()> {
        self.submit(worker, totals)?;
        let started = Instant::now();
        while self.in_flight > 0 && started.elapsed() < DRAIN_LIMIT {
            if self.kick(totals)? + self.reap(worker, totals) == 0 {
                std::thread::yield_now();
            }
        }
        totals.failed_messages += u64::from(self.in_flight);
        // Frames completed without being sent still came back; move them to failed.
        let dropped = self.dropped.min(totals.sent_messages);
        totals.sent_messages -= dropped;
        totals.failed_messages += dropped;
        Ok(())
    }

    fn check_stall(&self, moved: u32, last_progress: &mut Instant) -> anyhow::Result<()> {
        if moved > 0 {
            *last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_LIMIT {
            bail!(
                "AF_XDP transmit on {} made no progress for {STALL_LIMIT:?} ({} frames in flight)",
                self.interface,
                self.in_flight
            );
        } else {
            std::thread::yield_now();
        }
        Ok(())
    }

    /// Moves as many staged descriptors onto the TX ring as it has room for.
    fn push_staged(&mut self) -> u32 {
        if self.staged.is_empty() {
            return 0;
        }
        let mut writer = self.tx.transmit(self.staged.len() as u32);
        let pushed = writer.insert(self.staged.iter().copied());
        writer.commit();
        drop(writer);
        self.staged.drain(..pushed as usize);
        self.in_flight += pushed;
        pushed
    }

    /// One `sendto` kick when frames wait on the TX ring and the kernel asks for a wakeup.
    /// In copy mode it always asks (the flag is set at bind and no driver clears it), and
    /// transmits only from inside `sendto`, up to 32 frames a call. Returns 1 when it kicked.
    fn kick(&mut self, totals: &mut WorkerTotals) -> anyhow::Result<u32> {
        if self.tx.pending() == 0 || !self.tx.needs_wakeup() {
            return Ok(0);
        }
        // SAFETY: a zero-length sendto on the AF_XDP socket's fd, which `self.tx` keeps open.
        let rc = unsafe {
            libc::sendto(self.tx.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                // EAGAIN: more frames than one call's budget, or the completion ring is full.
                Some(libc::EAGAIN | libc::EINTR) => {}
                // EBUSY: the device dropped one frame (it still completes); ENOBUFS: no skb.
                Some(libc::EBUSY) => {
                    totals.send_errors += 1;
                    self.dropped += 1;
                }
                Some(libc::ENOBUFS) => totals.send_errors += 1,
                _ => return Err(error).with_context(|| format!("AF_XDP sendto on {}", self.interface)),
            }
        }
        Ok(1)
    }

    /// Takes completed frames back onto the free list and counts them sent.
    fn reap(&mut self, worker: &Worker<'_>, totals: &mut WorkerTotals) -> u32 {
        if self.in_flight == 0 {
            return 0;
        }
        let (mut messages, mut bytes) = (0u32, 0u64);
        let mut reader = self.device.complete(self.in_flight);
        while let Some(addr) = reader.read() {
            let offset = addr - addr % u64::from(FRAME_SIZE);
            bytes += u64::from(self.payload_len[(offset / u64::from(FRAME_SIZE)) as usize]);
            self.free.push(offset);
            messages += 1;
        }
        reader.release();
        drop(reader);
        self.in_flight -= messages;
        if messages > 0 {
            totals.sent_messages += u64::from(messages);
            totals.sent_bytes += bytes;
            worker.progress.add(u64::from(messages), bytes);
        }
        messages
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::fd::AsRawFd as _;
    use std::process::Command;
    use std::thread;

    use super::super::{Progress, run as run_send};
    use super::*;
    use crate::mix::{MessageMix, MixKind, parse_marker};

    #[test]
    fn long_messages_lose_padding_never_the_marker() {
        let mut mix = MessageMix::new(MixKind::Rfc5424, 1, 3);
        let mut scratch = Vec::new();
        let mut cut = 0;
        for seq in 0..3000 {
            let mut message = Vec::new();
            mix.write_message(seq, 5, &mut message);
            let marker = Marker { run_id: 3, seq, send_unix_nanos: 5 };
            let before = message.clone();
            assert!(fit_payload(&mut message, 1472, marker, &mut scratch));
            assert!(message.len() <= 1472);
            assert_eq!(parse_marker(&message), Some(marker));
            assert!(before.starts_with(&message));
            cut += usize::from(before.len() > 1472);
        }
        assert!(cut > 0, "no message was long enough to need cutting");
        let mut message = b"<13>1 kk=3.7.5 padding".to_vec();
        assert!(!fit_payload(
            &mut message,
            8,
            Marker { run_id: 3, seq: 7, send_unix_nanos: 5 },
            &mut scratch
        ));
    }

    #[test]
    fn options_are_checked_before_anything_opens() {
        let target: SocketAddr = "10.203.250.1:514".parse().unwrap();
        let config = SendConfig::new(target, Protocol::UdpAfXdp);
        assert!(validate(&config).unwrap_err().to_string().contains("--interface"));
        let mut config = SendConfig::new(target, Protocol::Udp);
        config.afxdp.interface = Some("eth0".into());
        assert!(validate(&config).unwrap_err().to_string().contains("only apply"));
        let mut config = SendConfig::new("8.8.8.8:514".parse().unwrap(), Protocol::UdpAfXdp);
        config.afxdp.interface = Some("lo".into());
        let error = run_send(&config, &Progress::default()).unwrap_err();
        assert!(error.to_string().contains("10.203.0.0/16"), "{error}");
    }

    const HOST_ADDR: &str = "10.203.250.1";
    const INNER_ADDR: &str = "10.203.250.2";

    fn ip(args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("ip").args(args).output().context("running ip")?;
        if !output.status.success() {
            bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// A network namespace with one end of a veth pair in it (10.203.250.2/30) and the other
    /// on the host (10.203.250.1/30); both go on drop, even after a panic.
    struct VethRig {
        netns: String,
        host_if: String,
        inner_if: String,
    }

    impl VethRig {
        fn create() -> anyhow::Result<Self> {
            let pid = std::process::id();
            let rig = Self {
                netns: format!("kkaf{pid}"),
                host_if: format!("kkafh{pid}"),
                inner_if: format!("kkafn{pid}"),
            };
            ip(&["netns", "add", &rig.netns])?;
            ip(&[
                "link",
                "add",
                &rig.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &rig.inner_if,
                "netns",
                &rig.netns,
            ])?;
            ip(&["addr", "add", &format!("{HOST_ADDR}/30"), "dev", &rig.host_if])?;
            ip(&["link", "set", &rig.host_if, "up"])?;
            ip(&["-n", &rig.netns, "addr", "add", &format!("{INNER_ADDR}/30"), "dev", &rig.inner_if])?;
            ip(&["-n", &rig.netns, "link", "set", &rig.inner_if, "up"])?;
            ip(&["-n", &rig.netns, "link", "set", "lo", "up"])?;
            Ok(rig)
        }

        /// Moves the calling thread (and the threads it spawns) into the namespace.
        fn enter(&self) -> anyhow::Result<()> {
            let file =
                fs::File::open(format!("/var/run/netns/{}", self.netns)).context("opening the netns")?;
            // SAFETY: setns on an open namespace fd; it affects only the calling thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error()).context("entering the netns");
            }
            Ok(())
        }
    }

    impl Drop for VethRig {
        fn drop(&mut self) {
            // Deleting one end deletes both; the namespace goes after.
            let _ = ip(&["link", "del", &self.host_if]);
            let _ = ip(&["netns", "del", &self.netns]);
        }
    }

    fn af_xdp_available() -> bool {
        // SAFETY: a plain socket call; the fd is closed right away.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0) };
        if fd >= 0 {
            // SAFETY: `fd` is ours and open.
            unsafe { libc::close(fd) };
        }
        fd >= 0
    }

    /// Datagrams until `expected` arrived, or nothing came for a second after the first.
    fn receive(socket: UdpSocket, expected: usize) -> Vec<Vec<u8>> {
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (started, mut last) = (Instant::now(), Instant::now());
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while datagrams.len() < expected && started.elapsed() < Duration::from_secs(20) {
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                datagrams.push(buf[..n].to_vec());
                last = Instant::now();
            } else if !datagrams.is_empty() && last.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        datagrams
    }

    #[test]
    fn afxdp_frames_reach_the_peer_of_a_veth_pair_intact() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping the AF_XDP veth test: it needs root (network namespaces, AF_XDP)");
            return;
        }
        if !af_xdp_available() {
            eprintln!("skipping the AF_XDP veth test: this kernel refuses AF_XDP sockets");
            return;
        }
        let rig = match VethRig::create() {
            Ok(rig) => rig,
            Err(error) => {
                eprintln!("skipping the AF_XDP veth test: cannot build the namespace rig: {error:#}");
                return;
            }
        };
        let socket = UdpSocket::bind((HOST_ADDR, 0)).unwrap();
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
        let target = socket.local_addr().unwrap();
        const COUNT: u64 = 5000;
        let receiver = thread::spawn(move || receive(socket, COUNT as usize));

        let mut config = SendConfig::new(target, Protocol::UdpAfXdp);
        config.count = Some(COUNT);
        config.duration = Some(Duration::from_secs(10));
        config.rate = Some(50_000);
        config.run_id = 78;
        config.mix = MixKind::Mixed;
        config.afxdp.interface = Some(rig.inner_if.clone());
        let sender_config = config.clone();
        let report = thread::scope(|scope| {
            scope
                .spawn(|| {
                    rig.enter()?;
                    run_send(&sender_config, &Progress::default())
                })
                .join()
                .unwrap()
        })
        .unwrap();
        let datagrams = receiver.join().unwrap();

        assert_eq!(report.sent_messages + report.failed_messages, COUNT, "{report:?}");
        assert_eq!((report.first_seq, report.last_seq), (Some(0), Some(COUNT - 1)));
        assert!(report.sent_messages >= COUNT * 99 / 100, "{report:?}");
        let mut mix = MessageMix::new(config.mix, config.seed, config.run_id);
        let mut seqs = BTreeSet::new();
        let mut expected = Vec::new();
        for datagram in &datagrams {
            let marker = parse_marker(datagram).expect("every datagram carries a marker");
            assert_eq!(marker.run_id, 78);
            expected.clear();
            mix.write_message(marker.seq, marker.send_unix_nanos, &mut expected);
            expected.truncate(1500 - IP_UDP_HEADERS_LEN);
            assert_eq!(datagram, &expected, "seq {} arrived changed", marker.seq);
            assert!(seqs.insert(marker.seq), "seq {} arrived twice", marker.seq);
        }
        assert!(seqs.len() as u64 >= COUNT * 99 / 100, "{} of {COUNT} arrived; {report:?}", seqs.len());
        assert_eq!(report.sent_bytes, datagrams.iter().map(|d| d.len() as u64).sum::<u64>());
    }
}
