//! Syslog over UDP through ordinary sockets, one per data-plane core (SO_REUSEPORT), each
//! read with non-blocking `recvmmsg` in batches after its core's runtime says it is readable.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use killkrill_parsers::syslog::ParseOptions;
use socket2::{Domain, Protocol, Socket, Type};

use super::{BatchSink, CapturePath, ListenerInfo, ListenerKind, StopSignal, WhenFull};
use crate::cores::shard::{self, CoreIo, DatagramWaiter};
use crate::cores::{Core, RuntimeKind, thread_name};
use crate::counters::ListenerCounters;
use crate::sources::{SourceGate, Verdict};
use crate::{Error, Result};

/// Datagrams read per `recvmmsg` call.
const DATAGRAMS_PER_CALL: usize = 64;
/// Largest UDP payload (65,507 bytes over IPv4) rounded up.
const DATAGRAM_BUFFER_BYTES: usize = 64 * 1024;
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
    let handle = shard::spawn_on_core(thread_name(kind.label(), core), core, runtime, move |io| async move {
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
    Ok((ListenerInfo { kind, local_addr, capture: CapturePath::Socket }, handle))
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
        while reader.receive(socket, libc::MSG_DONTWAIT) == DATAGRAMS_PER_CALL {}
        reader.sink.flush_if_due(false, WhenFull::Drop);
        if let Err(error) = waiter.readable(reader.sink.wait_budget()).await {
            reader.receive_failed(&error);
        }
    }
    // What the kernel already queued was accepted by this host: read it before leaving.
    while reader.receive(socket, libc::MSG_DONTWAIT) > 0 {}
    reader.sink.drain();
}

/// One socket's receive state: buffers, batch, counters, parse options and source gate.
pub(crate) struct SyslogDatagramReader {
    receiver: MultiReceiver,
    sink: BatchSink,
    counters: Arc<ListenerCounters>,
    options: ParseOptions,
    gate: SourceGate,
}

impl SyslogDatagramReader {
    pub(crate) fn new(
        sink: BatchSink,
        counters: Arc<ListenerCounters>,
        options: ParseOptions,
        gate: SourceGate,
    ) -> Self {
        Self { receiver: MultiReceiver::new(), sink, counters, options, gate }
    }

    /// One `recvmmsg` call: parses what it read into the batch. Returns how many
    /// datagrams it read (0 when none were waiting, or on an error, which is counted).
    pub(crate) fn receive(&mut self, socket: &UdpSocket, flags: libc::c_int) -> usize {
        match self.receiver.receive(socket, flags) {
            Ok(count) => {
                self.accept(count);
                count
            }
            Err(error) => {
                self.receive_failed(&error);
                self.sink.flush_if_due(false, WhenFull::Drop);
                0
            }
        }
    }

    fn accept(&mut self, count: usize) {
        let Self { receiver, sink, counters, options, gate } = self;
        options.received_at = Timestamp::now();
        let mut bytes = 0;
        let mut parse_errors = 0;
        let mut refused = Refused::default();
        gate.refresh();
        let open = gate.is_open();
        for (payload, source) in receiver.datagrams(count) {
            bytes += payload.len() as u64;
            if !open && !refused.admit(gate, source) {
                continue;
            }
            parse_errors += u64::from(sink.batch().push_syslog(payload, None, source, options));
            if sink.batch().len() >= sink.limits().max_messages {
                sink.flush_if_due(false, WhenFull::Drop);
            }
        }
        ListenerCounters::add(&counters.received_messages, count as u64);
        ListenerCounters::add(&counters.received_bytes, bytes);
        ListenerCounters::add(&counters.parse_errors, parse_errors);
        refused.count(counters);
        sink.flush_if_due(false, WhenFull::Drop);
    }

    /// Counts a receive error other than "nothing waiting"; backs off a little so that a
    /// persistent error does not spin the core.
    fn receive_failed(&mut self, error: &std::io::Error) {
        if !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
        ) {
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
    addresses: Box<[libc::sockaddr_storage]>,
    /// Only read by the kernel, through the headers' pointers.
    _iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers only point into the struct's own boxed buffers.
unsafe impl Send for MultiReceiver {}

impl MultiReceiver {
    pub(crate) fn new() -> Self {
        let mut payloads = vec![0u8; DATAGRAMS_PER_CALL * DATAGRAM_BUFFER_BYTES].into_boxed_slice();
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which
        // all-zero bytes are a valid value.
        let mut addresses: Box<[libc::sockaddr_storage]> =
            (0..DATAGRAMS_PER_CALL).map(|_| unsafe { std::mem::zeroed() }).collect();
        let mut iovecs: Box<[libc::iovec]> = payloads
            .chunks_exact_mut(DATAGRAM_BUFFER_BYTES)
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
        Self { payloads, addresses, _iovecs: iovecs, headers }
    }

    pub(crate) fn receive(&mut self, socket: &UdpSocket, flags: libc::c_int) -> std::io::Result<usize> {
        for header in self.headers.iter_mut() {
            header.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_len = 0;
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

    pub(crate) fn datagrams(&self, count: usize) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.headers[..count].iter().zip(self.addresses.iter()).enumerate().map(
            move |(index, (header, address))| {
                let start = index * DATAGRAM_BUFFER_BYTES;
                let len = (header.msg_len as usize).min(DATAGRAM_BUFFER_BYTES);
                let source = socket_addr(address)
                    .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
                (&self.payloads[start..start + len], source)
            },
        )
    }
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
