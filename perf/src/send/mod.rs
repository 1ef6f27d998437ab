//! The senders: syslog over UDP (`sendmmsg`), over UDP frames built by hand and sent through
//! AF_XDP, and over TCP (RFC 6587 framings); statsd and Influx over UDP.
//!
//! # Seq numbers across threads
//! Threads claim seqs in blocks from one shared counter (one atomic add per batch, not per
//! message) and a claimed block is always either sent or counted as failed. So the seqs a
//! run used are exactly `first_seq..=last_seq`, contiguous, whatever the thread count and
//! whether the run stopped at its duration or its count: a receiver's loss is
//! `last_seq - first_seq + 1 - distinct seqs stored`.
//!
//! # The target rule
//! Every run checks its target with [`crate::target::check_target`] before opening a
//! socket: loopback or 10.203.0.0/16 only.

mod affinity;
mod afxdp;
pub mod frame;
mod tcp;
mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

pub use affinity::pin_current_thread;
pub use afxdp::AfXdpOptions;

use crate::mix::{MessageMix, MixKind};
use crate::target::check_target;

/// What goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// One syslog message per UDP datagram.
    Udp,
    /// Syslog over TCP, RFC 6587 octet counting: `<len> <msg>`.
    TcpOctet,
    /// Syslog over TCP, RFC 6587 non-transparent framing: `<msg>\n`.
    TcpLf,
    /// statsd lines over UDP, several per datagram.
    Statsd,
    /// Influx line protocol over UDP, several lines per datagram.
    Influx,
    /// One syslog message per UDP datagram, in frames built here and sent through an AF_XDP
    /// socket (see [`AfXdpOptions`]).
    #[serde(rename = "udp-afxdp")]
    UdpAfXdp,
}

impl Protocol {
    pub const NAMES: &'static str = "udp, tcp-octet, tcp-lf, statsd, influx, udp-afxdp";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::TcpOctet => "tcp-octet",
            Self::TcpLf => "tcp-lf",
            Self::Statsd => "statsd",
            Self::Influx => "influx",
            Self::UdpAfXdp => "udp-afxdp",
        }
    }

    /// The mix a protocol sends when none is named; the metric protocols only send theirs.
    pub fn default_mix(self) -> MixKind {
        match self {
            Self::Statsd => MixKind::Statsd,
            Self::Influx => MixKind::Influx,
            Self::Udp | Self::TcpOctet | Self::TcpLf | Self::UdpAfXdp => MixKind::Rfc5424,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = crate::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "udp" => Ok(Self::Udp),
            "tcp-octet" => Ok(Self::TcpOctet),
            "tcp-lf" => Ok(Self::TcpLf),
            "statsd" => Ok(Self::Statsd),
            "influx" => Ok(Self::Influx),
            "udp-afxdp" => Ok(Self::UdpAfXdp),
            _ => Err(crate::Error::UnknownName {
                what: "protocol",
                value: value.to_owned(),
                expected: Self::NAMES,
            }),
        }
    }
}

/// RFC 6587 framings for syslog over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Octet counting: `<len> <msg>` (section 3.4.1).
    Octet,
    /// Non-transparent framing with LF as the trailer: `<msg>\n` (section 3.4.2).
    Lf,
}

/// One run of a sender.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub target: SocketAddr,
    pub protocol: Protocol,
    pub mix: MixKind,
    pub seed: u64,
    pub run_id: u32,
    /// Offered rate in messages per second over all threads; `None` sends flat out.
    pub rate: Option<u64>,
    /// Stop after this long ...
    pub duration: Option<Duration>,
    /// ... or after this many messages, whichever comes first. One of the two is required.
    pub count: Option<u64>,
    /// Sender threads; each gets `rate / threads`.
    pub threads: usize,
    /// TCP connections over all threads, used round-robin.
    pub connections: usize,
    /// CPUs to pin sender threads to, thread `i` to `cpus[i % len]`; empty pins nothing.
    pub cpus: Vec<usize>,
    /// The first seq of the run.
    pub first_seq: u64,
    /// Interface and addressing for [`Protocol::UdpAfXdp`]; must be empty for the others.
    pub afxdp: AfXdpOptions,
}

impl SendConfig {
    /// A 20 s run of the protocol's default mix, one thread, 64 TCP connections.
    pub fn new(target: SocketAddr, protocol: Protocol) -> Self {
        Self {
            target,
            protocol,
            mix: protocol.default_mix(),
            seed: 1,
            run_id: 1,
            rate: None,
            duration: Some(Duration::from_secs(20)),
            count: None,
            threads: 1,
            connections: 64,
            cpus: Vec::new(),
            first_seq: 0,
            afxdp: AfXdpOptions::default(),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        check_target(self.target)?;
        if self.duration.is_none() && self.count.is_none() {
            bail!("a run needs a duration or a message count");
        }
        if self.threads == 0 {
            bail!("threads must be at least 1");
        }
        if self.rate == Some(0) {
            bail!("rate must be at least 1 message per second (omit it to send flat out)");
        }
        let metric_protocol = matches!(self.protocol, Protocol::Statsd | Protocol::Influx);
        if metric_protocol && self.mix != self.protocol.default_mix() {
            bail!(
                "protocol {} sends the {} mix, not {}",
                self.protocol,
                self.protocol.default_mix(),
                self.mix
            );
        }
        if matches!(self.protocol, Protocol::TcpOctet | Protocol::TcpLf) && self.connections == 0 {
            bail!("connections must be at least 1");
        }
        afxdp::validate(self)
    }
}

/// What a run did. `sent_*` count what the kernel accepted; a message whose send failed is
/// in `failed_messages` (and its seq is still inside `first_seq..=last_seq`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SendReport {
    pub protocol: Protocol,
    pub mix: MixKind,
    pub target: SocketAddr,
    pub run_id: u32,
    pub offered_rate: Option<u64>,
    pub sent_messages: u64,
    /// Bytes written to sockets, framing included.
    pub sent_bytes: u64,
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
    pub achieved_msgs_per_sec: f64,
    /// Failed send, write and connect calls.
    pub send_errors: u64,
    /// Messages claimed but not accepted by the kernel.
    pub failed_messages: u64,
    /// TCP connections re-opened after a reset or a failed connect.
    pub reconnects: u64,
    /// Tokens a rate-limited sender lost to stalls (see [`crate::rate::TokenBucket`]).
    pub forfeited_tokens: u64,
    /// The run's seqs are exactly `first_seq..=last_seq`; both `None` when none was used.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub threads: usize,
}

fn serialize_secs<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// Counters the senders bump once per batch, for a progress line while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn add(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (messages, bytes) sent so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (self.messages.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Hands out contiguous blocks of seq offsets until the count is reached or a worker stops
/// the run.
#[derive(Debug)]
struct SeqClaimer {
    next: AtomicU64,
    limit: u64,
    stopped: AtomicBool,
}

impl SeqClaimer {
    fn new(count: Option<u64>) -> Self {
        Self { next: AtomicU64::new(0), limit: count.unwrap_or(u64::MAX), stopped: AtomicBool::new(false) }
    }

    /// Up to `want` offsets, or `None` once the run is over.
    fn claim(&self, want: u64) -> Option<std::ops::Range<u64>> {
        if want == 0 || self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let start = self.next.fetch_add(want, Ordering::Relaxed);
        (start < self.limit).then(|| start..start.saturating_add(want).min(self.limit))
    }

    fn claimed(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.limit)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// What one sender thread did.
#[derive(Debug, Default, Clone, Copy)]
struct WorkerTotals {
    sent_messages: u64,
    sent_bytes: u64,
    send_errors: u64,
    failed_messages: u64,
    reconnects: u64,
    forfeited_tokens: u64,
}

impl WorkerTotals {
    fn add(&mut self, other: &Self) {
        self.sent_messages += other.sent_messages;
        self.sent_bytes += other.sent_bytes;
        self.send_errors += other.send_errors;
        self.failed_messages += other.failed_messages;
        self.reconnects += other.reconnects;
        self.forfeited_tokens += other.forfeited_tokens;
    }
}

/// What a sender thread needs; borrowed from the run.
struct Worker<'run> {
    index: usize,
    config: &'run SendConfig,
    claimer: &'run SeqClaimer,
    progress: &'run Progress,
    deadline: Option<Instant>,
    mix: MessageMix,
    /// This thread's share of the offered rate.
    rate: Option<u64>,
}

impl Worker<'_> {
    fn unix_nanos_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    }

    fn seq(&self, offset: u64) -> u64 {
        self.config.first_seq + offset
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn run(mut self) -> anyhow::Result<WorkerTotals> {
        if !self.config.cpus.is_empty() {
            let cpu = self.config.cpus[self.index % self.config.cpus.len()];
            pin_current_thread(cpu)
                .with_context(|| format!("pinning sender thread {} to CPU {cpu}", self.index))?;
        }
        match self.config.protocol {
            Protocol::Udp => udp::run(&mut self, udp::Packing::OnePerDatagram),
            Protocol::Statsd | Protocol::Influx => udp::run(&mut self, udp::Packing::Lines),
            Protocol::TcpOctet => tcp::run(&mut self, Framing::Octet),
            Protocol::TcpLf => tcp::run(&mut self, Framing::Lf),
            Protocol::UdpAfXdp => afxdp::run(&mut self),
        }
    }
}

/// Runs one sender to its duration or count and reports. Send errors are counted, not
/// fatal; a refused target, a failed pin or a TCP target that accepts no connection at all
/// is an error.
pub fn run(config: &SendConfig, progress: &Progress) -> anyhow::Result<SendReport> {
    config.validate()?;
    let threads = match config.protocol {
        Protocol::TcpOctet | Protocol::TcpLf => config.threads.min(config.connections),
        _ => config.threads,
    };
    let claimer = SeqClaimer::new(config.count);
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let results: Vec<anyhow::Result<WorkerTotals>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let worker = Worker {
                    index,
                    config,
                    claimer: &claimer,
                    progress,
                    deadline,
                    mix: MessageMix::new(config.mix, config.seed, config.run_id),
                    rate: crate::rate::split_rate(config.rate, threads, index),
                };
                let claimer = &claimer;
                std::thread::Builder::new()
                    .name(format!("kk-send-{index}"))
                    .spawn_scoped(scope, move || {
                        let result = worker.run();
                        if result.is_err() {
                            claimer.stop();
                        }
                        result
                    })
                    .expect("spawning a sender thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("sender thread panicked"))))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut totals = WorkerTotals::default();
    for result in results {
        totals.add(&result?);
    }
    let claimed = claimer.claimed();
    Ok(SendReport {
        protocol: config.protocol,
        mix: config.mix,
        target: config.target,
        run_id: config.run_id,
        offered_rate: config.rate,
        sent_messages: totals.sent_messages,
        sent_bytes: totals.sent_bytes,
        elapsed,
        achieved_msgs_per_sec: totals.sent_messages as f64 / elapsed.as_secs_f64().max(1e-9),
        send_errors: totals.send_errors,
        failed_messages: totals.failed_messages,
        reconnects: totals.reconnects,
        forfeited_tokens: totals.forfeited_tokens,
        first_seq: (claimed > 0).then_some(config.first_seq),
        last_seq: (claimed > 0).then(|| config.first_seq + claimed - 1),
        threads,
    })
}

#[cfg(test)]
mod tests;
