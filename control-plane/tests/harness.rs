//! Starts the real binary and finds its ports in its JSON log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_killkrill");
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The first admin's password the harness starts every appliance with.
pub const ADMIN_PASSWORD: &str = "harness-admin-password";

/// A running `killkrill serve`, stopped (SIGKILL) when dropped if still running.
pub struct Appliance {
    child: Child,
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    /// Listener label → bound address.
    pub listeners: HashMap<String, SocketAddr>,
    /// Capture path per listener label.
    pub captures: HashMap<String, String>,
    /// `http` or `https`, as the API said when it started.
    pub scheme: String,
    /// An admin API key the harness made at start (None when started without an admin):
    /// every helper request sends it.
    pub token: Option<String>,
    /// Every log line seen so far, and the ones still coming.
    pub log_lines: Vec<Value>,
    log_receiver: mpsc::Receiver<Value>,
    _temp: Option<tempfile::TempDir>,
}

impl Appliance {
    /// Starts with a fresh temporary data directory and every port chosen by the kernel.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temporary directory");
        let data_dir = temp.path().join("data");
        let mut appliance = Self::start_in(&data_dir, &[]);
        appliance._temp = Some(temp);
        appliance
    }

    /// Starts on `data_dir` with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// Starts on `data_dir` with extra `serve` arguments and environment variables. The
    /// first admin is `admin` with [`ADMIN_PASSWORD`] unless `env` sets
    /// KILLKRILL_ADMIN_PASSWORD (empty: no admin, no token); with an admin, the harness
    /// logs in and makes an admin API key that its helpers send.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BINARY);
        command.env("KILLKRILL_ADMIN_PASSWORD", ADMIN_PASSWORD);
        command.envs(env.iter().copied());
        command
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"])
            .args(["--statsd-udp", "127.0.0.1:0", "--influx-udp", "127.0.0.1:0"])
            .args(extra)
            .env("LOG_LEVEL", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start killkrill");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, log_receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        let mut appliance = Self {
            child,
            api: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            listeners: HashMap::new(),
            captures: HashMap::new(),
            scheme: "http".to_owned(),
            token: None,
            log_lines: Vec::new(),
            log_receiver,
            _temp: None,
        };
        let ready = appliance.wait_for_log("Killkrill is ready.", START_TIMEOUT);
        assert!(ready.is_some(), "killkrill did not start; log so far: {:#?}", appliance.log_lines);
        for line in &appliance.log_lines {
            let address = || line["address"].as_str().and_then(|a| a.parse().ok());
            match line["message"].as_str() {
                Some("API listening.") => {
                    appliance.api = address().expect("api address");
                    appliance.scheme = line["scheme"].as_str().unwrap_or("http").to_owned();
                }
                Some("Metrics listening.") => appliance.metrics = address().expect("metrics address"),
                Some("Listener started.") => {
                    let label = line["listener"].as_str().expect("listener label").to_owned();
                    appliance
                        .captures
                        .insert(label.clone(), line["capture"].as_str().unwrap_or("").to_owned());
                    appliance.listeners.insert(label, address().expect("listener address"));
                }
                _ => {}
            }
        }
        let password = env
            .iter()
            .rev()
            .find(|(name, _)| *name == "KILLKRILL_ADMIN_PASSWORD")
            .map_or(ADMIN_PASSWORD, |(_, value)| *value);
        let username =
            env.iter().rev().find(|(name, _)| *name == "KILLKRILL_ADMIN_USER").map_or("admin", |(_, v)| *v);
        if !password.is_empty() && appliance.scheme == "http" && appliance.api.port() != 0 {
            let access = appliance.login(username, password);
            appliance.token = Some(appliance.create_api_key_with(&access, "harness", "admin"));
        }
        appliance
    }

    /// The appliance's process id (for reading its threads under /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Logs in and returns the access token; panics unless the login succeeds.
    pub fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self.login_answer(username, password);
        assert_eq!(status, 200, "login as {username}: {body}");
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    /// The status and body of a login attempt.
    pub fn login_answer(&self, username: &str, password: &str) -> (u16, Value) {
        let response = reqwest::blocking::Client::new()
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .expect("POST /api/v1/auth/login");
        let status = response.status().as_u16();
        (status, response.json().expect("JSON body"))
    }

    /// Makes an API key with `role` using the `bearer` credentials; returns the key.
    pub fn create_api_key_with(&self, bearer: &str, name: &str, role: &str) -> String {
        let response = reqwest::blocking::Client::new()
            .post(self.url("/api/v1/api-keys"))
            .bearer_auth(bearer)
            .json(&serde_json::json!({ "name": name, "role": role }))
            .send()
            .expect("POST /api/v1/api-keys");
        let status = response.status().as_u16();
        let body: Value = response.json().expect("JSON body");
        assert_eq!(status, 201, "create API key: {body}");
        body["key"].as_str().expect("key").to_owned()
    }

    /// A client that sends the harness's admin API key with every request.
    pub fn client(&self) -> reqwest::blocking::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header value"),
            );
        }
        reqwest::blocking::Client::builder().default_headers(headers).build().expect("HTTP client")
    }

    /// Keeps `temp` (the data directory's parent) until the appliance is dropped.
    pub fn keeping(mut self, temp: tempfile::TempDir) -> Self {
        self._temp = Some(temp);
        self
    }

    /// Keeps the temporary directory alive as long as the appliance.
    pub fn keep_temp(&mut self, temp: tempfile::TempDir) {
        self._temp = Some(temp);
    }

    /// Waits for a log line whose message is `message`, collecting lines meanwhile.
    pub fn wait_for_log(&mut self, message: &str, timeout: Duration) -> Option<Value> {
        if let Some(line) = self.log_lines.iter().find(|l| l["message"] == message) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log_receiver.recv_timeout(left) {
                Ok(line) => {
                    let found = line["message"] == message;
                    self.log_lines.push(line.clone());
                    if found {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    pub fn listener(&self, label: &str) -> SocketAddr {
        self.listeners[label]
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.api)
    }

    /// GET with the harness's admin API key.
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client().get(self.url(path)).send().expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().expect("JSON body"))
    }

    /// POSTs `body` with `content_type` and the harness's admin API key; the status and
    /// the JSON answer (null when none).
    pub fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::blocking::Body>,
    ) -> (u16, Value) {
        let response = self
            .client()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// The value of one series in /metrics (name with labels, as written there); 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = reqwest::blocking::get(format!("http://{}/metrics", self.metrics))
            .expect("GET /metrics")
            .text()
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Searches logs until `expected` rows match or the timeout passes.
    pub fn wait_for_logs(&self, query: &str, expected: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.get_json(&format!("/api/v1/logs?{query}"));
            assert_eq!(status, 200, "{body}");
            let logs = body["logs"].as_array().cloned().unwrap_or_default();
            if logs.len() >= expected || Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Keep the rest of the log for assertions by the caller if needed.
                while let Ok(line) = self.log_receiver.try_recv() {
                    self.log_lines.push(line);
                }
                return status;
            }
            assert!(Instant::now() < deadline, "killkrill did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs logger(1) against a port; panics with its stderr when it fails.
pub fn logger(args: &[&str], message: &str) {
    let output =
        Command::new("logger").args(args).arg(message).output().expect("logger(1) is installed by setup");
    assert!(output.status.success(), "logger failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Writes, in `dir`, a config file that captures with XDP on `interface` (a veth rig's
/// appliance side), and returns its path for `--config`.
pub fn xdp_config(dir: &Path, interface: &str) -> PathBuf {
    let config = dir.join("killkrill.toml");
    std::fs::write(&config, format!("[capture]\nmode = \"xdp\"\ninterface = \"{interface}\"\n")).unwrap();
    config
}
