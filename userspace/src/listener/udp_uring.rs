//! UDP receive through io_uring: one multishot `recvmsg` (IORING_OP_RECVMSG with
//! IORING_RECV_MULTISHOT) stays armed on the socket and picks a buffer from a provided-buffer
//! ring for every datagram, so a busy socket costs one `io_uring_enter` per batch of
//! completions instead of one `recvmmsg` per batch plus its copies into fixed slots.
//!
//! Each buffer goes back on the ring as soon as its datagram has been handed to the
//! caller (which copies it into its batch or folds it into its aggregator). The source
//! address comes from the `io_uring_recvmsg_out` header the kernel writes in front of
//! the payload. See docs/adr/0033-io-uring-socket-receive.md.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};

use super::udp_receive::Received;

/// Provided buffers per socket (a power of two, at most 32,768). Buffers return to the ring
/// right after their datagram is read, so this only has to cover one burst of completions.
const BUFFER_COUNT: u16 = 128;
/// Submission queue entries: one multishot receive and the occasional re-arm.
const RING_ENTRIES: u32 = 8;
/// Completion queue entries: room for every buffer's completion and then some.
const COMPLETION_ENTRIES: u32 = 1024;
/// The buffer group the ring is registered as.
const BUFFER_GROUP: u16 = 0;
/// Kernel header in front of each received datagram, then the fixed-size name field.
const RECVMSG_OUT_BYTES: usize = 16;
const NAME_BYTES: usize = std::mem::size_of::<libc::sockaddr_storage>();
/// Completions handled per call, so that a flood still hands batches off regularly.
const COMPLETIONS_PER_CALL: usize = 256;

/// An anonymous, page-aligned mapping (the provided-buffer ring must be page aligned).
struct Mapping {
    address: *mut libc::c_void,
    length: usize,
}

impl Mapping {
    fn new(length: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { address, length })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe { libc::munmap(self.address, self.length) };
    }
}

/// A ring with one multishot `recvmsg` on one UDP socket and its provided buffers.
pub(crate) struct UringReceiver {
    // Field order is drop order: the ring (and with it the kernel's references to the
    // buffer ring, the buffers and the msghdr) goes first.
    ring: IoUring,
    buffer_ring: Mapping,
    buffers: Box<[u8]>,
    buffer_bytes: usize,
    /// Read by the kernel for every datagram (`msg_namelen`, `msg_controllen`).
    msghdr: Box<libc::msghdr>,
    fd: RawFd,
    /// The next buffer ring tail to publish.
    tail: u16,
    /// Whether the multishot receive is still armed (the kernel ends it on ENOBUFS and on
    /// errors, saying so by a completion without IORING_CQE_F_MORE).
    armed: bool,
    /// Whether the ring was made disabled (single issuer) and waits for `enable`.
    disabled: bool,
}

// SAFETY: the raw pointers point into the receiver's own mappings and boxes; the ring is
// used by one thread at a time (the receiver moves into its thread whole, and a single
// issuer ring is enabled there, see `enable`).
unsafe impl Send for UringReceiver {}

impl UringReceiver {
    /// Sets up a ring and registers `BUFFER_COUNT` buffers of `datagram_bytes` each
    /// (longer datagrams are cut and reported truncated). Fails where io_uring is not
    /// allowed (`kernel.io_uring_disabled`, a seccomp profile: EPERM or ENOSYS) or too old
    /// for provided-buffer rings (5.19).
    pub(crate) fn new(socket: &impl AsRawFd, datagram_bytes: usize) -> io::Result<Self> {
        // The receiving thread is the only one that submits: a single-issuer ring with
        // deferred task work runs completions only when that thread asks for them. It is
        // made disabled so that the thread that will use it can enable it (and become
        // its issuer); kernels without these flags (before 6.1) get a plain ring.
        let (ring, disabled) = match IoUring::builder()
            .setup_cqsize(COMPLETION_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(RING_ENTRIES)
        {
            Ok(ring) => (ring, true),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                (IoUring::builder().setup_cqsize(COMPLETION_ENTRIES).build(RING_ENTRIES)?, false)
            }
            Err(error) => return Err(error),
        };
        let buffer_bytes = RECVMSG_OUT_BYTES + NAME_BYTES + datagram_bytes.max(1);
        let ring_bytes = usize::from(BUFFER_COUNT) * std::mem::size_of::<BufRingEntry>();
        let buffer_ring = Mapping::new(ring_bytes.max(4096))?;
        let buffers = vec![0u8; usize::from(BUFFER_COUNT) * buffer_bytes].into_boxed_slice();
        // SAFETY: msghdr is a plain C struct for which all-zero bytes are valid.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_BYTES as libc::socklen_t;
        let mut receiver = Self {
            ring,
            buffer_ring,
            buffers,
            buffer_bytes,
            msghdr,
            fd: socket.as_raw_fd(),
            tail: 0,
            armed: false,
            disabled,
        };
        // SAFETY: the ring mapping is page aligned, holds BUFFER_COUNT entries and lives as
        // long as the io_uring (dropped after it, field order).
        unsafe {
            receiver.ring.submitter().register_buf_ring_with_flags(
                receiver.buffer_ring.address as u64,
                BUFFER_COUNT,
                BUFFER_GROUP,
                0,
            )?;
        }
        for id in 0..BUFFER_COUNT {
            receiver.provide(id);
        }
        Ok(receiver)
    }

    /// Makes the calling thread the ring's issuer; call once, on the receiving thread.
    pub(crate) fn enable(&mut self) -> io::Result<()> {
        if self.disabled {
            self.ring.submitter().register_enable_rings()?;
            self.disabled = false;
        }
        Ok(())
    }

    fn entries(&self) -> *mut BufRingEntry {
        self.buffer_ring.address.cast()
    }

    /// Puts buffer `id` back on the provided-buffer ring, visible to the kernel at once.
    fn provide(&mut self, id: u16) {
        let index = usize::from(self.tail & (BUFFER_COUNT - 1));
        let start = usize::from(id) * self.buffer_bytes;
        // SAFETY: `index` is below BUFFER_COUNT, the ring's entry count; the entry is ours
        // to write because the kernel only reads entries below the published tail.
        let entry = unsafe { &mut *self.entries().add(index) };
        entry.set_addr(self.buffers[start..].as_ptr() as u64);
        entry.set_len(self.buffer_bytes as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 at offset 14 of the ring's first entry, which the
        // kernel reads with acquire ordering; it is 2-byte aligned in a page-aligned map.
        let tail = unsafe { &*BufRingEntry::tail(self.entries()).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn arm(&mut self) -> io::Result<()> {
        let entry = opcode::RecvMsgMulti::new(types::Fd(self.fd), &*self.msghdr, BUFFER_GROUP).build();
        // SAFETY: the msghdr and the buffers the entry refers to live as long as the ring.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.armed = true;
        Ok(())
    }

    /// Reads what has arrived, waiting up to `wait` for the first datagram when given.
    /// `on_datagram` sees each payload and source once; afterwards its buffer is back on
    /// the ring. Nothing read: `WouldBlock` (or `TimedOut`), as from `recvmmsg`.
    pub(crate) fn receive(
        &mut self,
        wait: Option<Duration>,
        mut on_datagram: impl FnMut(&[u8], SocketAddr, bool),
    ) -> io::Result<Received> {
        if !self.armed {
            self.arm()?;
        }
        // Deferred task work (where the datagrams are actually received) only runs in an
        // enter that asks for completions, so even the non-blocking case asks for one,
        // with a zero timeout.
        let timespec = Timespec::from(wait.unwrap_or(Duration::ZERO));
        let submitted = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&timespec));
        match submitted {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(error) => return Err(error),
        }
        let mut received = Received::default();
        let mut returned = Vec::new();
        let mut failure = None;
        {
            let (msghdr, buffers, buffer_bytes) = (&*self.msghdr, &self.buffers, self.buffer_bytes);
            let mut completions = self.ring.completion();
            for completion in completions.by_ref().take(COMPLETIONS_PER_CALL) {
                let flags = completion.flags();
                if !cqueue::more(flags) {
                    self.armed = false;
                }
                let result = completion.result();
                let Some(id) = cqueue::buffer_select(flags) else {
                    // ENOBUFS: every buffer was in use; the datagrams wait in the socket
                    // and the receive is armed again. Other errors end it the same way.
                    if result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED {
                        failure = Some(io::Error::from_raw_os_error(-result));
                    }
                    continue;
                };
                returned.push(id);
                let start = usize::from(id) * buffer_bytes;
                let length = usize::try_from(result).unwrap_or(0).min(buffer_bytes);
                let Some(buffer) = buffers.get(start..start + length) else { continue };
                if let Ok(message) = RecvMsgOut::parse(buffer, msghdr) {
                    let source = super::udp::socket_addr_from_bytes(message.name_data());
                    let truncated = message.is_payload_truncated();
                    on_datagram(message.payload_data(), source, truncated);
                    received.datagrams += 1;
                    received.truncated += u64::from(truncated);
                }
            }
            completions.sync();
        }
        for id in returned {
            self.provide(id);
        }
        match (received.datagrams, failure) {
            (0, Some(error)) => Err(error),
            (0, None) => Err(io::ErrorKind::WouldBlock.into()),
            _ => Ok(received),
        }
    }
}

/// Whether io_uring multishot receive with a provided-buffer ring works here: sets up a
/// ring on a datagram socket pair (no network needed, so it works in any namespace),
/// sends one datagram and reads it back. The error says what failed.
pub(crate) fn probe() -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: a two-element array for the two descriptors socketpair writes.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
        < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned these descriptors; each is owned once.
    let (receiving, sending) = unsafe {
        use std::os::fd::{FromRawFd, OwnedFd};
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let mut receiver = UringReceiver::new(&receiving, 64)?;
    receiver.enable()?;
    // SAFETY: a valid descriptor and a 5-byte buffer.
    if unsafe { libc::send(sending.as_raw_fd(), b"probe".as_ptr().cast(), 5, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut payload_ok = false;
    for _ in 0..10 {
        match receiver
            .receive(Some(Duration::from_millis(20)), |payload, _, _| payload_ok = payload == b"probe")
        {
            Ok(_) => break,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    if payload_ok { Ok(()) } else { Err(io::Error::other("multishot recvmsg returned no datagram")) }
}
