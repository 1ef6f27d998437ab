//! The stream journal through the real binary: what a TCP listener read survives a
//! kill -9 while the store is down, and is stored once at the next start; in normal
//! operation the journal keeps only the segment being written.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Appliance;
use crate::servers::PostgresServer;

fn tcp_stats(appliance: &Appliance) -> Value {
    let (status, stats) = appliance.get_json("/api/v1/stats");
    assert_eq!(status, 200, "{stats}");
    stats["listeners"]
        .as_array()
        .and_then(|listeners| listeners.iter().find(|l| l["listener"] == "syslog-tcp").cloned())
        .unwrap_or_else(|| panic!("no syslog-tcp listener in {stats}"))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn segments(data_dir: &Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(data_dir.join("journal")) else { return 0 };
    dirs.flatten()
        .filter_map(|dir| std::fs::read_dir(dir.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|file| file.path().extension().is_some_and(|e| e == "kkj"))
        .count()
}

fn numbers(logs: &[Value]) -> Vec<usize> {
    let mut seen: Vec<usize> = logs
        .iter()
        .filter_map(|log| log["message"].as_str()?.strip_prefix("journalword m")?.parse().ok())
        .collect();
    seen.sort_unstable();
    seen
}

#[test]
fn what_tcp_read_survives_kill_9_while_the_store_is_down() {
    let mut postgres = PostgresServer::start();
    let url = postgres.create_database("journal");
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let env =
        [("DB_TYPE", "postgres"), ("DATABASE_URL", url.as_str()), ("KILLKRILL_STORE__SPOOL_MAX_BYTES", "0")];
    let appliance = Appliance::start_with_env(&data_dir, &[], &env);

    // The store goes away; with no spool, nothing read from now on can be committed.
    postgres.stop();
    let mut stream = TcpStream::connect(appliance.listener("syslog-tcp")).unwrap();
    let mut sent = Vec::new();
    for n in 0..500 {
        sent.extend_from_slice(format!("<13>1 - journal-host app - - - journalword m{n}\n").as_bytes());
    }
    // Octet-counted, and a last frame cut short: the sender is mid-message at the crash.
    sent.extend_from_slice(b"60 <13>1 - journal-host app - -");
    stream.write_all(&sent).unwrap();
    stream.flush().unwrap();
    // /api/v1/stats needs the store; /metrics does not.
    let read_bytes = || {
        let text = appliance.client().get(appliance.url("/metrics")).send().unwrap().text().unwrap();
        text.lines()
            .filter(|line| {
                line.starts_with("killkrill_ingest_bytes_total{") && line.contains("\"syslog-tcp\"")
            })
            .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize
    };
    wait_until("the listener has read every byte sent", || read_bytes() == sent.len());
    assert!(segments(&data_dir) >= 1, "what was read is journaled");
    drop(appliance); // SIGKILL
    drop(stream);

    postgres.restart();
    let mut appliance = Appliance::start_with_env(&data_dir, &[], &env);
    let logs = appliance.wait_for_logs("q=journalword&limit=10000", 500);
    assert_eq!(numbers(&logs), (0..500).collect::<Vec<_>>(), "every message once");
    let all = appliance.wait_for_logs("limit=10000", 501);
    let cut: Vec<&Value> = all.iter().filter(|log| log["frame_flag"] == "incomplete").collect();
    assert_eq!((all.len(), cut.len()), (501, 1), "the partial frame is kept, flagged: {cut:?}");
    let replayed = appliance
        .wait_for_log(
            "Stream journal replayed: what TCP and TLS listeners read before the last stop is stored.",
            Duration::from_secs(5),
        )
        .expect("the replay is logged");
    assert_eq!(replayed["messages"], 501);
    wait_until("replayed segments are deleted", || segments(&data_dir) == 1);
}

#[test]
fn committed_batches_take_their_segments_with_them() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    // Small batches: many hand-offs, so many segments come and go.
    let appliance = Appliance::start_with_env(&data_dir, &[], &[("KILLKRILL_BATCH__MAX_MESSAGES", "50")]);
    let mut stream = TcpStream::connect(appliance.listener("syslog-tcp")).unwrap();
    for n in 0..2000 {
        writeln!(stream, "<13>1 - journal-host app - - - journalword m{n}").unwrap();
    }
    stream.flush().unwrap();
    let logs = appliance.wait_for_logs("q=journalword&limit=10000", 2000);
    assert_eq!(numbers(&logs), (0..2000).collect::<Vec<_>>());
    assert!(tcp_stats(&appliance)["handed_off_batches"].as_u64().unwrap() >= 40);
    wait_until("only the segment being written is left", || segments(&data_dir) == 1);

    // A clean stop stores everything and replays nothing at the next start.
    drop(stream);
    assert!(appliance.terminate().success());
    let mut appliance = Appliance::start_in(&data_dir, &[]);
    assert!(appliance.wait_for_log("Killkrill is ready.", Duration::from_secs(10)).is_some());
    let logs = appliance.wait_for_logs("q=journalword&limit=10000", 2000);
    assert_eq!(logs.len(), 2000, "no message twice after a clean stop");
}
