//! One AF_XDP socket per rx queue: its UMEM, fill ring and RX ring, read on its own
//! thread into the same batches, hand-off and counters as the UDP socket listeners:
//! syslog datagrams into a log batch, statsd and Influx datagrams into the queue's own
//! aggregators (the same [`MetricIngest`] the metrics socket listener uses), chosen by
//! the datagram's destination port ([`PortTable`]).
//!
//! Frames go back on the fill ring as soon as their payload is copied into the batch
//! arena. The socket binds with `need_wakeup`, zero-copy where the driver has it and copy
//! mode otherwise.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use killkrill_parsers::syslog::ParseOptions;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use super::frame::udp_datagram;
use super::ports::{PortTable, PortView};
use super::umem::UmemArea;
use super::{AfXdpSettings, BindMode, CaptureError};
use crate::counters::ListenerCounters;
use crate::listener::metrics_udp::{MetricIngest, now_ns};
use crate::listener::{BatchSink, PARTIAL_PASS_PAUSE, StopSignal, WhenFull};
use crate::xdp::XdpListener;

/// Where one queue's receiver puts what it reads, by listener.
pub(crate) struct QueueSinks {
    pub(crate) syslog: BatchSink,
    pub(crate) syslog_counters: Arc<ListenerCounters>,
    pub(crate) statsd: MetricIngest,
    pub(crate) influx: MetricIngest,
}

/// What one pass read for syslog (and could not read at all), counted once per pass.
#[derive(Default)]
struct SyslogTally {
    messages: u64,
    bytes: u64,
    parse_errors: u64,
    unreadable: u64,
}

impl QueueSinks {
    /// Sends the datagram in one frame to its listener's path, by destination port.
    fn take_frame(
        &mut self,
        frame: Option<&[u8]>,
        ports: &PortView,
        options: &ParseOptions,
        tally: &mut SyslogTally,
    ) {
        let Some(datagram) = frame.and_then(udp_datagram) else {
            // The program steers only whole UDP datagrams; count anything else.
            tally.unreadable += 1;
            return;
        };
        match ports.listener(datagram.destination_port) {
            Some(XdpListener::Syslog) => {
                let sink = &mut self.syslog;
                tally.messages += 1;
                tally.bytes += datagram.payload.len() as u64;
                tally.parse_errors +=
                    u64::from(sink.batch().push_syslog(datagram.payload, None, datagram.source, options));
                if sink.batch().len() >= sink.limits().max_messages {
                    sink.flush_if_due(false, WhenFull::Drop);
                }
            }
            Some(XdpListener::Statsd) => self.statsd.ingest(datagram.payload, false),
            Some(XdpListener::Influx) => self.influx.ingest(datagram.payload, false),
            // A port unsteered while its frames waited in the ring: counted, not parsed as
            // some other listener's protocol.
            _ => tally.unreadable += 1,
        }
    }

    /// Adds a pass's counts to the counters and hands the batch off when it is due.
    fn end_pass(&mut self, tally: &SyslogTally) {
        self.statsd.count_batch();
        self.influx.count_batch();
        let counters = &self.syslog_counters;
        ListenerCounters::add(&counters.received_messages, tally.messages);
        ListenerCounters::add(&counters.received_bytes, tally.bytes);
        ListenerCounters::add(&counters.parse_errors, tally.parse_errors);
        ListenerCounters::add(&counters.receive_errors, tally.unreadable);
        self.syslog.flush_if_due(false, WhenFull::Drop);
    }
}

/// Descriptors read per pass over the RX ring.
const FRAMES_PER_PASS: u32 = 64;
/// How many frames ahead of the one being parsed the receiver prefetches.
const PREFETCH_AHEAD: usize = 2;
/// Bytes of a frame prefetched: the headers and a typical syslog message.
const PREFETCH_BYTES: usize = 320;
/// How often the kernel's drop statistics for the socket are read.
const STATISTICS_INTERVAL: Duration = Duration::from_millis(200);

/// An AF_XDP socket bound to one rx queue, with its UMEM.
pub(crate) struct XskReceiver {
    // Field order is drop order: rings and sockets close before the memory is unmapped.
    rx: RingRx,
    device: DeviceQueue,
    _user: User,
    _socket: Socket,
    _umem: Umem,
    area: UmemArea,
    frame_size: u32,
    /// UMEM offsets of frames that are neither on the fill ring nor being read.
    free: Vec<u64>,
    queue: u32,
    bind: BindMode,
    /// Kernel drops already added to the counters.
    reported_drops: u64,
}

// SAFETY: the rings point into memory mapped for this socket and owned by it; one thread
// uses the receiver at a time (it is moved into its thread whole).
unsafe impl Send for XskReceiver {}

impl XskReceiver {
    /// Opens the socket on `interface` queue `queue` and fills its fill ring: zero-copy
    /// where the driver has it, copy mode otherwise (veth and most drivers without it).
    pub(crate) fn open(interface: &str, queue: u32, settings: &AfXdpSettings) -> Result<Self, CaptureError> {
        settings.validate()?;
        match Self::open_with(interface, queue, settings, BindMode::ZeroCopy) {
            Ok(receiver) => Ok(receiver),
            // A refused zero-copy bind leaves the socket's rings set up; start afresh.
            Err(_) => Self::open_with(interface, queue, settings, BindMode::Copy),
        }
    }

    fn open_with(
        interface: &str,
        queue: u32,
        settings: &AfXdpSettings,
        bind: BindMode,
    ) -> Result<Self, CaptureError> {
        let socket_error =
            |reason: String| CaptureError::Socket { interface: interface.to_owned(), queue, reason };
        let fail = |what: &str, errno: xdpilone::Errno| {
            socket_error(format!("{what}: {errno} (AF_XDP needs root or CAP_NET_RAW and CAP_BPF)"))
        };
        let area =
            UmemArea::new(settings.umem_frames as usize * settings.frame_size as usize).map_err(|error| {
                socket_error(format!(
                    "mapping the UMEM: {error} (raise RLIMIT_MEMLOCK or lower the UMEM size)"
                ))
            })?;
        let config = UmemConfig {
            fill_size: settings.fill_ring_size,
            complete_size: settings.fill_ring_size,
            frame_size: settings.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page aligned (mmap) and outlives the Umem and every socket on it
        // (`area` is dropped after them).
        let umem =
            unsafe { Umem::new(config, area.as_slice_ptr()) }.map_err(|e| fail("registering the UMEM", e))?;
        let name = CString::new(interface)
            .map_err(|_| socket_error("the interface name contains a NUL byte".to_owned()))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(|e| fail("looking up the interface", e))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(|e| fail("opening the socket", e))?;
        let device = umem.fq_cq(&socket).map_err(|e| fail("creating the fill ring", e))?;
        let mode_flag = match bind {
            BindMode::ZeroCopy => SocketConfig::XDP_BIND_ZEROCOPY,
            BindMode::Copy => SocketConfig::XDP_BIND_COPY,
        };
        let socket_config = SocketConfig {
            rx_size: NonZeroU32::new(settings.rx_ring_size),
            tx_size: None,
            bind_flags: mode_flag | SocketConfig::XDP_BIND_NEED_WAKEUP,
        };
        let user = umem.rx_tx(&socket, &socket_config).map_err(|e| fail("creating the RX ring", e))?;
        let rx = user.map_rx().map_err(|e| fail("mapping the RX ring", e))?;
        umem.bind(&user).map_err(|e| fail(&format!("binding in {} mode", bind.label()), e))?;
        let frame_size = u64::from(settings.frame_size);
        let mut receiver = Self {
            rx,
            device,
            _user: user,
            _socket: socket,
            _umem: umem,
            area,
            frame_size: settings.frame_size,
            free: (0..u64::from(settings.umem_frames)).rev().map(|index| index * frame_size).collect(),
            queue,
            bind,
            reported_drops: 0,
        };
        receiver.refill();
        Ok(receiver)
    }

    /// The socket's descriptor, for the XSKMAP.
    pub(crate) fn socket_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor stays open as long as `self.rx` (borrowed here).
        unsafe { BorrowedFd::borrow_raw(self.rx.as_raw_fd()) }
    }

    pub(crate) fn queue(&self) -> u32 {
        self.queue
    }

    pub(crate) fn bind_mode(&self) -> BindMode {
        self.bind
    }

    /// Puts every free frame on the fill ring, and wakes the kernel if it asked.
    fn refill(&mut self) {
        if !self.free.is_empty() {
            let mut writer = self.device.fill(self.free.len() as u32);
            let inserted = writer.insert(self.free.iter().rev().copied()) as usize;
            writer.commit();
            drop(writer);
            self.free.truncate(self.free.len() - inserted);
        }
        if self.device.needs_wakeup() {
            self.device.wake();
        }
    }

    /// Reads what the RX ring holds into the batch and the aggregators; returns the frames
    /// read.
    fn receive(&mut self, sinks: &mut QueueSinks, ports: &PortView, options: &mut ParseOptions) -> u32 {
        if self.rx.available() == 0 {
            return 0;
        }
        options.received_at = Timestamp::now();
        let mut tally = SyslogTally::default();
        // The descriptors first, then the frames: knowing the next frames while parsing one
        // lets their first cache lines be fetched ahead. A frame's bytes are not in this
        // core's cache when its descriptor arrives (a NIC wrote them by DMA or, in copy
        // mode, the kernel copied them in the softirq of the CPU that took the packet: on a
        // veth, the sender's), and without the prefetch the first read of each header
        // stalled on memory: 86% of the header parser's samples, a fifth of the receiver's
        // time in the replay benchmark. Releasing the RX slots before parsing is safe: the
        // frames stay ours until they go back on the fill ring.
        let mut pending = [(0u64, 0u32); FRAMES_PER_PASS as usize];
        let mut frames = 0usize;
        let mut reader = self.rx.receive(FRAMES_PER_PASS);
        while let Some(desc) = reader.read() {
            pending[frames] = (desc.addr, desc.len);
            frames += 1;
        }
        reader.release();
        drop(reader);
        for index in 0..frames {
            if index + PREFETCH_AHEAD < frames {
                let (addr, len) = pending[index + PREFETCH_AHEAD];
                if let Some(frame) = self.area.frame(addr, len) {
                    prefetch(frame);
                }
            }
            let (addr, len) = pending[index];
            sinks.take_frame(self.area.frame(addr, len), ports, options, &mut tally);
            // Copied into the arena (or folded into an aggregator): the frame can go back.
            self.free.push(addr - addr % u64::from(self.frame_size));
        }
        let frames = frames as u32;
        self.refill();
        sinks.end_pass(&tally);
        frames
    }

    /// Sleeps until frames arrive or `timeout` passes.
    fn wait(&mut self, timeout: Duration) {
        let mut poll = libc::pollfd { fd: self.rx.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX).max(1);
        // SAFETY: one valid pollfd for the duration of the call.
        let _ = unsafe { libc::poll(&mut poll, 1, millis) };
    }

    /// Adds the kernel's drops for this socket (RX ring full, no fill buffer) since the
    /// last call to the counters.
    fn report_kernel_drops(&mut self, counters: &ListenerCounters) {
        if let Ok(statistics) = self.device.statistics_v2() {
            let drops = statistics.rx_dropped + statistics.rx_ring_full;
            ListenerCounters::add(&counters.dropped_capture_full, drops.saturating_sub(self.reported_drops));
            self.reported_drops = self.reported_drops.max(drops);
        }
    }
}

/// Asks the CPU to start loading the first bytes of `frame` into its cache.
fn prefetch(frame: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..frame.len().min(PREFETCH_BYTES)).step_by(64) {
        // SAFETY: a prefetch is a hint that never faults, and the address is inside `frame`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                frame.as_ptr().add(offset).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = frame;
}

/// Starts the receive loop of `receiver` on its own thread, pinned to `core` (the one its
/// queue's interrupts land on) and named for both (`afxdp-q0@3`).
pub(crate) fn spawn_receiver(
    mut receiver: XskReceiver,
    mut sinks: QueueSinks,
    ports: Arc<PortTable>,
    mut options: ParseOptions,
    stop: StopSignal,
    core: crate::cores::Core,
) -> std::io::Result<JoinHandle<()>> {
    let name = crate::cores::thread_name(&format!("afxdp-q{}", receiver.queue), core);
    std::thread::Builder::new().name(name).spawn(move || {
        if let Err(error) = crate::cores::pin::enter_core(core) {
            tracing::warn!(queue = receiver.queue, cpu = core.cpu, error = %error, "Cannot pin the AF_XDP receiver to its core.");
        }
        let mut last_statistics = Instant::now();
        let mut view = PortView::default();
        while !stop.is_raised() {
            view.refresh(&ports);
            match receiver.receive(&mut sinks, &view, &mut options) {
                0 => {
                    receiver.wait(sinks.syslog.wait_budget());
                    sinks.syslog.flush_if_due(false, WhenFull::Drop);
                }
                // Frames flow, below a full pass: let more gather before reading again.
                frames if frames < FRAMES_PER_PASS => std::thread::sleep(PARTIAL_PASS_PAUSE),
                _ => {}
            }
            sinks.statsd.flush_if_due();
            sinks.influx.flush_if_due();
            if last_statistics.elapsed() >= STATISTICS_INTERVAL {
                // The kernel's drops are the socket's, not a listener's: they go with syslog.
                receiver.report_kernel_drops(&sinks.syslog_counters);
                last_statistics = Instant::now();
            }
        }
        // The runtime unregistered the socket before stopping: read what already arrived.
        view.refresh(&ports);
        while receiver.receive(&mut sinks, &view, &mut options) > 0 {}
        receiver.report_kernel_drops(&sinks.syslog_counters);
        sinks.syslog.drain();
        let now = now_ns();
        sinks.statsd.flush(now, true);
        sinks.influx.flush(now, true);
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::batch::BatchLimits;
    use crate::capture::ports::PortTable;
    use crate::handoff::batch_ring;
    use crate::listener::{CapturePath, ListenerKind};
    use crate::metrics::{AggregatorSettings, MetricConsumer, MetricCounters, metric_ring};

    /// An Ethernet/IPv4/UDP frame from 192.0.2.9:40000 to `port`.
    fn frame(port: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[192, 0, 2, 9, 10, 0, 0, 2]);
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&port.to_be_bytes());
        frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    fn ingest(kind: ListenerKind) -> (MetricIngest, MetricConsumer, Arc<ListenerCounters>) {
        let (producer, consumer) = metric_ring(4, AggregatorSettings::default().max_queued_points);
        let counters = Arc::new(ListenerCounters::new(kind, CapturePath::AfXdp));
        let settings =
            AggregatorSettings { interval: Duration::from_secs(3600), ..AggregatorSettings::default() };
        let ingest = MetricIngest::new(
            kind,
            settings,
            producer,
            counters.clone(),
            Arc::new(MetricCounters::new(kind)),
        );
        (ingest, consumer, counters)
    }

    #[test]
    fn frames_go_to_the_listener_of_their_port() {
        let (producer, _consumer) = batch_ring(4);
        let syslog_counters = Arc::new(ListenerCounters::new(ListenerKind::SyslogUdp, CapturePath::AfXdp));
        let (statsd, mut statsd_points, statsd_counters) = ingest(ListenerKind::StatsdUdp);
        let (influx, mut influx_points, influx_counters) = ingest(ListenerKind::InfluxUdp);
        let mut sinks = QueueSinks {
            syslog: BatchSink::new(
                ListenerKind::SyslogUdp,
                BatchLimits::default(),
                producer,
                syslog_counters.clone(),
            ),
            syslog_counters: syslog_counters.clone(),
            statsd,
            influx,
        };
        let table = PortTable::new(&[(514, XdpListener::Syslog), (8125, XdpListener::Statsd)]);
        let mut ports = PortView::default();
        ports.refresh(&table);
        let options = ParseOptions::default();
        let mut tally = SyslogTally::default();
        let frames = [
            frame(514, b"<13>1 2026-11-23T10:00:00Z host app - - - hello"),
            frame(8125, b"af.hits:2|c\naf.hits:3|c"),
            frame(8089, b"af_cpu usage=1"),
        ];
        for frame in &frames {
            sinks.take_frame(Some(frame), &ports, &options, &mut tally);
        }
        sinks.take_frame(Some(&frames[0][..20]), &ports, &options, &mut tally);
        sinks.end_pass(&tally);
        assert_eq!(sinks.syslog.batch().len(), 1);
        let read = ListenerCounters::read;
        assert_eq!(read(&syslog_counters.received_messages), 1);
        assert_eq!(
            read(&syslog_counters.receive_errors),
            2,
            "the influx port is not steered; one frame is cut"
        );
        assert_eq!(read(&statsd_counters.received_messages), 1);
        assert_eq!(read(&influx_counters.received_messages), 0);

        // Influx is steered live: the next pass sees it.
        table.set(&[(514, XdpListener::Syslog), (8125, XdpListener::Statsd), (8089, XdpListener::Influx)]);
        ports.refresh(&table);
        let mut tally = SyslogTally::default();
        sinks.take_frame(Some(&frames[2]), &ports, &options, &mut tally);
        sinks.end_pass(&tally);
        assert_eq!(read(&influx_counters.received_messages), 1);

        let now = crate::listener::metrics_udp::now_ns();
        sinks.statsd.flush(now, true);
        sinks.influx.flush(now, true);
        let statsd_batch = statsd_points.pop().expect("statsd points");
        assert_eq!(statsd_batch.listener, ListenerKind::StatsdUdp);
        let hits: f64 = statsd_batch.points.iter().filter(|p| p.name == "af.hits").map(|p| p.sum).sum();
        assert_eq!(hits, 5.0);
        let influx_batch = influx_points.pop().expect("influx points");
        assert!(influx_batch.points.iter().any(|p| p.name == "af_cpu.usage" && p.sum == 1.0));
    }
}
