//! Listeners end to end on loopback: what is sent comes out of the hand-off ring, and the
//! counters say so.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::handoff::BatchConsumer;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

fn loopback_config() -> DataPlaneConfig {
    DataPlaneConfig {
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        syslog_tcp: Some("127.0.0.1:0".parse().unwrap()),
        batch: BatchLimits { max_age: Duration::from_millis(10), ..BatchLimits::default() },
        ..DataPlaneConfig::default()
    }
}

fn address(plane: &DataPlane, kind: ListenerKind) -> std::net::SocketAddr {
    plane.listeners().iter().find(|info| info.kind == kind).unwrap().local_addr
}

/// Pops batches until `count` messages came out, returning their messages.
fn collect_messages(consumers: &mut [BatchConsumer], count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut messages = Vec::new();
    while messages.len() < count && Instant::now() < deadline {
        for consumer in consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                messages
                    .extend(batch.iter().map(|entry| String::from_utf8_lossy(entry.message()).into_owned()));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    messages
}

#[test]
fn udp_and_tcp_messages_come_out_of_the_handoff_parsed() {
    let mut plane = DataPlane::start(&loopback_config()).unwrap();
    let mut consumers = plane.take_consumers();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"<13>Nov 23 10:00:00 host app: over udp", address(&plane, ListenerKind::SyslogUdp))
        .unwrap();
    let mut stream = TcpStream::connect(address(&plane, ListenerKind::SyslogTcp)).unwrap();
    stream.write_all(b"<13>Nov 23 10:00:00 host app: over tcp\n").unwrap();
    let mut messages = collect_messages(&mut consumers, 2);
    messages.sort();
    assert_eq!(messages, ["over tcp", "over udp"]);
    for counters in plane.counters() {
        assert_eq!(ListenerCounters::read(&counters.received_messages), 1, "{:?}", counters.listener);
        assert_eq!(ListenerCounters::read(&counters.parse_errors), 0);
    }
    drop(stream);
    plane.shutdown();
}

#[test]
fn tcp_back_pressure_loses_nothing_while_the_ring_is_full() {
    let config = DataPlaneConfig {
        syslog_udp: None,
        handoff_capacity: 1,
        batch: BatchLimits { max_messages: 10, ..loopback_config().batch },
        ..loopback_config()
    };
    let mut plane = DataPlane::start(&config).unwrap();
    let mut consumers = plane.take_consumers();
    let mut stream = TcpStream::connect(address(&plane, ListenerKind::SyslogTcp)).unwrap();
    let mut payload = Vec::new();
    for index in 0..5000 {
        writeln!(payload, "<13>Nov 23 10:00:00 host app: message {index}").unwrap();
    }
    stream.write_all(&payload).unwrap();
    // Nobody consumes for a while: the single-slot ring is full almost at once.
    std::thread::sleep(Duration::from_millis(200));
    let messages = collect_messages(&mut consumers, 5000);
    assert_eq!(messages.len(), 5000, "TCP must wait for room, never drop");
    assert_eq!(messages[4999], "message 4999", "order is kept on one connection");
    let tcp = &plane.counters()[0];
    assert_eq!(ListenerCounters::read(&tcp.dropped_handoff_full), 0);
    drop(stream);
    plane.shutdown();
}

#[test]
fn udp_drops_on_a_full_ring_are_counted_not_silent() {
    let config = DataPlaneConfig {
        syslog_tcp: None,
        handoff_capacity: 1,
        batch: BatchLimits { max_messages: 1, ..loopback_config().batch },
        ..loopback_config()
    };
    let mut plane = DataPlane::start(&config).unwrap();
    let consumers = plane.take_consumers();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = address(&plane, ListenerKind::SyslogUdp);
    for index in 0..20 {
        socket.send_to(format!("<13>datagram {index}").as_bytes(), target).unwrap();
    }
    let udp = plane.counters()[0].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ListenerCounters::read(&udp.received_messages) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Nobody consumed: one batch sits in the ring, the rest must be counted somewhere.
    drop(consumers);
    plane.shutdown();
    let received = ListenerCounters::read(&udp.received_messages);
    let handed_off = ListenerCounters::read(&udp.handed_off_batches);
    let dropped =
        ListenerCounters::read(&udp.dropped_handoff_full) + ListenerCounters::read(&udp.dropped_shutdown);
    assert_eq!(received, 20);
    assert_eq!(handed_off + dropped, received, "every datagram is handed off or counted as dropped");
    assert!(ListenerCounters::read(&udp.dropped_handoff_full) > 0);
}

#[test]
fn garbage_on_the_tcp_port_is_kept_flagged_and_never_panics() {
    let mut plane = DataPlane::start(&loopback_config()).unwrap();
    let mut consumers = plane.take_consumers();
    let mut stream = TcpStream::connect(address(&plane, ListenerKind::SyslogTcp)).unwrap();
    stream.write_all(b"\x00\xff\xfe random bytes\n99999999999 <13>bad length\n").unwrap();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut flagged = 0;
    let mut total = 0;
    while total < 2 && Instant::now() < deadline {
        for consumer in consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                total += batch.len();
                flagged += batch
                    .iter()
                    .filter(|entry| entry.parse_error().is_some() || entry.frame_flag().is_some())
                    .count();
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(total >= 2, "garbage is kept, not dropped");
    assert_eq!(flagged, total, "every garbage frame is flagged");
    plane.shutdown();
}

#[test]
fn binding_a_taken_port_fails_naming_the_listener() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = DataPlaneConfig { syslog_udp: Some(taken.local_addr().unwrap()), ..loopback_config() };
    let error = DataPlane::start(&config).err().expect("bind must fail").to_string();
    assert!(error.contains("syslog-udp") && error.contains("another process"), "{error}");
}
