//! Real database servers for tests: a throw-away PostgreSQL cluster and redis-server on
//! free ports, from Debian's packages (installed by `cargo xtask setup`), stopped by PID
//! on drop.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Debian installs each major version under /usr/lib/postgresql/<major>/bin.
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run `cargo xtask setup`")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    found.sort();
    found.pop().expect("no /usr/lib/postgresql/*/bin/postgres: run `cargo xtask setup`")
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (PostgreSQL refuses to
/// run as root), as ourselves otherwise. The child is the tool itself, so its PID is the
/// server's.
fn as_postgres_user(program: &Path) -> Command {
    let mut command = Command::new(program);
    if is_root() {
        let (uid, gid) = postgres_user();
        command.uid(uid).gid(gid);
    }
    command
}

fn postgres_user() -> (u32, u32) {
    // SAFETY: getpwnam with a NUL-terminated name; the record is read before any other
    // call that could overwrite it.
    unsafe {
        let record = libc::getpwnam(c"postgres".as_ptr());
        assert!(!record.is_null(), "no `postgres` user: run `cargo xtask setup`");
        ((*record).pw_uid, (*record).pw_gid)
    }
}

pub struct PostgresServer {
    child: Option<Child>,
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new().prefix("killkrill-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the test cluster failed");
        }
        let output = as_postgres_user(&bin.join("initdb"))
            .args(["--auth=trust", "--username=killkrill", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        let port = free_port();
        let mut server =
            Self { child: None, url: format!("postgres://killkrill@127.0.0.1:{port}/postgres"), port, dir };
        server.restart();
        server
    }

    /// Starts the server (again) on the same files and port, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = postgres_bin_dir();
        let port = self.port.to_string();
        let child = as_postgres_user(&bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &port, "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected), keeping its files.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SIGINT is PostgreSQL's "fast shutdown"; then reap it.
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A fresh database on this server, so tests sharing a server do not see each other.
    pub fn create_database(&self, name: &str) -> String {
        let bin = postgres_bin_dir();
        let status = Command::new(bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "killkrill", name])
            .status()
            .unwrap();
        assert!(status.success(), "createdb {name} failed");
        self.url.replace("/postgres", &format!("/{name}"))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throw-away redis-server on a port of its own, with no persistence, stopped by PID on
/// drop. It can be killed and started again on the same port, as a Redis restart.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self::not_started();
        server.restart();
        server
    }

    /// A port and URL with no server behind them yet: `restart` starts it.
    pub fn not_started() -> Self {
        let dir = tempfile::Builder::new().prefix("killkrill-redis-").tempdir().unwrap();
        let port = free_port();
        Self { child: None, port, url: format!("redis://127.0.0.1:{port}/"), dir }
    }

    /// Starts the server on its port (it must not be running), empty, and waits until it
    /// answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed by `cargo xtask setup`");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not start within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server at once (SIGKILL, no shutdown), losing what it held.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
