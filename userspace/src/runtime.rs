//! Starting and stopping the data plane.
//!
//! This first runtime is the portable one: a thread per listener with `recvmmsg` (UDP)
//! and epoll (TCP), plus, when capture asks for XDP, a thread per rx queue reading an
//! AF_XDP socket ([`crate::capture`]). The thread-per-core io_uring runtime plugs in
//! beside it; see docs/adr/0004-first-data-plane-runtime.md.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use killkrill_parsers::syslog::ParseOptions;

use crate::Result;
use crate::batch::BatchLimits;
use crate::capture::{CaptureConfig, CaptureMode, CaptureStatus, XdpCapture};
use crate::counters::ListenerCounters;
use crate::handoff::{BatchConsumer, batch_ring};
use crate::listener::metrics_udp::{MetricSink, spawn_metrics_listener};
use crate::listener::stream::{StreamSettings, TlsSettings};
use crate::listener::tcp::bind_tcp;
use crate::listener::udp::{bind_udp, bind_udp_with};
use crate::listener::{
    BatchSink, CapturePath, ListenerInfo, ListenerKind, StopSignal, spawn_stream_listener, spawn_udp_listener,
};
use crate::metrics::{AggregatorSettings, MetricConsumer, MetricCounters, metric_ring};
use crate::tls::TlsServerConfig;
use crate::xdp::{XdpCounters, XdpSteering};

/// What the data plane listens on and how it batches.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// Syslog over UDP; `None` disables it.
    pub syslog_udp: Option<SocketAddr>,
    /// Syslog over TCP; `None` disables it.
    pub syslog_tcp: Option<SocketAddr>,
    /// Syslog over TLS (RFC 5425); `None` disables it.
    pub syslog_tls: Option<TlsListenerConfig>,
    /// Longest TCP or TLS frame kept whole; longer ones are truncated and counted.
    pub max_frame_bytes: usize,
    pub batch: BatchLimits,
    /// Closed batches each listener may have waiting for the control plane.
    pub handoff_capacity: usize,
    /// Zone for syslog timestamps that carry no offset.
    pub time_zone: TimeZone,
    /// XDP/AF_XDP capture of the syslog UDP port, beside its socket.
    pub capture: CaptureConfig,
    /// statsd / DogStatsD over UDP; `None` disables it.
    pub statsd_udp: Option<SocketAddr>,
    /// Influx line protocol over UDP; `None` disables it.
    pub influx_udp: Option<SocketAddr>,
    /// Flush interval and limits of the metrics listeners' aggregators.
    pub metrics: AggregatorSettings,
    /// Receive threads per metrics listener, each with its own SO_REUSEPORT socket,
    /// aggregator and ring; their points are merged at query time.
    pub metrics_threads: usize,
    /// Where TCP and TLS listeners journal what they read, one directory each
    /// ([`crate::journal`]); `None`: no journal.
    pub journal_root: Option<std::path::PathBuf>,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            syslog_udp: None,
            syslog_tcp: None,
            syslog_tls: None,
            max_frame_bytes: 64 * 1024,
            batch: BatchLimits::default(),
            handoff_capacity: 64,
            time_zone: TimeZone::UTC,
            capture: CaptureConfig::default(),
            statsd_udp: None,
            influx_udp: None,
            metrics: AggregatorSettings::default(),
            metrics_threads: 1,
            journal_root: None,
        }
    }
}

/// The syslog-over-TLS listener: where, with which certificates, and how long a client
/// may take to finish its handshake.
#[derive(Clone, Debug)]
pub struct TlsListenerConfig {
    pub address: SocketAddr,
    pub server: TlsServerConfig,
    pub handshake_timeout: Duration,
}

/// `threads` sockets on one address (SO_REUSEPORT when more than one); with port 0, the
/// first socket picks the port and the others join it.
fn bind_metric_sockets(kind: ListenerKind, address: SocketAddr, threads: usize) -> Result<Vec<UdpSocket>> {
    let shared = threads > 1;
    let first = bind_udp_with(kind, address, shared)?;
    let bound = first.local_addr().map_err(|source| crate::Error::SocketOption { listener: kind, source })?;
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(bind_udp_with(kind, bound, true)?);
    }
    Ok(sockets)
}

/// The running data plane.
pub struct DataPlane {
    listeners: Vec<ListenerInfo>,
    counters: Vec<Arc<ListenerCounters>>,
    consumers: Vec<BatchConsumer>,
    metric_counters: Vec<Arc<MetricCounters>>,
    metric_consumers: Vec<MetricConsumer>,
    threads: Vec<JoinHandle<()>>,
    stop: StopSignal,
    /// XDP capture, when it started; stopped before the socket listeners.
    xdp: Option<XdpCapture>,
    capture: CaptureStatus,
}

impl DataPlane {
    /// Binds every configured listener (all or nothing) and starts their threads.
    pub fn start(config: &DataPlaneConfig) -> Result<Self> {
        // Bind everything first, so that a bad address fails start-up before any thread runs.
        let udp = config.syslog_udp.map(|address| bind_udp(ListenerKind::SyslogUdp, address)).transpose()?;
        let tcp = config.syslog_tcp.map(|address| bind_tcp(ListenerKind::SyslogTcp, address)).transpose()?;
        let tls = config
            .syslog_tls
            .as_ref()
            .map(|tls| bind_tcp(ListenerKind::SyslogTls, tls.address).map(|socket| (socket, tls)))
            .transpose()?;
        let statsd = config
            .statsd_udp
            .map(|address| bind_metric_sockets(ListenerKind::StatsdUdp, address, config.metrics_threads))
            .transpose()?;
        let influx = config
            .influx_udp
            .map(|address| bind_metric_sockets(ListenerKind::InfluxUdp, address, config.metrics_threads))
            .transpose()?;
        let mut plane = Self {
            listeners: Vec::new(),
            counters: Vec::new(),
            consumers: Vec::new(),
            metric_counters: Vec::new(),
            metric_consumers: Vec::new(),
            threads: Vec::new(),
            stop: StopSignal::default(),
            xdp: None,
            capture: CaptureStatus::Socket { fallback: None },
        };
        let options = ParseOptions { received_at: Timestamp::now(), time_zone: config.time_zone.clone() };
        if let Some(socket) = &udp
            && config.capture.mode != CaptureMode::Socket
        {
            let address = socket
                .local_addr()
                .map_err(|source| crate::Error::SocketOption { listener: ListenerKind::SyslogUdp, source })?;
            plane.start_xdp(config, address, &options)?;
        }
        if let Some(socket) = udp {
            let (sink, counters) = plane.add_sink(ListenerKind::SyslogUdp, config);
            let started = spawn_udp_listener(socket, sink, counters, options.clone(), plane.stop.clone());
            plane.add_listener(started)?;
        }
        for (kind, listener, tls) in [
            tcp.map(|listener| (ListenerKind::SyslogTcp, listener, None)),
            tls.map(|(listener, tls)| (ListenerKind::SyslogTls, listener, Some(tls))),
        ]
        .into_iter()
        .flatten()
        {
            let (sink, counters) = plane.add_sink(kind, config);
            let local_addr = listener
                .local_addr()
                .map_err(|source| crate::Error::SocketOption { listener: kind, source })?;
            let settings = StreamSettings {
                max_frame_bytes: config.max_frame_bytes,
                journal_dir: config
                    .journal_root
                    .as_deref()
                    .map(|root| crate::journal::listener_dir(root, kind.label(), local_addr)),
                tls: tls.map(|tls| TlsSettings {
                    server: tls.server.clone(),
                    handshake_timeout: tls.handshake_timeout,
                }),
            };
            let started = spawn_stream_listener(
                kind,
                listener,
                settings,
                sink,
                counters,
                options.clone(),
                plane.stop.clone(),
            );
            plane.add_listener(started)?;
        }
        for (kind, sockets) in [(ListenerKind::StatsdUdp, statsd), (ListenerKind::InfluxUdp, influx)] {
            // One set of counters for all of a listener's threads (atomics added to once per
            // receive call), so it reads as one listener in /metrics.
            let counters = Arc::new(ListenerCounters::new(kind, CapturePath::Socket));
            let metric_counters = Arc::new(MetricCounters::new(kind));
            for (index, socket) in sockets.into_iter().flatten().enumerate() {
                if index == 0 {
                    plane.counters.push(counters.clone());
                    plane.metric_counters.push(metric_counters.clone());
                }
                let (producer, consumer) = metric_ring(config.handoff_capacity);
                plane.metric_consumers.push(consumer);
                let sink = MetricSink {
                    kind,
                    settings: config.metrics,
                    producer,
                    counters: counters.clone(),
                    metric_counters: metric_counters.clone(),
                };
                match spawn_metrics_listener(socket, sink, plane.stop.clone()) {
                    Ok((info, thread)) => {
                        if index == 0 {
                            plane.listeners.push(info);
                        }
                        plane.threads.push(thread);
                    }
                    Err(error) => {
                        plane.stop_threads();
                        return Err(error);
                    }
                }
            }
        }
        Ok(plane)
    }

    /// Starts XDP capture of the syslog UDP port; in `auto` mode a failure leaves the
    /// socket listener alone and is reported in [`DataPlane::capture`].
    fn start_xdp(
        &mut self,
        config: &DataPlaneConfig,
        address: SocketAddr,
        options: &ParseOptions,
    ) -> Result<()> {
        if config.capture.mode == CaptureMode::Auto && config.capture.interface.is_none() {
            self.capture =
                CaptureStatus::Socket { fallback: Some("no capture interface configured".to_owned()) };
            return Ok(());
        }
        let mut capture = match XdpCapture::open(&config.capture, address.port()) {
            Ok(capture) => capture,
            Err(error) if config.capture.mode == CaptureMode::Auto => {
                tracing::warn!(error = %error, "XDP capture unavailable; syslog over UDP uses the socket only");
                self.capture = CaptureStatus::Socket { fallback: Some(error.to_string()) };
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let kind = ListenerKind::SyslogUdp;
        // One set of counters for every queue: atomics added to once per batch.
        let counters = Arc::new(ListenerCounters::new(kind, CapturePath::AfXdp));
        self.counters.push(counters.clone());
        let mut consumers = Vec::new();
        let spawned = capture.spawn(
            |_queue| {
                let (producer, consumer) = batch_ring(config.handoff_capacity);
                consumers.push(consumer);
                BatchSink::new(kind, config.batch, producer, counters.clone())
            },
            &counters,
            options,
        );
        self.consumers.extend(consumers);
        self.capture = capture.status().clone();
        self.listeners.push(ListenerInfo { kind, local_addr: address, capture: CapturePath::AfXdp });
        self.xdp = Some(capture);
        spawned.map_err(Into::into)
    }

    fn add_sink(
        &mut self,
        kind: ListenerKind,
        config: &DataPlaneConfig,
    ) -> (BatchSink, Arc<ListenerCounters>) {
        let counters = Arc::new(ListenerCounters::new(kind, CapturePath::Socket));
        let (producer, consumer) = batch_ring(config.handoff_capacity);
        self.counters.push(counters.clone());
        self.consumers.push(consumer);
        (BatchSink::new(kind, config.batch, producer, counters.clone()), counters)
    }

    /// Counters of the metrics listeners (samples, rejected lines, points).
    pub fn metric_counters(&self) -> &[Arc<MetricCounters>] {
        &self.metric_counters
    }

    /// The consumer ends of the metrics listeners' point rings; taken once.
    pub fn take_metric_consumers(&mut self) -> Vec<MetricConsumer> {
        std::mem::take(&mut self.metric_consumers)
    }

    /// Which capture the data plane got (and why not XDP, when it fell back).
    pub fn capture(&self) -> &CaptureStatus {
        &self.capture
    }

    /// The XDP program, for changing ports, lists and rate limits at run time; None
    /// without XDP capture.
    pub fn xdp(&self) -> Option<Arc<Mutex<XdpSteering>>> {
        self.xdp.as_ref().map(|capture| capture.steering().clone())
    }

    /// The XDP program's counters; None without XDP capture.
    pub fn xdp_counters(&self) -> Option<XdpCounters> {
        let steering = self.xdp.as_ref()?.steering().lock().unwrap_or_else(PoisonError::into_inner);
        steering.counters().ok()
    }

    fn add_listener(&mut self, started: Result<(ListenerInfo, JoinHandle<()>)>) -> Result<()> {
        match started {
            Ok((info, thread)) => {
                self.listeners.push(info);
                self.threads.push(thread);
                Ok(())
            }
            Err(error) => {
                self.stop_threads();
                Err(error)
            }
        }
    }

    /// The running listeners and the capture path each uses.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// Counters of every listener, for metrics and stats.
    pub fn counters(&self) -> &[Arc<ListenerCounters>] {
        &self.counters
    }

    /// The consumer ends of the hand-off rings; the control plane takes them once.
    pub fn take_consumers(&mut self) -> Vec<BatchConsumer> {
        std::mem::take(&mut self.consumers)
    }

    /// Stops the listeners after they have handed off everything they accepted. The
    /// consumers must keep draining meanwhile, or what is left is counted as dropped.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        // Rings nobody took will never be drained: let go of them, so that listeners count
        // what they still hold as dropped at shutdown instead of waiting for room forever.
        self.consumers.clear();
        self.metric_consumers.clear();
        // AF_XDP first: its sockets leave the map, so what arrives meanwhile goes to the
        // kernel and is read by the socket listener, which stops after.
        if let Some(capture) = &mut self.xdp {
            capture.stop();
        }
        self.stop.raise();
        for thread in self.threads.drain(..) {
            // A listener thread that panicked has already lost its batch; nothing to add.
            let _ = thread.join();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop_threads();
    }
}
