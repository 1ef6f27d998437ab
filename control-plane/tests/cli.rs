//! The command line: version, and clear errors (never a panic) for bad settings.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::BINARY;

pub(crate) fn serve(args: &[&str], env: &[(&str, &str)]) -> Output {
    let temp = tempfile::tempdir().unwrap();
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(temp.path().join("data"))
        .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"])
        .args(["--statsd-udp", "127.0.0.1:0", "--influx-udp", "127.0.0.1:0"])
        .args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    output_within(command, Duration::from_secs(20))
}

/// Runs `command` to completion, killing it (and failing) if it outlives `limit`: a
/// setting that should be refused must never leave a server running.
fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}; stderr: {}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub(crate) fn assert_clear_failure(output: &Output, expected_code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(expected_code), "stderr: {stderr}");
    assert!(stderr.contains(needle), "stderr should name {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn version_comes_from_the_version_file() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    let version = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.version")).unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("killkrill {}", version.trim()));
}

#[test]
fn unknown_config_key_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("killkrill.toml");
    std::fs::write(&file, "[syslog]\nudp_port = 514\n").unwrap();
    let output = serve(&["--config", file.to_str().unwrap()], &[]);
    assert_clear_failure(&output, 2, "udp_port");
}

#[test]
fn bad_port_is_named() {
    let output = serve(&["--syslog-udp", "127.0.0.1:70000"], &[]);
    assert_clear_failure(&output, 2, "70000");
    let output = serve(&[], &[("KILLKRILL_BATCH__MAX_AGE_MS", "soon")]);
    assert_clear_failure(&output, 2, "soon");
}

#[test]
fn unwritable_data_dir_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let blocker = temp.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let data_dir = blocker.join("data");
    let output = serve(&["--data-dir", data_dir.to_str().unwrap()], &[]);
    assert_clear_failure(&output, 2, "data directory");
}

#[test]
fn bad_db_type_is_named() {
    let output = serve(&[], &[("DB_TYPE", "mongodb")]);
    assert_clear_failure(&output, 2, "mongodb");
}

#[test]
fn port_in_use_names_the_listener() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = serve(&["--syslog-udp", &address], &[]);
    assert_clear_failure(&output, 1, "syslog-udp");
}
