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

/// User plus system CPU seconds of each thread of a process, by thread id, with the
/// thread's name (/proc/PID/task/TID/stat). Threads that ended are gone from the list;
/// their time stays in the process's total ([`cpu_seconds`]).
pub fn thread_cpu_seconds(pid: u32) -> std::collections::BTreeMap<u32, (String, f64)> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Default::default() };
    entries
        .filter_map(|entry| {
            let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
            Some((tid, parse_stat_cpu(&stat)?))
        })
        .collect()
}

/// The thread name and user + system seconds from a /proc `stat` line.
fn parse_stat_cpu(stat: &str) -> Option<(String, f64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / clock_ticks_per_second()))
}

/// Whether a thread name is a data-plane thread's: `<listener>@<cpu>` (userspace/src/cores,
/// docs/runtime.md), e.g. `syslog-udp@0`, `afxdp-q0@1`.
pub fn is_data_plane_thread(name: &str) -> bool {
    name.rsplit_once('@').is_some_and(|(listener, cpu)| {
        !listener.is_empty() && !cpu.is_empty() && cpu.bytes().all(|b| b.is_ascii_digit())
    })
}

/// CPU seconds the data-plane threads used between two [`thread_cpu_seconds`] readings
/// (a thread that started in between counts from zero).
pub fn data_plane_seconds(
    before: &std::collections::BTreeMap<u32, (String, f64)>,
    after: &std::collections::BTreeMap<u32, (String, f64)>,
) -> f64 {
    after
        .iter()
        .filter(|(_, (name, _))| is_data_plane_thread(name))
        .map(|(tid, (_, seconds))| seconds - before.get(tid).map_or(0.0, |(_, earlier)| *earlier))
        .sum()
}

/// Softirq time per CPU since boot, in seconds (/proc/stat, the seventh value).
pub fn per_cpu_softirq_seconds() -> Vec<f64> {
    per_cpu_stat_values()
        .iter()
        .map(|values| values.get(6).copied().unwrap_or(0.0) / clock_ticks_per_second())
        .collect()
}

/// The values of each `cpuN` line of /proc/stat, in CPU order.
fn per_cpu_stat_values() -> Vec<Vec<f64>> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
    stat.lines()
        .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|line| line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
        .collect()
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
    per_cpu_stat_values()
        .into_iter()
        .map(|values| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_plane_threads_are_told_by_name() {
        for name in ["syslog-udp@0", "syslog-tcp@12", "afxdp-q0@1", "statsd-udp@3"] {
            assert!(is_data_plane_thread(name), "{name}");
        }
        for name in ["control-plane", "killkrill", "tokio-runtime-w", "a@", "@1", "x@1b"] {
            assert!(!is_data_plane_thread(name), "{name}");
        }
    }

    #[test]
    fn stat_lines_give_the_name_and_seconds() {
        let stat = "4242 (syslog-udp@0) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(stat), Some(("syslog-udp@0".to_owned(), 2.0)));
        // A name with a parenthesis and spaces in it.
        let stat = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0";
        assert_eq!(parse_stat_cpu(stat).map(|(name, _)| name), Some("a (b) c".to_owned()));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn only_data_plane_time_between_readings_counts() {
        let before = std::collections::BTreeMap::from([
            (1, ("syslog-udp@0".to_owned(), 1.0)),
            (2, ("control-plane".to_owned(), 5.0)),
        ]);
        let after = std::collections::BTreeMap::from([
            (1, ("syslog-udp@0".to_owned(), 3.5)),
            (2, ("control-plane".to_owned(), 9.0)),
            (3, ("syslog-tcp@0".to_owned(), 0.5)),
        ]);
        assert_eq!(data_plane_seconds(&before, &after), 3.0);
    }

    #[test]
    fn this_process_has_a_thread_with_cpu_time() {
        let threads = thread_cpu_seconds(std::process::id());
        assert!(!threads.is_empty());
        assert_eq!(per_cpu_softirq_seconds().len(), per_cpu_busy_seconds().len());
    }
}
