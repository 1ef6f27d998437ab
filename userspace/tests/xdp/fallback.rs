//! Capture modes when XDP cannot be had: `auto` falls back to the socket listener and says
//! why, `xdp` refuses to start. Runs with or without root (without, loading fails; with,
//! the interface does not exist).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use killkrill_dataplane::batch::BatchLimits;
use killkrill_dataplane::capture::{CaptureConfig, CaptureMode, CaptureStatus};
use killkrill_dataplane::listener::CapturePath;
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

fn config(mode: CaptureMode, interface: Option<&str>) -> DataPlaneConfig {
    DataPlaneConfig {
        syslog_udp: Some("127.0.0.1:0".parse().unwrap()),
        batch: BatchLimits { max_age: Duration::from_millis(10), ..BatchLimits::default() },
        capture: CaptureConfig { mode, interface: interface.map(str::to_owned), ..CaptureConfig::default() },
        ..DataPlaneConfig::default()
    }
}

#[test]
fn auto_falls_back_to_sockets_and_says_why() {
    let mut plane = DataPlane::start(&config(CaptureMode::Auto, Some("kk-missing0"))).unwrap();
    match plane.capture() {
        CaptureStatus::Socket { fallback: Some(reason) } => assert!(!reason.is_empty()),
        other => panic!("expected a socket fallback, got {other:?}"),
    }
    assert_eq!(plane.capture().label(), "socket");
    assert!(plane.xdp().is_none() && plane.xdp_counters().is_none());
    assert!(plane.listeners().iter().all(|listener| listener.capture == CapturePath::Socket));
    // The socket path works as ever.
    let mut consumers = plane.take_consumers();
    let address = plane.listeners()[0].local_addr;
    UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"<13>fallback works", address).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    while received == 0 {
        assert!(Instant::now() < deadline, "nothing came through the socket listener");
        received = consumers.iter_mut().filter_map(|consumer| consumer.pop()).map(|batch| batch.len()).sum();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(received, 1);
}

#[test]
fn auto_without_an_interface_uses_sockets_quietly() {
    let plane = DataPlane::start(&config(CaptureMode::Auto, None)).unwrap();
    assert_eq!(
        plane.capture(),
        &CaptureStatus::Socket { fallback: Some("no capture interface configured".to_owned()) }
    );
}

#[test]
fn xdp_mode_refuses_to_start_without_xdp() {
    let error =
        DataPlane::start(&config(CaptureMode::Xdp, Some("kk-missing0"))).err().expect("start-up fails");
    assert!(error.to_string().starts_with("capture:"), "{error}");
    let error = DataPlane::start(&config(CaptureMode::Xdp, None)).err().expect("start-up fails");
    assert!(error.to_string().contains("needs an interface"), "{error}");
}
