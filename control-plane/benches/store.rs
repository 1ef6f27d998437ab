//! The store: block encoding, durable ingest into SQLite through the real batch writer
//! (prepared batches replayed, so no sender or parser is in the way), and query latency
//! on a loaded store.
//!
//! Messages come from the load generator's realistic mixes (RFC 5424 with structured
//! data, RFC 3164 from several vendors, 80 to 1,500 bytes, thousands of hosts).
//! Run with `cargo xtask bench micro store`; set `KILLKRILL_BENCH_POSTGRES_URL` to include
//! PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use killkrill::config::{DbType, StoreConfig};
use killkrill::ingest::{BlockSettings, BlockSink, run_batch_writer};
use killkrill::store::{self, BlockEncoder, LogQuery, Store, TextQuery};
use killkrill::telemetry::metrics::StoreCounters;
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::handoff::batch_ring;
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;
use killkrill_perf::mix::{MessageMix, MixKind};

const BATCH: usize = 4096;

/// `count` messages of the mixed RFC 5424 / RFC 3164 generator in batches of 4,096,
/// received one microsecond apart ending now.
fn prepared_batches(count: usize) -> (Vec<LogBatch>, u64) {
    let mut mix = MessageMix::new(MixKind::Mixed, 7, 1);
    let limits = BatchLimits { max_messages: BATCH, ..BatchLimits::default() };
    let now = jiff::Timestamp::now().as_nanosecond();
    let mut frame = Vec::with_capacity(2048);
    let mut raw_bytes = 0;
    let mut batches = Vec::new();
    for seq in 0..count {
        if seq % BATCH == 0 {
            batches.push(LogBatch::new(ListenerKind::SyslogUdp, &limits));
        }
        frame.clear();
        mix.write_message(seq as u64, 0, &mut frame);
        raw_bytes += frame.len() as u64;
        let received = now - (count - seq) as i128 * 1_000;
        let options = ParseOptions {
            received_at: jiff::Timestamp::from_nanosecond(received).unwrap(),
            ..ParseOptions::default()
        };
        // About a thousand devices, as a mid-size site has.
        let device = seq % 997;
        let source = format!("10.0.{}.{}:514", device / 250, device % 250).parse().unwrap();
        batches.last_mut().unwrap().push_syslog(&frame, None, source, &options);
    }
    (batches, raw_bytes)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn encode(c: &mut Criterion) {
    let (batches, _) = prepared_batches(16_384);
    let mut group = c.benchmark_group("store/encode_block");
    group.throughput(Throughput::Elements(16_384));
    for level in [1, 3] {
        let mut encoder = BlockEncoder::new(level).unwrap();
        let block = encoder.encode(batches.iter().flat_map(LogBatch::iter)).unwrap();
        eprintln!(
            "store/encode_block/zstd_{level}: {} raw bytes -> {} stored ({:.1}x)",
            block.summary.raw_bytes,
            block.payload.len() + block.summary.field_filter.len() + block.summary.token_filter.len(),
            block.summary.raw_bytes as f64
                / (block.payload.len() + block.summary.field_filter.len() + block.summary.token_filter.len())
                    as f64
        );
        group.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| encoder.encode(batches.iter().flat_map(LogBatch::iter)).unwrap())
        });
    }
    group.finish();
    // What a search pays per block it cannot skip: decompress and read every column; the
    // messages are built only for the rows a search looks at (`render_every_message`: all).
    let block = BlockEncoder::new(1).unwrap().encode(batches.iter().flat_map(LogBatch::iter)).unwrap();
    let mut group = c.benchmark_group("store/decode_block");
    group.throughput(Throughput::Elements(16_384));
    group.bench_function("zstd_1", |b| b.iter(|| killkrill::store::block::decode(&block.payload).unwrap()));
    group.bench_function("zstd_1_render_every_message", |b| {
        let mut scratch = Vec::new();
        b.iter(|| {
            let decoded = killkrill::store::block::decode(&block.payload).unwrap();
            let mut bytes = 0;
            for row in 0..decoded.len() {
                bytes += decoded.message_into(row, &mut scratch).len();
            }
            bytes
        })
    });
    group.finish();
    // Compaction's part per block: decode, then write every row again at its level (9).
    let decoded = killkrill::store::block::decode(&block.payload).unwrap();
    let rows: Vec<killkrill::store::block::RowRef> =
        (0..decoded.len() as u32).map(|row| killkrill::store::block::RowRef { block: 0, row }).collect();
    let mut group = c.benchmark_group("store/reencode_block");
    group.throughput(Throughput::Elements(16_384));
    let mut encoder = BlockEncoder::new(9).unwrap();
    group.bench_function("zstd_9", |b| {
        b.iter(|| {
            let decoded = killkrill::store::block::decode(&block.payload).unwrap();
            encoder.encode_rows(&[&decoded], &rows, block.summary.raw_bytes).unwrap()
        })
    });
    group.finish();
    compact_busy_window(c);
}

/// A busy compaction window: eight arrival blocks (131,072 messages of about 5,000 hosts)
/// regrouped by host into blocks of 1,024 rows at zstd 9 (compaction's own grouping), so each new
/// block draws its rows from all eight old ones. Decoding is left out (the bench above
/// has it).
fn compact_busy_window(c: &mut Criterion) {
    use killkrill::store::block::decode;
    const OLD_BLOCKS: usize = 8;
    let (batches, _) = prepared_batches(16_384 * OLD_BLOCKS);
    let decoded: Vec<_> = batches
        .chunks(16_384 / BATCH)
        .map(|chunk| {
            let block = BlockEncoder::new(1).unwrap().encode(chunk.iter().flat_map(LogBatch::iter)).unwrap();
            decode(&block.payload).unwrap()
        })
        .collect();
    let blocks: Vec<_> = decoded.iter().collect();
    let new_blocks = killkrill::store::compaction::rows_by_host(&blocks, 1_024);
    let messages: usize = new_blocks.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("store/compact_window");
    group.throughput(Throughput::Elements(messages as u64));
    group.sample_size(10);
    let mut encoder = BlockEncoder::new(9).unwrap();
    group.bench_function("8_blocks_by_host_zstd_9", |b| {
        b.iter(|| {
            new_blocks
                .iter()
                .map(|refs| encoder.encode_rows(&blocks, refs, 0).unwrap().payload.len())
                .sum::<usize>()
        })
    });
    group.finish();
    // The merge of older data (ADR 0055): the same window's blocks by host, merged into
    // blocks of 16,384 rows at zstd 19. Prints both sizes.
    let by_host: Vec<_> =
        new_blocks.iter().map(|refs| encoder.encode_rows(&blocks, refs, 0).unwrap()).collect();
    let by_host_decoded: Vec<_> = by_host.iter().map(|block| decode(&block.payload).unwrap()).collect();
    let by_host_blocks: Vec<_> = by_host_decoded.iter().collect();
    let merged_rows = killkrill::store::compaction::rows_by_host(&by_host_blocks, 16_384);
    let mut merger = BlockEncoder::new(19).unwrap();
    let stored = |block: &killkrill::store::EncodedBlock| {
        block.payload.len() + block.summary.token_filter.len() + block.summary.field_filter.len()
    };
    let merged_bytes: usize =
        merged_rows.iter().map(|refs| stored(&merger.encode_rows(&by_host_blocks, refs, 0).unwrap())).sum();
    println!(
        "store/merge_window: {} blocks by host, {} bytes stored; {} merged blocks, {merged_bytes} bytes",
        by_host.len(),
        by_host.iter().map(stored).sum::<usize>(),
        merged_rows.len()
    );
    let mut group = c.benchmark_group("store/merge_window");
    group.throughput(Throughput::Elements(messages as u64));
    group.sample_size(10);
    group.bench_function("by_host_blocks_into_16384_zstd_19", |b| {
        b.iter(|| {
            merged_rows
                .iter()
                .map(|refs| merger.encode_rows(&by_host_blocks, refs, 0).unwrap().payload.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

/// Replays `MESSAGES` prepared messages through the batch writer into `store`; a message
/// counts once its block is committed. Returns the time from the first batch taken to the
/// last block committed.
fn replay(
    runtime: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    batches: Vec<LogBatch>,
    settings: BlockSettings,
) -> Duration {
    let messages: usize = batches.iter().map(LogBatch::len).sum();
    let (mut producer, consumer) = batch_ring(batches.len());
    for batch in batches {
        assert!(producer.push(batch).is_ok());
    }
    drop(producer);
    let counters = Arc::new(StoreCounters::default());
    let started = Instant::now();
    runtime
        .block_on(run_batch_writer(
            vec![consumer],
            None,
            BlockSink::Store(store),
            counters.clone(),
            settings,
            None,
        ))
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(counters.stored_messages.load(std::sync::atomic::Ordering::Relaxed), messages as u64);
    elapsed
}

/// 64 blocks of the store's default size, about a second of ingest: a sustained figure.
/// (262,144 until 2026-12-07, when the first block of each fresh encoder and the last
/// commit were a tenth of a 0.3 s run; docs/performance.md, block format 3.)
const INGEST_MESSAGES: usize = 1_048_576;

/// The store's defaults (`store.*` in configuration.md) at a given zstd level.
fn writer_settings(level: i32) -> BlockSettings {
    let defaults = StoreConfig::default();
    BlockSettings {
        max_messages: defaults.block_max_messages,
        compression_level: level,
        encoders: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    }
}

/// Durable ingest into a fresh SQLite file per iteration.
fn ingest(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("store/durable_ingest");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(INGEST_MESSAGES as u64));
    for level in [1, 3] {
        group.bench_function(format!("sqlite_zstd_{level}"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let (batches, _) = prepared_batches(INGEST_MESSAGES);
                    let dir = tempfile::tempdir().unwrap();
                    let store = runtime.block_on(store::open(&StoreConfig::default(), dir.path())).unwrap();
                    total += replay(&runtime, store.clone(), batches, writer_settings(level));
                    runtime.block_on(store.close());
                }
                total
            })
        });
    }
    group.finish();
}

/// Durable ingest into the PostgreSQL database at `KILLKRILL_BENCH_POSTGRES_URL` (skipped
/// without it), emptied before each iteration. The server should run with its durable
/// defaults (`fsync`, `synchronous_commit` on), or the figure is not "committed".
fn ingest_postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("KILLKRILL_BENCH_POSTGRES_URL") else {
        eprintln!("store/durable_ingest/postgres: skipped, KILLKRILL_BENCH_POSTGRES_URL is not set");
        return;
    };
    let runtime = runtime();
    let config =
        StoreConfig { db_type: DbType::Postgres, database_url: Some(url.clone()), ..StoreConfig::default() };
    let mut group = c.benchmark_group("store/durable_ingest");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(INGEST_MESSAGES as u64));
    for level in [1, 3] {
        group.bench_function(format!("postgres_zstd_{level}"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let (batches, _) = prepared_batches(INGEST_MESSAGES);
                    let store = runtime.block_on(store::open(&config, std::path::Path::new("."))).unwrap();
                    runtime.block_on(async {
                        let pool = sqlx::PgPool::connect(&url).await.unwrap();
                        sqlx::query("TRUNCATE log_blocks").execute(&pool).await.unwrap();
                        pool.close().await;
                    });
                    total += replay(&runtime, store.clone(), batches, writer_settings(level));
                    runtime.block_on(store.close());
                }
                total
            })
        });
    }
    group.finish();
}

/// A store holding two million messages received over the last two seconds (so a
/// one-hour window covers them all: the worst case for time pruning), and one of its hosts.
fn loaded_store(runtime: &tokio::runtime::Runtime) -> (tempfile::TempDir, Arc<dyn Store>, String) {
    const MESSAGES: usize = 2_000_000;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = runtime.block_on(store::open(&StoreConfig::default(), dir.path())).unwrap();
    let (batches, raw_bytes) = prepared_batches(MESSAGES);
    let mut encoder = BlockEncoder::new(3).unwrap();
    for chunk in batches.chunks(4) {
        let block = encoder.encode(chunk.iter().flat_map(LogBatch::iter)).unwrap();
        runtime.block_on(store.insert_block(&block)).unwrap();
    }
    let stats = runtime.block_on(store.stats()).unwrap();
    let file_bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    eprintln!(
        "store/query: {} messages, {} blocks, {raw_bytes} raw bytes, {file_bytes} bytes on disk ({:.1}x)",
        stats.messages,
        stats.blocks,
        raw_bytes as f64 / file_bytes as f64
    );
    let newest = runtime.block_on(store.query_logs(&LogQuery { limit: 1, ..LogQuery::default() })).unwrap();
    let host = newest.logs[0].hostname.clone().unwrap_or_default();
    (dir, store, host)
}

/// Builds a query from a host name and the current time.
type QueryFor = fn(&str, i64) -> LogQuery;

fn query(c: &mut Criterion) {
    let runtime = runtime();
    // Loaded on first use, so that a filter selecting other benchmarks skips the load.
    let loaded = std::cell::OnceCell::new();
    let now = jiff::Timestamp::now().as_nanosecond() as i64;
    let mut group = c.benchmark_group("store/query");
    let cases: [(&str, QueryFor); 3] = [
        ("selective_host_hour_term", |host, now| LogQuery {
            hosts: vec![host.to_owned()],
            start_ns: Some(now - 3_600_000_000_000),
            text: TextQuery::parse("failed").unwrap(),
            ..LogQuery::default()
        }),
        ("broad_first_page", |_, _| LogQuery {
            text: TextQuery::parse("error").unwrap(),
            ..LogQuery::default()
        }),
        ("newest_100", |_, _| LogQuery::default()),
    ];
    for (name, make_query) in cases {
        group.bench_function(name, |b| {
            let (_, store, host) = loaded.get_or_init(|| loaded_store(&runtime));
            let query = make_query(host, now);
            b.iter(|| runtime.block_on(store.query_logs(&query)).unwrap())
        });
    }
    group.finish();
}

/// One interval's points of `series` counter series (host tag `h<i>`), as a listener
/// flushes them.
fn metric_interval(series: usize, interval: i64) -> Vec<killkrill_dataplane::metrics::MetricPoint> {
    use killkrill_dataplane::metrics::{MetricKind, MetricPoint};
    const INTERVAL_NS: i64 = 10_000_000_000;
    (0..series)
        .map(|index| MetricPoint {
            name: "http.requests".into(),
            tags: vec![("env".into(), "prod".into()), ("host".into(), format!("h{index}"))],
            kind: MetricKind::Counter,
            interval_start_ns: 1_700_000_000_000_000_000 + interval * INTERVAL_NS,
            interval_ns: INTERVAL_NS,
            count: 1.0,
            sum: 1.0,
            min: 1.0,
            max: 1.0,
            last: 1.0,
            p50: None,
            p90: None,
            p99: None,
            histogram: None,
        })
        .collect()
}

/// The metric writer's statement: one listener's interval of 20,000 series that the store
/// has seen in earlier intervals (the usual case: a fleet's series are stable), into SQLite.
fn metric_points(c: &mut Criterion) {
    const SERIES: usize = 20_000;
    let runtime = runtime();
    let mut group = c.benchmark_group("store/metric_points");
    group.sample_size(10).throughput(Throughput::Elements(SERIES as u64));
    group.bench_function("sqlite_known_series", |b| {
        let dir = tempfile::tempdir().unwrap();
        let store = runtime.block_on(store::open(&StoreConfig::default(), dir.path())).unwrap();
        runtime.block_on(store.insert_metric_points("statsd-udp", &metric_interval(SERIES, 0))).unwrap();
        let mut interval = 0;
        b.iter_batched(
            || {
                interval += 1;
                metric_interval(SERIES, interval)
            },
            |points| runtime.block_on(store.insert_metric_points("statsd-udp", &points)).unwrap(),
            criterion::BatchSize::PerIteration,
        );
        runtime.block_on(store.close());
    });
    group.finish();
}

criterion_group!(benches, encode, ingest, ingest_postgres, query, metric_points);
criterion_main!(benches);
