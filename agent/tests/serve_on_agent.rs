//! The real `killkrill-agent` and the real `killkrill serve` on one veth, in namespaces the
//! test creates, sharing a private bpffs: the agent attaches and pins the program; serve
//! loads none, registers its AF_XDP socket and its port in the agent's pinned maps, and
//! syslog from the wire arrives through AF_XDP and is queryable. Killed with SIGKILL while
//! traffic flows, serve's socket leaves the map with its process: the agent's program
//! stays attached and the kernel path (a plain socket on the port) receives. Restarted,
//! serve registers again and AF_XDP receives again. When the agent restarts with detach
//! (new maps), serve registers in the new maps by itself; stopped cleanly, serve removes its
//! entries.
//! Needs root and `killkrill` built beside the agent (`cargo build -p killkrill`, as
//! `cargo test --workspace` does); skipped with a printed reason otherwise.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use killkrill_dataplane::testing::{APPLIANCE_V4, VethRig, rig_or_skip};
use killkrill_ebpf_common::{COUNTERS_MAP_NAME, PORTS_MAP_NAME, XdpListener, XdpReason, counter_index};
use serde_json::Value;

use super::harness::{AGENT, AgentProcess, ConfigFile, http, http_as};

/// Unmounts on drop, panics included.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn pinned_counter(pin_dir: &Path, reason: XdpReason) -> u64 {
    let data = aya::maps::MapData::from_pin(pin_dir.join(COUNTERS_MAP_NAME)).expect("the pinned counters");
    let map = aya::maps::Map::PerCpuArray(data);
    let counters: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(&map).unwrap();
    counters.get(&counter_index(XdpListener::Syslog, reason), 0).unwrap().iter().sum()
}

/// The ports serve puts in the agent's map: its syslog port, and its statsd and Influx
/// listeners on their default ports (every UDP listener is steered).
fn steered_ports(syslog: u16) -> Vec<u16> {
    let mut ports = vec![syslog, 8125, 8089];
    ports.sort_unstable();
    ports
}

fn pinned_ports(pin_dir: &Path) -> Vec<u16> {
    let data = aya::maps::MapData::from_pin(pin_dir.join(PORTS_MAP_NAME)).expect("the pinned ports");
    let map = aya::maps::Map::HashMap(data);
    let ports: aya::maps::HashMap<_, u16, u32> = aya::maps::HashMap::try_from(&map).unwrap();
    let mut ports: Vec<u16> = ports.keys().map(Result::unwrap).collect();
    ports.sort_unstable();
    ports
}

fn xdp_on_interface(netns: &str, interface: &str) -> bool {
    let output = Command::new("ip").args(["-n", netns, "link", "show", "dev", interface]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).contains("xdp")
}

/// A running `killkrill serve`, SIGKILLed on drop if still running.
struct Serve {
    child: Child,
    api: SocketAddr,
    log_lines: Vec<Value>,
    lines: mpsc::Receiver<Value>,
    /// An admin's access token for the appliance's API.
    token: String,
}

const SERVE_ADMIN_PASSWORD: &str = "serve-on-agent-admin-password";

impl Serve {
    fn start(binary: &Path, data_dir: &Path, config: &Path, port: u16) -> Self {
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "off", "--syslog-tcp", "off"])
            .args(["--syslog-udp", &format!("0.0.0.0:{port}")])
            .env("LOG_LEVEL", "info")
            .env("KILLKRILL_ADMIN_PASSWORD", SERVE_ADMIN_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start killkrill serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(serde_json::from_str::<Value>(&line).unwrap_or(Value::Null)).is_err() {
                    return;
                }
            }
        });
        let mut log_lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log_lines.iter().any(|line: &Value| line["message"] == "Killkrill is ready.") {
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            match lines.recv_timeout(left) {
                Ok(line) => log_lines.push(line),
                Err(_) => panic!("killkrill serve did not start: {log_lines:#?}"),
            }
        }
        let api = log_lines
            .iter()
            .find(|line| line["message"] == "API listening.")
            .and_then(|line| line["address"].as_str()?.parse().ok())
            .expect("the API address in the log");
        let login = serde_json::json!({ "username": "admin", "password": SERVE_ADMIN_PASSWORD });
        let (status, body) = http(api, "POST", "/api/v1/auth/login", Some(&login));
        assert_eq!(status, 200, "login: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let token = answer["access_token"].as_str().expect("access_token").to_owned();
        Self { child, api, log_lines, lines, token }
    }

    /// The first log line (seen or to come within 10 s) with this message.
    fn wait_for_log(&mut self, message: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_lines.iter().find(|line| line["message"] == message) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.log_lines.push(self.lines.recv_timeout(left).ok()?);
        }
    }

    fn capture_line(&self) -> Value {
        self.log_lines
            .iter()
            .find(|line| line["message"].as_str().is_some_and(|message| message.starts_with("Capture:")))
            .cloned()
            .expect("a capture line")
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http_as(self.api, "GET", path, None, Some(&self.token));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// How many stored messages hold `word`, waiting until `expected` or 15 s.
    fn wait_for_stored(&self, word: &str, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let count =
                self.get(&format!("/api/v1/logs?q={word}&limit=5000"))["logs"].as_array().map_or(0, Vec::len);
            if count >= expected || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill on the pid of our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) }, 0);
        self.child.wait().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends syslog from the peer namespace on its own thread until stopped: `<word> <seq>`,
/// the word switched at will.
struct Sender {
    stop: Arc<AtomicBool>,
    word: Arc<std::sync::Mutex<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(rig: &VethRig, port: u16, word: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let word = Arc::new(std::sync::Mutex::new(word.to_owned()));
        let peer_path = format!("/var/run/netns/{}", rig.peer);
        let thread = {
            let (stop, word) = (stop.clone(), word.clone());
            std::thread::spawn(move || {
                let netns = std::fs::File::open(peer_path).unwrap();
                // SAFETY: setns on an open namespace fd, for this thread only.
                assert_eq!(
                    unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) },
                    0
                );
                let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let word = word.lock().unwrap().clone();
                    let message = format!("<13>1 2026-11-23T10:00:00Z peer app - - - {word} {seq}");
                    // A refused send (no route for a moment) is simply not counted on.
                    let _ = socket.send_to(message.as_bytes(), (APPLIANCE_V4, port));
                    seq += 1;
                    // About 1,000 a second: a steady flow, far from any limit.
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self { stop, word, thread: Some(thread) }
    }

    fn switch_to(&self, word: &str) {
        *self.word.lock().unwrap() = word.to_owned();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Receives on `socket` until `count` datagrams or `wait` passes; returns how many.
fn receive(socket: &UdpSocket, count: usize, wait: Duration) -> usize {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 512];
    let mut received = 0;
    while received < count && Instant::now() < deadline {
        if socket.recv_from(&mut buf).is_ok() {
            received += 1;
        }
    }
    received
}

/// Binds the UDP port a killed serve held. The kernel tears down a dead process's io_uring
/// instances on a work queue after the process is reaped, and a socket with a receive still
/// queued on a ring stays bound until then, so the port frees a moment after `wait` returns.
fn bind_once_released(port: u16) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UdpSocket::bind(("0.0.0.0", port)) {
            Ok(socket) => return socket,
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("the port is free once serve is gone: {error}"),
        }
    }
}

#[test]
fn serve_uses_the_agents_pinned_program_and_the_kernel_path_covers_its_absence() {
    let Some(rig) = rig_or_skip() else { return };
    let killkrill = PathBuf::from(AGENT).with_file_name("killkrill");
    if !killkrill.exists() {
        eprintln!("skipped: {} is not built (cargo build -p killkrill)", killkrill.display());
        return;
    }
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

    let inside = rig.enter(&rig.appliance);
    // A port for serve, free in the namespace; the agent steers no port of its own, so the
    // one in the map is the one serve registers.
    let port = UdpSocket::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let agent_config = ConfigFile::new(temp.path());
    agent_config.write(&format!(
        "interface = \"{}\"\ncapture_mode = \"native\"\nbpf_pin_dir = \"{}\"\n\
         health_listen = \"127.0.0.1:0\"\ncontrol_plane_url = \"\"\n",
        rig.appliance_if,
        pin_dir.display()
    ));
    let mut agent = AgentProcess::start(&agent_config.path);
    agent.wait_for_log("XDP attached.", Duration::from_secs(5)).expect("the agent attaches");
    assert_eq!(pinned_ports(&pin_dir), Vec::<u16>::new());

    let serve_config = temp.path().join("killkrill.toml");
    std::fs::write(
        &serve_config,
        format!(
            "[capture]\nmode = \"xdp\"\ninterface = \"{}\"\nagent = \"require\"\npin_dir = \"{}\"\n",
            rig.appliance_if,
            pin_dir.display()
        ),
    )
    .unwrap();

    // 1. serve on the agent's program: AF_XDP receives, the API says whose program it is.
    let serve = Serve::start(&killkrill, &temp.path().join("data1"), &serve_config, port);
    let capture = serve.capture_line();
    assert_eq!(capture["capture"], "xdp-native", "{capture}");
    assert_eq!(capture["summary"], "xdp-native (agent)", "{capture}");
    assert_eq!(capture["program"], "agent");
    assert_eq!(pinned_ports(&pin_dir), steered_ports(port), "serve registered its ports in the agent's map");
    let stats = serve.get("/api/v1/stats");
    assert_eq!(stats["capture"]["summary"], "xdp-native (agent)", "{stats}");
    assert_eq!(stats["capture"]["program"], "agent");
    let redirected_before = pinned_counter(&pin_dir, XdpReason::Redirected);
    let sender = Sender::start(&rig, port, "firstserveword");
    let stored = serve.wait_for_stored("firstserveword", 200);
    assert!(stored >= 200, "syslog through AF_XDP is stored and queryable: {stored}");
    assert!(
        pinned_counter(&pin_dir, XdpReason::Redirected) >= redirected_before + 200,
        "the agent's program redirected to serve's socket"
    );
    let stats = serve.get("/api/v1/stats");
    assert!(stats["xdp"]["syslog"]["redirected"].as_u64().unwrap() >= 200, "{stats}");

    // 2. SIGKILL while traffic flows: the program stays, the kernel path takes the port.
    serve.kill();
    let passed_at_kill = pinned_counter(&pin_dir, XdpReason::PassedNoSocket);
    let kernel_socket = bind_once_released(port);
    let received = receive(&kernel_socket, 100, Duration::from_secs(10));
    assert_eq!(received, 100, "the kernel path receives with no AF_XDP socket registered");
    assert!(xdp_on_interface(&rig.appliance, &rig.appliance_if), "the agent's program is still attached");
    assert!(pinned_counter(&pin_dir, XdpReason::PassedNoSocket) >= passed_at_kill + 100);
    drop(kernel_socket);

    // 3. Restarted, serve registers again and AF_XDP receives again.
    let mut serve = Serve::start(&killkrill, &temp.path().join("data2"), &serve_config, port);
    assert_eq!(serve.capture_line()["summary"], "xdp-native (agent)");
    let redirected_at_restart = pinned_counter(&pin_dir, XdpReason::Redirected);
    sender.switch_to("secondserveword");
    let stored = serve.wait_for_stored("secondserveword", 200);
    assert!(stored >= 200, "AF_XDP receives after the restart: {stored}");
    assert!(pinned_counter(&pin_dir, XdpReason::Redirected) >= redirected_at_restart + 200);

    // The port stays at a clean stop: the killed serve added it, this one found it.
    assert_eq!(pinned_ports(&pin_dir), steered_ports(port));

    // 4. The agent restarts with detach: pins and program go, serve's socket listener takes
    // the traffic; the new agent makes new maps and serve registers in them by itself.
    let (status, _) = agent.terminate();
    assert!(status.success());
    assert!(!pin_dir.exists());
    sender.switch_to("noagentword");
    assert!(serve.wait_for_stored("noagentword", 100) >= 100, "the kernel path stores while no agent runs");
    let mut agent = AgentProcess::start(&agent_config.path);
    agent.wait_for_log("XDP attached.", Duration::from_secs(5)).expect("the new agent attaches");
    serve
        .wait_for_log(
            "The node agent's XDP maps were made anew; our AF_XDP sockets are registered in them again.",
        )
        .expect("serve registers in the new maps");
    sender.switch_to("newagentword");
    let redirected_before = pinned_counter(&pin_dir, XdpReason::Redirected);
    assert!(serve.wait_for_stored("newagentword", 200) >= 200, "AF_XDP receives in the new maps");
    assert!(pinned_counter(&pin_dir, XdpReason::Redirected) >= redirected_before + 200);
    assert_eq!(pinned_ports(&pin_dir), steered_ports(port), "serve added its port to the new maps");
    assert_eq!(serve.get("/api/v1/stats")["capture"]["summary"], "xdp-native (agent)");

    // 5. A clean stop takes serve's socket out of the map before it closes: what follows
    // is passed to the kernel; the port serve added to these maps goes too.
    assert!(serve.terminate().success());
    assert_eq!(pinned_ports(&pin_dir), Vec::<u16>::new(), "serve removed the port it added");
    let kernel_socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
    assert_eq!(receive(&kernel_socket, 50, Duration::from_secs(10)), 50, "the kernel path receives");
    drop(sender);

    // The agent detaches and removes every pin; nothing is left behind.
    let (status, _) = agent.terminate();
    assert!(status.success());
    assert!(!pin_dir.exists(), "the pins are gone");
    assert!(!xdp_on_interface(&rig.appliance, &rig.appliance_if));
    drop(inside);
}
