//! Syslog in through real sockets, out through `GET /api/v1/logs`.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};

use crate::harness::{Appliance, logger};

#[test]
fn udp_message_sent_with_logger_is_searchable() {
    let appliance = Appliance::start();
    let port = appliance.listener("syslog-udp").port().to_string();
    logger(&["-n", "127.0.0.1", "-P", &port, "--udp", "-t", "e2etest"], "hello killkrill over udp");
    let logs = appliance.wait_for_logs("q=killkrill", 1);
    assert_eq!(logs.len(), 1, "{logs:#?}");
    let log = &logs[0];
    assert_eq!(log["message"], "hello killkrill over udp");
    assert_eq!(log["app_name"], "e2etest");
    assert_eq!(log["listener"], "syslog-udp");
    assert_eq!(log["parse_error"], serde_json::Value::Null);
    assert!(log["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(log["facility"].is_u64() && log["severity"].is_u64());
}

#[test]
fn tcp_messages_from_logger_in_both_framings_are_searchable() {
    let appliance = Appliance::start();
    let port = appliance.listener("syslog-tcp").port().to_string();
    logger(&["-n", "127.0.0.1", "-P", &port, "--tcp"], "newline framed krillword");
    logger(&["-n", "127.0.0.1", "-P", &port, "--tcp", "--octet-count"], "octet counted krillword");
    let logs = appliance.wait_for_logs("q=krillword", 2);
    let mut messages: Vec<&str> = logs.iter().map(|log| log["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    assert_eq!(messages, ["newline framed krillword", "octet counted krillword"]);
    assert!(logs.iter().all(|log| log["listener"] == "syslog-tcp"));
}

#[test]
fn malformed_datagram_is_stored_raw_with_a_parse_error_flag() {
    let appliance = Appliance::start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage = b"\xff\xfe not syslog at all rawmarker \x00 end";
    socket.send_to(garbage, appliance.listener("syslog-udp")).unwrap();
    let logs = appliance.wait_for_logs("q=rawmarker", 1);
    assert_eq!(logs.len(), 1, "the malformed datagram must be kept: {logs:#?}");
    let log = &logs[0];
    assert!(log["parse_error"].is_string(), "{log}");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(log["raw_b64"].as_str().unwrap()).unwrap();
    assert_eq!(raw, garbage, "the exact bytes are kept");
}

#[test]
fn frames_split_across_tcp_writes_are_reassembled() {
    let appliance = Appliance::start();
    let mut stream = TcpStream::connect(appliance.listener("syslog-tcp")).unwrap();
    stream.set_nodelay(true).unwrap();
    let stream_bytes = b"<14>first splitword\n<14>second splitword\n29 <14>third splitword octet";
    for piece in stream_bytes.chunks(7) {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    drop(stream);
    let logs = appliance.wait_for_logs("q=splitword", 3);
    let mut messages: Vec<&str> = logs.iter().map(|log| log["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    assert_eq!(messages, ["first splitword", "second splitword", "third splitword octet"]);
}

#[test]
fn every_term_must_match_and_limit_caps_the_rows() {
    let appliance = Appliance::start();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for index in 0..5 {
        let message = format!("<13>Nov 23 10:00:0{index} host app: alpha beta number{index}");
        socket.send_to(message.as_bytes(), appliance.listener("syslog-udp")).unwrap();
    }
    socket.send_to(b"<13>Nov 23 10:00:09 host app: alpha only", appliance.listener("syslog-udp")).unwrap();
    assert_eq!(appliance.wait_for_logs("q=alpha&limit=100", 6).len(), 6);
    assert_eq!(appliance.wait_for_logs("q=alpha%20beta", 5).len(), 5);
    assert_eq!(appliance.wait_for_logs("q=ALPHA%20number3", 1).len(), 1, "terms are case-insensitive");
    assert_eq!(appliance.wait_for_logs("q=alpha&limit=2", 2).len(), 2);
}

#[test]
fn bad_limit_is_a_400_naming_the_parameter() {
    let appliance = Appliance::start();
    let (status, body) = appliance.get_json("/api/v1/logs?limit=zero");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"), "{body}");
}
