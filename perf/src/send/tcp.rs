//! Syslog over TCP with RFC 6587 framing: a thread owns a share of the run's connections
//! and writes each batch of frames to the next one round-robin, in one large write.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use socket2::{Domain, Socket, Type};

use super::{Framing, Worker, WorkerTotals};
use crate::ascii::write_u64;
use crate::rate::Pacer;

/// Messages per write: large enough that syscalls are a small share of the cost.
const FRAMES_PER_WRITE: u64 = 256;

/// How long a blocked write may wait before the loop re-checks its deadline.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// A connection that makes no progress for this long is abandoned and re-opened; back
/// pressure from a slow receiver is waited out, a dead one is not.
const STALL_LIMIT: Duration = Duration::from_secs(10);

/// After the run's deadline, a blocked write gets this long to drain before its frames are
/// counted as failed.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Connection {
    socket: Option<Socket>,
    retry_at: Instant,
    backoff: Duration,
    /// True once this slot has had a connection, so a new one counts as a reconnect.
    was_open: bool,
}

impl Connection {
    fn closed() -> Self {
        Self { socket: None, retry_at: Instant::now(), backoff: FIRST_BACKOFF, was_open: false }
    }

    /// Opens the connection if it is closed and its back-off has passed.
    fn ensure_open(&mut self, target: SocketAddr, totals: &mut WorkerTotals) -> bool {
        if self.socket.is_some() {
            return true;
        }
        let now = Instant::now();
        if now < self.retry_at {
            return false;
        }
        match open(target) {
            Ok(socket) => {
                self.socket = Some(socket);
                self.backoff = FIRST_BACKOFF;
                if self.was_open {
                    totals.reconnects += 1;
                }
                self.was_open = true;
                true
            }
            Err(_) => {
                totals.send_errors += 1;
                self.retry_at = now + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                false
            }
        }
    }

    fn close(&mut self, retry_at: Instant) {
        self.socket = None;
        self.retry_at = retry_at;
    }
}

fn open(target: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.connect_timeout(&target.into(), CONNECT_TIMEOUT)?;
    socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
    Ok(socket)
}

/// The frames of one write, laid out in one buffer.
struct FrameBatch {
    buf: Vec<u8>,
    /// End offset of each frame in `buf`, to count which frames a partial write completed.
    frame_ends: Vec<usize>,
    /// Octet counting needs the length before the message, so the message is written here
    /// first and copied after its length.
    scratch: Vec<u8>,
}

impl FrameBatch {
    fn push(&mut self, worker: &mut Worker<'_>, framing: Framing, seq: u64, send_unix_nanos: u64) {
        match framing {
            Framing::Octet => {
                self.scratch.clear();
                worker.mix.write_message(seq, send_unix_nanos, &mut self.scratch);
                write_u64(&mut self.buf, self.scratch.len() as u64);
                self.buf.push(b' ');
                self.buf.extend_from_slice(&self.scratch);
            }
            Framing::Lf => {
                worker.mix.write_message(seq, send_unix_nanos, &mut self.buf);
                self.buf.push(b'\n');
            }
        }
        self.frame_ends.push(self.buf.len());
    }

    fn frames_within(&self, written: usize) -> u64 {
        self.frame_ends.partition_point(|end| *end <= written) as u64
    }
}

/// How a write of one batch ended.
enum WriteOutcome {
    Complete,
    /// The connection broke or stalled after `written` bytes and must be re-opened.
    Broken {
        written: usize,
    },
}

/// Writes all of `buf`, riding out partial writes and back pressure.
fn write_batch(socket: &Socket, buf: &[u8], deadline: Option<Instant>) -> WriteOutcome {
    let mut written = 0;
    let mut last_progress = Instant::now();
    while written < buf.len() {
        // MSG_NOSIGNAL: a reset peer must give EPIPE, not kill the process with SIGPIPE.
        match socket.send_with_flags(&buf[written..], libc::MSG_NOSIGNAL) {
            Ok(0) => return WriteOutcome::Broken { written },
            Ok(n) => {
                written += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                let now = Instant::now();
                let past_grace = deadline.is_some_and(|d| now >= d + DEADLINE_GRACE);
                if past_grace || now - last_progress >= STALL_LIMIT {
                    return WriteOutcome::Broken { written };
                }
            }
            Err(_) => return WriteOutcome::Broken { written },
        }
    }
    WriteOutcome::Complete
}

pub(super) fn run(worker: &mut Worker<'_>, framing: Framing) -> anyhow::Result<WorkerTotals> {
    let target = worker.config.target;
    let threads = worker.config.threads.min(worker.config.connections);
    // Connection `c` belongs to thread `c % threads`.
    let own = (worker.index..worker.config.connections).step_by(threads).count();
    let mut totals = WorkerTotals::default();
    let mut connections: Vec<Connection> = (0..own).map(|_| Connection::closed()).collect();
    let opened =
        connections.iter_mut().map(|c| c.ensure_open(target, &mut totals)).filter(|open| *open).count();
    if opened == 0 {
        bail!("could not open any of {own} TCP connections to {target} (is the receiver listening?)");
    }

    let mut pacer = Pacer::new(worker.rate, FRAMES_PER_WRITE);
    let mut batch = FrameBatch {
        buf: Vec::with_capacity(FRAMES_PER_WRITE as usize * 1600),
        frame_ends: Vec::with_capacity(FRAMES_PER_WRITE as usize),
        scratch: Vec::with_capacity(2048),
    };
    let mut next_connection = 0;
    while !worker.past_deadline() {
        let Some(index) = pick_connection(&mut connections, &mut next_connection, target, &mut totals) else {
            wait_for_retry(&connections, worker.deadline);
            continue;
        };
        let tokens = pacer.acquire(FRAMES_PER_WRITE, worker.deadline);
        let Some(offsets) = worker.claimer.claim(tokens) else { break };
        let send_unix_nanos = Worker::unix_nanos_now();
        batch.buf.clear();
        batch.frame_ends.clear();
        for offset in offsets {
            let seq = worker.seq(offset);
            batch.push(worker, framing, seq, send_unix_nanos);
        }
        let connection = &mut connections[index];
        let socket = connection.socket.as_ref().expect("picked connections are open");
        let (frames, bytes) = match write_batch(socket, &batch.buf, worker.deadline) {
            WriteOutcome::Complete => (batch.frame_ends.len() as u64, batch.buf.len()),
            WriteOutcome::Broken { written } => {
                // ECONNRESET, EPIPE or a stall: re-open at once; the partial frame died
                // with the connection.
                totals.send_errors += 1;
                connection.close(Instant::now());
                (batch.frames_within(written), written)
            }
        };
        totals.sent_messages += frames;
        totals.sent_bytes += bytes as u64;
        totals.failed_messages += batch.frame_ends.len() as u64 - frames;
        worker.progress.add(frames, bytes as u64);
    }
    totals.forfeited_tokens = pacer.forfeited();
    Ok(totals)
}

/// The next open connection round-robin, re-opening closed ones whose back-off passed.
fn pick_connection(
    connections: &mut [Connection],
    next: &mut usize,
    target: SocketAddr,
    totals: &mut WorkerTotals,
) -> Option<usize> {
    for _ in 0..connections.len() {
        let index = *next;
        *next = (*next + 1) % connections.len();
        if connections[index].ensure_open(target, totals) {
            return Some(index);
        }
    }
    None
}

fn wait_for_retry(connections: &[Connection], deadline: Option<Instant>) {
    let soonest = connections.iter().map(|c| c.retry_at).min().unwrap_or_else(Instant::now);
    let wake = deadline.map_or(soonest, |d| soonest.min(d));
    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
}
