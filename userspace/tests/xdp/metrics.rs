//! statsd and Influx through XDP on a veth pair between two namespaces the test creates:
//! datagrams to the metrics listeners' ports are redirected to AF_XDP (the program's
//! counters say so, by listener), parsed into the same aggregators as on the socket path,
//! and come out as points; a listener added while running is steered without reloading
//! the program; a port no listener has still reaches the kernel. Needs root; skipped with
//! a printed reason otherwise.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use killkrill_dataplane::capture::{CaptureConfig, CaptureMode, CaptureStatus};
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::{CapturePath, ListenerKind};
use killkrill_dataplane::metrics::{AggregatorSettings, MetricConsumer, MetricPoint};
use killkrill_dataplane::testing::{APPLIANCE_V4, rig_or_skip};
use killkrill_dataplane::xdp::{XdpListener, XdpReason};
use killkrill_dataplane::{DataPlane, DataPlaneConfig, ListenerSpec};

fn collect(consumers: &mut [MetricConsumer], points: &mut Vec<MetricPoint>) {
    for consumer in consumers.iter_mut() {
        while let Some(batch) = consumer.pop() {
            points.extend(batch.points);
        }
    }
}

fn sum(points: &[MetricPoint], name: &str) -> f64 {
    points.iter().filter(|point| point.name == name).map(|point| point.sum).sum()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn counters(plane: &DataPlane, kind: ListenerKind, capture: CapturePath) -> u64 {
    plane
        .counters()
        .iter()
        .find(|counters| counters.listener == kind && counters.capture == capture)
        .map_or(0, |counters| ListenerCounters::read(&counters.received_messages))
}

#[test]
fn statsd_and_influx_arrive_through_af_xdp_and_a_live_listener_is_steered() {
    let Some(rig) = rig_or_skip() else { return };
    let inside = rig.enter(&rig.appliance);
    let config = DataPlaneConfig {
        statsd_udp: Some("0.0.0.0:0".parse().unwrap()),
        metrics: AggregatorSettings { interval: Duration::from_millis(50), ..AggregatorSettings::default() },
        capture: CaptureConfig {
            mode: CaptureMode::Xdp,
            interface: Some(rig.appliance_if.clone()),
            ..CaptureConfig::default()
        },
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config).expect("XDP capture starts for a metrics listener alone");
    assert!(matches!(plane.capture(), CaptureStatus::Xdp { .. }), "{:?}", plane.capture());
    let statsd = plane
        .listeners()
        .iter()
        .find(|info| info.kind == ListenerKind::StatsdUdp && info.capture == CapturePath::AfXdp)
        .expect("an AF_XDP entry for statsd")
        .local_addr;
    let mut consumers = plane.take_metric_consumers();
    let feed = plane.take_metric_feed().unwrap();
    let other = UdpSocket::bind("0.0.0.0:0").unwrap();
    other.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Influx starts while running: its port joins the program's map in place.
    let statsd_spec = ListenerSpec { kind: ListenerKind::StatsdUdp, address: config.statsd_udp.unwrap() };
    let influx_spec = ListenerSpec { kind: ListenerKind::InfluxUdp, address: "0.0.0.0:0".parse().unwrap() };
    plane.apply_listeners(&[statsd_spec, influx_spec]).unwrap();
    let influx = plane
        .listeners()
        .iter()
        .find(|info| info.kind == ListenerKind::InfluxUdp && info.capture == CapturePath::AfXdp)
        .expect("the live influx listener is steered")
        .local_addr;
    let steered = plane.xdp().unwrap().lock().unwrap().ports().unwrap();
    assert!(steered.contains(&(statsd.port(), XdpListener::Statsd)), "{steered:?}");
    assert!(steered.contains(&(influx.port(), XdpListener::Influx)), "{steered:?}");

    const COUNT: u64 = 40;
    {
        let _peer = rig.enter(&rig.peer);
        let sender = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..COUNT {
            sender.send_to(b"xdp.hits:2|c|#via:xdp", (APPLIANCE_V4, statsd.port())).unwrap();
            sender.send_to(b"xdp_cpu,host=peer usage=3", (APPLIANCE_V4, influx.port())).unwrap();
        }
        sender.send_to(b"not steered", (APPLIANCE_V4, other.local_addr().unwrap().port())).unwrap();
    }
    let mut points = Vec::new();
    wait_for("the points of both listeners", || {
        while let Ok(consumer) = feed.try_recv() {
            consumers.push(consumer);
        }
        collect(&mut consumers, &mut points);
        sum(&points, "xdp.hits") >= (2 * COUNT) as f64 && sum(&points, "xdp_cpu.usage") >= (3 * COUNT) as f64
    });
    assert_eq!(sum(&points, "xdp.hits"), (2 * COUNT) as f64, "nothing twice");
    assert_eq!(sum(&points, "xdp_cpu.usage"), (3 * COUNT) as f64);
    let mut buf = [0u8; 32];
    let (len, _) = other.recv_from(&mut buf).expect("a port no listener has reaches the kernel");
    assert_eq!(&buf[..len], b"not steered");

    let xdp = plane.xdp_counters().unwrap();
    for listener in [XdpListener::Statsd, XdpListener::Influx] {
        assert_eq!(xdp.get(listener, XdpReason::Matched), COUNT, "{listener:?}");
        assert_eq!(xdp.get(listener, XdpReason::Redirected), COUNT, "{listener:?}");
        assert_eq!(xdp.get(listener, XdpReason::PassedNoSocket), 0, "{listener:?}");
    }
    for kind in [ListenerKind::StatsdUdp, ListenerKind::InfluxUdp] {
        assert_eq!(counters(&plane, kind, CapturePath::AfXdp), COUNT, "{kind:?} through AF_XDP");
        assert_eq!(counters(&plane, kind, CapturePath::Socket), 0, "{kind:?}: nothing took the kernel path");
    }
    drop(consumers);
    plane.shutdown();
    drop(inside);
}
