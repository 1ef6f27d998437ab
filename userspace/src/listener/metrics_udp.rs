//! statsd and Influx over UDP: datagrams read with `recvmmsg` in batches, folded into
//! the listener's own aggregator, and flushed as points once per interval.

use std::net::UdpSocket;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::udp::{MultiReceiver, Refused};
use super::{CapturePath, ListenerInfo, ListenerKind, StopSignal};
use crate::counters::ListenerCounters;
use crate::metrics::{
    Aggregator, AggregatorSettings, IngestCounts, MetricBatch, MetricCounters, MetricProducer,
};
use crate::sources::{SharedSourcePolicy, SourceGate};
use crate::{Error, Result};

/// Everything a metrics listener thread owns besides its socket.
pub(crate) struct MetricSink {
    pub(crate) kind: ListenerKind,
    pub(crate) settings: AggregatorSettings,
    pub(crate) producer: MetricProducer,
    pub(crate) counters: Arc<ListenerCounters>,
    pub(crate) metric_counters: Arc<MetricCounters>,
    pub(crate) gate: SourceGate,
}

pub(crate) fn spawn_metrics_listener(
    socket: UdpSocket,
    sink: MetricSink,
    stop: StopSignal,
) -> Result<(ListenerInfo, JoinHandle<()>)> {
    let kind = sink.kind;
    let local_addr = socket.local_addr().map_err(|source| Error::SocketOption { listener: kind, source })?;
    let handle = std::thread::Builder::new()
        .name(kind.label().to_owned())
        .spawn(move || MetricsListener::new(sink).run(&socket, &stop))
        .map_err(|source| Error::Spawn { listener: kind, source })?;
    Ok((ListenerInfo { kind, local_addr, capture: CapturePath::Socket }, handle))
}

fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

struct MetricsListener {
    sink: MetricSink,
    gate: SourceGate,
    aggregator: Aggregator,
    receiver: MultiReceiver,
}

impl MetricsListener {
    fn new(mut sink: MetricSink) -> Self {
        let aggregator = Aggregator::new(sink.settings, now_ns());
        let gate = std::mem::replace(&mut sink.gate, SharedSourcePolicy::default().gate());
        Self { sink, gate, aggregator, receiver: MultiReceiver::new() }
    }

    fn run(mut self, socket: &UdpSocket, stop: &StopSignal) {
        while !stop.is_raised() {
            self.receive(socket, libc::MSG_WAITFORONE);
            let now = now_ns();
            if self.aggregator.is_due(now) {
                self.flush(now, false);
            }
        }
        // What the kernel already queued was accepted by this host: read it, then hand
        // off the interval so far.
        while self.receive(socket, libc::MSG_DONTWAIT) {}
        self.flush(now_ns(), true);
    }

    /// One `recvmmsg` call; false when nothing was read.
    fn receive(&mut self, socket: &UdpSocket, flags: libc::c_int) -> bool {
        let count = match self.receiver.receive(socket, flags) {
            Ok(count) => count,
            Err(error) => {
                if !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) {
                    ListenerCounters::add(&self.sink.counters.receive_errors, 1);
                    std::thread::sleep(Duration::from_millis(1));
                }
                return false;
            }
        };
        let mut counts = IngestCounts::default();
        let mut bytes = 0;
        let mut refused = Refused::default();
        self.gate.refresh();
        let open = self.gate.is_open();
        for (payload, source) in self.receiver.datagrams(count) {
            bytes += payload.len() as u64;
            if !open && !refused.admit(&mut self.gate, source) {
                continue;
            }
            match self.sink.kind {
                ListenerKind::InfluxUdp => self.aggregator.ingest_influx(payload, &mut counts),
                _ => self.aggregator.ingest_statsd(payload, &mut counts),
            }
        }
        let (listener, metrics) = (&self.sink.counters, &self.sink.metric_counters);
        ListenerCounters::add(&listener.received_messages, count as u64);
        ListenerCounters::add(&listener.received_bytes, bytes);
        ListenerCounters::add(&listener.parse_errors, counts.rejected_total());
        refused.count(listener);
        ListenerCounters::add(&metrics.lines, counts.lines);
        ListenerCounters::add(&metrics.samples, counts.samples);
        ListenerCounters::add(&metrics.ignored, counts.ignored);
        ListenerCounters::add(&metrics.samples_dropped_series_limit, counts.series_limit);
        for (counter, value) in metrics.rejected.iter().zip(counts.rejected) {
            ListenerCounters::add(counter, value);
        }
        count > 0
    }

    /// Hands the interval's points off. A full ring drops them, counted, unless this is
    /// the last flush at shutdown, which waits for room while the control plane consumes.
    fn flush(&mut self, now: i64, last: bool) {
        let points = self.aggregator.flush(now);
        if points.is_empty() {
            return;
        }
        let count = points.len() as u64;
        let mut batch = MetricBatch { listener: self.sink.kind, points };
        loop {
            match self.sink.producer.push(batch) {
                Ok(()) => {
                    ListenerCounters::add(&self.sink.metric_counters.points_flushed, count);
                    ListenerCounters::add(&self.sink.counters.handed_off_batches, 1);
                    return;
                }
                Err(returned) if last && !self.sink.producer.is_abandoned() => {
                    batch = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) if last => {
                    ListenerCounters::add(&self.sink.metric_counters.points_dropped_shutdown, count);
                    return;
                }
                Err(_) => {
                    ListenerCounters::add(&self.sink.metric_counters.points_dropped_ring_full, count);
                    return;
                }
            }
        }
    }
}
