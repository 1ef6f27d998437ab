//! Prometheus metrics: HTTP series (CONVENTIONS.md), process series, and the appliance's
//! ingest, drop and store series, read from the data plane's counters at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use killkrill_dataplane::SharedCapture;
use killkrill_dataplane::counters::{ListenerCounters, SharedListenerCounters};
use killkrill_dataplane::listener::{CapturePath, ListenerKind};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::process;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route (e.g. `/api/v1/logs`), never the raw URI, to keep labels bounded.
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    pub method: String,
    pub endpoint: String,
}

/// Counters of the batch writer, the stage between the hand-off and the store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub stored_messages: AtomicU64,
    pub stored_batches: AtomicU64,
    pub stored_blocks: AtomicU64,
    /// Bytes of the frames committed, as received.
    pub stored_raw_bytes: AtomicU64,
    /// Bytes of the compressed blocks committed.
    pub stored_block_bytes: AtomicU64,
    /// Messages and blocks removed by retention.
    pub retention_removed_messages: AtomicU64,
    pub retention_removed_blocks: AtomicU64,
    pub retention_removed_metric_points: AtomicU64,
    /// Blocks and bytes in the spool now.
    pub spool_blocks: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Blocks and messages ever written to the spool, and blocks drained from it.
    pub spooled_blocks: AtomicU64,
    pub spooled_messages: AtomicU64,
    pub drained_blocks: AtomicU64,
    /// Times a block found the spool full (the writer then waits for the store).
    pub spool_full: AtomicU64,
    /// Spool files that failed their checksum and were set aside.
    pub spool_damaged: AtomicU64,
    /// Woken after each committed block, for the live tail.
    pub committed: tokio::sync::Notify,
    /// Failed store writes; the batch is retried, not dropped.
    pub write_errors: AtomicU64,
    /// Compaction (ADR 0037, 0055): windows done (and of those, merged), blocks read and
    /// written, messages rewritten, blocks left as they were because they could not be
    /// decoded, time spent.
    pub compaction_windows: AtomicU64,
    pub compaction_merged_windows: AtomicU64,
    pub compaction_blocks_read: AtomicU64,
    pub compaction_blocks_written: AtomicU64,
    pub compaction_messages: AtomicU64,
    pub compaction_undecodable_blocks: AtomicU64,
    pub compaction_errors: AtomicU64,
    pub compaction_micros: AtomicU64,
}

impl StoreCounters {
    /// Counts a block the store committed (whichever path brought it), and wakes the live
    /// tail.
    pub fn count_committed(&self, block: &crate::store::EncodedBlock) {
        let summary = &block.summary;
        self.stored_messages.fetch_add(u64::from(summary.message_count), Ordering::Relaxed);
        self.stored_blocks.fetch_add(1, Ordering::Relaxed);
        self.stored_raw_bytes.fetch_add(summary.raw_bytes, Ordering::Relaxed);
        self.stored_block_bytes.fetch_add(block.payload.len() as u64, Ordering::Relaxed);
        self.committed.notify_waiters();
    }
}

/// Counters of the Redis Streams hand-off: the publishing side (this process's batch
/// writer) and the stream writer side (storing what any publisher sent).
#[derive(Debug, Default)]
pub struct HandoffCounters {
    /// Blocks Redis confirmed as added to the stream.
    pub published_blocks: AtomicU64,
    pub published_messages: AtomicU64,
    /// Batches given back to their listener after their block was published.
    pub published_batches: AtomicU64,
    /// Publish attempts refused because the stream was at its cap (retried, not dropped).
    pub stream_full: AtomicU64,
    /// Entries stored (or found already stored) and acknowledged by this stream writer.
    pub consumed_blocks: AtomicU64,
    pub consumed_messages: AtomicU64,
    /// Consumed blocks the store already had (a retried publish or a claimed entry).
    pub duplicate_blocks: AtomicU64,
    /// Entries taken over from a writer that stopped acknowledging (XAUTOCLAIM).
    pub claimed_entries: AtomicU64,
    /// Entries that could not be decoded, moved to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Failed reads, claims and acknowledgements of the stream writer.
    pub stream_errors: AtomicU64,
    /// Failed store writes of the stream writer (retried).
    pub store_errors: AtomicU64,
}

/// Every metric the process serves.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_errors: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpRouteLabels, Histogram>,
    pub http_active: Gauge,
}

impl Metrics {
    pub fn new(listeners: SharedListenerCounters, store: Arc<StoreCounters>) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_errors = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpRouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        let http_active = Gauge::default();
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        registry.register("http_errors", "HTTP requests answered with a 5xx status", http_errors.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        registry.register("http_requests_active", "HTTP requests being answered", http_active.clone());
        registry.register_collector(Box::new(ProcessCollector));
        registry.register_collector(Box::new(IngestCollector { listeners, store }));
        Self { registry, http_requests, http_errors, http_duration, http_active }
    }

    /// Adds the capture path and, with XDP, the program's counters by listener and reason.
    pub fn add_capture(&mut self, capture: SharedCapture) {
        self.registry.register_collector(Box::new(CaptureCollector { capture }));
    }

    /// Adds the data plane's runtime and core count (fixed for the process's life).
    pub fn add_runtime(&mut self, status: killkrill_dataplane::cores::RuntimeStatus) {
        self.registry.register_collector(Box::new(RuntimeCollector { status }));
    }

    /// Adds the Redis Streams hand-off series.
    pub fn add_handoff(&mut self, counters: Arc<HandoffCounters>) {
        self.registry.register_collector(Box::new(HandoffCollector { counters }));
    }

    /// Adds the metrics pipeline's series (statsd and Influx listeners, metric writer).
    pub fn add_metric_pipeline(&mut self, collector: super::metric_pipeline::MetricPipelineCollector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[derive(Debug)]
struct ProcessCollector;

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(bytes) = process::resident_memory_bytes() {
            let metric = ConstGauge::new(bytes as i64);
            metric.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(seconds) = process::cpu_seconds() {
            let metric = ConstCounter::new(seconds);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some(fds) = process::open_fds() {
            let metric = ConstGauge::new(fds as i64);
            metric.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// The capture path in use and the XDP program's counters, read at scrape time.
struct CaptureCollector {
    /// Current across live capture changes.
    capture: SharedCapture,
}

impl std::fmt::Debug for CaptureCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureCollector").finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for CaptureCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.capture.read().unwrap_or_else(PoisonError::into_inner).clone();
        {
            let mut metric = encoder.encode_descriptor(
                "killkrill_capture_path",
                "1 for the capture path syslog over UDP uses: socket, xdp-native or xdp-generic",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1).encode(metric.encode_family(&[("path", now.status.label())])?)?;
        }
        let Some(xdp) = &now.xdp else { return Ok(()) };
        // A failed read (map gone) leaves the family out of this scrape rather than lying.
        let counters = xdp.lock().unwrap_or_else(PoisonError::into_inner).counters().ok();
        if let Some(counters) = counters {
            counter_family(
                &mut encoder,
                "killkrill_xdp_packets",
                "Packets the XDP program counted, by listener (none: not for a listener) and reason",
                counters.iter().map(|(listener, reason, value)| {
                    (vec![("listener", listener.label()), ("reason", reason.label())], value)
                }),
            )?;
        }
        Ok(())
    }
}

/// `killkrill_dataplane_runtime_info` and `killkrill_dataplane_cores`.
#[derive(Debug)]
struct RuntimeCollector {
    status: killkrill_dataplane::cores::RuntimeStatus,
}

impl prometheus_client::collector::Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut metric = encoder.encode_descriptor(
                "killkrill_dataplane_runtime_info",
                "1 for the data plane's runtime (glommio or threads); fallback is true when auto could not use glommio",
                None,
                MetricType::Gauge,
            )?;
            let fallback = if self.status.fallback_reason.is_some() { "true" } else { "false" };
            ConstGauge::new(1).encode(
                metric.encode_family(&[("kind", self.status.kind.label()), ("fallback", fallback)])?,
            )?;
        }
        let metric = ConstGauge::new(self.status.cores.len() as i64);
        metric.encode(encoder.encode_descriptor(
            "killkrill_dataplane_cores",
            "CPUs the data plane runs on",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[derive(Debug)]
struct IngestCollector {
    listeners: SharedListenerCounters,
    store: Arc<StoreCounters>,
}

type Labels = Vec<(&'static str, &'static str)>;

/// Writes one counter family: a value per label set.
fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for IngestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = ListenerCounters::read;
        let listeners = killkrill_dataplane::counters::snapshot(&self.listeners);
        // AF_XDP receivers share the socket listener's name: their series carry the capture
        // path too, so the two never collide (socket series keep their old label set).
        let listener = |c: &ListenerCounters| -> Labels {
            match c.capture {
                CapturePath::Socket => vec![("listener", c.listener.label())],
                other => vec![("listener", c.listener.label()), ("capture", other.label())],
            }
        };
        let each = |f: &dyn Fn(&ListenerCounters) -> (Labels, u64)| -> Vec<(Labels, u64)> {
            listeners.iter().map(|c| f(c)).collect()
        };
        counter_family(
            &mut encoder,
            "killkrill_ingest_messages",
            "Messages received, by listener and capture path",
            each(&|c| {
                (
                    vec![("listener", c.listener.label()), ("capture", c.capture.label())],
                    read(&c.received_messages),
                )
            }),
        )?;
        counter_family(
            &mut encoder,
            "killkrill_ingest_bytes",
            "Payload bytes received, by listener",
            each(&|c| (listener(c), read(&c.received_bytes))),
        )?;
        counter_family(
            &mut encoder,
            "killkrill_parse_errors",
            "Messages stored raw with a parse-error flag, by listener",
            each(&|c| (listener(c), read(&c.parse_errors))),
        )?;
        let mut dropped = Vec::new();
        for c in &listeners {
            let with = |extra: [(&'static str, &'static str); 2]| -> Labels {
                let mut labels = listener(c);
                labels.extend(extra);
                labels
            };
            dropped
                .push((with([("stage", "handoff"), ("reason", "ring_full")]), read(&c.dropped_handoff_full)));
            dropped
                .push((with([("stage", "shutdown"), ("reason", "store_gone")]), read(&c.dropped_shutdown)));
            if c.capture == CapturePath::Socket {
                dropped.push((with([("stage", "source"), ("reason", "denied")]), read(&c.dropped_denied)));
                dropped.push((
                    with([("stage", "source"), ("reason", "rate_limited")]),
                    read(&c.dropped_rate_limited),
                ));
            }
            if c.capture == CapturePath::AfXdp {
                dropped.push((
                    with([("stage", "capture"), ("reason", "ring_full")]),
                    read(&c.dropped_capture_full),
                ));
            }
        }
        counter_family(
            &mut encoder,
            "killkrill_dropped_messages",
            "Messages dropped, by listener, stage and reason",
            dropped,
        )?;
        let mut flagged = Vec::new();
        for c in &listeners {
            let label = c.listener.label();
            if !c.listener.is_stream() {
                // Datagrams longer than the receive buffer (socket path only).
                if c.capture == CapturePath::Socket && c.listener != ListenerKind::Http {
                    flagged
                        .push((vec![("listener", label), ("flag", "truncated")], read(&c.truncated_frames)));
                }
                continue;
            }
            flagged.push((vec![("listener", label), ("flag", "truncated")], read(&c.truncated_frames)));
            flagged.push((vec![("listener", label), ("flag", "incomplete")], read(&c.incomplete_frames)));
            flagged.push((vec![("listener", label), ("flag", "framing_error")], read(&c.framing_errors)));
        }
        counter_family(
            &mut encoder,
            "killkrill_frames_flagged",
            "TCP and TLS frames kept with a framing flag; UDP datagrams cut to the receive buffer",
            flagged,
        )?;
        counter_family(
            &mut encoder,
            "killkrill_receive_errors",
            "Failed receive or accept calls, by listener",
            each(&|c| (listener(c), read(&c.receive_errors))),
        )?;
        let journal_errors: Vec<(Labels, u64)> = listeners
            .iter()
            .filter(|c| c.listener.is_stream())
            .map(|c| (vec![("listener", c.listener.label())], read(&c.journal_errors)))
            .collect();
        counter_family(
            &mut encoder,
            "killkrill_journal_errors",
            "TCP and TLS listeners: failed journal writes (what was read then is not protected against a crash)",
            journal_errors,
        )?;
        counter_family(
            &mut encoder,
            "killkrill_handoff_batches",
            "Batches handed from a listener to the store writer",
            each(&|c| (listener(c), read(&c.handed_off_batches))),
        )?;
        counter_family(
            &mut encoder,
            "killkrill_tcp_connections_closed_hopeless",
            "TCP and TLS connections closed because their framing could not be recovered",
            listeners
                .iter()
                .filter(|c| c.listener.is_stream())
                .map(|c| (listener(c), read(&c.connections_closed_hopeless))),
        )?;
        counter_family(
            &mut encoder,
            "killkrill_tcp_connections_accepted",
            "TCP and TLS connections accepted",
            listeners
                .iter()
                .filter(|c| c.listener.is_stream())
                .map(|c| (listener(c), read(&c.connections_accepted))),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "killkrill_tcp_connections_active",
                "TCP and TLS connections open now",
                None,
                MetricType::Gauge,
            )?;
            for c in listeners.iter().filter(|c| c.listener.is_stream()) {
                ConstGauge::new(c.connections_active() as i64).encode(metric.encode_family(&listener(c))?)?;
            }
        }
        let mut handshakes = Vec::new();
        for c in listeners.iter().filter(|c| c.listener == ListenerKind::SyslogTls) {
            let label = c.listener.label();
            for (outcome, counter) in [
                ("completed", &c.tls_handshakes_completed),
                ("failed", &c.tls_handshake_failures),
                ("client_certificate_rejected", &c.tls_client_certificates_rejected),
                ("timed_out", &c.tls_handshake_timeouts),
            ] {
                handshakes.push((vec![("listener", label), ("outcome", outcome)], read(counter)));
            }
        }
        counter_family(
            &mut encoder,
            "killkrill_tls_handshakes",
            "TLS handshakes by outcome (failed: protocol errors, garbage, hang-ups; client_certificate_rejected: no or untrusted client certificate)",
            handshakes,
        )?;
        let store = &self.store;
        for (name, help, counter) in [
            ("killkrill_store_messages", "Messages committed to the store", &store.stored_messages),
            ("killkrill_store_batches", "Batches committed to the store", &store.stored_batches),
            ("killkrill_store_blocks", "Compressed log blocks committed to the store", &store.stored_blocks),
            (
                "killkrill_store_raw_bytes",
                "Bytes of messages committed, as received",
                &store.stored_raw_bytes,
            ),
            (
                "killkrill_store_retention_removed_messages",
                "Messages removed by retention (age or size limit)",
                &store.retention_removed_messages,
            ),
            (
                "killkrill_store_retention_removed_blocks",
                "Log blocks removed by retention",
                &store.retention_removed_blocks,
            ),
            (
                "killkrill_store_retention_removed_metric_points",
                "Metric points removed by retention (metrics.retention_max_age)",
                &store.retention_removed_metric_points,
            ),
            (
                "killkrill_spool_written_blocks",
                "Log blocks written to the spool while the store was down",
                &store.spooled_blocks,
            ),
            ("killkrill_spool_written_messages", "Messages written to the spool", &store.spooled_messages),
            (
                "killkrill_spool_drained_blocks",
                "Spooled blocks committed to the store",
                &store.drained_blocks,
            ),
            (
                "killkrill_spool_full",
                "Blocks that found the spool full (the writer waited for the store)",
                &store.spool_full,
            ),
            (
                "killkrill_spool_damaged",
                "Spool files set aside because they failed their checksum",
                &store.spool_damaged,
            ),
            (
                "killkrill_store_block_bytes",
                "Bytes of compressed log blocks committed",
                &store.stored_block_bytes,
            ),
            (
                "killkrill_store_write_errors",
                "Store writes that failed and were retried",
                &store.write_errors,
            ),
            (
                "killkrill_compaction_windows",
                "Windows of log blocks compacted by host or merged",
                &store.compaction_windows,
            ),
            (
                "killkrill_compaction_merged_windows",
                "Windows of host-grouped log blocks merged into large blocks",
                &store.compaction_merged_windows,
            ),
            (
                "killkrill_compaction_blocks_read",
                "Log blocks compaction replaced",
                &store.compaction_blocks_read,
            ),
            (
                "killkrill_compaction_blocks_written",
                "Host-grouped and merged log blocks compaction wrote",
                &store.compaction_blocks_written,
            ),
            ("killkrill_compaction_messages", "Messages compaction rewrote", &store.compaction_messages),
            (
                "killkrill_compaction_undecodable_blocks",
                "Log blocks compaction could not decode and left as they were",
                &store.compaction_undecodable_blocks,
            ),
            (
                "killkrill_compaction_errors",
                "Compaction passes that stopped on a store error (tried again later)",
                &store.compaction_errors,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(counter.load(Ordering::Relaxed)).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "killkrill_compaction_seconds",
            "Time spent compacting log blocks",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(store.compaction_micros.load(Ordering::Relaxed) as f64 / 1e6).encode(metric)?;
        for (name, help, gauge) in [
            ("killkrill_spool_blocks", "Log blocks waiting in the spool", &store.spool_blocks),
            ("killkrill_spool_bytes", "Bytes waiting in the spool", &store.spool_bytes),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(gauge.load(Ordering::Relaxed) as i64).encode(metric)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HandoffCollector {
    counters: Arc<HandoffCounters>,
}

impl prometheus_client::collector::Collector for HandoffCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        for (name, help, counter) in [
            (
                "killkrill_stream_published_blocks",
                "Log blocks published to the Redis Stream",
                &c.published_blocks,
            ),
            (
                "killkrill_stream_published_messages",
                "Messages in the log blocks published to the Redis Stream",
                &c.published_messages,
            ),
            (
                "killkrill_stream_published_batches",
                "Batches whose block was published to the Redis Stream",
                &c.published_batches,
            ),
            (
                "killkrill_stream_full_refusals",
                "Publish attempts refused because the stream was at its cap (retried)",
                &c.stream_full,
            ),
            (
                "killkrill_stream_consumed_blocks",
                "Log blocks this stream writer stored and acknowledged",
                &c.consumed_blocks,
            ),
            (
                "killkrill_stream_consumed_messages",
                "Messages in the log blocks this stream writer stored and acknowledged",
                &c.consumed_messages,
            ),
            (
                "killkrill_stream_duplicate_blocks",
                "Consumed log blocks the store already held",
                &c.duplicate_blocks,
            ),
            (
                "killkrill_stream_claimed_entries",
                "Stream entries claimed from a writer that stopped acknowledging",
                &c.claimed_entries,
            ),
            (
                "killkrill_stream_dead_lettered",
                "Stream entries that could not be decoded, moved to the dead-letter stream",
                &c.dead_lettered,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(read(counter)).encode(metric)?;
        }
        counter_family(
            &mut encoder,
            "killkrill_stream_errors",
            "Failed hand-off operations, by stage (each is retried)",
            [
                (vec![("stage", "publish")], read(&c.publish_errors)),
                (vec![("stage", "consume")], read(&c.stream_errors)),
                (vec![("stage", "store")], read(&c.store_errors)),
            ],
        )
    }
}
