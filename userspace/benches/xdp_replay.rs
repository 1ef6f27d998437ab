//! The AF_XDP receive path without a sender in the way: pre-built RFC 5424 frames are
//! injected by the kernel (BPF_PROG_TEST_RUN, live frames) as if they arrived on rx queue 0
//! of a veth in a namespace of its own; the XDP program redirects them to the AF_XDP
//! socket and the receiver thread parses them into batches, which a drain thread hands
//! back for reuse. Throughput is in messages per second, lossless by construction: at most
//! one RX ring's worth is outstanding. Needs root; prints why and measures nothing
//! otherwise.

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill_dataplane::capture::{CaptureConfig, CaptureMode};
use killkrill_dataplane::cores::CoreSelection;
use killkrill_dataplane::cores::pin::pin_current_thread;
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::CapturePath;
use killkrill_dataplane::testing::{VethRig, skip_reason, thread_cpu_seconds};
use killkrill_dataplane::{DataPlane, DataPlaneConfig};

/// Frames injected per syscall; below the RX ring size so the ring never overflows.
const CHUNK: u64 = 1024;

fn frame(port: u16) -> Vec<u8> {
    let payload = format!(
        "<165>1 2026-11-23T10:00:00.123456Z router-17.example.net sshd 4242 ID47 \
         [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \
         Accepted publickey for admin from 192.0.2.77 port 51234 ssh2: RSA SHA256:{}",
        "x".repeat(40)
    );
    let udp_len = (8 + payload.len()) as u16;
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&(20 + udp_len).to_be_bytes());
    frame.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 10, 204, 0, 2, 10, 204, 0, 1]);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload.as_bytes());
    frame
}

fn replay(c: &mut Criterion) {
    if let Some(reason) = skip_reason() {
        eprintln!("xdp_replay skipped: {reason}");
        return;
    }
    // The receiver on the last CPU, the injecting thread (this one) and the drain on the
    // first: the kernel then writes each frame from another core, so its bytes are not in
    // the receiver's cache (as after a NIC's DMA), and the figure does not depend on where
    // the scheduler would have put the injector.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let receiver_cpu = cpus - 1;
    let rig = VethRig::create().expect("namespace rig");
    let _inside = rig.enter(&rig.appliance);
    let config = DataPlaneConfig {
        syslog_udp: Some("[::]:0".parse().unwrap()),
        capture: CaptureConfig {
            mode: CaptureMode::Xdp,
            interface: Some(rig.appliance_if.clone()),
            queues: Some(1),
            ..CaptureConfig::default()
        },
        cores: CoreSelection::List(vec![receiver_cpu]),
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config).expect("XDP capture on the veth");
    // Only now: the data plane checks its cores against the starting thread's CPUs.
    pin_current_thread(0).expect("pinning a bench thread");
    let mut consumers = plane.take_consumers();
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin_current_thread(0).expect("pinning a bench thread");
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for consumer in &mut consumers {
                    while let Some(batch) = consumer.pop() {
                        consumer.give_back(batch);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let name = CString::new(rig.appliance_if.as_str()).unwrap();
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    let port = plane.listeners()[0].local_addr.port();
    let frame = frame(port);
    let counters = plane.counters().iter().find(|c| c.capture == CapturePath::AfXdp).unwrap().clone();
    let steering = plane.xdp().unwrap();
    let received = || ListenerCounters::read(&counters.received_messages);
    let wait_until = |target: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while received() < target {
            assert!(Instant::now() < deadline, "frames lost in the replay");
            std::hint::spin_loop();
        }
    };

    let (cpu_before, count_before, wall_before) = (thread_cpu_seconds("afxdp-"), received(), Instant::now());
    let mut group = c.benchmark_group("xdp_replay");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rfc5424_250_bytes_queue0", |b| {
        b.iter_custom(|iterations| {
            let start_count = received();
            let started = Instant::now();
            let steering = steering.lock().unwrap();
            let mut injected = 0;
            while injected < iterations {
                // Keep at most one chunk in flight beyond what the receiver has read.
                wait_until((start_count + injected).saturating_sub(CHUNK));
                let chunk = CHUNK.min(iterations - injected);
                steering.replay_live(&frame, index, 0, chunk as u32).expect("live replay");
                injected += chunk;
            }
            wait_until(start_count + iterations);
            started.elapsed()
        })
    });
    group.finish();
    // The kernel injects on the bench's own thread, so the wall-clock rate is bounded by
    // that thread too; the receiver thread's CPU per message is the data-plane core's cost.
    let cpu = thread_cpu_seconds("afxdp-") - cpu_before;
    let messages = received() - count_before;
    let wall = wall_before.elapsed().as_secs_f64();
    eprintln!(
        "xdp_replay: receiver thread {cpu:.2} CPU s for {messages} messages in {wall:.1} s: {:.3} µs per message \
         (one core at that cost: {:.2} M msgs/s), busy {:.0}% of the time",
        cpu * 1e6 / messages as f64,
        messages as f64 / cpu / 1e6,
        cpu * 100.0 / wall
    );
    stop.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    let dropped = ListenerCounters::read(&counters.dropped_capture_full);
    eprintln!("xdp_replay: {} messages received, {dropped} dropped at the AF_XDP ring", received());
    plane.shutdown();
}

criterion_group!(benches, replay);
criterion_main!(benches);
