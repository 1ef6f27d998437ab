//! What the rig measures: the Killkrill appliance and the peers (rsyslog, syslog-ng), each
//! started pinned to the receiver CPU, bound to the rig's host address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::Binaries;
use super::process::Managed;
use crate::setup::{PEERS, PEERS_ROOT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Rsyslog,
    SyslogNg,
}

impl Peer {
    pub fn named(name: &str) -> anyhow::Result<Self> {
        match name {
            "rsyslog" => Ok(Peer::Rsyslog),
            "syslog-ng" => Ok(Peer::SyslogNg),
            other => bail!("unknown peer {other:?}: rsyslog or syslog-ng"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Peer::Rsyslog => "rsyslog",
            Peer::SyslogNg => "syslog-ng",
        }
    }

    fn root(self) -> PathBuf {
        Path::new(PEERS_ROOT).join(self.name())
    }

    /// Why this peer cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        let (_, package, daemon) = PEERS.iter().find(|(peer, _, _)| *peer == self.name())?;
        (!self.root().join(daemon).is_file()).then(|| {
            format!(
                "{} is not unpacked in {PEERS_ROOT} (package {package}); run `cargo xtask setup`",
                self.name()
            )
        })
    }
}

/// Where Killkrill's threads run on the rig (`--killkrill-layout`, ADR 0040).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// The whole process on the receiver CPU (`taskset -c <receiver>`), as the peers run:
    /// data plane, batch writer, block compression and SQLite share one core.
    Shared,
    /// The data plane on the receiver CPU (`dataplane.cores = "<receiver>"`) and the
    /// control plane on the sender CPU beside the sender (`taskset -c <receiver>,<sender>`):
    /// the one data-plane core with the store elsewhere.
    Split,
}

impl Layout {
    pub fn label(self) -> &'static str {
        match self {
            Layout::Shared => "shared",
            Layout::Split => "split",
        }
    }
}

/// Who receives the load in one run.
#[derive(Clone, Copy, Debug)]
pub enum Receiver {
    Killkrill(Layout),
    Peer(Peer),
}

impl Receiver {
    pub fn name(self) -> &'static str {
        match self {
            Receiver::Killkrill(_) => "killkrill",
            Receiver::Peer(peer) => peer.name(),
        }
    }
}

/// A receiver running for one measurement.
pub struct RunningReceiver {
    pub receiver: Receiver,
    pub process: Managed,
    pub address: SocketAddr,
    /// Killkrill's API, for its counters.
    pub api: Option<SocketAddr>,
    /// A viewer API key for Killkrill's API (made at start from a throwaway admin).
    pub api_token: Option<String>,
    /// Killkrill's data directory, or the peer's output file.
    pub storage: PathBuf,
    _workdir: PathBuf,
}

/// Per-scenario knobs a receiver's configuration depends on.
pub struct ReceiverSettings {
    /// RFC 5424 input (syslog-ng must be told; it reads RFC 3164 otherwise).
    pub rfc5424: bool,
    /// Octet-counted TCP framing (syslog-ng must be told; rsyslog and Killkrill detect it).
    pub octet_counted: bool,
    /// Killkrill's `capture.mode`, and the interface XDP attaches to.
    pub capture_mode: String,
    pub interface: String,
    /// `statsd` or `influx`: Killkrill listens for that protocol on the address instead of
    /// syslog.
    pub metrics: Option<&'static str>,
}

/// The rig's two CPUs: the receiver's and the sender's.
#[derive(Clone, Copy, Debug)]
pub struct RigCpus {
    pub receiver: usize,
    pub sender: usize,
}

pub fn start(
    receiver: Receiver,
    host: Ipv4Addr,
    cpus: RigCpus,
    binaries: &Binaries,
    workdir: &Path,
    settings: &ReceiverSettings,
) -> anyhow::Result<RunningReceiver> {
    std::fs::create_dir_all(workdir)?;
    let port = free_port(host)?;
    let address = SocketAddr::from((host, port));
    let mut command = Command::new("taskset");
    let allowed = match receiver {
        Receiver::Killkrill(Layout::Split) => format!("{},{}", cpus.receiver, cpus.sender),
        _ => cpus.receiver.to_string(),
    };
    command.args(["-c", &allowed]);
    match receiver {
        Receiver::Killkrill(_) => {
            let data_dir = workdir.join("data");
            let on = address.to_string();
            // Only the scenario's listener: the defaults would bind the conventional ports.
            let (syslog, statsd, influx) = match settings.metrics {
                Some("statsd") => ("off", on.as_str(), "off"),
                Some(_) => ("off", "off", on.as_str()),
                None => (on.as_str(), "off", "off"),
            };
            command
                .arg(&binaries.killkrill)
                .arg("serve")
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "off"])
                .args(["--syslog-udp", syslog, "--syslog-tcp", syslog])
                .args(["--statsd-udp", statsd, "--influx-udp", influx])
                // The data plane on the receiver CPU in both layouts; the control plane gets
                // the rest of what taskset allows (itself, when that is the one CPU).
                .args(["--dataplane-cores", &cpus.receiver.to_string()])
                // Short intervals: points reach the store within the run.
                .args(["--metrics-flush-interval-ms", "1000"])
                .env("LOG_LEVEL", "warn,killkrill::server=info")
                // A throwaway first admin in the run's own data directory, on loopback.
                .env("KILLKRILL_ADMIN_PASSWORD", BENCH_ADMIN_PASSWORD)
                .env("KILLKRILL_CAPTURE__MODE", &settings.capture_mode)
                .stdout(Stdio::piped());
            if settings.capture_mode != "socket" {
                command.env("KILLKRILL_CAPTURE__INTERFACE", &settings.interface);
            }
            let mut process = Managed::spawn("killkrill", &mut command)?;
            let api = wait_for_killkrill(&mut process)?;
            let api_token = Some(viewer_api_key(api).context("cannot make an API key for the bench")?);
            Ok(RunningReceiver {
                receiver,
                process,
                address,
                api: Some(api),
                api_token,
                storage: data_dir,
                _workdir: workdir.into(),
            })
        }
        Receiver::Peer(peer) => {
            let output = workdir.join(format!("{}.out", peer.name()));
            let config = render_peer_config(peer, address, &output, workdir, settings)?;
            let root = peer.root();
            match peer {
                Peer::Rsyslog => {
                    command
                        .arg(root.join("usr/sbin/rsyslogd"))
                        .args(["-n", "-f"])
                        .arg(&config)
                        .arg("-i")
                        .arg(workdir.join("rsyslogd.pid"))
                        .arg("-M")
                        .arg(root.join("usr/lib/x86_64-linux-gnu/rsyslog"));
                }
                Peer::SyslogNg => {
                    command
                        .env(
                            "LD_LIBRARY_PATH",
                            format!("{0}/usr/lib/syslog-ng:{0}/usr/lib/x86_64-linux-gnu", root.display()),
                        )
                        .arg(root.join("usr/sbin/syslog-ng"))
                        .args(["-F", "-f"])
                        .arg(&config)
                        .arg(format!("--module-path={}", root.join("usr/lib/syslog-ng/3.38").display()))
                        .arg(format!("--persist-file={}", workdir.join("syslog-ng.persist").display()))
                        .arg(format!("--pidfile={}", workdir.join("syslog-ng.pid").display()))
                        .arg(format!("--control={}", workdir.join("syslog-ng.ctl").display()));
                }
            }
            command
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(workdir.join("peer.log"))?));
            let mut process = Managed::spawn(peer.name(), &mut command)?;
            wait_for_tcp(&mut process, address)?;
            Ok(RunningReceiver {
                receiver,
                process,
                address,
                api: None,
                api_token: None,
                storage: output,
                _workdir: workdir.into(),
            })
        }
    }
}

/// A port free for both UDP and TCP on `host` (the rig's private address).
fn free_port(host: Ipv4Addr) -> anyhow::Result<u16> {
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind((host, 0))?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind((host, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on {host}")
}

fn wait_for_killkrill(process: &mut Managed) -> anyhow::Result<SocketAddr> {
    let stdout = process.child_mut().stdout.take().context("killkrill stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut api = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if value["message"] == "API listening." {
                api = value["address"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
            }
            if value["message"] == "Killkrill is ready." {
                let _ = sender.send(api);
            }
        }
    });
    match receiver.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(api)) => Ok(api),
        _ => bail!("killkrill did not report ready within 30 s"),
    }
}

fn wait_for_tcp(process: &mut Managed, address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if !process.is_running() {
            bail!("{} exited at start; see its peer.log", process.name);
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not listen on {address} within 15 s", process.name)
}

fn render_peer_config(
    peer: Peer,
    address: SocketAddr,
    output: &Path,
    workdir: &Path,
    settings: &ReceiverSettings,
) -> anyhow::Result<PathBuf> {
    let template_path =
        crate::util::workspace_root().join("perf/peers").join(format!("{}.conf", peer.name()));
    let template =
        std::fs::read_to_string(&template_path).with_context(|| format!("{}", template_path.display()))?;
    let rendered = template
        .replace("@ADDRESS@", &address.ip().to_string())
        .replace("@PORT@", &address.port().to_string())
        .replace("@OUTPUT@", &output.display().to_string())
        .replace("@WORKDIR@", &workdir.display().to_string())
        // One receiver core, as for Killkrill.
        .replace("@THREADS@", "1")
        .replace("@FLAGS@", if settings.rfc5424 { "syslog-protocol" } else { "no-multi-line" })
        .replace("@TCP_TRANSPORT@", if settings.octet_counted { "framed" } else { "tcp" });
    let path = workdir.join(format!("{}.conf", peer.name()));
    std::fs::write(&path, rendered)?;
    Ok(path)
}

impl RunningReceiver {
    /// Messages this receiver has stored so far.
    pub fn stored_messages(&self) -> anyhow::Result<u64> {
        match self.receiver {
            Receiver::Killkrill(_) => Ok(self.killkrill_metric("killkrill_store_messages_total")?),
            Receiver::Peer(_) => {
                let file = match std::fs::File::open(&self.storage) {
                    Ok(file) => file,
                    Err(_) => return Ok(0),
                };
                let mut count = 0u64;
                let mut buffer = vec![0u8; 1 << 20];
                let mut reader = BufReader::new(file);
                loop {
                    let read = reader.read(&mut buffer)?;
                    if read == 0 {
                        break;
                    }
                    count += buffer[..read].iter().filter(|&&byte| byte == b'\n').count() as u64;
                }
                Ok(count)
            }
        }
    }

    /// Sum of a Killkrill counter over its label sets, from /metrics.
    /// The capture path Killkrill reports in `/api/v1/stats` (`socket`, `xdp-native`, ...).
    pub fn killkrill_capture(&self) -> anyhow::Result<String> {
        let api = self.api.context("not Killkrill")?;
        let text = http_get(api, "/api/v1/stats", self.api_token.as_deref())?;
        let body = text.split_once("\r\n\r\n").map_or(text.as_str(), |(_, body)| body);
        let stats: serde_json::Value = serde_json::from_str(body).context("/api/v1/stats is not JSON")?;
        stats["capture"]["path"].as_str().map(str::to_owned).context("/api/v1/stats has no capture path")
    }

    pub fn killkrill_metric(&self, name: &str) -> anyhow::Result<u64> {
        self.killkrill_metric_with(name, "")
    }

    /// Sum of a Killkrill counter over the label sets whose line contains `label_text`.
    pub fn killkrill_metric_with(&self, name: &str, label_text: &str) -> anyhow::Result<u64> {
        let api = self.api.context("not Killkrill")?;
        let text = http_get(api, "/metrics", None)?;
        Ok(text
            .lines()
            .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
            .filter(|line| line.contains(label_text))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|value| value as u64)
            .sum())
    }
}

/// The first admin's password of the appliance the bench starts (loopback, throwaway data).
const BENCH_ADMIN_PASSWORD: &str = "bench-admin-password";

/// A minimal HTTP/1.1 GET against the appliance on loopback (xtask has no HTTP client),
/// with `Authorization: Bearer <token>` when given; the body of a 2xx answer.
pub fn http_get(address: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<String> {
    let (status, body) = http_request(address, "GET", path, token, None)?;
    anyhow::ensure!((200..300).contains(&status), "GET {path} answered {status}: {body}");
    Ok(body)
}

/// Same for any method and an optional JSON body; the status and the body.
fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization = token.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    let body = body.map(serde_json::Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{authorization}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).context("no HTTP status")?;
    Ok((status, body.to_owned()))
}

/// Logs in as the bench's admin and makes a viewer API key (it does not expire mid-run as
/// an access token would).
fn viewer_api_key(api: SocketAddr) -> anyhow::Result<String> {
    let login = serde_json::json!({ "username": "admin", "password": BENCH_ADMIN_PASSWORD });
    let (status, body) = http_request(api, "POST", "/api/v1/auth/login", None, Some(&login))?;
    anyhow::ensure!(status == 200, "login answered {status}: {body}");
    let session: serde_json::Value = serde_json::from_str(&body)?;
    let access = session["access_token"].as_str().context("no access_token")?;
    let request = serde_json::json!({ "name": "bench", "role": "viewer" });
    let (status, body) = http_request(api, "POST", "/api/v1/api-keys", Some(access), Some(&request))?;
    anyhow::ensure!(status == 201, "API key creation answered {status}: {body}");
    let created: serde_json::Value = serde_json::from_str(&body)?;
    created["key"].as_str().map(str::to_owned).context("no key")
}
