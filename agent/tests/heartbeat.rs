//! The agent's heartbeat reaches a real `killkrill serve` and shows in `GET /api/v1/nodes`,
//! marked stale once it stops; a bad configuration stops the agent with the key named.
//! No root needed: the agent runs with `capture_mode = "socket"`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{AGENT, AgentProcess, ConfigFile, http, http_as, wait_for};

const ADMIN_PASSWORD: &str = "agent-test-admin-password";

/// `killkrill serve` on loopback, its API address read from its log, with an admin made
/// from KILLKRILL_ADMIN_PASSWORD and a maintainer API key for the agent.
struct ControlPlane {
    child: Child,
    api: std::net::SocketAddr,
    /// A maintainer API key.
    key: String,
}

impl ControlPlane {
    fn start(data_dir: &std::path::Path) -> Option<Self> {
        // Built beside the agent by `cargo build -p killkrill` (docs/agent.md, Tests).
        let binary = PathBuf::from(AGENT).with_file_name("killkrill");
        if !binary.exists() {
            return None;
        }
        let mut child = Command::new(binary)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "off"])
            .args(["--syslog-udp", "off", "--syslog-tcp", "off"])
            .env("LOG_LEVEL", "info")
            .env("KILLKRILL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start killkrill");
        let stdout = child.stdout.take().unwrap();
        let mut api = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if line["message"] == "API listening." {
                api = line["address"].as_str().and_then(|a| a.parse().ok());
            }
            if line["message"] == "Killkrill is ready." {
                break;
            }
        }
        let api = api.expect("the API address in the log");
        let login = json!({ "username": "admin", "password": ADMIN_PASSWORD });
        let (status, body) = http(api, "POST", "/api/v1/auth/login", Some(&login));
        assert_eq!(status, 200, "{body}");
        let access: Value = serde_json::from_str(&body).unwrap();
        let access = access["access_token"].as_str().unwrap();
        let request = json!({ "name": "agents", "role": "maintainer" });
        let (status, body) = http_as(api, "POST", "/api/v1/api-keys", Some(&request), Some(access));
        assert_eq!(status, 201, "{body}");
        let created: Value = serde_json::from_str(&body).unwrap();
        Some(Self { child, api, key: created["key"].as_str().unwrap().to_owned() })
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(control_plane: &ControlPlane, name: &str) -> Option<Value> {
    let (status, body) = http_as(control_plane.api, "GET", "/api/v1/nodes", None, Some(&control_plane.key));
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    list["nodes"].as_array().unwrap().iter().find(|node| node["node_name"] == name).cloned()
}

#[test]
fn heartbeats_list_the_node_and_it_goes_stale_when_they_stop() {
    let temp = tempfile::tempdir().unwrap();
    let Some(control_plane) = ControlPlane::start(&temp.path().join("data")) else {
        eprintln!("skipped: no killkrill binary beside the agent (run `cargo build -p killkrill` first)");
        return;
    };
    let config = ConfigFile::new(temp.path());
    config.write(&format!(
        "capture_mode = \"socket\"\nhealth_listen = \"127.0.0.1:0\"\nnode_name = \"node-hb\"\n\
         control_plane_url = \"http://{}\"\nheartbeat_interval = \"200ms\"\napi_key = \"{}\"\n",
        control_plane.api, control_plane.key
    ));
    let agent = AgentProcess::start(&config.path);
    wait_for("the node in /api/v1/nodes", || node(&control_plane, "node-hb").is_some());
    let listed = node(&control_plane, "node-hb").unwrap();
    assert_eq!(listed["status"], "up", "{listed}");
    assert_eq!(listed["capture_mode"], "socket");
    assert_eq!(listed["attach_mode"], Value::Null);
    assert_eq!(listed["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(listed["heartbeat_interval_seconds"], 0.2);
    assert!(listed["last_seen"].as_str().unwrap().ends_with('Z'), "{listed}");

    let (status, body) = http(agent.health, "GET", "/health", None);
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["service"], "killkrill-agent");

    let (exit, _) = agent.terminate();
    assert!(exit.success(), "{exit}");
    // Three missed 200 ms intervals.
    wait_for("the node to go stale", || node(&control_plane, "node-hb").unwrap()["status"] == "stale");

    let (status, body) = http_as(
        control_plane.api,
        "POST",
        "/api/v1/nodes/heartbeat",
        Some(&json!({"node_name": ""})),
        Some(&control_plane.key),
    );
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
}

#[test]
fn an_unreachable_control_plane_degrades_health_but_the_agent_runs() {
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());
    // Port 1 on loopback: nothing listens there.
    config.write(
        "capture_mode = \"socket\"\nhealth_listen = \"127.0.0.1:0\"\ncontrol_plane_url = \"http://127.0.0.1:1\"\n\
         heartbeat_interval = \"100ms\"\n",
    );
    let mut agent = AgentProcess::start(&config.path);
    assert!(
        agent.wait_for_log("Heartbeat failed; retrying every interval.", Duration::from_secs(5)).is_some()
    );
    let (status, body) = http(agent.health, "GET", "/health", None);
    assert_eq!(status, 200, "liveness stays 200 while degraded");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["control_plane"]["status"], "error");
    let (_, metrics) = http(agent.health, "GET", "/metrics", None);
    assert!(
        super::harness::sample(&metrics, "killkrill_agent_heartbeats_total{result=\"error\"}").unwrap() >= 1,
        "{metrics}"
    );
    assert_eq!(
        agent.count_logs("Heartbeat failed; retrying every interval."),
        1,
        "logged once, not per beat"
    );
}

#[test]
fn a_bad_configuration_stops_the_agent_with_the_key_named() {
    let temp = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(temp.path());
    config.write("capture_mode = \"socket\"\ndeny = [\"10.0.0.0/40\"]\n");
    let output = Command::new(AGENT).env("KILLKRILL_AGENT_CONFIG", &config.path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let line: Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["error"].as_str().unwrap().contains("deny"), "{line}");
    assert!(line["error"].as_str().unwrap().contains("10.0.0.0/40"), "{line}");
}

#[test]
fn a_heartbeat_without_an_api_key_is_refused_and_says_which_setting() {
    let temp = tempfile::tempdir().unwrap();
    let Some(control_plane) = ControlPlane::start(&temp.path().join("data")) else {
        eprintln!("skipped: no killkrill binary beside the agent (run `cargo build -p killkrill` first)");
        return;
    };
    let config = ConfigFile::new(temp.path());
    config.write(&format!(
        "capture_mode = \"socket\"\nhealth_listen = \"127.0.0.1:0\"\nnode_name = \"node-nokey\"\n\
         control_plane_url = \"http://{}\"\nheartbeat_interval = \"100ms\"\n",
        control_plane.api
    ));
    let mut agent = AgentProcess::start(&config.path);
    let line = agent
        .wait_for_log("Heartbeat failed; retrying every interval.", Duration::from_secs(5))
        .expect("the refusal is logged");
    let error = line["error"].as_str().unwrap();
    assert!(error.contains("401") && error.contains("KILLKRILL_API_KEY"), "{line}");
    assert!(node(&control_plane, "node-nokey").is_none());
}
