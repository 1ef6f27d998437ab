//! `capture.socket_receive`: syslog, statsd and Influx over UDP arrive and are counted the
//! same whether the sockets are read with `recvmmsg` or io_uring, and where io_uring is
//! refused (here by a seccomp filter, as container runtimes' default profiles do) the
//! listeners fall back to `recvmmsg` and say why.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::CaptureConfig;
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::listener::udp_receive::{AUTO_METHOD, ReceiveMethod, SocketReceive, probe_io_uring};
use killkrill_dataplane::metrics::{AggregatorSettings, MetricPoint};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

fn config(receive: SocketReceive) -> DataPlaneConfig {
    DataPlaneConfig {
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        statsd_udp: Some("127.0.0.1:0".parse().unwrap()),
        influx_udp: Some("127.0.0.1:0".parse().unwrap()),
        batch: BatchLimits { max_age: Duration::from_millis(10), ..BatchLimits::default() },
        metrics: AggregatorSettings { interval: Duration::from_millis(50), ..AggregatorSettings::default() },
        capture: CaptureConfig { socket_receive: receive, ..CaptureConfig::default() },
        ..DataPlaneConfig::default()
    }
}

fn address(plane: &DataPlane, kind: ListenerKind) -> SocketAddr {
    plane.listeners().iter().find(|info| info.kind == kind).unwrap().local_addr
}

fn counters(plane: &DataPlane, kind: ListenerKind) -> &ListenerCounters {
    plane.counters().iter().find(|counters| counters.listener == kind).unwrap()
}

/// What the listeners counted and handed off, to compare between methods.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// (received messages, received bytes, parse errors, truncated) per listener kind.
    counted: Vec<(ListenerKind, u64, u64, u64, u64)>,
    syslog_messages: Vec<String>,
    metric_sums: Vec<(String, f64)>,
}

const SYSLOG_COUNT: usize = 300;

/// Starts a data plane reading with `receive`, sends a known mix and collects it all.
fn run(receive: SocketReceive, expect: ReceiveMethod) -> Outcome {
    let mut plane = DataPlane::start(&config(receive)).unwrap();
    for info in plane.listeners() {
        let choice = info.socket_receive.as_ref().unwrap();
        assert_eq!(choice.method, expect, "{:?}: {choice:?}", info.kind);
    }
    for kind in [ListenerKind::SyslogUdp, ListenerKind::StatsdUdp, ListenerKind::InfluxUdp] {
        assert_eq!(counters(&plane, kind).socket_receive().unwrap().method, expect);
    }
    let mut consumers = plane.take_consumers();
    let mut metric_consumers = plane.take_metric_consumers();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let syslog = address(&plane, ListenerKind::SyslogUdp);
    for index in 0..SYSLOG_COUNT {
        // Paced a little so that no datagram can overflow the socket buffer.
        sender.send_to(format!("<13>Nov 23 10:00:00 host app: message {index}").as_bytes(), syslog).unwrap();
        if index % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    sender.send_to(b"not syslog at all", syslog).unwrap();
    let statsd = address(&plane, ListenerKind::StatsdUdp);
    for _ in 0..50 {
        sender.send_to(b"sr.hits:2|c|#a:1\nsr.hits:1|c|#a:1\nbroken", statsd).unwrap();
    }
    sender.send_to(b"sr_cpu,host=x usage=4,up=true", address(&plane, ListenerKind::InfluxUdp)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut syslog_messages = Vec::new();
    let mut points: Vec<MetricPoint> = Vec::new();
    let sum = |points: &[MetricPoint], name: &str| -> f64 {
        points.iter().filter(|point| point.name == name).map(|point| point.sum).sum()
    };
    while Instant::now() < deadline
        && (syslog_messages.len() < SYSLOG_COUNT + 1
            || sum(&points, "sr.hits") < 150.0
            || sum(&points, "sr_cpu.usage") < 4.0)
    {
        for consumer in consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                syslog_messages
                    .extend(batch.iter().map(|entry| String::from_utf8_lossy(entry.message()).into_owned()));
            }
        }
        for consumer in metric_consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                points.extend(batch.points);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    syslog_messages.sort();
    let metric_sums = ["sr.hits", "sr_cpu.usage", "sr_cpu.up"]
        .into_iter()
        .map(|name| (name.to_owned(), sum(&points, name)))
        .collect();
    let read = ListenerCounters::read;
    let counted = [ListenerKind::SyslogUdp, ListenerKind::StatsdUdp, ListenerKind::InfluxUdp]
        .into_iter()
        .map(|kind| {
            let c = counters(&plane, kind);
            (
                kind,
                read(&c.received_messages),
                read(&c.received_bytes),
                read(&c.parse_errors),
                read(&c.truncated_frames),
            )
        })
        .collect();
    drop(consumers);
    drop(metric_consumers);
    plane.shutdown();
    Outcome { counted, syslog_messages, metric_sums }
}

#[test]
fn syslog_statsd_and_influx_arrive_and_count_the_same_by_recvmmsg_and_io_uring() {
    let by_recvmmsg = run(SocketReceive::Recvmmsg, ReceiveMethod::Recvmmsg);
    assert_eq!(by_recvmmsg.syslog_messages.len(), SYSLOG_COUNT + 1);
    assert_eq!(
        by_recvmmsg.counted[0],
        (ListenerKind::SyslogUdp, SYSLOG_COUNT as u64 + 1, by_recvmmsg.counted[0].2, 1, 0),
        "the one datagram that is not syslog is kept, flagged"
    );
    assert_eq!(by_recvmmsg.counted[1].1, 50, "statsd datagrams");
    assert_eq!(by_recvmmsg.counted[1].3, 50, "one broken line per statsd datagram");
    assert_eq!(by_recvmmsg.metric_sums[0], ("sr.hits".to_owned(), 150.0));
    if let Err(error) = probe_io_uring() {
        eprintln!("skipped the io_uring half: {error}");
        return;
    }
    let by_io_uring = run(SocketReceive::IoUring, ReceiveMethod::IoUring);
    assert_eq!(by_io_uring, by_recvmmsg);
}

/// Makes io_uring_setup fail with EPERM in the calling thread and the threads it starts
/// from now on, as Docker's and containerd's default seccomp profiles do.
fn refuse_io_uring_in_this_thread() {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        // The syscall number is the first word of struct seccomp_data.
        libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: BPF_JMP_JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::EPERM as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl with these options reads only the program, which outlives the call;
    // no_new_privs is what lets an unprivileged thread install a filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program), 0);
    }
}

#[test]
fn io_uring_refused_by_seccomp_falls_back_to_recvmmsg_and_says_why() {
    // A thread of its own: the filter stays with it and the threads it starts, never
    // with the test harness's other threads.
    std::thread::spawn(|| {
        refuse_io_uring_in_this_thread();
        let error = probe_io_uring().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
        for setting in [SocketReceive::IoUring, SocketReceive::Auto] {
            let mut plane = DataPlane::start(&config(setting)).unwrap();
            for kind in [ListenerKind::SyslogUdp, ListenerKind::StatsdUdp, ListenerKind::InfluxUdp] {
                let choice = counters(&plane, kind).socket_receive().unwrap();
                assert_eq!(choice.method, ReceiveMethod::Recvmmsg, "{kind:?}");
                if setting == SocketReceive::Auto && AUTO_METHOD == ReceiveMethod::Recvmmsg {
                    assert_eq!(choice.fallback, None, "auto did not want io_uring");
                    continue;
                }
                let reason = choice.fallback.unwrap_or_default();
                assert!(reason.contains("io_uring unavailable"), "{kind:?}: {reason}");
            }
            let mut consumers = plane.take_consumers();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender
                .send_to(
                    b"<13>Nov 23 10:00:00 host app: after fallback",
                    address(&plane, ListenerKind::SyslogUdp),
                )
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut messages = Vec::new();
            while messages.is_empty() && Instant::now() < deadline {
                for consumer in consumers.iter_mut() {
                    while let Some(batch) = consumer.pop() {
                        messages.extend(
                            batch.iter().map(|entry| String::from_utf8_lossy(entry.message()).into_owned()),
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(messages, ["after fallback"]);
            drop(consumers);
            plane.shutdown();
        }
    })
    .join()
    .unwrap();
}
