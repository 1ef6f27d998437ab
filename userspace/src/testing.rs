//! Helpers for tests that need root: a veth pair between two network namespaces, and
//! ping without a ping binary. Used by this crate's and the control plane's tests; not
//! part of the data plane proper.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const APPLIANCE_V4: &str = "10.204.0.1";
pub const PEER_V4: &str = "10.204.0.2";
pub const APPLIANCE_V6: &str = "fd00:204::1";
pub const PEER_V6: &str = "fd00:204::2";

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|error| format!("running ip: {error}"))?;
    if !output.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// Two namespaces joined by a veth pair: `appliance_if` (10.204.0.1, fd00:204::1) in one,
/// `peer_if` (10.204.0.2, fd00:204::2) in the other. Deleted on drop.
pub struct VethRig {
    pub appliance: String,
    pub peer: String,
    pub appliance_if: String,
    pub peer_if: String,
}

impl VethRig {
    pub fn create() -> Result<Self, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let rig = Self {
            appliance: format!("kkxa{id}"),
            peer: format!("kkxp{id}"),
            appliance_if: format!("kka{id}"),
            peer_if: format!("kkp{id}"),
        };
        ip(&["netns", "add", &rig.appliance])?;
        // From here on, drop cleans up whatever was made.
        ip(&["netns", "add", &rig.peer])?;
        ip(&[
            "link",
            "add",
            &rig.appliance_if,
            "netns",
            &rig.appliance,
            "type",
            "veth",
            "peer",
            "name",
            &rig.peer_if,
            "netns",
            &rig.peer,
        ])?;
        for (netns, interface, v4, v6) in [
            (&rig.appliance, &rig.appliance_if, APPLIANCE_V4, APPLIANCE_V6),
            (&rig.peer, &rig.peer_if, PEER_V4, PEER_V6),
        ] {
            ip(&["-n", netns, "addr", "add", &format!("{v4}/24"), "dev", interface])?;
            ip(&["-n", netns, "addr", "add", &format!("{v6}/64"), "dev", interface, "nodad"])?;
            ip(&["-n", netns, "link", "set", interface, "up"])?;
            ip(&["-n", netns, "link", "set", "lo", "up"])?;
        }
        Ok(rig)
    }

    /// Moves the calling thread into `netns` until the guard drops.
    pub fn enter(&self, netns: &str) -> NetnsGuard {
        let original = File::open("/proc/thread-self/ns/net").expect("opening the current netns");
        let target = File::open(format!("/var/run/netns/{netns}")).expect("opening the netns");
        // SAFETY: setns on an open namespace fd; it affects only the calling thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "entering {netns}: {}", std::io::Error::last_os_error());
        NetnsGuard { original, _not_send: std::marker::PhantomData }
    }
}

impl Drop for VethRig {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the pair.
        let _ = ip(&["netns", "del", &self.appliance]);
        let _ = ip(&["netns", "del", &self.peer]);
    }
}

/// Puts the thread back into its original namespace on drop; not Send, as setns is per
/// thread.
pub struct NetnsGuard {
    original: File,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: setns on the namespace fd opened when the guard was made.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Why the test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (network namespaces, XDP, AF_XDP)".to_owned());
    }
    // SAFETY: a plain socket call; the fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Some("this kernel refuses AF_XDP sockets".to_owned());
    }
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    None
}

/// The namespace rig for a test, or None (the reason printed) where the test cannot run
/// here. Where it can (root, AF_XDP), a rig that cannot be built fails the test: skipping
/// there would let a broken rig pass unnoticed.
pub fn rig_or_skip() -> Option<VethRig> {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(VethRig::create().unwrap_or_else(|error| panic!("cannot build the namespace rig: {error}")))
}

/// One ICMP echo to `target` and its reply, through a raw socket (no ping binary needed).
pub fn ping(target: &str) -> Result<(), String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    let identifier = (std::process::id() & 0xffff) as u16;
    let mut request = vec![8, 0, 0, 0];
    request.extend_from_slice(&identifier.to_be_bytes());
    request.extend_from_slice(&[0, 1]);
    request.extend_from_slice(b"killkrill");
    let sum = request
        .chunks(2)
        .fold(0u32, |sum, pair| sum + u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let checksum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    request[2..4].copy_from_slice(&checksum.to_be_bytes());
    let address: SocketAddr = format!("{target}:0").parse().unwrap();
    socket.send_to(&request, &address.into()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    while Instant::now() < deadline {
        let Ok((len, _)) = socket.recv_from(&mut buf) else { continue };
        // SAFETY: recv_from initialised the first `len` bytes.
        let packet: Vec<u8> = buf[..len].iter().map(|byte| unsafe { byte.assume_init() }).collect();
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        let icmp = &packet[header_len..];
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == identifier.to_be_bytes() {
            return Ok(());
        }
    }
    Err(format!("no echo reply from {target}"))
}

/// CPU seconds (user and system) this process's threads whose name starts with `prefix`
/// have used, from /proc/self/task; what the benchmarks report per message. Threads that
/// have ended no longer count.
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The command name may hold spaces and parentheses: fields are counted from the
        // last ')', after which field 3 (state) comes first; utime and stime are 14 and 15.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for index in [11, 12] {
            ticks += fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / ticks_per_second
}

/// Seconds CPU `cpu` has spent in softirq (the kernel's receive path, among others) since
/// boot, from /proc/stat; 0 when it cannot be read.
pub fn cpu_softirq_seconds(cpu: usize) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let label = format!("cpu{cpu}");
    stat.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(name, _)| *name == label)
        // user nice system idle iowait irq softirq: the seventh value.
        .and_then(|(_, values)| values.split_whitespace().nth(6)?.parse::<u64>().ok())
        .map_or(0.0, |ticks| ticks as f64 / ticks_per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_cpu_seconds() -> f64 {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec for the call to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
    }

    #[test]
    fn thread_cpu_time_is_read_for_the_named_threads_only() {
        let (spun_sender, spun_receiver) = std::sync::mpsc::channel();
        let (done_sender, done_receiver) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name("cpu-probe-spin".to_owned())
            .spawn(move || {
                // Spins until the thread itself has used 300 ms of CPU, however loaded the
                // machine, then waits (alive, so /proc still lists it) to be read.
                while own_cpu_seconds() < 0.3 {
                    std::hint::spin_loop();
                }
                spun_sender.send(()).unwrap();
                let _ = done_receiver.recv();
            })
            .unwrap();
        spun_receiver.recv().unwrap();
        let spinning = thread_cpu_seconds("cpu-probe-spin");
        let nobody = thread_cpu_seconds("cpu-probe-nobody");
        done_sender.send(()).unwrap();
        spinner.join().unwrap();
        // /proc counts in clock ticks (10 ms at 100 Hz).
        assert!((0.25..5.0).contains(&spinning), "{spinning}");
        assert_eq!(nobody, 0.0);
    }

    #[test]
    fn softirq_time_of_the_cpus_is_read_and_of_a_missing_one_is_zero() {
        // Every running kernel has spent some time in softirq (timers, RCU) since boot.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let total: f64 = (0..cpus).map(cpu_softirq_seconds).sum();
        assert!(total > 0.0, "{total}");
        assert_eq!(cpu_softirq_seconds(1 << 20), 0.0);
    }
}
