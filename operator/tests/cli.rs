//! The binary: `--version`, `crd`, and `run` serving /health, /ready and /metrics with
//! JSON logs even while the Kubernetes API is unreachable.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_killkrill-operator");

#[test]
fn version_comes_from_the_version_file() {
    let output = Command::new(BINARY).arg("--version").output().expect("run --version");
    let version =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.version")).expect(".version");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("killkrill-operator {}", version.trim())
    );
}

#[test]
fn crd_prints_yaml_of_the_ingestor_crd() {
    let output = Command::new(BINARY).arg("crd").output().expect("run crd");
    assert!(output.status.success());
    let crd: serde_json::Value = serde_yaml::from_slice(&output.stdout).expect("YAML");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["spec"]["names"]["kind"], "Ingestor");
}

/// Ends the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
        .expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status code");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn run_serves_health_ready_and_metrics_while_the_api_is_unreachable() {
    let directory = tempfile::tempdir().expect("temporary directory");
    // A cluster nobody listens on (port 1 on loopback refuses at once).
    let kubeconfig = directory.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: nowhere\n  context:\n    cluster: nowhere\n    user: nobody\n\
         current-context: nowhere\nusers:\n- name: nobody\n  user: {}\n",
    )
    .expect("write kubeconfig");
    // No subcommand: `run` is the default (the image's entrypoint is the bare binary).
    let mut child = Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start killkrill-operator run");
    let stdout = child.stdout.take().expect("stdout");
    let mut running = Running(child);

    // The port is read back from the JSON log line "API listening.".
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut address = None;
    let mut lines = BufReader::new(stdout).lines();
    while address.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let log: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert_eq!(log["service"], "killkrill-operator");
        assert!(log["timestamp"].is_string() && log["level"].is_string());
        if log["message"] == "API listening." {
            address = log["address"].as_str().map(str::to_string);
        }
    }
    let address = address.expect("the operator logs the API address");

    let (status, body) = get(&address, "/health");
    assert_eq!(status, 200, "liveness stays up while the API is unreachable");
    let health: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["service"], "killkrill-operator");
    assert_eq!(health["checks"]["kubernetes"]["status"], "error");

    let (status, body) = get(&address, "/ready");
    assert_eq!(status, 503);
    let ready: serde_json::Value = serde_json::from_str(&body).expect("ready JSON");
    assert_eq!(ready["ready"], false);

    let (status, metrics) = get(&address, "/metrics");
    assert_eq!(status, 200);
    for series in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_active",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics:\n{metrics}");
    }
    assert!(metrics.contains("endpoint=\"/health\""), "requests are counted by route");

    // Why nothing happens is in the log: the failing watch, at warn.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut warned = false;
    while !warned && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let log: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        warned = log["level"] == "warn" && log["message"] == "Watch failed; retrying.";
    }
    assert!(warned, "a failing watch is logged at warn");

    // SIGTERM stops it, even with its watches stuck retrying.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    let pid = libc::pid_t::try_from(running.0.id()).expect("pid");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("killkrill-operator stops within 20 s of SIGTERM");
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}

#[test]
fn a_bad_metrics_address_exits_with_status_2() {
    let output = Command::new(BINARY)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "nonsense",
            "--kubeconfig",
            "/nonexistent",
        ])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).contains("--metrics-listen"));
}
