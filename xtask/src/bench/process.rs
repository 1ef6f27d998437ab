//! Processes the rig starts (appliance, peers, senders) and what it reads from /proc
//! about them. Every child is registered so that Ctrl-C ends it too.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;

static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Managed {
    pub name: String,
    child: Child,
}

impl Managed {
    pub fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Self> {
        let child = command.spawn().with_context(|| format!("cannot start {name}"))?;
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(child.id());
        Ok(Self { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL. Returns whether it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !self.is_running() {
            return true;
        }
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).retain(|pid| *pid != self.child.id());
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([signal, &pid.to_string()]).status();
}

/// Ends every registered child; for the Ctrl-C handler.
pub fn stop_all() {
    for pid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        signal(pid, "-KILL");
    }
}

/// User plus system CPU seconds a process has used (/proc/PID/stat, clock ticks).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields start after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// Peak resident memory (VmHWM) in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Busy time per CPU since boot, in seconds (/proc/stat).
pub fn per_cpu_busy_seconds() -> Vec<f64> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
    stat.lines()
        .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|line| {
            let values: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
            let busy: f64 =
                values.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
            busy / clock_ticks_per_second()
        })
        .collect()
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}

/// Total size of the files under `path` (or of the file itself).
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(metadata) = std::fs::metadata(path) else { return 0 };
    if metadata.is_file() {
        return metadata.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| disk_bytes(&entry.path())).sum())
        .unwrap_or(0)
}
