//! SIGTERM flushes what was accepted; a restart finds it in the store.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};

use crate::harness::Appliance;

#[test]
fn sigterm_flushes_every_accepted_message_to_the_store() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let appliance = Appliance::start_in(&data_dir, &[]);
    let mut stream = TcpStream::connect(appliance.listener("syslog-tcp")).unwrap();
    let mut payload = Vec::new();
    for index in 0..2000 {
        writeln!(payload, "<14>Nov 23 10:00:00 host app: flushword tcp {index}").unwrap();
    }
    stream.write_all(&payload).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for index in 0..100 {
        let message = format!("<14>Nov 23 10:00:00 host app: flushword udp {index}");
        socket.send_to(message.as_bytes(), appliance.listener("syslog-udp")).unwrap();
    }
    // Terminate at once, with the TCP connection still open and bytes possibly unread.
    let status = appliance.terminate();
    assert!(status.success(), "exit status {status}");
    drop(stream);

    let restarted = Appliance::start_in(&data_dir, &[]);
    let logs = restarted.wait_for_logs("q=flushword&limit=10000", 2100);
    assert_eq!(logs.len(), 2100, "every accepted message is stored after SIGTERM");
}
