//! Senders against receivers bound on 127.0.0.1:0 inside each test.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::thread;

use super::*;
use crate::mix::parse_marker;

const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Receives datagrams until `expected` messages (lines) arrived or the wait limit passed;
/// returns every datagram.
fn receive_datagrams(socket: UdpSocket, expected: usize) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut datagrams = Vec::new();
    let mut lines = 0;
    let mut buf = vec![0u8; 65_536];
    while lines < expected && started.elapsed() < WAIT_LIMIT {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            lines += buf[..n].split(|b| *b == b'\n').count();
            datagrams.push(buf[..n].to_vec());
        }
    }
    datagrams
}

fn udp_receiver() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn counted_run(target: SocketAddr, protocol: Protocol, count: u64, rate: u64) -> SendConfig {
    let mut config = SendConfig::new(target, protocol);
    config.count = Some(count);
    config.duration = Some(WAIT_LIMIT);
    config.rate = Some(rate);
    config.run_id = 77;
    config
}

#[test]
fn udp_sender_delivers_every_message_once_across_threads() {
    let (socket, target) = udp_receiver();
    let receiver = thread::spawn(move || receive_datagrams(socket, 2000));
    let mut config = counted_run(target, Protocol::Udp, 2000, 10_000);
    config.threads = 2;
    config.mix = MixKind::Mixed;
    let report = run(&config, &Progress::default()).unwrap();
    let datagrams = receiver.join().unwrap();

    assert_eq!(report.sent_messages, 2000);
    assert_eq!((report.first_seq, report.last_seq), (Some(0), Some(1999)));
    assert_eq!(report.failed_messages, 0);
    assert_eq!(datagrams.len(), 2000);
    let seqs: BTreeSet<u64> = datagrams.iter().map(|d| parse_marker(d).unwrap().seq).collect();
    assert_eq!(seqs, (0..2000).collect());
    assert_eq!(report.sent_bytes, datagrams.iter().map(|d| d.len() as u64).sum::<u64>());
}

#[test]
fn metric_senders_pack_lines_into_datagrams() {
    for protocol in [Protocol::Statsd, Protocol::Influx] {
        let (socket, target) = udp_receiver();
        let receiver = thread::spawn(move || receive_datagrams(socket, 3000));
        let report = run(&counted_run(target, protocol, 3000, 30_000), &Progress::default()).unwrap();
        let datagrams = receiver.join().unwrap();

        assert_eq!(report.sent_messages, 3000, "{protocol}");
        assert!(datagrams.iter().all(|d| d.len() <= udp::MAX_PACKED_DATAGRAM), "{protocol}");
        assert!(datagrams.len() < 3000 / 4, "{protocol}: {} datagrams", datagrams.len());
        let key: &[u8] = if protocol == Protocol::Statsd { b"kkseq:" } else { b"kkseq=" };
        let lines: Vec<&[u8]> = datagrams.iter().flat_map(|d| d.split(|b| *b == b'\n')).collect();
        assert_eq!(lines.len(), 3000, "{protocol}");
        assert!(lines.iter().all(|l| l.windows(key.len()).any(|w| w == key)), "{protocol}");
    }
}

#[test]
fn udp_to_a_closed_port_counts_errors_and_carries_on() {
    let target = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let report = run(&counted_run(target, Protocol::Udp, 300, 30_000), &Progress::default()).unwrap();
    assert_eq!(report.sent_messages + report.failed_messages, 300);
    assert_eq!(report.last_seq, Some(299));
}

/// Splits a TCP byte stream into messages by the given framing.
fn split_frames(stream: &[u8], framing: Framing) -> Vec<&[u8]> {
    match framing {
        Framing::Lf => stream.split(|b| *b == b'\n').filter(|m| !m.is_empty()).collect(),
        Framing::Octet => {
            let mut frames = Vec::new();
            let mut rest = stream;
            while !rest.is_empty() {
                let space = rest.iter().position(|b| *b == b' ').expect("octet count ends with a space");
                let len: usize = std::str::from_utf8(&rest[..space]).unwrap().parse().unwrap();
                frames.push(&rest[space + 1..space + 1 + len]);
                rest = &rest[space + 1 + len..];
            }
            frames
        }
    }
}

#[test]
fn tcp_sender_frames_both_ways_over_several_connections() {
    for (protocol, framing) in [(Protocol::TcpOctet, Framing::Octet), (Protocol::TcpLf, Framing::Lf)] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let connections = 4;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let acceptor = thread::spawn(move || {
            let readers: Vec<_> = (0..connections)
                .map(|_| {
                    let (mut stream, _) = listener.accept().unwrap();
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let mut all = Vec::new();
                        stream.read_to_end(&mut all).unwrap();
                        tx.send(all).unwrap();
                    })
                })
                .collect();
            readers.into_iter().for_each(|r| r.join().unwrap());
        });
        let mut config = counted_run(target, protocol, 5000, 50_000);
        config.connections = connections;
        config.threads = 2;
        config.mix = MixKind::Rfc3164;
        let report = run(&config, &Progress::default()).unwrap();
        acceptor.join().unwrap();

        let streams: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(streams.len(), connections);
        assert!(streams.iter().all(|s| !s.is_empty()), "{protocol}: round-robin left a connection idle");
        let mut seqs = BTreeSet::new();
        for stream in &streams {
            for frame in split_frames(stream, framing) {
                assert!(seqs.insert(parse_marker(frame).unwrap().seq), "{protocol}: duplicate");
            }
        }
        assert_eq!(seqs, (0..5000).collect(), "{protocol}");
        assert_eq!(report.sent_messages, 5000);
        assert_eq!(report.sent_bytes, streams.iter().map(|s| s.len() as u64).sum::<u64>());
    }
}

#[test]
fn tcp_without_a_listener_is_an_error() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = run(&counted_run(target, Protocol::TcpLf, 10, 1000), &Progress::default()).unwrap_err();
    assert!(error.to_string().contains("could not open"), "{error}");
}

#[test]
fn outside_targets_are_refused_before_sending() {
    for target in ["8.8.8.8:514", "192.168.1.1:514"] {
        let config = counted_run(target.parse().unwrap(), Protocol::Udp, 1, 1);
        let error = run(&config, &Progress::default()).unwrap_err();
        assert!(error.to_string().contains("10.203.0.0/16"), "{error}");
    }
}

#[test]
fn duration_stop_leaves_a_contiguous_seq_range() {
    // Bound but never read: the kernel drops what overflows its buffer, silently.
    let (_socket, target) = udp_receiver();
    let mut config = SendConfig::new(target, Protocol::Udp);
    config.duration = Some(Duration::from_millis(150));
    config.rate = Some(5000);
    config.threads = 3;
    let report = run(&config, &Progress::default()).unwrap();
    let claimed = report.last_seq.unwrap() - report.first_seq.unwrap() + 1;
    assert_eq!(claimed, report.sent_messages + report.failed_messages);
}

#[test]
fn tcp_reset_is_counted_and_the_connection_reopened() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let receiver = thread::spawn(move || {
        // The first connection reads a little, then resets (SO_LINGER 0 sends RST on close).
        let (mut first, _) = listener.accept().unwrap();
        let mut some = vec![0u8; 64 * 1024];
        first.read_exact(&mut some).unwrap();
        socket2::SockRef::from(&first).set_linger(Some(Duration::ZERO)).unwrap();
        drop(first);
        let (mut second, _) = listener.accept().unwrap();
        let mut rest = Vec::new();
        second.read_to_end(&mut rest).unwrap();
        rest
    });
    let mut config = counted_run(target, Protocol::TcpLf, 20_000, 40_000);
    config.connections = 1;
    let report = run(&config, &Progress::default()).unwrap();
    let rest = receiver.join().unwrap();

    assert!(report.reconnects >= 1, "{report:?}");
    assert!(report.send_errors >= 1, "{report:?}");
    assert_eq!(report.sent_messages + report.failed_messages, 20_000);
    let after_reset = split_frames(&rest, Framing::Lf);
    assert!(!after_reset.is_empty());
    assert!(after_reset.iter().all(|frame| parse_marker(frame).is_some()));
}
