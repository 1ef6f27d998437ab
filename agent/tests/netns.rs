//! The agent binary on a veth pair between two network namespaces the test creates (and
//! deletes on drop, panics included), with a private bpffs: it attaches natively and
//! counts traffic to a configured port, a deny list given by SIGHUP drops traffic from
//! the wire, a stop with `detach_on_exit = false` leaves the program attached (its
//! counters keep moving, the kernel keeps receiving) and the next agent takes it over,
//! and a stop with detach removes the program and every pin. Needs root; skipped with a
//! printed reason otherwise.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use killkrill_dataplane::testing::{APPLIANCE_V4, PEER_V4, VethRig, skip_reason};
use killkrill_dataplane::xdp::{AttachMode, link_pin_name};
use killkrill_ebpf_common::{COUNTERS_MAP_NAME, XdpListener, XdpReason, counter_index};

use super::harness::{AgentProcess, ConfigFile, http, sample, wait_for};

/// Unmounts on drop, panics included.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn xdp_on_interface(netns: &str, interface: &str) -> bool {
    let output = Command::new("ip").args(["-n", netns, "link", "show", "dev", interface]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).contains("xdp")
}

/// The program's counter straight from the pinned map, with no agent running.
fn pinned_counter(pin_dir: &Path, listener: XdpListener, reason: XdpReason) -> u64 {
    let data = aya::maps::MapData::from_pin(pin_dir.join(COUNTERS_MAP_NAME)).expect("the pinned counters");
    let map = aya::maps::Map::PerCpuArray(data);
    let counters: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(&map).unwrap();
    counters.get(&counter_index(listener, reason), 0).unwrap().iter().sum()
}

fn metric(agent: &AgentProcess, reason: &str) -> u64 {
    let (status, body) = http(agent.health, "GET", "/metrics", None);
    assert_eq!(status, 200);
    sample(&body, &format!("killkrill_xdp_packets_total{{listener=\"syslog\",reason=\"{reason}\"}}"))
        .unwrap_or_else(|| panic!("no {reason} sample in {body}"))
}

/// Receives what arrives within `wait`, counting datagrams.
fn drain(socket: &UdpSocket, wait: Duration) -> usize {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    let mut count = 0;
    while socket.recv_from(&mut buf).is_ok() {
        count += 1;
    }
    count
}

fn config_text(interface: &str, port: u16, pin_dir: &Path, deny: &str, detach_on_exit: bool) -> String {
    format!(
        "interface = \"{interface}\"\ncapture_mode = \"native\"\nbpf_pin_dir = \"{}\"\n\
         health_listen = \"127.0.0.1:0\"\ncontrol_plane_url = \"\"\ndeny = [{deny}]\n\
         detach_on_exit = {detach_on_exit}\n\
         [[listeners]]\nprotocol = \"syslog-udp\"\ntransport = \"udp\"\nport = {port}\n",
        pin_dir.display()
    )
}

/// A stand-in control plane: answers 204 to every request and hands over each body.
fn heartbeat_catcher() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if sender.send(serde_json::from_slice(&body).unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    (address, receiver)
}

#[test]
fn agent_attaches_reloads_survives_a_restart_and_detaches() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(mount_point.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a bpf filesystem here");
        return;
    }
    let _unmount = Unmount(mount_point.path().to_owned());
    let rig = match VethRig::create() {
        Ok(rig) => rig,
        Err(error) => {
            eprintln!("skipped: cannot build the namespace rig: {error}");
            return;
        }
    };
    let pin_dir = mount_point.path().join("killkrill");
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());

    let inside = rig.enter(&rig.appliance);
    // The appliance's kernel socket on the steered port: with no AF_XDP socket registered,
    // the program passes what it admits to it.
    let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let other = UdpSocket::bind("0.0.0.0:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    config.write(&config_text(&rig.appliance_if, port, &pin_dir, "", true));
    let mut agent = AgentProcess::start(&config.path);
    let attached = agent.wait_for_log("XDP attached.", Duration::from_secs(5)).expect("attached");
    assert_eq!(attached["attach"], "native", "{attached}");
    assert_eq!(attached["pinned"], true);
    assert_eq!(attached["adopted"], false);
    assert!(
        pin_dir.join(link_pin_name(&rig.appliance_if, AttachMode::Native)).exists(),
        "the link is pinned"
    );
    assert!(pin_dir.join(COUNTERS_MAP_NAME).exists(), "the maps are pinned");
    assert!(xdp_on_interface(&rig.appliance, &rig.appliance_if));
    let rss = agent.rss_bytes();
    eprintln!("agent RSS while attached: {:.1} MiB", rss as f64 / 1048576.0);
    assert!(rss < 50 << 20, "the agent stays under 50 MB: {rss} bytes");

    let peer = rig.enter(&rig.peer);
    let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
    drop(peer);
    let send = |count: usize, to_port: u16| {
        for seq in 0..count {
            sender.send_to(format!("<13>agent test {seq}").as_bytes(), (APPLIANCE_V4, to_port)).unwrap();
        }
    };

    // Counted and passed to the kernel socket (no AF_XDP socket registered).
    send(20, port);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 20);
    assert_eq!(metric(&agent, "matched"), 20);
    assert_eq!(metric(&agent, "passed_no_socket"), 20);

    // A deny list by SIGHUP: the peer's datagrams to the steered port are dropped at XDP;
    // other ports are not judged.
    config.write(&config_text(&rig.appliance_if, port, &pin_dir, &format!("\"{PEER_V4}/32\""), true));
    agent.signal(libc::SIGHUP);
    assert!(agent.wait_for_log("Configuration reloaded.", Duration::from_secs(5)).is_some());
    send(10, port);
    send(3, other_port);
    assert_eq!(drain(&other, Duration::from_millis(500)), 3, "other ports are untouched");
    assert_eq!(drain(&receiver, Duration::from_millis(200)), 0, "denied datagrams never reach the kernel");
    assert_eq!(metric(&agent, "denied"), 10);

    // A bad file on SIGHUP changes nothing.
    config.write("deny = [\"not a prefix\"]\n");
    agent.signal(libc::SIGHUP);
    assert!(
        agent
            .wait_for_log(
                "The reloaded configuration was refused; the previous one stays.",
                Duration::from_secs(5)
            )
            .is_some()
    );
    send(2, port);
    assert_eq!(drain(&receiver, Duration::from_millis(300)), 0, "the deny list still holds");

    // Stop with detach_on_exit = false: the program stays, its pins too.
    config.write(&config_text(&rig.appliance_if, port, &pin_dir, "", false));
    agent.signal(libc::SIGHUP);
    wait_for("the second reload", || agent.count_logs("Configuration reloaded.") == 2);
    let (status, lines) = agent.terminate();
    assert!(status.success(), "{status}");
    assert!(lines.iter().any(|line| line["message"] == "XDP left attached (detach_on_exit = false)."));
    assert!(xdp_on_interface(&rig.appliance, &rig.appliance_if), "still attached with no agent");
    let matched_before = pinned_counter(&pin_dir, XdpListener::Syslog, XdpReason::Matched);
    send(5, port);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 5, "the kernel path flows with no agent");
    assert_eq!(
        pinned_counter(&pin_dir, XdpListener::Syslog, XdpReason::Matched),
        matched_before + 5,
        "the program still runs and counts"
    );

    // The next agent takes the link over and keeps the counters; its heartbeat says so.
    let (catcher, heartbeats) = heartbeat_catcher();
    config.write(&format!(
        "control_plane_url = \"http://{catcher}\"\nheartbeat_interval = \"200ms\"\nnode_name = \"netns-node\"\n{}",
        config_text(&rig.appliance_if, port, &pin_dir, "", true).replace("control_plane_url = \"\"\n", "")
    ));
    let mut agent = AgentProcess::start(&config.path);
    let attached = agent.wait_for_log("XDP attached.", Duration::from_secs(5)).expect("attached again");
    assert_eq!(attached["adopted"], true, "{attached}");
    assert_eq!(attached["attach"], "native");
    assert_eq!(metric(&agent, "matched"), matched_before + 5, "the maps carried over");
    send(4, port);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 4);
    let expected_matched = matched_before + 9;
    let heartbeat = std::iter::from_fn(|| heartbeats.recv_timeout(Duration::from_secs(5)).ok())
        .find(|beat| beat["counters"]["syslog"]["matched"] == expected_matched)
        .expect("a heartbeat with the counters");
    assert_eq!(heartbeat["node_name"], "netns-node");
    // From the second beat on, the admitted rate (the first has nothing to compare with).
    let rate = std::iter::from_fn(|| heartbeats.recv_timeout(Duration::from_secs(5)).ok())
        .find_map(|beat| beat["ingest_rate"].as_f64())
        .expect("a heartbeat with an ingest rate");
    assert!(rate >= 0.0 && rate.is_finite(), "{rate}");
    send(50, port);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 50);
    let rate = std::iter::from_fn(|| heartbeats.recv_timeout(Duration::from_secs(5)).ok())
        .find_map(|beat| beat["ingest_rate"].as_f64().filter(|rate| *rate > 0.0))
        .expect("a heartbeat with the datagrams just admitted in its rate");
    // 50 datagrams within one or two 200 ms intervals.
    assert!(rate <= 50.0 / 0.1, "{rate}");
    assert_eq!(heartbeat["attach_mode"], "native");
    assert_eq!(heartbeat["pinned"], true);
    assert_eq!(heartbeat["interface"], rig.appliance_if.as_str());
    assert_eq!(heartbeat["capture_mode"], "native");

    // Stop with detach: the program and every pin go; the kernel keeps receiving.
    let (status, lines) = agent.terminate();
    assert!(status.success(), "{status}");
    assert!(lines.iter().any(|line| line["message"] == "XDP detached and its pins removed."), "{lines:#?}");
    assert!(!xdp_on_interface(&rig.appliance, &rig.appliance_if), "detached");
    assert!(!pin_dir.exists(), "the pin folder is gone");
    send(3, port);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 3);
    drop(inside);
}

#[test]
fn the_control_planes_deny_list_acts_on_the_wire() {
    let Some(rig) = killkrill_dataplane::testing::rig_or_skip() else { return };
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(mount_point.path())
        .status()
        .is_ok_and(|status| status.success());
    assert!(mounted, "mounting a bpf filesystem as root");
    let _unmount = Unmount(mount_point.path().to_owned());
    let pin_dir = mount_point.path().join("killkrill");
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());

    let inside = rig.enter(&rig.appliance);
    let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    // The stand-in control plane listens inside the namespace, where the agent runs.
    let control_plane = super::harness::FakeControlPlane::start(
        "kk_netns",
        serde_json::json!({"allow": [], "deny": [format!("{PEER_V4}/32")]}),
        serde_json::json!({"per_source": null}),
    );
    config.write(&format!(
        "config_poll_interval = \"200ms\"\napi_key = \"kk_netns\"\n{}",
        config_text(&rig.appliance_if, port, &pin_dir, "", true)
            .replace("control_plane_url = \"\"", &format!("control_plane_url = \"{}\"", control_plane.url()))
    ));
    let mut agent = AgentProcess::start(&config.path);
    agent.wait_for_log("XDP attached.", Duration::from_secs(5)).expect("attached");
    let applied =
        agent.wait_for_log("Live configuration applied.", Duration::from_secs(10)).expect("applied");
    assert_eq!(applied["deny"], 1, "{applied}");

    let peer = rig.enter(&rig.peer);
    let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
    drop(peer);
    let send = |count: usize| {
        for seq in 0..count {
            sender.send_to(format!("<13>polled {seq}").as_bytes(), (APPLIANCE_V4, port)).unwrap();
        }
    };
    send(10);
    assert_eq!(drain(&receiver, Duration::from_millis(300)), 0, "the control plane's deny list drops at XDP");
    assert_eq!(metric(&agent, "denied"), 10);

    control_plane
        .serve(serde_json::json!({"allow": [], "deny": []}), serde_json::json!({"per_source": null}));
    wait_for("the empty list applied", || agent.count_logs("Live configuration applied.") == 2);
    send(6);
    assert_eq!(drain(&receiver, Duration::from_millis(500)), 6, "admitted again");
    assert_eq!(metric(&agent, "denied"), 10);
    let (status, _) = agent.terminate();
    assert!(status.success());
    assert!(!pin_dir.exists());
    drop(inside);
}
