//! XDP capture end to end on a veth pair between two network namespaces the test creates
//! (and deletes on drop, panics included): syslog to the steered port arrives through
//! AF_XDP parsed; other UDP reaches an ordinary socket; ping still works. Needs root;
//! skipped with a printed reason otherwise.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::{BindMode, CaptureConfig, CaptureMode, CaptureStatus};
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::handoff::BatchConsumer;
use killkrill_dataplane::listener::CapturePath;
use killkrill_dataplane::xdp::{AttachMode, XdpListener, XdpReason};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

const APPLIANCE_V4: &str = "10.204.0.1";
const PEER_V4: &str = "10.204.0.2";
const APPLIANCE_V6: &str = "fd00:204::1";
const PEER_V6: &str = "fd00:204::2";

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|error| format!("running ip: {error}"))?;
    if !output.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// Two namespaces joined by a veth pair: `appliance_if` (10.204.0.1, fd00:204::1) in one,
/// `peer_if` (10.204.0.2, fd00:204::2) in the other. Deleted on drop.
pub(super) struct VethRig {
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
        assert_eq!(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "entering {netns}");
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
pub(super) struct NetnsGuard {
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
pub(super) fn skip_reason() -> Option<String> {
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

/// One ICMP echo to `target` and its reply, through a raw socket (no ping binary needed).
fn ping(target: &str) -> Result<(), String> {
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

fn drain(consumers: &mut [BatchConsumer], messages: &mut Vec<(String, SocketAddr)>) {
    for consumer in consumers.iter_mut() {
        while let Some(batch) = consumer.pop() {
            messages.extend(
                batch
                    .iter()
                    .map(|entry| (String::from_utf8_lossy(entry.message()).into_owned(), entry.source())),
            );
            consumer.give_back(batch);
        }
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn syslog_arrives_through_af_xdp_while_other_traffic_reaches_the_kernel() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let rig = match VethRig::create() {
        Ok(rig) => rig,
        Err(error) => {
            eprintln!("skipped: cannot build the namespace rig: {error}");
            return;
        }
    };
    let inside = rig.enter(&rig.appliance);
    let config = DataPlaneConfig {
        syslog_udp: Some("[::]:0".parse().unwrap()),
        batch: BatchLimits { max_age: Duration::from_millis(10), ..BatchLimits::default() },
        capture: CaptureConfig {
            mode: CaptureMode::Xdp,
            interface: Some(rig.appliance_if.clone()),
            ..CaptureConfig::default()
        },
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config).expect("XDP capture starts on a veth");
    match plane.capture() {
        CaptureStatus::Xdp { interface, attach, queues } => {
            assert_eq!(interface, &rig.appliance_if);
            assert_eq!(*attach, AttachMode::Native, "veth has native XDP");
            assert_eq!(queues, &[(0, BindMode::Copy)], "veth: one queue, copy mode");
        }
        other => panic!("expected XDP capture, got {other:?}"),
    }
    let mut consumers = plane.take_consumers();
    let port = plane.listeners()[0].local_addr.port();
    let other = UdpSocket::bind("0.0.0.0:0").unwrap();
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let other_port = other.local_addr().unwrap().port();

    const COUNT: usize = 200;
    let peer = rig.enter(&rig.peer);
    let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
    let sender_port = sender.local_addr().unwrap().port();
    for seq in 0..COUNT {
        let message = format!("<13>1 2026-11-23T10:00:00Z peer app - - - via af_xdp {seq}");
        sender.send_to(message.as_bytes(), (APPLIANCE_V4, port)).unwrap();
    }
    sender.send_to(b"<13>to the kernel", (APPLIANCE_V4, other_port)).unwrap();
    let sender_v6 = UdpSocket::bind("[::]:0").unwrap();
    sender_v6.send_to(b"<13>1 - peer app - - - over ipv6", (APPLIANCE_V6, port)).unwrap();
    drop(peer);

    let mut messages = Vec::new();
    wait_for("the datagrams through AF_XDP", || {
        drain(&mut consumers, &mut messages);
        messages.len() > COUNT
    });
    let mut buf = [0u8; 64];
    let (len, _) = other.recv_from(&mut buf).expect("the other port's datagram reaches the kernel socket");
    assert_eq!(&buf[..len], b"<13>to the kernel");
    let peer = rig.enter(&rig.peer);
    ping(APPLIANCE_V4).expect("ping from the peer is answered through the XDP program");
    drop(peer);

    let v4_source: SocketAddr = format!("{PEER_V4}:{sender_port}").parse().unwrap();
    for seq in 0..COUNT {
        let expected = format!("via af_xdp {seq}");
        assert!(
            messages.iter().any(|(message, source)| *message == expected && *source == v4_source),
            "{expected} from {v4_source} missing"
        );
    }
    let v6 = messages.iter().find(|(message, _)| message == "over ipv6").expect("the IPv6 datagram");
    assert_eq!(v6.1.ip(), PEER_V6.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(messages.len(), COUNT + 1, "nothing twice");

    let afxdp = plane.counters().iter().find(|c| c.capture == CapturePath::AfXdp).unwrap();
    let socket = plane.counters().iter().find(|c| c.capture == CapturePath::Socket).unwrap();
    assert_eq!(ListenerCounters::read(&afxdp.received_messages), COUNT as u64 + 1);
    assert_eq!(ListenerCounters::read(&afxdp.dropped_capture_full), 0);
    assert_eq!(ListenerCounters::read(&socket.received_messages), 0, "nothing took the kernel path");
    let xdp = plane.xdp_counters().unwrap();
    assert_eq!(xdp.get(XdpListener::Syslog, XdpReason::Matched), COUNT as u64 + 1);
    assert_eq!(xdp.get(XdpListener::Syslog, XdpReason::Redirected), COUNT as u64 + 1);
    assert_eq!(xdp.get(XdpListener::Syslog, XdpReason::PassedNoSocket), 0);
    assert!(xdp.get(XdpListener::None, XdpReason::Passed) >= 3, "ARP/ICMP/other UDP passed");

    plane.shutdown();
    drop(inside);
}
