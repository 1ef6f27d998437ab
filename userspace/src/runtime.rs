//! Starting and stopping the data plane.
//!
//! Thread per core (docs/runtime.md, docs/adr/0032-thread-per-core-runtime.md): the data
//! plane's CPUs are settled once ([`CorePlan`]); syslog over UDP gets one SO_REUSEPORT
//! socket per core, each served on its core's glommio executor (or pinned thread where
//! io_uring is unavailable); each AF_XDP queue's reader runs on the core its interrupts
//! land on; TCP and TLS listeners run pinned, spread over the cores.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use killkrill_parsers::syslog::ParseOptions;

use crate::Result;
use crate::batch::BatchLimits;
use crate::capture::{CaptureConfig, CaptureMode, CaptureStatus, QueueSinks, XdpCapture};
use crate::cores::{CorePlan, CoreSelection, RuntimeChoice, RuntimeStatus, format_cpu_list};
use crate::counters::ListenerCounters;
use crate::handoff::{BatchConsumer, batch_ring};
use crate::listener::metrics_udp::{MetricIngest, MetricSink, spawn_metrics_listener};
use crate::listener::stream::{StreamSettings, TlsSettings};
use crate::listener::tcp::bind_tcp;
use crate::listener::udp::{SyslogDatagramReader, bind_udp_with};
use crate::listener::{
    BatchSink, CapturePath, ListenerInfo, ListenerKind, StopSignal, spawn_stream_listener, spawn_udp_listener,
};
use crate::metrics::{AggregatorSettings, MetricConsumer, MetricCounters, metric_ring};
use crate::sources::SharedSourcePolicy;
use crate::tls::TlsServerConfig;
use crate::xdp::{XdpCounters, XdpListener, XdpSteering};

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
    /// Allow and deny lists and rate limit on the socket path; change them at run time
    /// through the same handle ([`DataPlane::sources`]).
    pub sources: SharedSourcePolicy,
    /// Certificates for syslog-tls listeners started at run time when `syslog_tls` is
    /// `None` (its address is not used).
    pub tls_certificate: Option<TlsListenerConfig>,
    /// Which CPUs run the data plane (`dataplane.cores`).
    pub cores: CoreSelection,
    /// What runs on each of them (`dataplane.runtime`).
    pub runtime: RuntimeChoice,
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
            sources: SharedSourcePolicy::default(),
            tls_certificate: None,
            cores: CoreSelection::Auto,
            runtime: RuntimeChoice::Auto,
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

/// `threads` sockets on one address (SO_REUSEPORT when more than one); with port 0, a
/// free port is found first and they all bind it.
fn bind_shared_sockets(kind: ListenerKind, address: SocketAddr, threads: usize) -> Result<Vec<UdpSocket>> {
    let shared = threads > 1;
    let address = if address.port() == 0 { free_udp_port(kind, address)? } else { address };
    let first = bind_udp_with(kind, address, shared)?;
    let bound = first.local_addr().map_err(|source| crate::Error::SocketOption { listener: kind, source })?;
    let mut sockets = vec![first];
    for _ in 1..threads {
        sockets.push(bind_udp_with(kind, bound, true)?);
    }
    Ok(sockets)
}

/// A port nothing is bound to, on `address`'s IP. Our listener sockets set SO_REUSEADDR
/// (and SO_REUSEPORT when shared), and the kernel may give a socket with those a port that
/// another such socket of the same user already holds: two listeners asked for port 0
/// could share one and split each other's datagrams. A socket with neither option gets a
/// port no socket holds; it is closed before the listener binds the port.
fn free_udp_port(kind: ListenerKind, address: SocketAddr) -> Result<SocketAddr> {
    let probe =
        UdpSocket::bind(address).map_err(|source| crate::Error::Bind { listener: kind, address, source })?;
    probe.local_addr().map_err(|source| crate::Error::SocketOption { listener: kind, source })
}

/// A listener the data plane can run: what it speaks and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub kind: ListenerKind,
    pub address: SocketAddr,
}

/// A socket bound for a listener, not yet served.
enum Bound {
    /// One socket per data-plane core.
    SyslogUdp(Vec<UdpSocket>),
    Stream(std::net::TcpListener),
    Metrics(Vec<UdpSocket>),
}

/// A socket listener and its threads (several for a metrics listener).
struct RunningListener {
    /// The address asked for (port 0 stays 0 here; `info` has the port bound).
    asked: SocketAddr,
    info: ListenerInfo,
    stop: StopSignal,
    threads: Vec<JoinHandle<()>>,
}

impl RunningListener {
    /// True when it serves `spec`: same kind, and the address asked for or bound.
    fn serves(&self, spec: &ListenerSpec) -> bool {
        self.info.kind == spec.kind && (self.asked == spec.address || self.info.local_addr == spec.address)
    }

    /// Stops accepting and reading; each thread hands off what it accepted (TCP and TLS:
    /// the frames already read from every open connection) before it returns.
    fn stop(&mut self) {
        self.stop.raise();
        for thread in self.threads.drain(..) {
            // A listener thread that panicked has already lost its batch; nothing to add.
            let _ = thread.join();
        }
    }
}

/// What every listener started now or later is built with.
struct ListenerSettings {
    batch: BatchLimits,
    handoff_capacity: usize,
    max_frame_bytes: usize,
    time_zone: TimeZone,
    tls: Option<TlsListenerConfig>,
    metrics: AggregatorSettings,
    metrics_threads: usize,
    sources: SharedSourcePolicy,
    journal_root: Option<std::path::PathBuf>,
    /// The capture settings in force (`apply_capture` changes them).
    capture: CaptureConfig,
    /// The data-plane cores and their runtime.
    plan: CorePlan,
    /// Stream listeners started so far: the next one goes to the next core.
    streams_started: usize,
}

/// What capture the data plane has now, for readers in other threads (stats, metrics, the
/// live settings): replaced whole when the capture changes at run time.
#[derive(Clone)]
pub struct CaptureNow {
    pub status: CaptureStatus,
    /// The XDP program, for ports, lists, rate limits and counters; None without XDP.
    pub xdp: Option<Arc<Mutex<XdpSteering>>>,
}

/// The shared view of [`CaptureNow`].
pub type SharedCapture = Arc<RwLock<CaptureNow>>;

/// The running data plane. Its set of socket listeners can change while it runs
/// ([`DataPlane::apply_listeners`]); rings of listeners started later reach the writers
/// through the feeds ([`DataPlane::take_consumer_feed`]).
pub struct DataPlane {
    settings: ListenerSettings,
    /// The AF_XDP receivers' entry (first), then the socket listeners.
    listeners: Vec<ListenerInfo>,
    running: Vec<RunningListener>,
    /// One set per listener kind and capture path, kept when a listener stops, so that
    /// counters only grow and series keep their labels.
    counters: Vec<Arc<ListenerCounters>>,
    shared_counters: Arc<RwLock<Vec<Arc<ListenerCounters>>>>,
    consumers: Vec<BatchConsumer>,
    consumer_feed: Option<Sender<BatchConsumer>>,
    consumer_feed_receiver: Option<Receiver<BatchConsumer>>,
    metric_counters: Vec<Arc<MetricCounters>>,
    shared_metric_counters: Arc<RwLock<Vec<Arc<MetricCounters>>>>,
    metric_consumers: Vec<MetricConsumer>,
    metric_feed: Option<Sender<MetricConsumer>>,
    metric_feed_receiver: Option<Receiver<MetricConsumer>>,
    /// XDP capture, when it started; stopped before the socket listeners.
    xdp: Option<XdpCapture>,
    /// One entry per listener kind whose port XDP steers.
    xdp_info: Vec<ListenerInfo>,
    capture: CaptureStatus,
    capture_now: SharedCapture,
}

impl DataPlane {
    /// Binds every configured listener (all or nothing) and starts their threads.
    pub fn start(config: &DataPlaneConfig) -> Result<Self> {
        let plan = CorePlan::settle(&config.cores, config.runtime)?;
        log_runtime(plan.status());
        let mut specs = Vec::new();
        let mut push = |kind, address: Option<SocketAddr>| {
            if let Some(address) = address {
                specs.push(ListenerSpec { kind, address });
            }
        };
        push(ListenerKind::SyslogUdp, config.syslog_udp);
        push(ListenerKind::SyslogTcp, config.syslog_tcp);
        push(ListenerKind::SyslogTls, config.syslog_tls.as_ref().map(|tls| tls.address));
        push(ListenerKind::StatsdUdp, config.statsd_udp);
        push(ListenerKind::InfluxUdp, config.influx_udp);
        let (consumer_feed, consumer_feed_receiver) = channel();
        let (metric_feed, metric_feed_receiver) = channel();
        let mut plane = Self {
            settings: ListenerSettings {
                batch: config.batch,
                handoff_capacity: config.handoff_capacity,
                max_frame_bytes: config.max_frame_bytes,
                time_zone: config.time_zone.clone(),
                tls: config.syslog_tls.clone().or_else(|| config.tls_certificate.clone()),
                metrics: config.metrics,
                metrics_threads: config.metrics_threads.max(1),
                sources: config.sources.clone(),
                journal_root: config.journal_root.clone(),
                capture: config.capture.clone(),
                plan,
                streams_started: 0,
            },
            listeners: Vec::new(),
            running: Vec::new(),
            counters: Vec::new(),
            shared_counters: Arc::default(),
            consumers: Vec::new(),
            consumer_feed: Some(consumer_feed),
            consumer_feed_receiver: Some(consumer_feed_receiver),
            metric_counters: Vec::new(),
            shared_metric_counters: Arc::default(),
            metric_consumers: Vec::new(),
            metric_feed: Some(metric_feed),
            metric_feed_receiver: Some(metric_feed_receiver),
            xdp: None,
            xdp_info: Vec::new(),
            capture: CaptureStatus::Socket { fallback: None },
            capture_now: Arc::new(RwLock::new(CaptureNow {
                status: CaptureStatus::Socket { fallback: None },
                xdp: None,
            })),
        };
        // Bind everything first, so that a bad address fails start-up before any thread runs.
        let bound = specs.iter().map(|spec| plane.bind(spec)).collect::<Result<Vec<_>>>()?;
        let options = plane.parse_options();
        let steered = specs
            .iter()
            .zip(&bound)
            .filter_map(|(spec, bound)| {
                let socket = match bound {
                    Bound::SyslogUdp(sockets) => sockets.first()?,
                    Bound::Metrics(sockets) => sockets.first()?,
                    Bound::Stream(_) => return None,
                };
                Some(
                    socket
                        .local_addr()
                        .map(|address| (spec.kind, address))
                        .map_err(|source| crate::Error::SocketOption { listener: spec.kind, source }),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        if !steered.is_empty() && config.capture.mode != CaptureMode::Socket {
            let capture = plane.settings.capture.clone();
            plane.start_xdp(&capture, &steered, &options, true)?;
        }
        for (spec, bound) in specs.iter().zip(bound) {
            let running = plane.spawn(spec, bound, true)?;
            plane.running.push(running);
        }
        plane.publish();
        Ok(plane)
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions { received_at: Timestamp::now(), time_zone: self.settings.time_zone.clone() }
    }

    fn bind(&self, spec: &ListenerSpec) -> Result<Bound> {
        Ok(match spec.kind {
            ListenerKind::SyslogUdp => Bound::SyslogUdp(bind_shared_sockets(
                spec.kind,
                spec.address,
                self.settings.plan.cores().len(),
            )?),
            ListenerKind::SyslogTcp => Bound::Stream(bind_tcp(spec.kind, spec.address)?),
            ListenerKind::SyslogTls => {
                if self.settings.tls.is_none() {
                    return Err(crate::Error::NoTlsCertificate);
                }
                Bound::Stream(bind_tcp(spec.kind, spec.address)?)
            }
            ListenerKind::StatsdUdp | ListenerKind::InfluxUdp => {
                Bound::Metrics(bind_shared_sockets(spec.kind, spec.address, self.settings.metrics_threads)?)
            }
            ListenerKind::Http => return Err(crate::Error::NotADataPlaneListener { listener: spec.kind }),
        })
    }

    /// Starts the threads of a bound listener. `at_start`: its rings go to the consumers
    /// taken once; later ones go through the feeds.
    fn spawn(&mut self, spec: &ListenerSpec, bound: Bound, at_start: bool) -> Result<RunningListener> {
        let stop = StopSignal::default();
        let options = self.parse_options();
        let mut threads = Vec::new();
        let mut info = None;
        let result = (|| -> Result<()> {
            match bound {
                Bound::SyslogUdp(sockets) => {
                    // One socket per core, each with its own batch and ring: shared nothing.
                    for (index, socket) in sockets.into_iter().enumerate() {
                        let (sink, counters) = self.add_sink(spec.kind, at_start);
                        let reader = SyslogDatagramReader::new(
                            &socket,
                            self.settings.capture.socket_receive,
                            sink,
                            counters,
                            options.clone(),
                            self.settings.sources.gate(),
                        );
                        let core = self.settings.plan.core_for(index);
                        let (started, thread) = spawn_udp_listener(
                            socket,
                            reader,
                            stop.clone(),
                            core,
                            self.settings.plan.kind(),
                        )?;
                        info.get_or_insert(started);
                        threads.push(thread);
                    }
                }
                Bound::Stream(listener) => {
                    let (sink, counters) = self.add_sink(spec.kind, at_start);
                    let tls = match spec.kind {
                        ListenerKind::SyslogTls => self.settings.tls.as_ref(),
                        _ => None,
                    };
                    let local_addr = listener
                        .local_addr()
                        .map_err(|source| crate::Error::SocketOption { listener: spec.kind, source })?;
                    let settings =
                        StreamSettings {
                            max_frame_bytes: self.settings.max_frame_bytes,
                            journal_dir: self.settings.journal_root.as_deref().map(|root| {
                                crate::journal::listener_dir(root, spec.kind.label(), local_addr)
                            }),
                            tls: tls.map(|tls| TlsSettings {
                                server: tls.server.clone(),
                                handshake_timeout: tls.handshake_timeout,
                            }),
                            gate: self.settings.sources.gate(),
                        };
                    let core = self.settings.plan.core_for(self.settings.streams_started);
                    self.settings.streams_started += 1;
                    let (started, thread) = spawn_stream_listener(
                        spec.kind,
                        listener,
                        settings,
                        sink,
                        counters,
                        options,
                        stop.clone(),
                        core,
                    )?;
                    info = Some(started);
                    threads.push(thread);
                }
                Bound::Metrics(sockets) => {
                    // One set of counters for all of a listener's threads (atomics added to
                    // once per receive call), so it reads as one listener in /metrics.
                    let counters = self.counters_for(spec.kind, CapturePath::Socket);
                    let metric_counters = self.metric_counters_for(spec.kind);
                    for (index, socket) in sockets.into_iter().enumerate() {
                        let (producer, consumer) = metric_ring(
                            self.settings.handoff_capacity,
                            self.settings.metrics.max_queued_points,
                        );
                        if at_start {
                            self.metric_consumers.push(consumer);
                        } else if let Some(feed) = &self.metric_feed {
                            let _ = feed.send(consumer);
                        }
                        let sink = MetricSink {
                            kind: spec.kind,
                            settings: self.settings.metrics,
                            producer,
                            counters: counters.clone(),
                            metric_counters: metric_counters.clone(),
                            gate: self.settings.sources.gate(),
                            receive: self.settings.capture.socket_receive,
                        };
                        let (started, thread) = spawn_metrics_listener(
                            socket,
                            sink,
                            stop.clone(),
                            self.settings.plan.core_for(index),
                        )?;
                        info.get_or_insert(started);
                        threads.push(thread);
                    }
                }
            }
            Ok(())
        })();
        let mut running = RunningListener {
            asked: spec.address,
            info: info.unwrap_or(ListenerInfo {
                kind: spec.kind,
                local_addr: spec.address,
                capture: CapturePath::Socket,
                socket_receive: None,
            }),
            stop,
            threads,
        };
        match result {
            Ok(()) => Ok(running),
            Err(error) => {
                running.stop();
                Err(error)
            }
        }
    }

    /// Starts XDP capture of the `steered` UDP listeners' ports (syslog, statsd, Influx);
    /// in `auto` mode a failure leaves the socket listeners alone and is reported in
    /// [`DataPlane::capture`].
    fn start_xdp(
        &mut self,
        capture_config: &CaptureConfig,
        steered: &[(ListenerKind, SocketAddr)],
        options: &ParseOptions,
        at_start: bool,
    ) -> Result<()> {
        if capture_config.mode == CaptureMode::Auto && capture_config.interface.is_none() {
            self.capture =
                CaptureStatus::Socket { fallback: Some("no capture interface configured".to_owned()) };
            return Ok(());
        }
        let ports = steered_ports(steered);
        let mut capture = match XdpCapture::open(capture_config, &ports) {
            Ok(capture) => capture,
            Err(error) if capture_config.mode == CaptureMode::Auto => {
                tracing::warn!(error = %error, "XDP capture unavailable; UDP listeners use their sockets only");
                self.capture = CaptureStatus::Socket { fallback: Some(error.to_string()) };
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        // One set of counters per listener for every queue: atomics added to once per batch.
        let syslog_counters = self.counters_for(ListenerKind::SyslogUdp, CapturePath::AfXdp);
        let metric_sides = [ListenerKind::StatsdUdp, ListenerKind::InfluxUdp]
            .map(|kind| (kind, self.counters_for(kind, CapturePath::AfXdp), self.metric_counters_for(kind)));
        let mut consumers = Vec::new();
        let mut metric_consumers = Vec::new();
        let (handoff_capacity, batch, metrics) =
            (self.settings.handoff_capacity, self.settings.batch, self.settings.metrics);
        let plan = &self.settings.plan;
        let interface = capture_config.interface.clone().unwrap_or_default();
        let spawned = capture.spawn(
            |_queue| {
                let (producer, consumer) = batch_ring(handoff_capacity);
                consumers.push(consumer);
                // Each queue aggregates on its own, like each metrics socket thread; the
                // control plane merges the points.
                let [statsd, influx] = metric_sides.clone().map(|(kind, counters, metric_counters)| {
                    let (producer, consumer) = metric_ring(handoff_capacity, metrics.max_queued_points);
                    metric_consumers.push(consumer);
                    MetricIngest::new(kind, metrics, producer, counters, metric_counters)
                });
                QueueSinks {
                    syslog: BatchSink::new(ListenerKind::SyslogUdp, batch, producer, syslog_counters.clone()),
                    syslog_counters: syslog_counters.clone(),
                    statsd,
                    influx,
                }
            },
            |queue| plan.queue_cores(&interface, queue + 1)[queue as usize],
            options,
        );
        if at_start {
            self.consumers.extend(consumers);
            self.metric_consumers.extend(metric_consumers);
        } else {
            if let Some(feed) = &self.consumer_feed {
                for consumer in consumers {
                    let _ = feed.send(consumer);
                }
            }
            if let Some(feed) = &self.metric_feed {
                for consumer in metric_consumers {
                    let _ = feed.send(consumer);
                }
            }
        }
        self.capture = capture.status().clone();
        self.xdp_info = xdp_infos(steered);
        self.xdp = Some(capture);
        spawned.map_err(Into::into)
    }

    /// The counters of `kind` on `capture`, made on first use.
    fn counters_for(&mut self, kind: ListenerKind, capture: CapturePath) -> Arc<ListenerCounters> {
        if let Some(counters) = self.counters.iter().find(|c| c.listener == kind && c.capture == capture) {
            return counters.clone();
        }
        let counters = Arc::new(ListenerCounters::new(kind, capture));
        self.counters.push(counters.clone());
        counters
    }

    fn metric_counters_for(&mut self, kind: ListenerKind) -> Arc<MetricCounters> {
        if let Some(counters) = self.metric_counters.iter().find(|c| c.listener == kind) {
            return counters.clone();
        }
        let counters = Arc::new(MetricCounters::new(kind));
        self.metric_counters.push(counters.clone());
        counters
    }

    fn add_sink(&mut self, kind: ListenerKind, at_start: bool) -> (BatchSink, Arc<ListenerCounters>) {
        let counters = self.counters_for(kind, CapturePath::Socket);
        let (producer, consumer) = batch_ring(self.settings.handoff_capacity);
        if at_start {
            self.consumers.push(consumer);
        } else if let Some(feed) = &self.consumer_feed {
            let _ = feed.send(consumer);
        }
        (BatchSink::new(kind, self.settings.batch, producer, counters.clone()), counters)
    }

    /// Changes the capture while running (`capture.mode`, `capture.interface`, and the
    /// lists and rate limit a new XDP program starts with): the XDP capture in place, if
    /// any, stops first (its sockets leave the map, so the socket listener receives what
    /// arrives meanwhile; its own program is detached once no reader holds it), then a new
    /// one starts on the running syslog-udp listener's port. In `auto` mode a failure to
    /// attach leaves the socket path, reported in [`DataPlane::capture`]; in `xdp` mode it
    /// is the error, and the socket path stays.
    pub fn apply_capture(&mut self, capture: CaptureConfig) -> Result<()> {
        if let Some(mut running) = self.xdp.take() {
            running.stop();
        }
        self.xdp_info.clear();
        let fallback = match capture.mode {
            CaptureMode::Socket => None,
            _ => Some("no UDP listener to capture for".to_owned()),
        };
        self.capture = CaptureStatus::Socket { fallback };
        let steered = self.steerable();
        let started = if !steered.is_empty() && capture.mode != CaptureMode::Socket {
            let options = self.parse_options();
            self.start_xdp(&capture, &steered, &options, false)
        } else {
            Ok(())
        };
        match &started {
            // Every UDP listener's port, not only the first one's of each kind.
            Ok(()) => self.steer_ports(),
            Err(error) => self.capture = CaptureStatus::Socket { fallback: Some(error.to_string()) },
        }
        // Listeners started from now on read their sockets the new way.
        self.settings.capture = capture;
        self.publish();
        started
    }

    /// The capture settings in force (what [`DataPlane::apply_capture`] was last given).
    pub fn capture_config(&self) -> &CaptureConfig {
        &self.settings.capture
    }

    /// The capture as it is now, kept current across [`DataPlane::apply_capture`].
    pub fn shared_capture(&self) -> SharedCapture {
        self.capture_now.clone()
    }

    /// Rebuilds the listener list and the shared counter lists after a change.
    fn publish(&mut self) {
        self.listeners =
            self.xdp_info.iter().cloned().chain(self.running.iter().map(|r| r.info.clone())).collect();
        *self.shared_counters.write().unwrap_or_else(PoisonError::into_inner) = self.counters.clone();
        *self.shared_metric_counters.write().unwrap_or_else(PoisonError::into_inner) =
            self.metric_counters.clone();
        *self.capture_now.write().unwrap_or_else(PoisonError::into_inner) =
            CaptureNow { status: self.capture.clone(), xdp: self.xdp() };
    }

    /// Makes the running socket listeners the `wanted` set: starts those not running,
    /// stops those not wanted, leaves the others alone (their sockets and connections
    /// untouched). Every new socket is bound before anything changes, so a bind failure
    /// (a port in use) leaves the old set running and is the error. A stopped TCP or TLS
    /// listener stops accepting, reads what its open connections already sent, hands it
    /// off and closes them. With XDP capture, the steered ports follow the syslog-udp
    /// listeners.
    pub fn apply_listeners(&mut self, wanted: &[ListenerSpec]) -> Result<()> {
        let added: Vec<ListenerSpec> = wanted
            .iter()
            .filter(|spec| !self.running.iter().any(|running| running.serves(spec)))
            .copied()
            .collect();
        let bound = added.iter().map(|spec| self.bind(spec)).collect::<Result<Vec<_>>>()?;
        let mut started = Vec::new();
        for (spec, bound) in added.iter().zip(bound) {
            match self.spawn(spec, bound, false) {
                Ok(running) => started.push(running),
                Err(error) => {
                    for mut running in started {
                        running.stop();
                    }
                    self.publish();
                    return Err(error);
                }
            }
        }
        let (kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|running| wanted.iter().any(|spec| running.serves(spec)));
        self.running = kept;
        self.running.extend(started);
        for mut running in removed {
            tracing::info!(
                listener = running.info.kind.label(),
                address = %running.info.local_addr,
                "Listener stopping."
            );
            running.stop();
        }
        self.steer_ports();
        self.publish();
        Ok(())
    }

    /// The running UDP listeners XDP can steer: syslog, statsd and Influx.
    fn steerable(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.running
            .iter()
            .filter(|running| xdp_listener(running.info.kind).is_some())
            .map(|running| (running.info.kind, running.info.local_addr))
            .collect()
    }

    /// Points the XDP port map (and the receivers' port table) at the running UDP
    /// listeners' ports: a live change takes effect without reloading the program.
    fn steer_ports(&mut self) {
        let Some(capture) = &self.xdp else { return };
        let steered = self.steerable();
        if let Err(error) = capture.steer(&steered_ports(&steered)) {
            tracing::warn!(error = %error, "Cannot update the XDP port map; the socket listeners take the new ports.");
        }
        self.xdp_info = xdp_infos(&steered);
    }

    /// The socket path's allow and deny lists and rate limit (change them here; the XDP
    /// program's maps are changed through [`DataPlane::xdp`]).
    pub fn sources(&self) -> &SharedSourcePolicy {
        &self.settings.sources
    }

    /// Counters of the metrics listeners (samples, rejected lines, points).
    pub fn metric_counters(&self) -> &[Arc<MetricCounters>] {
        &self.metric_counters
    }

    /// The metrics listeners' counters as they change with the listener set.
    pub fn shared_metric_counters(&self) -> Arc<RwLock<Vec<Arc<MetricCounters>>>> {
        self.shared_metric_counters.clone()
    }

    /// The consumer ends of the metrics listeners' point rings; taken once.
    pub fn take_metric_consumers(&mut self) -> Vec<MetricConsumer> {
        std::mem::take(&mut self.metric_consumers)
    }

    /// Point rings of metrics listeners started later; taken once. It disconnects when
    /// the data plane shuts down.
    pub fn take_metric_feed(&mut self) -> Option<Receiver<MetricConsumer>> {
        self.metric_feed_receiver.take()
    }

    /// The runtime and cores the data plane runs on.
    pub fn runtime(&self) -> &RuntimeStatus {
        self.settings.plan.status()
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

    /// The running listeners and the capture path each uses.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// Counters of every listener kind run so far, for metrics and stats.
    pub fn counters(&self) -> &[Arc<ListenerCounters>] {
        &self.counters
    }

    /// The listener counters as they change with the listener set.
    pub fn shared_counters(&self) -> Arc<RwLock<Vec<Arc<ListenerCounters>>>> {
        self.shared_counters.clone()
    }

    /// The consumer ends of the hand-off rings; the control plane takes them once.
    pub fn take_consumers(&mut self) -> Vec<BatchConsumer> {
        std::mem::take(&mut self.consumers)
    }

    /// Hand-off rings of listeners started later; taken once. It disconnects when the
    /// data plane shuts down, which tells the writer no more rings will come.
    pub fn take_consumer_feed(&mut self) -> Option<Receiver<BatchConsumer>> {
        self.consumer_feed_receiver.take()
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
        self.consumer_feed_receiver = None;
        self.metric_feed_receiver = None;
        // AF_XDP first: its sockets leave the map, so what arrives meanwhile goes to the
        // kernel and is read by the socket listener, which stops after.
        if let Some(capture) = &mut self.xdp {
            capture.stop();
        }
        for running in &self.running {
            running.stop.raise();
        }
        for running in &mut self.running {
            running.stop();
        }
        // No listener will start any more: the writers may end once the rings drain.
        self.consumer_feed = None;
        self.metric_feed = None;
    }
}

/// The XDP program's name for a listener kind it can steer.
fn xdp_listener(kind: ListenerKind) -> Option<XdpListener> {
    match kind {
        ListenerKind::SyslogUdp => Some(XdpListener::Syslog),
        ListenerKind::StatsdUdp => Some(XdpListener::Statsd),
        ListenerKind::InfluxUdp => Some(XdpListener::Influx),
        _ => None,
    }
}

fn steered_ports(steered: &[(ListenerKind, SocketAddr)]) -> Vec<(u16, XdpListener)> {
    steered.iter().filter_map(|&(kind, address)| Some((address.port(), xdp_listener(kind)?))).collect()
}

/// One AF_XDP entry per steered listener kind (the first listener's address of each), in
/// a fixed order: syslog, statsd, Influx.
fn xdp_infos(steered: &[(ListenerKind, SocketAddr)]) -> Vec<ListenerInfo> {
    [ListenerKind::SyslogUdp, ListenerKind::StatsdUdp, ListenerKind::InfluxUdp]
        .into_iter()
        .filter_map(|kind| {
            let &(_, local_addr) = steered.iter().find(|(steered_kind, _)| *steered_kind == kind)?;
            Some(ListenerInfo { kind, local_addr, capture: CapturePath::AfXdp, socket_receive: None })
        })
        .collect()
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Says at start-up which cores and runtime the data plane got, and why not glommio.
fn log_runtime(status: &RuntimeStatus) {
    let cpus: Vec<usize> = status.cores.iter().map(|core| core.cpu).collect();
    match &status.fallback_reason {
        None => tracing::info!(
            runtime = status.kind.label(),
            cores = %format_cpu_list(&cpus),
            "Data plane runs thread per core."
        ),
        Some(reason) => tracing::warn!(
            runtime = status.kind.label(),
            cores = %format_cpu_list(&cpus),
            reason = %reason,
            "glommio cannot run here; the data plane uses pinned threads instead."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listeners asked for port 0 each get a port of their own, however many there are:
    /// sockets with SO_REUSEADDR / SO_REUSEPORT may otherwise be given a port that
    /// another listener of this process already holds.
    #[test]
    fn listeners_on_port_zero_never_share_a_port() {
        let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut held = Vec::new();
        let mut ports = std::collections::HashSet::new();
        for _ in 0..300 {
            let sockets = bind_shared_sockets(ListenerKind::SyslogUdp, address, 2).unwrap();
            let port = sockets[0].local_addr().unwrap().port();
            assert_eq!(sockets[1].local_addr().unwrap().port(), port, "a listener's sockets share its port");
            assert!(ports.insert(port), "port {port} given to two listeners");
            held.push(sockets);
        }
    }
}
