//! Starts the agent binary with a config file and reads its JSON log; a bare HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const AGENT: &str = env!("CARGO_BIN_EXE_killkrill-agent");

/// A running agent; SIGKILLed on drop if still running.
pub struct AgentProcess {
    child: Child,
    pub health: SocketAddr,
    pub log_lines: Vec<Value>,
    log_receiver: mpsc::Receiver<Value>,
}

impl AgentProcess {
    /// Starts with `KILLKRILL_AGENT_CONFIG=config` and waits for "Agent started.".
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(AGENT)
            .env("KILLKRILL_AGENT_CONFIG", config)
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start killkrill-agent");
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
        let mut agent =
            Self { child, health: SocketAddr::from(([0, 0, 0, 0], 0)), log_lines: Vec::new(), log_receiver };
        let started = agent.wait_for_log("Agent started.", Duration::from_secs(20));
        let started = started.unwrap_or_else(|| panic!("the agent did not start: {:#?}", agent.log_lines));
        agent.health = started["address"].as_str().and_then(|a| a.parse().ok()).expect("health address");
        agent
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The first log line (seen or to come) with this message.
    pub fn wait_for_log(&mut self, message: &str, timeout: Duration) -> Option<Value> {
        if let Some(line) = self.log_lines.iter().find(|line| line["message"] == message) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log_receiver.recv_timeout(left) {
                Ok(line) => {
                    self.log_lines.push(line.clone());
                    if line["message"] == message {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// How many log lines with this message were seen (after draining what arrived).
    pub fn count_logs(&mut self, message: &str) -> usize {
        while let Ok(line) = self.log_receiver.try_recv() {
            self.log_lines.push(line);
        }
        self.log_lines.iter().filter(|line| line["message"] == message).count()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on the pid of our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, Vec<Value>) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.log_receiver.recv_timeout(Duration::from_millis(200)) {
                    self.log_lines.push(line);
                }
                return (status, std::mem::take(&mut self.log_lines));
            }
            assert!(Instant::now() < deadline, "the agent did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory in bytes (VmRSS).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("VmRSS");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection made by the calling thread (so it goes
/// out of the namespace the thread is in); returns the status and the body.
pub fn http(address: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    http_as(address, method, path, body, None)
}

/// Same, with `Authorization: Bearer <bearer>` when given.
pub fn http_as(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    bearer: Option<&str>,
) -> (u16, String) {
    let authorization = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("status");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        unchunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The value of one Prometheus sample line (`name{labels}`), if present.
pub fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Waits for `done`, polling; panics after 10 s naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config file in a temporary folder, rewritten at will.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(directory: &Path) -> Self {
        Self { path: directory.join("agent.toml") }
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write the config");
    }
}
