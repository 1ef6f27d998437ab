//! The TCP syslog receive path on one data-plane core, fed faster than it can read: 64
//! loopback connections carry pre-built streams of ~250-byte RFC 5424 messages (RFC 6587
//! octet-counted, or LF-terminated), written by a sender thread on another CPU for the
//! whole run. The listener frames, parses and batches them as `killkrill serve` does, with
//! its stream journal on (the default), and a drain thread acks each batch's journal
//! segment and gives the batch back, standing in for the store.
//!
//! The figure is messages per second through the listener while the sender keeps every
//! connection's socket buffer full, so the data-plane thread never waits: its capacity per
//! core. At the end the bench prints that thread's CPU time per message (from
//! `/proc/self/task`) and how busy it was, so a run where the sender could not keep up
//! shows as one. TCP never loses; the bench asserts no frame was cut or dropped.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill_dataplane::cores::CoreSelection;
use killkrill_dataplane::cores::pin::pin_current_thread;
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::testing::{cpu_softirq_seconds, thread_cpu_seconds};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

const CONNECTIONS: usize = 64;
/// Distinct messages in each pre-built stream; the sender writes the stream again and again.
const MESSAGES_PER_STREAM: usize = 256;
const DATA_PLANE_CPU: usize = 0;
const SENDER_CPU: usize = 1;

#[derive(Clone, Copy)]
enum Framing {
    OctetCounted,
    Newline,
}

fn message(connection: usize, seq: usize) -> String {
    format!(
        "<165>1 2026-11-23T10:00:00.{seq:06}Z router-{connection}.example.net sshd 4242 ID47 \
         [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \
         Accepted publickey for admin from 192.0.2.77 port {port} ssh2: RSA SHA256:{pad}",
        port = 40000 + seq,
        pad = "x".repeat(40)
    )
}

fn stream(connection: usize, framing: Framing) -> Vec<u8> {
    let mut bytes = Vec::new();
    for seq in 0..MESSAGES_PER_STREAM {
        let message = message(connection, seq);
        match framing {
            Framing::OctetCounted => {
                bytes.extend_from_slice(format!("{} {message}", message.len()).as_bytes())
            }
            Framing::Newline => bytes.extend_from_slice(format!("{message}\n").as_bytes()),
        }
    }
    bytes
}

/// Writes its streams to 64 connections round robin until stopped; a full socket buffer
/// blocks the write, which is the listener's back pressure.
struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    fn start(address: SocketAddr, framing: Framing) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut connections: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
            .map(|index| {
                (TcpStream::connect(address).expect("connect to the listener"), stream(index, framing))
            })
            .collect();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin_current_thread(SENDER_CPU).expect("pinning a bench thread");
                while !stop.load(Ordering::Relaxed) {
                    for (connection, bytes) in &mut connections {
                        connection.write_all(bytes).expect("the listener keeps reading");
                    }
                }
            })
        };
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn replay(c: &mut Criterion) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!(
            "tcp_replay skipped: it needs two CPUs (the data plane's and the sender's), this process has {cpus}"
        );
        return;
    }
    let journal = tempfile::tempdir().expect("a journal directory");
    let config = DataPlaneConfig {
        syslog_tcp: Some("127.0.0.1:0".parse().unwrap()),
        journal_root: Some(journal.path().to_owned()),
        cores: CoreSelection::List(vec![DATA_PLANE_CPU]),
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config).expect("the TCP listener");
    // Off the data plane's CPU (only now: the data plane checks its cores against the
    // starting thread's CPUs).
    pin_current_thread(SENDER_CPU).expect("pinning a bench thread");
    let address = plane.listeners()[0].local_addr;
    let counters = plane.counters().iter().find(|c| c.listener == ListenerKind::SyslogTcp).unwrap().clone();
    let mut consumers = plane.take_consumers();
    let stop_drain = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop_drain.clone();
        std::thread::spawn(move || {
            pin_current_thread(SENDER_CPU).expect("pinning a bench thread");
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for consumer in &mut consumers {
                    while let Some(mut batch) = consumer.pop() {
                        if let Some(ticket) = batch.take_journal_ticket() {
                            ticket.ack();
                        }
                        consumer.give_back(batch);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let received = || ListenerCounters::read(&counters.received_messages);

    let mut group = c.benchmark_group("tcp_replay");
    group.throughput(Throughput::Elements(1));
    for (name, framing) in [("octet_counted", Framing::OctetCounted), ("newline", Framing::Newline)] {
        let sender = Sender::start(address, framing);
        let (cpu_before, count_before, wall_before) =
            (thread_cpu_seconds("syslog-tcp@"), received(), Instant::now());
        let softirq_before = [cpu_softirq_seconds(DATA_PLANE_CPU), cpu_softirq_seconds(SENDER_CPU)];
        group.bench_function(format!("rfc5424_250_bytes_64_connections_{name}"), |b| {
            b.iter_custom(|iterations| {
                let target = received() + iterations;
                let started = Instant::now();
                let deadline = started + Duration::from_secs(60);
                // Polled, not spun on: a core spinning on the counter's cache line would
                // slow the listener that writes it.
                while received() < target {
                    assert!(Instant::now() < deadline, "the listener stopped receiving");
                    std::thread::sleep(Duration::from_micros(50));
                }
                started.elapsed()
            })
        });
        let cpu = thread_cpu_seconds("syslog-tcp@") - cpu_before;
        let messages = received() - count_before;
        let wall = wall_before.elapsed().as_secs_f64();
        let softirq = [
            cpu_softirq_seconds(DATA_PLANE_CPU) - softirq_before[0],
            cpu_softirq_seconds(SENDER_CPU) - softirq_before[1],
        ];
        eprintln!(
            "tcp_replay {name}: softirq {:.2} s on the data plane's CPU {DATA_PLANE_CPU}, {:.2} s on the sender's CPU \
             {SENDER_CPU} (on loopback the receive path's protocol work runs in the sender's softirq)",
            softirq[0], softirq[1]
        );
        eprintln!(
            "tcp_replay {name}: {messages} messages in {wall:.1} s ({:.0} msgs/s), data-plane thread {cpu:.2} CPU s: \
             {:.3} µs per message (one core at that cost: {:.2} M msgs/s), busy {:.0}% of the time",
            messages as f64 / wall,
            cpu * 1e6 / messages as f64,
            messages as f64 / cpu / 1e6,
            cpu * 100.0 / wall
        );
        drop(sender);
    }
    group.finish();
    stop_drain.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    let dropped = ListenerCounters::read(&counters.dropped_handoff_full);
    let cut =
        ListenerCounters::read(&counters.truncated_frames) + ListenerCounters::read(&counters.framing_errors);
    assert_eq!(dropped, 0, "TCP drops nothing at the hand-off: it stops reading instead");
    assert_eq!(cut, 0, "every frame arrives whole");
    assert_eq!(ListenerCounters::read(&counters.parse_errors), 0, "every message parses");
    plane.shutdown();
}

criterion_group!(benches, replay);
criterion_main!(benches);
