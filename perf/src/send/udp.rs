//! UDP senders: each batch's datagrams are written into one buffer and handed to the kernel
//! with one `sendmmsg` whose iovecs point at slices of it.

use std::io;
use std::os::fd::AsRawFd as _;

use anyhow::Context as _;
use socket2::{Domain, Socket, Type};

use super::{Worker, WorkerTotals};
use crate::rate::Pacer;

/// Datagrams per `sendmmsg`; Linux caps a call at UIO_MAXIOV (1024), and 64 already makes
/// the syscall cost per message small next to building it.
pub const DATAGRAMS_PER_BATCH: usize = 64;

/// Payload limit for packed metric datagrams: under a 1500-byte MTU after IP and UDP
/// headers, so metrics never fragment.
pub const MAX_PACKED_DATAGRAM: usize = 1400;

/// Metric lines claimed per batch; enough to fill the batch's datagrams.
const LINES_PER_BATCH: u64 = 512;

/// How messages map onto datagrams.
#[derive(Debug, Clone, Copy)]
pub enum Packing {
    /// One syslog message per datagram (RFC 5426).
    OnePerDatagram,
    /// Newline-separated lines, as many as fit in [`MAX_PACKED_DATAGRAM`] (statsd, Influx).
    Lines,
}

/// A batch of datagrams laid out in one buffer.
struct DatagramBatch {
    buf: Vec<u8>,
    /// `(start, end, messages)` of each datagram in `buf`.
    datagrams: Vec<(usize, usize, u64)>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl DatagramBatch {
    fn new() -> Self {
        Self {
            buf: Vec::with_capacity(DATAGRAMS_PER_BATCH * 1536),
            datagrams: Vec::with_capacity(DATAGRAMS_PER_BATCH),
            iovecs: Vec::with_capacity(DATAGRAMS_PER_BATCH),
            headers: Vec::with_capacity(DATAGRAMS_PER_BATCH),
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.datagrams.clear();
    }

    fn is_full(&self) -> bool {
        self.datagrams.len() == DATAGRAMS_PER_BATCH
    }

    /// Appends one message, opening a new datagram when packing says so.
    fn push(&mut self, worker: &mut Worker<'_>, seq: u64, send_unix_nanos: u64, packing: Packing) {
        let line_start = self.buf.len();
        match (packing, self.datagrams.last_mut()) {
            (Packing::Lines, Some(last)) => {
                self.buf.push(b'\n');
                worker.mix.write_message(seq, send_unix_nanos, &mut self.buf);
                if self.buf.len() - last.0 <= MAX_PACKED_DATAGRAM {
                    last.1 = self.buf.len();
                    last.2 += 1;
                } else {
                    // The separator stays in the buffer between the two datagrams' slices.
                    self.datagrams.push((line_start + 1, self.buf.len(), 1));
                }
            }
            _ => {
                worker.mix.write_message(seq, send_unix_nanos, &mut self.buf);
                self.datagrams.push((line_start, self.buf.len(), 1));
            }
        }
    }

    /// Sends every datagram, skipping (and counting) any the kernel refuses.
    fn send(&mut self, socket: &Socket, totals: &mut WorkerTotals) -> (u64, u64) {
        self.iovecs.clear();
        self.headers.clear();
        for &(start, end, _) in &self.datagrams {
            self.iovecs.push(libc::iovec {
                iov_base: self.buf[start..end].as_ptr().cast_mut().cast(),
                iov_len: end - start,
            });
        }
        for iovec in &mut self.iovecs {
            // SAFETY: mmsghdr is a plain C struct for which all-zeroes is valid (no name, no
            // control data); only the iovec fields are set.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            self.headers.push(header);
        }
        let (mut sent_messages, mut sent_bytes) = (0, 0);
        let mut next = 0;
        while next < self.headers.len() {
            let remaining = &mut self.headers[next..];
            // SAFETY: the headers point at iovecs that point into `self.buf`; neither is
            // touched until this loop ends, and the fd is the connected socket's.
            let rc = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), remaining.as_mut_ptr(), remaining.len() as u32, 0)
            };
            if rc < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram failed (ENOBUFS, ECONNREFUSED from an earlier ICMP
                // port unreachable, ...): count it and go on with the rest.
                totals.send_errors += 1;
                totals.failed_messages += self.datagrams[next].2;
                next += 1;
                if error.raw_os_error() == Some(libc::ENOBUFS) {
                    std::thread::yield_now();
                }
                continue;
            }
            for &(start, end, messages) in &self.datagrams[next..next + rc as usize] {
                sent_messages += messages;
                sent_bytes += (end - start) as u64;
            }
            next += rc as usize;
        }
        (sent_messages, sent_bytes)
    }
}

fn connect(worker: &Worker<'_>) -> anyhow::Result<Socket> {
    let target = worker.config.target;
    let socket = Socket::new(Domain::for_address(target), Type::DGRAM, Some(socket2::Protocol::UDP))
        .context("opening a UDP socket")?;
    // A larger buffer absorbs scheduling hiccups; the kernel caps it at wmem_max.
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.connect(&target.into()).with_context(|| format!("connecting a UDP socket to {target}"))?;
    Ok(socket)
}

pub(super) fn run(worker: &mut Worker<'_>, packing: Packing) -> anyhow::Result<WorkerTotals> {
    let socket = connect(worker)?;
    let max_batch = match packing {
        Packing::OnePerDatagram => DATAGRAMS_PER_BATCH as u64,
        Packing::Lines => LINES_PER_BATCH,
    };
    let mut pacer = Pacer::new(worker.rate, max_batch);
    let mut batch = DatagramBatch::new();
    let mut totals = WorkerTotals::default();
    while !worker.past_deadline() {
        let tokens = pacer.acquire(max_batch, worker.deadline);
        let Some(offsets) = worker.claimer.claim(tokens) else { break };
        let send_unix_nanos = Worker::unix_nanos_now();
        batch.clear();
        for offset in offsets {
            if batch.is_full() {
                flush(&mut batch, &socket, worker, &mut totals);
            }
            let seq = worker.seq(offset);
            batch.push(worker, seq, send_unix_nanos, packing);
        }
        flush(&mut batch, &socket, worker, &mut totals);
    }
    totals.forfeited_tokens = pacer.forfeited();
    Ok(totals)
}

fn flush(batch: &mut DatagramBatch, socket: &Socket, worker: &Worker<'_>, totals: &mut WorkerTotals) {
    if batch.datagrams.is_empty() {
        return;
    }
    let (messages, bytes) = batch.send(socket, totals);
    totals.sent_messages += messages;
    totals.sent_bytes += bytes;
    worker.progress.add(messages, bytes);
    batch.clear();
}
