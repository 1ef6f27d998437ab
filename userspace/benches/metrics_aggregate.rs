//! One metrics listener's aggregator, without a socket: statsd datagrams folded into
//! series, and the interval flushed into points, as a `statsd-udp@<cpu>` thread does.
//!
//! - `known_series`: a fleet's steady state. 20,000 series (12 metric names, 4 kinds,
//!   hosts and environments as tags) are already in the interval, and every line adds a
//!   sample to one of them. Lines per second.
//! - `new_series_and_flush`: the rig's `statsd` generator, where every line is a new
//!   series. A fresh interval takes 100,000 new series (a tenth of them timers, up to
//!   `max_histogram_series`), then 20,000 lines the series limit refuses, then the flush.
//!   Lines per second for the whole interval.
//!
//! Datagrams hold 20 lines each, built before the measurement.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use killkrill_dataplane::metrics::{Aggregator, AggregatorSettings, IngestCounts};

/// Metric names: `service<k>.requests` and the like, 12 of them.
const NAME_COUNT: usize = 12;
const NAME_SUFFIXES: [&str; 3] = ["requests", "latency", "errors"];
const KINDS: [&str; 4] = ["c", "g", "ms", "c"];
const LINES_PER_DATAGRAM: usize = 20;
const T0: i64 = 1_700_000_000_000_000_000;

/// Line `n`: `series` picks the series; with `unique`, a sequence tag makes it new.
fn write_line(out: &mut String, n: usize, series: usize, unique: bool) {
    use std::fmt::Write as _;
    let kind = if unique && n.is_multiple_of(10) { "ms" } else { KINDS[series % KINDS.len()] };
    let name = series % NAME_COUNT;
    let _ = write!(
        out,
        "service{}.{}:{}|{}|#host:edge-r{:04},env:{}",
        name / NAME_SUFFIXES.len(),
        NAME_SUFFIXES[name % NAME_SUFFIXES.len()],
        n % 997,
        kind,
        series / NAME_COUNT % 2000,
        ["prod", "staging"][series / (NAME_COUNT * 2000) % 2],
    );
    if unique {
        let _ = write!(out, ",kkseq:{n}");
    }
}

fn datagrams(lines: usize, unique: bool, series_count: usize) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut datagram = String::new();
    for n in 0..lines {
        if !datagram.is_empty() {
            datagram.push('\n');
        }
        write_line(&mut datagram, n, n % series_count, unique);
        if (n + 1).is_multiple_of(LINES_PER_DATAGRAM) {
            datagrams.push(std::mem::take(&mut datagram).into_bytes());
        }
    }
    if !datagram.is_empty() {
        datagrams.push(datagram.into_bytes());
    }
    datagrams
}

fn ingest(aggregator: &mut Aggregator, datagrams: &[Vec<u8>]) -> IngestCounts {
    let mut counts = IngestCounts::default();
    for datagram in datagrams {
        aggregator.ingest_statsd(datagram, &mut counts);
    }
    counts
}

fn aggregate(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics/aggregate");

    const FLEET: usize = 20_000;
    let fleet = datagrams(FLEET, false, FLEET);
    let mut aggregator = Aggregator::new(AggregatorSettings::default(), T0);
    let counts = ingest(&mut aggregator, &fleet);
    assert_eq!((counts.samples, aggregator.series_count()), (FLEET as u64, FLEET));
    group.throughput(Throughput::Elements(FLEET as u64));
    group.bench_function("known_series", |b| b.iter(|| ingest(&mut aggregator, &fleet)));

    let settings = AggregatorSettings::default();
    let lines = settings.max_series + 20_000;
    let flood = datagrams(lines, true, usize::MAX);
    group.throughput(Throughput::Elements(lines as u64));
    group.sample_size(20);
    group.bench_function("new_series_and_flush", |b| {
        b.iter_batched(
            || Aggregator::new(settings, T0),
            |mut aggregator| {
                let counts = ingest(&mut aggregator, &flood);
                assert_eq!(counts.samples + counts.series_limit, lines as u64);
                aggregator.flush(T0 + 10_000_000_000)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
