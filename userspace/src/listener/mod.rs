//! Listeners: one thread each, owning its socket, parser state, batch and counters.

pub(crate) mod metrics_udp;
pub(crate) mod stream;
pub(crate) mod tcp;
mod tls;
pub(crate) mod udp;
pub mod udp_receive;
mod udp_uring;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) use stream::spawn_stream_listener;
pub(crate) use udp::spawn_udp_listener;

use crate::batch::{BatchLimits, LogBatch};
use crate::counters::ListenerCounters;
use crate::handoff::BatchProducer;

/// Which listener a message came through. The label is used in logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    SyslogUdp,
    SyslogTcp,
    /// `POST /api/v1/logs` on the control plane's API.
    Http,
    /// Syslog over TLS (RFC 5425).
    SyslogTls,
    /// statsd / DogStatsD over UDP.
    StatsdUdp,
    /// Influx line protocol over UDP.
    InfluxUdp,
}

impl ListenerKind {
    pub const fn label(self) -> &'static str {
        match self {
            ListenerKind::SyslogUdp => "syslog-udp",
            ListenerKind::SyslogTcp => "syslog-tcp",
            ListenerKind::Http => "http",
            ListenerKind::SyslogTls => "syslog-tls",
            ListenerKind::StatsdUdp => "statsd-udp",
            ListenerKind::InfluxUdp => "influx-udp",
        }
    }

    /// Whether the listener takes connections (framing, connection counters).
    pub const fn is_stream(self) -> bool {
        matches!(self, ListenerKind::SyslogTcp | ListenerKind::SyslogTls)
    }
}

impl std::fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How packets reach a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapturePath {
    /// The kernel stack and an ordinary socket (recvmmsg / epoll).
    Socket,
    /// XDP steering to AF_XDP sockets, one per rx queue.
    AfXdp,
}

impl CapturePath {
    pub const fn label(self) -> &'static str {
        match self {
            CapturePath::Socket => "socket",
            CapturePath::AfXdp => "af_xdp",
        }
    }
}

/// A running listener, as reported at start-up and in `/api/v1/stats`.
#[derive(Clone, Debug)]
pub struct ListenerInfo {
    pub kind: ListenerKind,
    /// The bound address (the chosen port when 0 was asked for).
    pub local_addr: SocketAddr,
    pub capture: CapturePath,
    /// UDP socket listeners: how the socket is read, and why not io_uring when it was
    /// wanted (the first thread's, when several share the port). None for the others.
    pub socket_receive: Option<udp_receive::ReceiveChoice>,
}

/// How often an idle listener wakes to check for shutdown and old batches.
pub(crate) const IDLE_WAKEUP: Duration = Duration::from_millis(20);

/// How long a datagram receiver (socket or AF_XDP) waits after a pass that found some
/// datagrams but not a full call's worth, before reading again, instead of sleeping until
/// the next one arrives. Below saturation, waking for each datagram or two cost more than
/// handling them (a wake-up is microseconds in a VM); waiting lets a few dozen gather, at
/// a latency that is small beside the batch's age limit (100 ms). At full load every pass
/// is full and nothing waits. Loopback, 170,000 datagrams/s, data-plane CPU per message:
/// 2.27 µs waiting 50 µs, 1.49 – 1.73 µs waiting 200 µs (ADR 0044). 100 µs keeps what
/// gathers meanwhile small: 100 datagrams at 1 M/s fit the default 208 KiB socket buffer
/// of a process without CAP_NET_ADMIN, and 1,488 frames at 10 GbE's line rate of the
/// smallest frames fit the default 2,048-entry AF_XDP ring.
pub(crate) const PARTIAL_PASS_PAUSE: Duration = Duration::from_micros(100);

/// The batch a listener is filling, and where it goes when closed.
pub(crate) struct BatchSink {
    kind: ListenerKind,
    limits: BatchLimits,
    current: LogBatch,
    producer: BatchProducer,
    counters: Arc<ListenerCounters>,
    /// Batches handed off so far (a stream listener starts a journal segment after each).
    handoffs: u64,
}

/// What to do with a closed batch the ring has no room for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Count its messages as dropped (datagrams have no sender to slow down).
    Drop,
    /// Keep it and report back pressure, so the caller stops reading (streams).
    Keep,
}

impl BatchSink {
    pub(crate) fn new(
        kind: ListenerKind,
        limits: BatchLimits,
        producer: BatchProducer,
        counters: Arc<ListenerCounters>,
    ) -> Self {
        Self { kind, current: LogBatch::new(kind, &limits), limits, producer, counters, handoffs: 0 }
    }

    pub(crate) fn batch(&mut self) -> &mut LogBatch {
        &mut self.current
    }

    pub(crate) fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    /// Hands the current batch off if it is full (or `force` and non-empty). Returns
    /// false when the ring was full and the batch was kept (`WhenFull::Keep`).
    pub(crate) fn flush_if_due(&mut self, force: bool, when_full: WhenFull) -> bool {
        if self.current.is_empty() || !(force || self.current.is_full(&self.limits, Instant::now())) {
            return true;
        }
        self.hand_off(when_full)
    }

    /// [`Self::flush_if_due`] by the message and byte limits only, for a check after every
    /// message: reading the clock there was 4% of the TCP listener's time. The age limit
    /// is the caller's to check once per pass.
    pub(crate) fn flush_if_full(&mut self, when_full: WhenFull) -> bool {
        if !self.current.is_full_by_size(&self.limits) {
            return true;
        }
        self.hand_off(when_full)
    }

    /// Hands the current (non-empty) batch to the ring, or applies `when_full`.
    fn hand_off(&mut self, when_full: WhenFull) -> bool {
        // Decide before replacing the batch: under sustained overload this runs for every
        // frame (TCP) or datagram batch (UDP), and must not allocate a new arena each time.
        if self.producer.is_full() {
            return match when_full {
                WhenFull::Drop => {
                    ListenerCounters::add(&self.counters.dropped_handoff_full, self.current.len() as u64);
                    self.current.clear();
                    true
                }
                WhenFull::Keep => false,
            };
        }
        let next = self.producer.reuse().unwrap_or_else(|| LogBatch::new(self.kind, &self.limits));
        let batch = std::mem::replace(&mut self.current, next);
        match self.producer.push(batch) {
            Ok(()) => {
                ListenerCounters::add(&self.counters.handed_off_batches, 1);
                self.handoffs += 1;
                true
            }
            // Cannot happen (this thread is the ring's only producer and saw room above);
            // if it did, keep the batch for the next attempt rather than lose it.
            Err(batch) => {
                self.current = batch;
                when_full == WhenFull::Drop
            }
        }
    }

    /// At shutdown: hands off what is left, waiting for room while the control plane still
    /// consumes; what cannot be handed off is counted.
    pub(crate) fn drain(&mut self) {
        while !self.current.is_empty() {
            if self.flush_if_due(true, WhenFull::Keep) {
                return;
            }
            if self.producer.is_abandoned() {
                ListenerCounters::add(&self.counters.dropped_shutdown, self.current.len() as u64);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Batches handed off since the sink was made.
    pub(crate) fn handoffs(&self) -> u64 {
        self.handoffs
    }

    /// How long the caller may block before the current batch is due.
    pub(crate) fn wait_budget(&self) -> Duration {
        self.current.time_left(&self.limits, Instant::now()).map_or(IDLE_WAKEUP, |left| left.min(IDLE_WAKEUP))
    }
}

/// A flag the data plane raises to stop its listeners.
#[derive(Clone, Default)]
pub(crate) struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    pub(crate) fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
