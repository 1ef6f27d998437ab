//! XDP capture end to end on a veth pair between two network namespaces the test creates
//! (and deletes on drop, panics included): syslog to the steered port arrives through
//! AF_XDP parsed; other UDP reaches an ordinary socket; ping still works. Needs root;
//! skipped with a printed reason otherwise.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::{BindMode, CaptureConfig, CaptureMode, CaptureStatus, XdpProgram};
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::handoff::BatchConsumer;
use killkrill_dataplane::listener::CapturePath;
use killkrill_dataplane::testing::{
    APPLIANCE_V4, APPLIANCE_V6, PEER_V4, PEER_V6, ping, rig_or_skip, skip_reason,
};
use killkrill_dataplane::xdp::{
    AttachMode, AttachPolicy, RateLimit, XDP_REDIRECT, XdpError, XdpListener, XdpReason, XdpSteering,
    parse_prefixes,
};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

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
    let Some(rig) = rig_or_skip() else { return };
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
        CaptureStatus::Xdp { interface, attach, queues, program } => {
            assert_eq!(program, &XdpProgram::Own, "no agent pins: our own program");
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

    // The program itself, run on a frame while a socket is registered for queue 0.
    let frame = super::frames::Udp::to(port).build();
    let steering = plane.xdp().unwrap();
    assert_eq!(steering.lock().unwrap().test_run(&frame).unwrap(), XDP_REDIRECT);
    assert_eq!(
        plane.xdp_counters().unwrap().get(XdpListener::Syslog, XdpReason::Redirected),
        COUNT as u64 + 2
    );

    // Without a socket for the queue, matched datagrams take the kernel path to the socket
    // listener: nothing is lost while AF_XDP is away.
    steering.lock().unwrap().unregister_socket(0).unwrap();
    let peer = rig.enter(&rig.peer);
    for seq in 0..5 {
        sender.send_to(format!("<13>kernel path {seq}").as_bytes(), (APPLIANCE_V4, port)).unwrap();
    }
    drop(peer);
    wait_for("the socket listener to catch what XDP passed", || {
        ListenerCounters::read(&socket.received_messages) == 5
    });
    let xdp = plane.xdp_counters().unwrap();
    assert_eq!(xdp.get(XdpListener::Syslog, XdpReason::PassedNoSocket), 5);
    messages.clear();
    wait_for("the kernel-path batches", || {
        drain(&mut consumers, &mut messages);
        messages.len() == 5
    });
    for (message, source) in &messages {
        // The socket is bound to [::], so IPv4 sources come as mapped IPv6 addresses.
        assert!(message.starts_with("kernel path"), "{message}");
        assert_eq!((source.ip().to_canonical(), source.port()), (v4_source.ip(), v4_source.port()));
    }

    plane.shutdown();
    drop(inside);
}

#[test]
fn attach_reports_its_mode_and_refusals_name_the_interface() {
    let Some(rig) = rig_or_skip() else { return };
    let _inside = rig.enter(&rig.appliance);
    let mut steering = XdpSteering::load().unwrap();
    assert_eq!(steering.attach(&rig.appliance_if, AttachPolicy::GenericOnly).unwrap(), AttachMode::Generic);
    assert_eq!(steering.attached(), Some((rig.appliance_if.as_str(), AttachMode::Generic)));
    assert_eq!(
        steering.attach(&rig.appliance_if, AttachPolicy::NativeThenGeneric).unwrap(),
        AttachMode::Native
    );
    steering.detach().unwrap();
    assert_eq!(steering.attached(), None);
    let error = steering.attach("kk-no-such-if", AttachPolicy::NativeThenGeneric).unwrap_err().to_string();
    assert!(
        error.contains("kk-no-such-if") && error.contains("native:") && error.contains("generic:"),
        "{error}"
    );
}

#[test]
fn maps_pin_under_a_bpf_filesystem_and_refuse_elsewhere() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let steering = XdpSteering::load().unwrap();
    let plain = tempfile::tempdir().unwrap();
    let error = steering.pin_maps(&plain.path().join("pins")).unwrap_err().to_string();
    assert!(error.contains("bpf filesystem"), "{error}");

    let mount_point = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(mount_point.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped the pinning half: cannot mount a bpf filesystem here");
        return;
    }
    let _unmount = Unmount(mount_point.path().to_owned());
    let directory = mount_point.path().join("killkrill");
    steering.pin_maps(&directory).unwrap();
    for name in killkrill_ebpf_common::MAP_NAMES {
        assert!(directory.join(name).exists(), "{name} pinned");
    }
    // Pinning again replaces the old pins.
    steering.pin_maps(&directory).unwrap();
}

#[test]
fn pinned_maps_are_shared_without_undoing_each_others_entries() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(mount_point.path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(mounted, "mounting a bpf filesystem as root");
    let _unmount = Unmount(mount_point.path().to_owned());
    let directory = mount_point.path().join("killkrill");
    // The agent's side: the program, its maps pinned.
    let mut agent = XdpSteering::load_with_pinned_maps(&directory).unwrap();
    agent.replace_own_ports(&[], &[(514, XdpListener::Syslog), (8125, XdpListener::Statsd)]).unwrap();
    agent.set_rate_limit(Some(RateLimit { per_second: 100, burst: 200 })).unwrap();
    // No link pinned: not an agent attachment serve may use.
    assert_eq!(XdpSteering::pinned_attachment(&directory, "eth0"), None);

    // serve's side: the maps only.
    let mut serve = XdpSteering::open_pinned(&directory).unwrap();
    assert!(!serve.owns_program());
    assert!(serve.attach("lo", AttachPolicy::GenericOnly).is_err(), "no program to attach");
    assert_eq!(
        serve.add_ports(&[(514, XdpListener::Syslog)]).unwrap(),
        Vec::<u16>::new(),
        "found, not added"
    );
    assert_eq!(serve.add_ports(&[(5514, XdpListener::Syslog)]).unwrap(), vec![5514]);
    let error = serve.add_ports(&[(8125, XdpListener::Syslog)]).unwrap_err().to_string();
    assert!(error.contains("already steered to statsd"), "{error}");
    // A settings change from one side keeps the other's: the allow list from serve's
    // handle must not undo the agent's rate limit.
    serve.set_allow_list(&parse_prefixes(&["10.0.0.0/8"]).unwrap()).unwrap();
    agent.set_deny_list(&parse_prefixes(&["10.9.0.0/16"]).unwrap()).unwrap();
    let reopened = XdpSteering::open_pinned(&directory).unwrap();
    assert_eq!(
        reopened.ports().unwrap(),
        vec![(514, XdpListener::Syslog), (5514, XdpListener::Syslog), (8125, XdpListener::Statsd)]
    );

    // The agent drops statsd from its listeners: only its own port goes; serve's stays.
    agent.replace_own_ports(&[514, 8125], &[(514, XdpListener::Syslog)]).unwrap();
    assert_eq!(reopened.ports().unwrap(), vec![(514, XdpListener::Syslog), (5514, XdpListener::Syslog)]);
    // serve removes what it added.
    serve.remove_ports(&[5514]).unwrap();
    serve.remove_ports(&[5514]).unwrap();
    assert_eq!(reopened.ports().unwrap(), vec![(514, XdpListener::Syslog)]);
    // The rate limit set by the agent survived serve's settings write: a 250-datagram
    // burst from one source through the program is cut at the agent's burst of 200.
    let frame = super::frames::Udp::to(514).from("10.1.1.1").payload(b"<13>limited").build();
    let mut redirected_or_passed = 0;
    for _ in 0..250 {
        if agent.test_run(&frame).unwrap() != killkrill_dataplane::xdp::XDP_DROP {
            redirected_or_passed += 1;
        }
    }
    // 200 from the burst, and maybe a token or two refilled at 100/s while the loop runs.
    assert!(
        (200..=205).contains(&redirected_or_passed),
        "the agent's burst still holds: {redirected_or_passed}"
    );
    let counters = reopened.counters().unwrap();
    assert_eq!(counters.get(XdpListener::Syslog, XdpReason::RateLimited), 250 - redirected_or_passed);
    drop(serve);
    drop(reopened);
    drop(agent);
    XdpSteering::remove_pins(&directory).unwrap();
}

/// Unmounts on drop, panics included.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn live_replayed_frames_are_redirected_to_af_xdp() {
    let Some(rig) = rig_or_skip() else { return };
    let _inside = rig.enter(&rig.appliance);
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
    let mut plane = DataPlane::start(&config).unwrap();
    let mut consumers = plane.take_consumers();
    let port = plane.listeners()[0].local_addr.port();
    let name = std::ffi::CString::new(rig.appliance_if.as_str()).unwrap();
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let frame = super::frames::Udp::to(port).from("192.0.2.9").payload(b"<13>1 - h a - - - replayed").build();
    let replayed = plane.xdp().unwrap().lock().unwrap().replay_live(&frame, index, 0, 300);
    match replayed {
        Ok(()) => {}
        // Some kernels (seen: 6.18.44 under Firecracker, 2026-12-07) refuse live frames
        // to root while plain test runs work: nothing here can be checked on them.
        Err(XdpError::Program(aya::programs::ProgramError::SyscallError(error)))
            if error.io_error.raw_os_error() == Some(libc::EPERM) =>
        {
            eprintln!("skipped: this kernel refuses BPF_PROG_TEST_RUN with live frames (EPERM)");
            plane.shutdown();
            return;
        }
        Err(error) => panic!("live replay: {error}"),
    }
    let mut messages = Vec::new();
    wait_for("the replayed frames", || {
        drain(&mut consumers, &mut messages);
        messages.len() >= 300
    });
    assert!(
        messages
            .iter()
            .all(|(message, source)| message == "replayed" && source.to_string() == "192.0.2.9:40000")
    );
    let xdp = plane.xdp_counters().unwrap();
    assert_eq!(xdp.get(XdpListener::Syslog, XdpReason::Redirected), 300);
    plane.shutdown();
}

#[test]
fn deny_lists_and_rate_limits_changed_at_run_time_act_on_the_wire() {
    let Some(rig) = rig_or_skip() else { return };
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
    let mut plane = DataPlane::start(&config).unwrap();
    let mut consumers = plane.take_consumers();
    let port = plane.listeners()[0].local_addr.port();
    let steering = plane.xdp().unwrap();
    let send = |label: &str, count: usize| {
        let _peer = rig.enter(&rig.peer);
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        for seq in 0..count {
            sender.send_to(format!("<13>{label} {seq}").as_bytes(), (APPLIANCE_V4, port)).unwrap();
        }
    };
    let counter = |reason| plane.xdp_counters().unwrap().get(XdpListener::Syslog, reason);

    steering.lock().unwrap().set_deny_list(&parse_prefixes(&[format!("{PEER_V4}/32")]).unwrap()).unwrap();
    send("denied", 10);
    wait_for("the denied datagrams to be counted", || counter(XdpReason::Denied) == 10);

    steering.lock().unwrap().set_deny_list(&[]).unwrap();
    steering.lock().unwrap().set_rate_limit(Some(RateLimit { per_second: 1, burst: 3 })).unwrap();
    send("limited", 10);
    wait_for("the rate-limited datagrams to be counted", || counter(XdpReason::RateLimited) == 7);
    let mut messages = Vec::new();
    wait_for("the burst to arrive", || {
        drain(&mut consumers, &mut messages);
        messages.len() >= 3
    });
    assert_eq!(counter(XdpReason::Redirected), 3, "only the burst passed");
    assert_eq!(counter(XdpReason::Matched), 20);
    std::thread::sleep(Duration::from_millis(50));
    drain(&mut consumers, &mut messages);
    let texts: Vec<&str> = messages.iter().map(|(message, _)| message.as_str()).collect();
    assert_eq!(texts, ["limited 0", "limited 1", "limited 2"], "nothing denied or over the limit arrived");
    plane.shutdown();
    drop(inside);
}
