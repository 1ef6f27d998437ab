//! A store outage through the real binary: PostgreSQL goes away while syslog keeps
//! arriving; the spool takes the blocks, and drains them into the store once it is back.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::Appliance;
use crate::servers::PostgresServer;

fn send(appliance: &Appliance, first: usize, count: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = appliance.listener("syslog-udp");
    for n in first..first + count {
        let frame = format!("<13>1 - outage-host app - - - outageword m{n}");
        socket.send_to(frame.as_bytes(), target).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn metric(appliance: &Appliance, name: &str) -> u64 {
    let body = reqwest::blocking::get(appliance.url("/metrics")).unwrap().text().unwrap();
    body.lines()
        .find(|line| line.split([' ', '{']).next() == Some(name))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_store_outage_fills_the_spool_which_drains_when_the_store_is_back() {
    let mut postgres = PostgresServer::start();
    let url = postgres.create_database("outage");
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("DB_TYPE", "postgres"), ("DATABASE_URL", &url)],
    );
    send(&appliance, 0, 300);
    appliance.wait_for_logs("q=outageword&limit=10000", 300);

    postgres.stop();
    send(&appliance, 300, 700);
    wait_until("the spool holds the messages sent during the outage", || {
        metric(&appliance, "killkrill_spool_written_messages_total") == 700
    });
    assert!(metric(&appliance, "killkrill_spool_blocks") >= 1);
    let spool_files = std::fs::read_dir(temp.path().join("data/spool")).unwrap().count();
    assert!(spool_files >= 1, "spooled blocks are files in data_dir/spool");
    assert_eq!(
        metric(&appliance, "killkrill_dropped_messages_total"),
        0,
        "nothing dropped during the outage"
    );

    postgres.restart();
    wait_until("the spool drains", || metric(&appliance, "killkrill_spool_blocks") == 0);
    let logs = appliance.wait_for_logs("q=outageword&limit=10000", 1000);
    let mut seen: Vec<usize> = logs
        .iter()
        .map(|log| log["message"].as_str().unwrap().rsplit('m').next().unwrap().parse().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "every message stored exactly once");
    assert_eq!(metric(&appliance, "killkrill_spool_full_total"), 0);
}
