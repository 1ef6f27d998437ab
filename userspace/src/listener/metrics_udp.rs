//! statsd and Influx over UDP: datagrams read in batches (`recvmmsg` or io_uring, see
//! [`super::udp_receive`]), folded into the listener's own aggregator, and flushed as
//! points once per interval.

use std::net::UdpSocket;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::udp::Refused;
use super::udp_receive::{self, SocketReceive, UdpReceiver};
use super::{CapturePath, ListenerInfo, ListenerKind, StopSignal};
use crate::cores::{Core, thread_name};
use crate::counters::ListenerCounters;
use crate::metrics::{
    Aggregator, AggregatorSettings, IngestCounts, MetricBatch, MetricCounters, MetricProducer,
};
use crate::sources::SourceGate;
use crate::{Error, Result};

/// Everything a metrics listener thread owns besides its socket.
pub(crate) struct MetricSink {
    pub(crate) kind: ListenerKind,
    pub(crate) settings: AggregatorSettings,
    pub(crate) producer: MetricProducer,
    pub(crate) counters: Arc<ListenerCounters>,
    pub(crate) metric_counters: Arc<MetricCounters>,
    pub(crate) gate: SourceGate,
    /// How the socket is read (`capture.socket_receive`).
    pub(crate) receive: SocketReceive,
}

/// Starts a metrics listener thread on `core`: named `<listener>@<cpu>` and pinned there
/// like the syslog listeners, so that it runs on a data-plane core and not among the
/// control plane's threads.
pub(crate) fn spawn_metrics_listener(
    socket: UdpSocket,
    sink: MetricSink,
    stop: StopSignal,
    core: Core,
) -> Result<(ListenerInfo, JoinHandle<()>)> {
    let kind = sink.kind;
    let local_addr = socket.local_addr().map_err(|source| Error::SocketOption { listener: kind, source })?;
    let (receiver, choice) = udp_receive::receiver_for(kind, sink.receive, &socket);
    sink.counters.set_socket_receive(&choice);
    let handle = std::thread::Builder::new()
        .name(thread_name(kind.label(), core))
        .spawn(move || {
            if let Err(error) = crate::cores::pin::enter_core(core) {
                tracing::warn!(listener = kind.label(), cpu = core.cpu, error = %error, "Cannot pin the listener to its core.");
            }
            MetricsListener::new(sink, receiver).run(&socket, &stop)
        })
        .map_err(|source| Error::Spawn { listener: kind, source })?;
    let info = ListenerInfo { kind, local_addr, capture: CapturePath::Socket, socket_receive: Some(choice) };
    Ok((info, handle))
}

pub(crate) fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// The part of a metrics listener that does not care how datagrams arrive: the
/// aggregator, the counters and the point ring. The socket listener and the AF_XDP
/// receivers (for steered statsd and Influx ports) both feed one of these per thread.
pub(crate) struct MetricIngest {
    kind: ListenerKind,
    aggregator: Aggregator,
    producer: MetricProducer,
    counters: Arc<ListenerCounters>,
    metric_counters: Arc<MetricCounters>,
    /// What the current receive batch has read, added to the counters by `count_batch`.
    counts: IngestCounts,
    datagrams: u64,
    bytes: u64,
    truncated: u64,
}

impl MetricIngest {
    pub(crate) fn new(
        kind: ListenerKind,
        settings: AggregatorSettings,
        producer: MetricProducer,
        counters: Arc<ListenerCounters>,
        metric_counters: Arc<MetricCounters>,
    ) -> Self {
        Self {
            kind,
            aggregator: Aggregator::new(settings, now_ns()),
            producer,
            counters,
            metric_counters,
            counts: IngestCounts::default(),
            datagrams: 0,
            bytes: 0,
            truncated: 0,
        }
    }

    /// Folds one datagram's lines into the aggregator.
    pub(crate) fn ingest(&mut self, payload: &[u8], truncated: bool) {
        self.note(payload, truncated);
        match self.kind {
            ListenerKind::InfluxUdp => self.aggregator.ingest_influx(payload, &mut self.counts),
            _ => self.aggregator.ingest_statsd(payload, &mut self.counts),
        }
    }

    /// Counts a datagram received but not ingested (refused by the source policy).
    pub(crate) fn note(&mut self, payload: &[u8], truncated: bool) {
        self.datagrams += 1;
        self.bytes += payload.len() as u64;
        self.truncated += u64::from(truncated);
    }

    /// Adds what the batch read to the counters (once per receive call, not per datagram).
    pub(crate) fn count_batch(&mut self) {
        let counts = std::mem::take(&mut self.counts);
        let (listener, metrics) = (&self.counters, &self.metric_counters);
        ListenerCounters::add(&listener.received_messages, std::mem::take(&mut self.datagrams));
        ListenerCounters::add(&listener.received_bytes, std::mem::take(&mut self.bytes));
        ListenerCounters::add(&listener.truncated_frames, std::mem::take(&mut self.truncated));
        ListenerCounters::add(&listener.parse_errors, counts.rejected_total());
        ListenerCounters::add(&metrics.lines, counts.lines);
        ListenerCounters::add(&metrics.samples, counts.samples);
        ListenerCounters::add(&metrics.ignored, counts.ignored);
        ListenerCounters::add(&metrics.samples_dropped_series_limit, counts.series_limit);
        for (counter, value) in metrics.rejected.iter().zip(counts.rejected) {
            ListenerCounters::add(counter, value);
        }
    }

    /// Hands the interval off when it is over.
    pub(crate) fn flush_if_due(&mut self) {
        let now = now_ns();
        if self.aggregator.is_due(now) {
            self.flush(now, false);
        }
    }

    /// Hands the interval's points off. A full ring drops them, counted, unless this is
    /// the last flush at shutdown, which waits for room while the control plane consumes.
    pub(crate) fn flush(&mut self, now: i64, last: bool) {
        let points = self.aggregator.flush(now);
        if points.is_empty() {
            return;
        }
        let count = points.len() as u64;
        let mut batch = MetricBatch { listener: self.kind, points };
        loop {
            match self.producer.push(batch) {
                Ok(()) => {
                    ListenerCounters::add(&self.metric_counters.points_flushed, count);
                    ListenerCounters::add(&self.counters.handed_off_batches, 1);
                    return;
                }
                Err(returned) if last && !self.producer.is_abandoned() => {
                    batch = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) if last => {
                    ListenerCounters::add(&self.metric_counters.points_dropped_shutdown, count);
                    return;
                }
                Err(_) => {
                    ListenerCounters::add(&self.metric_counters.points_dropped_ring_full, count);
                    return;
                }
            }
        }
    }
}

struct MetricsListener {
    ingest: MetricIngest,
    gate: SourceGate,
    receiver: UdpReceiver,
}

impl MetricsListener {
    fn new(sink: MetricSink, receiver: UdpReceiver) -> Self {
        let ingest =
            MetricIngest::new(sink.kind, sink.settings, sink.producer, sink.counters, sink.metric_counters);
        Self { ingest, gate: sink.gate, receiver }
    }

    fn run(mut self, socket: &UdpSocket, stop: &StopSignal) {
        udp_receive::enable_or_fall_back(&mut self.receiver, self.ingest.kind);
        while !stop.is_raised() {
            self.receive(socket, true);
            self.ingest.flush_if_due();
        }
        // What the kernel already queued was accepted by this host: read it, then hand
        // off the interval so far.
        while self.receive(socket, false) {}
        self.ingest.flush(now_ns(), true);
    }

    /// One receive call; false when nothing was read.
    fn receive(&mut self, socket: &UdpSocket, wait: bool) -> bool {
        let mut refused = Refused::default();
        // Looked at once the batch has arrived, not before the wait (see udp.rs).
        let mut open = None;
        let (ingest, gate) = (&mut self.ingest, &mut self.gate);
        let received = self.receiver.receive(socket, wait, |payload, source, truncated| {
            let open = *open.get_or_insert_with(|| {
                gate.refresh();
                gate.is_open()
            });
            if !open && !refused.admit(gate, source) {
                ingest.note(payload, truncated);
                return;
            }
            ingest.ingest(payload, truncated);
        });
        self.ingest.count_batch();
        refused.count(&self.ingest.counters);
        match received {
            Ok(received) => received.datagrams > 0,
            Err(error) => {
                if !udp_receive::is_idle(&error) {
                    ListenerCounters::add(&self.ingest.counters.receive_errors, 1);
                    std::thread::sleep(Duration::from_millis(1));
                }
                false
            }
        }
    }
}
