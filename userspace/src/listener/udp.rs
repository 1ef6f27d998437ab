//! Syslog over UDP through ordinary sockets, one per data-plane core (SO_REUSEPORT), each
//! read in batches with `recvmmsg` or io_uring ([`super::udp_receive`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use killkrill_parsers::syslog::ParseOptions;
use socket2::{Domain, Protocol, Socket, Type};

use super::udp_receive::{self, ReceiveChoice, ReceiveMethod, SocketReceive, UdpReceiver};
use super::{BatchSink, CapturePath, ListenerInfo, ListenerKind, PARTIAL_PASS_PAUSE, StopSignal, WhenFull};
use crate::cores::shard::{self, CoreIo, DatagramWaiter};
use crate::cores::{Core, RuntimeKind, thread_name};
use crate::counters::ListenerCounters;
use crate::sources::{SourceGate, Verdict};
use crate::{Error, Result};

/// Datagrams read per `recvmmsg` call.
const DATAGRAMS_PER_CALL: usize = 64;
/// Asked-for kernel receive buffer; the kernel caps it at net.core.rmem_max unless we may
/// force it (root), and a bigger buffer rides out bursts while a batch is handed off.
const RECEIVE_BUFFER_BYTES: usize = 8 << 20;

/// Binds a UDP listener socket; with `reuse_port`, SO_REUSEPORT: several sockets on one
/// port, the kernel spreading senders over them by flow hash (one per core).
pub(crate) fn bind_udp_with(kind: ListenerKind, address: SocketAddr, reuse_port: bool) -> Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(address), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|source| Error::Bind { listener: kind, address, source })?;
    let option_error = |source| Error::SocketOption { listener: kind, source };
    socket.set_reuse_address(true).map_err(option_error)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(option_error)?;
    }
    // Not fatal if refused: the default buffer works, it only absorbs shorter bursts.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
    if socket.recv_buffer_size().is_ok_and(|size| size < RECEIVE_BUFFER_BYTES) {
        force_receive_buffer(&socket, RECEIVE_BUFFER_BYTES);
    }
    // recvmmsg with MSG_WAITFORONE blocks at most this long for the first datagram, so
    // the thread notices shutdown and closes old batches even when nothing arrives.
    socket.set_read_timeout(Some(Duration::from_millis(10))).map_err(option_error)?;
    socket.bind(&address.into()).map_err(|source| Error::Bind { listener: kind, address, source })?;
    Ok(socket.into())
}

/// SO_RCVBUF is capped at net.core.rmem_max (about 208 KiB by default: a few hundred
/// datagrams); SO_RCVBUFFORCE passes the cap when the process has CAP_NET_ADMIN. Without
/// it the call fails and the capped buffer stays.
fn force_receive_buffer(socket: &Socket, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor and a pointer to a c_int with its true size.
    let _ = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Serves one syslog UDP socket on `core`: a thread named `syslog-udp@<cpu>`, pinned there,
/// running [`serve_syslog_socket`] on the core's runtime.
pub(crate) fn spawn_udp_listener(
    socket: UdpSocket,
    reader: SyslogDatagramReader,
    stop: StopSignal,
    core: Core,
    runtime: RuntimeKind,
) -> Result<(ListenerInfo, JoinHandle<()>)> {
    let kind = ListenerKind::SyslogUdp;
    let local_addr = socket.local_addr().map_err(|source| Error::SocketOption { listener: kind, source })?;
    let socket_receive = Some(reader.choice.clone());
    let handle = shard::spawn_on_core(thread_name(kind.label(), core), core, runtime, move |io| async move {
        let mut reader = reader;
        // On this thread: io_uring makes the receiving thread its ring's only issuer.
        udp_receive::enable_or_fall_back(&mut reader.receiver, kind);
        if reader.receiver.method() == ReceiveMethod::IoUring {
            // The multishot receive is its own event loop: it waits in the ring rather than
            // on the executor, which would race it for the same datagrams.
            serve_syslog_socket_on_ring(&socket, reader, &stop);
            return;
        }
        let waiter = match io.datagram_waiter(&socket) {
            Ok(waiter) => waiter,
            Err(error) => {
                tracing::warn!(error = %error, "Cannot wait on the socket through the executor; polling instead.");
                match CoreIo::Blocking.datagram_waiter(&socket) {
                    Ok(waiter) => waiter,
                    Err(_) => return,
                }
            }
        };
        serve_syslog_socket(&socket, reader, &waiter, &stop).await;
    })
    .map_err(|source| Error::Spawn { listener: kind, source })?;
    Ok((ListenerInfo { kind, local_addr, capture: CapturePath::Socket, socket_receive }, handle))
}

/// The per-socket receive loop: wait until the socket is readable (or the open batch is
/// due), drain it with non-blocking `recvmmsg`, close batches by size or age. Any
/// receiver that takes a socket and a [`SyslogDatagramReader`] can replace it.
pub(crate) async fn serve_syslog_socket(
    socket: &UdpSocket,
    mut reader: SyslogDatagramReader,
    waiter: &DatagramWaiter,
    stop: &StopSignal,
) {
    while !stop.is_raised() {
        // A full call means more may be queued: read again before waiting.
        let mut received = reader.receive(socket, false);
        while received == DATAGRAMS_PER_CALL {
            received = reader.receive(socket, false);
        }
        reader.sink.flush_if_due(false, WhenFull::Drop);
        if received > 0 {
            // Traffic flows, below a full call per pass: let more gather before reading.
            waiter.pause(PARTIAL_PASS_PAUSE).await;
            continue;
        }
        if let Err(error) = waiter.readable(reader.sink.wait_budget()).await {
            reader.receive_failed(&error);
        }
    }
    // What the kernel already queued was accepted by this host: read it before leaving.
    while reader.receive(socket, false) > 0 {}
    reader.sink.drain();
}

/// The io_uring variant of [`serve_syslog_socket`]: the ring waits (at most
/// [`udp_receive::RECEIVE_WAIT`]) for the first completion of each call.
fn serve_syslog_socket_on_ring(socket: &UdpSocket, mut reader: SyslogDatagramReader, stop: &StopSignal) {
    while !stop.is_raised() {
        reader.receive(socket, true);
    }
    while reader.receive(socket, false) > 0 {}
    reader.sink.drain();
}

/// One socket's receive state: receiver, batch, counters, parse options and source gate.
pub(crate) struct SyslogDatagramReader {
    receiver: UdpReceiver,
    /// Which receive method the listener got, and why not the one asked for.
    choice: ReceiveChoice,
    sink: BatchSink,
    counters: Arc<ListenerCounters>,
    options: ParseOptions,
    gate: SourceGate,
}

impl SyslogDatagramReader {
    /// A reader for `socket` by the receive method `setting` asks for (falling back to
    /// `recvmmsg`, logged, when io_uring is unavailable).
    pub(crate) fn new(
        socket: &UdpSocket,
        setting: SocketReceive,
        sink: BatchSink,
        counters: Arc<ListenerCounters>,
        options: ParseOptions,
        gate: SourceGate,
    ) -> Self {
        let (receiver, choice) = udp_receive::receiver_for(ListenerKind::SyslogUdp, setting, socket);
        counters.set_socket_receive(&choice);
        Self { receiver, choice, sink, counters, options, gate }
    }

    /// One receive call (waiting for the first datagram only when `wait`): parses what it
    /// read into the batch. Returns how many datagrams it read (0 when none were waiting,
    /// or on an error, which is counted).
    pub(crate) fn receive(&mut self, socket: &UdpSocket, wait: bool) -> usize {
        let Self { receiver, sink, counters, options, gate, .. } = self;
        options.received_at = Timestamp::now();
        let mut bytes = 0;
        let mut parse_errors = 0;
        let mut refused = Refused::default();
        // Looked at once the batch has arrived, not before the wait: a policy changed while
        // the thread slept applies to what it wakes up for.
        let mut open = None;
        let received = receiver.receive(socket, wait, |payload, source, _| {
            bytes += payload.len() as u64;
            let open = *open.get_or_insert_with(|| {
                gate.refresh();
                gate.is_open()
            });
            if !open && !refused.admit(gate, source) {
                return;
            }
            parse_errors += u64::from(sink.batch().push_syslog(payload, None, source, options));
            if sink.batch().len() >= sink.limits().max_messages {
                sink.flush_if_due(false, WhenFull::Drop);
            }
        });
        match received {
            Ok(received) => {
                ListenerCounters::add(&counters.received_messages, received.datagrams as u64);
                ListenerCounters::add(&counters.received_bytes, bytes);
                ListenerCounters::add(&counters.parse_errors, parse_errors);
                ListenerCounters::add(&counters.truncated_frames, received.truncated);
                refused.count(counters);
                sink.flush_if_due(false, WhenFull::Drop);
                received.datagrams
            }
            Err(error) => {
                self.receive_failed(&error);
                self.sink.flush_if_due(false, WhenFull::Drop);
                0
            }
        }
    }

    /// Counts a receive error other than "nothing waiting"; backs off a little so that a
    /// persistent error does not spin the core.
    fn receive_failed(&mut self, error: &std::io::Error) {
        if !udp_receive::is_idle(error) {
            ListenerCounters::add(&self.counters.receive_errors, 1);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Datagrams of one receive call the source policy refused, counted once per call.
#[derive(Default)]
pub(crate) struct Refused {
    denied: u64,
    rate_limited: u64,
}

impl Refused {
    /// True when the datagram from `source` may go on; otherwise counts why not.
    pub(crate) fn admit(&mut self, gate: &mut SourceGate, source: SocketAddr) -> bool {
        match gate.check(source.ip()) {
            Verdict::Admit => true,
            Verdict::Denied => {
                self.denied += 1;
                false
            }
            Verdict::RateLimited => {
                self.rate_limited += 1;
                false
            }
        }
    }

    pub(crate) fn count(&self, counters: &ListenerCounters) {
        ListenerCounters::add(&counters.dropped_denied, self.denied);
        ListenerCounters::add(&counters.dropped_rate_limited, self.rate_limited);
    }
}

/// Buffers for one `recvmmsg` call: payloads, source addresses and the headers that
/// point at them. Boxed slices never move, so the raw pointers stay valid.
pub(crate) struct MultiReceiver {
    payloads: Box<[u8]>,
    datagram_bytes: usize,
    addresses: Box<[libc::sockaddr_storage]>,
    /// Only read by the kernel, through the headers' pointers.
    _iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers only point into the struct's own boxed buffers.
unsafe impl Send for MultiReceiver {}

impl MultiReceiver {
    /// Room for `DATAGRAMS_PER_CALL` datagrams of `datagram_bytes` each (longer ones are
    /// cut, and flagged MSG_TRUNC by the kernel).
    pub(crate) fn new(datagram_bytes: usize) -> Self {
        let datagram_bytes = datagram_bytes.max(1);
        let mut payloads = vec![0u8; DATAGRAMS_PER_CALL * datagram_bytes].into_boxed_slice();
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which
        // all-zero bytes are a valid value.
        let mut addresses: Box<[libc::sockaddr_storage]> =
            (0..DATAGRAMS_PER_CALL).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = payloads
            .chunks_exact_mut(datagram_bytes)
            .map(|chunk| libc::iovec { iov_base: chunk.as_mut_ptr().cast(), iov_len: chunk.len() })
            .collect();
        let headers: Box<[libc::mmsghdr]> = iovecs
            .iter_mut()
            .zip(addresses.iter_mut())
            .map(|(iovec, address)| {
                // SAFETY: as above, zeroed C struct.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (address as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        Self { payloads, datagram_bytes, addresses, _iovecs: iovecs, headers }
    }

    pub(crate) fn receive(&mut self, socket: &UdpSocket, flags: libc::c_int) -> std::io::Result<usize> {
        for header in self.headers.iter_mut() {
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_len = 0;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers owned by self with their true sizes.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(count as usize)
    }

    /// The datagrams of the last call: payload, source, and whether it was cut.
    pub(crate) fn datagrams(&self, count: usize) -> impl Iterator<Item = (&[u8], SocketAddr, bool)> {
        let size = self.datagram_bytes;
        self.headers[..count.min(self.headers.len())].iter().zip(self.addresses.iter()).enumerate().map(
            move |(index, (header, address))| {
                let start = index * size;
                let len = (header.msg_len as usize).min(size);
                let source = socket_addr(address).unwrap_or(UNKNOWN_SOURCE);
                let truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                (&self.payloads[start..start + len], source, truncated)
            },
        )
    }
}

/// Where a datagram whose source the kernel did not say came from.
const UNKNOWN_SOURCE: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// The source address in the first bytes of a `sockaddr_storage` (io_uring's
/// `recvmsg_out` name field, which may be shorter than the whole structure).
pub(crate) fn socket_addr_from_bytes(bytes: &[u8]) -> SocketAddr {
    // SAFETY: sockaddr_storage is a plain C struct for which all-zero bytes are valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let length = bytes.len().min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copies at most the structure's size from a slice at least that long.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            length,
        )
    };
    socket_addr(&storage).unwrap_or(UNKNOWN_SOURCE)
}

/// Reads the source address the kernel wrote for a datagram.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, which it can hold.
            let address = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(address.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(address.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: ss_family says the storage holds a sockaddr_in6, which it can hold.
            let address =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(address.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(address.sin6_port),
                address.sin6_flowinfo,
                address.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_buffer_passes_rmem_max_when_privileged() {
        let socket = bind_udp_with(ListenerKind::SyslogUdp, "127.0.0.1:0".parse().unwrap(), false).unwrap();
        let size = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: SO_RCVBUFFORCE needs CAP_NET_ADMIN; buffer is {size} bytes");
            return;
        }
        assert!(size >= RECEIVE_BUFFER_BYTES, "receive buffer {size} bytes");
    }
}
