//! Receiver CPU per UDP datagram: batched `recvmmsg` against io_uring multishot receive
//! with a provided-buffer ring, on real sockets over loopback.
//!
//! A sender thread floods the receiving socket with ~250-byte RFC 5424 messages
//! (`sendmmsg`, 64 per call) for the whole run, so that the receiver always finds a
//! backlog, as under load. Each measurement reads `iters` datagrams and reports the
//! receiving thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), so the figure is ns of
//! receiver CPU per datagram, whatever the sender or the other core is doing. On loopback
//! the kernel queues the datagram in the sender's context; what is measured is the
//! receive side: the syscalls, the copies to user space and reading the source address.
//!
//! `cargo xtask bench micro udp_receive` (or `cargo bench -p killkrill-dataplane --bench
//! udp_receive`). io_uring is skipped, with the reason, where it is unavailable.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill_dataplane::listener::udp_receive::{
    DATAGRAM_BUFFER_BYTES, ReceiveMethod, UdpReceiver, probe_io_uring,
};

const MESSAGE: &[u8] = b"<165>1 2026-11-23T10:00:00.123456Z router-17.example.net sshd 4242 ID47 \
[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \
Accepted publickey for admin from 192.0.2.77 port 51234 ssh2: RSA SHA256:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const SEND_BATCH: usize = 64;

fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Floods `target` until `stop` is raised.
fn start_sender(target: std::net::SocketAddr, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("sender socket");
        socket.connect(target).expect("connect");
        let mut iovecs: Vec<libc::iovec> = (0..SEND_BATCH)
            .map(|_| libc::iovec { iov_base: MESSAGE.as_ptr() as *mut libc::c_void, iov_len: MESSAGE.len() })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iovec| {
                // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are valid.
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: every header points at a live iovec over a static message.
            unsafe {
                libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), SEND_BATCH as libc::c_uint, 0)
            };
        }
    })
}

fn receive_benchmark(c: &mut Criterion) {
    let mut methods = vec![ReceiveMethod::Recvmmsg];
    match probe_io_uring() {
        Ok(()) => methods.push(ReceiveMethod::IoUring),
        Err(error) => eprintln!("io_uring skipped: {error}"),
    }
    let mut group = c.benchmark_group("udp_receive");
    group.throughput(Throughput::Elements(1));
    for method in methods {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("receiving socket");
        socket.set_read_timeout(Some(Duration::from_millis(10))).expect("timeout");
        let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
        let mut receiver = UdpReceiver::new(method, &socket, DATAGRAM_BUFFER_BYTES).expect("receiver");
        receiver.enable().expect("enable");
        let stop = Arc::new(AtomicBool::new(false));
        let sender = start_sender(socket.local_addr().expect("address"), stop.clone());
        group.bench_function(method.label(), |bench| {
            bench.iter_custom(|iters| {
                let started = thread_cpu();
                let mut received = 0u64;
                let mut bytes = 0usize;
                while received < iters {
                    if let Ok(batch) = receiver.receive(&socket, true, |payload, _, _| bytes += payload.len())
                    {
                        received += batch.datagrams as u64;
                    }
                }
                std::hint::black_box(bytes);
                // Per datagram read, which may be a little more than asked for.
                (thread_cpu() - started).mul_f64(iters as f64 / received as f64)
            });
        });
        stop.store(true, Ordering::Relaxed);
        let _ = sender.join();
    }
    group.finish();
}

criterion_group!(benches, receive_benchmark);
criterion_main!(benches);
