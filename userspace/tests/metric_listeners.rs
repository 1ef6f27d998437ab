//! statsd and Influx listeners on loopback: samples come out of the point ring aggregated,
//! and a full ring is counted, never silent.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::metrics::{AggregatorSettings, MetricConsumer, MetricKind, MetricPoint};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

fn config(interval_ms: u64, handoff_capacity: usize) -> DataPlaneConfig {
    DataPlaneConfig {
        statsd_udp: Some("127.0.0.1:0".parse().unwrap()),
        influx_udp: Some("127.0.0.1:0".parse().unwrap()),
        metrics: AggregatorSettings {
            interval: Duration::from_millis(interval_ms),
            ..AggregatorSettings::default()
        },
        handoff_capacity,
        ..DataPlaneConfig::default()
    }
}

fn address(plane: &DataPlane, kind: ListenerKind) -> std::net::SocketAddr {
    plane.listeners().iter().find(|info| info.kind == kind).unwrap().local_addr
}

/// Pops points until `done` says enough came out.
fn collect(consumers: &mut [MetricConsumer], done: impl Fn(&[MetricPoint]) -> bool) -> Vec<MetricPoint> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut points = Vec::new();
    while !done(&points) && Instant::now() < deadline {
        for consumer in consumers.iter_mut() {
            while let Some(batch) = consumer.pop() {
                points.extend(batch.points);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    points
}

#[test]
fn statsd_and_influx_samples_come_out_as_points_and_the_counters_move() {
    let mut plane = DataPlane::start(&config(50, 64)).unwrap();
    let mut consumers = plane.take_metric_consumers();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"dp.hits:2|c|#a:1\ndp.hits:3|c|#a:1\nbroken", address(&plane, ListenerKind::StatsdUdp))
        .unwrap();
    sender.send_to(b"dp_cpu,host=x usage=4,up=true", address(&plane, ListenerKind::InfluxUdp)).unwrap();
    let total = |points: &[MetricPoint], name: &str| -> f64 {
        points.iter().filter(|p| p.name == name).map(|p| p.sum).sum()
    };
    let points = collect(&mut consumers, |points| {
        total(points, "dp.hits") >= 5.0
            && total(points, "dp_cpu.usage") >= 4.0
            && total(points, "dp_cpu.up") >= 1.0
    });
    assert_eq!(total(&points, "dp.hits"), 5.0, "{points:#?}");
    let hits = points.iter().find(|p| p.name == "dp.hits").unwrap();
    assert_eq!(
        (hits.kind, hits.tags.as_slice()),
        (MetricKind::Counter, &[("a".to_owned(), "1".to_owned())][..])
    );
    assert_eq!(total(&points, "dp_cpu.usage"), 4.0);
    let counters = plane.counters().iter().find(|c| c.listener == ListenerKind::StatsdUdp).unwrap();
    assert_eq!(ListenerCounters::read(&counters.received_messages), 1);
    assert_eq!(ListenerCounters::read(&counters.parse_errors), 1, "the broken line");
    let metric = plane.metric_counters().iter().find(|c| c.listener == ListenerKind::StatsdUdp).unwrap();
    assert_eq!(ListenerCounters::read(&metric.lines), 3);
    assert_eq!(ListenerCounters::read(&metric.samples), 2);
    assert_eq!(metric.rejected_total(), 1);
    assert!(ListenerCounters::read(&metric.points_flushed) >= 1);
    plane.shutdown();
}

#[test]
fn a_full_point_ring_is_counted() {
    // One flushed interval fits; nobody consumes; every later interval's points are dropped.
    let plane = DataPlane::start(&config(20, 1)).unwrap();
    let target = address(&plane, ListenerKind::StatsdUdp);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let metric =
        plane.metric_counters().iter().find(|c| c.listener == ListenerKind::StatsdUdp).unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ListenerCounters::read(&metric.points_dropped_ring_full) == 0 {
        assert!(Instant::now() < deadline, "a full ring was never counted");
        sender.send_to(b"dp.full:1|c", target).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(ListenerCounters::read(&metric.points_flushed), 1, "only the first interval fit");
    // Points of the interval in progress: the shutdown flush cannot hand them off either
    // (nobody took the ring), so it counts them instead of waiting.
    let read_before = ListenerCounters::read(&metric.lines);
    sender.send_to(b"dp.full:1|c", target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ListenerCounters::read(&metric.lines) == read_before {
        assert!(Instant::now() < deadline, "the last datagram was never read");
        std::thread::sleep(Duration::from_millis(1));
    }
    plane.shutdown();
    let lost = ListenerCounters::read(&metric.points_dropped_ring_full)
        + ListenerCounters::read(&metric.points_dropped_shutdown);
    assert!(lost >= 1 && ListenerCounters::read(&metric.points_flushed) == 1, "{metric:?}");
}
