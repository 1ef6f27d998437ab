//! RFC 6587 framing throughput on large feeds of ~250-byte frames.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill_parsers::framing::SyslogFramer;

/// About 4 MiB per iteration, fed in 64 KiB reads like a busy TCP connection.
const STREAM_BYTES: usize = 4 << 20;
const READ_BYTES: usize = 64 << 10;

fn message(index: usize) -> Vec<u8> {
    let mut message = format!(
        "<134>1 2024-05-01T12:34:56.789Z web-{:02}.example.com nginx 4242 ACCESS \
         [meta sequenceId=\"{index}\"] 10.1.2.3 - - \"GET /api/v1/items/{index} HTTP/1.1\" 200 512 \
         \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
        index % 16
    )
    .into_bytes();
    message.resize(250, b'.');
    message
}

fn stream(octet_counted: bool) -> Vec<u8> {
    let mut stream = Vec::with_capacity(STREAM_BYTES + 512);
    let mut index = 0;
    while stream.len() < STREAM_BYTES {
        let message = message(index);
        if octet_counted {
            stream.extend_from_slice(format!("{} ", message.len()).as_bytes());
            stream.extend_from_slice(&message);
        } else {
            stream.extend_from_slice(&message);
            stream.push(b'\n');
        }
        index += 1;
    }
    stream
}

fn frame_all(stream: &[u8]) -> usize {
    let mut framer = SyslogFramer::new(8192);
    let mut frame_bytes = 0;
    for read in stream.chunks(READ_BYTES) {
        framer.feed(read);
        while let Some(frame) = framer.next_frame() {
            frame_bytes += black_box(frame.bytes).len();
        }
    }
    frame_bytes
}

fn framing(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("framing");
    for (name, octet_counted) in [("octet_counted", true), ("lf_delimited", false)] {
        let stream = stream(octet_counted);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function(name, |bencher| bencher.iter(|| frame_all(black_box(&stream))));
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
