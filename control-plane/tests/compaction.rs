//! Compaction of log blocks by host (ADR 0037), against real SQLite and PostgreSQL
//! stores and through the real binary: every message kept exactly once with every field,
//! the same search answers, fewer blocks read for one host, paging across a compaction
//! without gaps or repeats, redelivered blocks not stored again, damaged blocks left as
//! they were, and the live tail not repeating compacted messages.

use std::net::SocketAddr;
use std::sync::Arc;

use killkrill::config::{DbType, StoreConfig};
use killkrill::store::compaction::{self, CompactionSettings, PassSettings};
use killkrill::store::{self, BlockEncoder, EncodedBlock, LogQuery, Order, Store, StoredLog, TextQuery};
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;

use crate::harness::Appliance;
use crate::servers::PostgresServer;

const BASE_NS: i64 = 1_700_000_000_000_000_000;
const MESSAGES: usize = 6_000;
const PER_BLOCK: usize = 400;
const HOSTS: usize = 40;
const WORDS: [&str; 5] = ["error", "timeout", "accepted", "link", "denied"];
/// Long after every message: all of them are old enough to compact.
const NOW_NS: i64 = BASE_NS + 3_600_000_000_000;

fn host(n: usize) -> String {
    format!("host-{:02}", n % HOSTS)
}

/// One frame per message: RFC 5424 mostly, some BSD, some that do not parse.
fn frame(n: usize) -> Vec<u8> {
    let word = WORDS[n % WORDS.len()];
    match n % 50 {
        7 => format!("no pri at all {word} m{n}").into_bytes(),
        13 => format!("<34>Oct 11 22:14:15 {} su: {word} for lonvick m{n}", host(n)).into_bytes(),
        _ => format!(
            "<{}>1 2024-01-01T00:00:{:02}.{:03}Z {} app{} {} ID{} [meta seq=\"{n}\"] {word} port {} m{n}",
            8 + n % 8,
            n % 60,
            n % 1000,
            host(n),
            n % 3,
            n % 97,
            n % 5,
            1000 + n % 13
        )
        .into_bytes(),
    }
}

/// Ten minutes of messages, one every 100 ms of receive time (distinct timestamps),
/// in blocks of `PER_BLOCK` cut in arrival order as the writer cuts them.
fn arrival_blocks() -> Vec<EncodedBlock> {
    let mut encoder = BlockEncoder::new(1).unwrap();
    (0..MESSAGES)
        .collect::<Vec<_>>()
        .chunks(PER_BLOCK)
        .map(|chunk| {
            let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
            for &n in chunk {
                let source: SocketAddr =
                    format!("192.0.2.{}:{}", n % HOSTS + 1, 40_000 + n % 7).parse().unwrap();
                let options = ParseOptions {
                    received_at: jiff::Timestamp::from_nanosecond(i128::from(
                        BASE_NS + n as i64 * 100_000_000,
                    ))
                    .unwrap(),
                    ..ParseOptions::default()
                };
                batch.push_syslog(&frame(n), None, source, &options);
            }
            encoder.encode(batch.iter()).unwrap()
        })
        .collect()
}

/// Grouping by host only: the merge has tests of its own.
fn settings() -> CompactionSettings {
    CompactionSettings {
        by_host: PassSettings {
            after_ns: 60_000_000_000,
            window_ns: 300_000_000_000,
            block_messages: 64,
            zstd_level: 9,
        },
        merge: None,
    }
}

/// Every row as stored, without the id (compaction gives rows new ids), oldest first.
async fn everything(store: &dyn Store) -> Vec<StoredLog> {
    let query =
        LogQuery { limit: 100_000, order: Order::Ascending, start_ns: Some(BASE_NS), ..LogQuery::default() };
    let page = store.query_logs(&query).await.unwrap();
    assert!(page.next_cursor.is_none());
    page.logs.into_iter().map(|log| StoredLog { id: 0, ..log }).collect()
}

/// The searches compared before and after: (host, words), newest first, message texts.
async fn searches(store: &dyn Store) -> Vec<Vec<String>> {
    let mut answers = Vec::new();
    for (hosts, words) in
        [(vec![host(3)], "error"), (vec![host(17)], ""), (vec![], "timeout -port"), (vec![], "denied")]
    {
        let query = LogQuery {
            hosts,
            text: TextQuery::parse(words).unwrap(),
            limit: 10_000,
            start_ns: Some(BASE_NS),
            ..LogQuery::default()
        };
        let page = store.query_logs(&query).await.unwrap();
        answers.push(page.logs.into_iter().map(|log| log.message).collect());
    }
    answers
}

/// Pages newest first, `limit` at a time, compacting everything after the first page.
async fn page_across_a_compaction(store: &dyn Store) -> Vec<String> {
    // The damaged block lies before BASE_NS, out of the way.
    let query = LogQuery { limit: 97, start_ns: Some(BASE_NS), ..LogQuery::default() };
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut compacted = false;
    loop {
        let page = store.query_logs(&LogQuery { cursor, ..query.clone() }).await.unwrap();
        seen.extend(page.logs.into_iter().map(|log| log.message));
        if !compacted {
            let (done, _) = compaction::compact_pending(store, &settings(), NOW_NS, |_| true).await.unwrap();
            assert!(done.blocks_written > 0);
            compacted = true;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen
}

async fn compaction_keeps_every_message_once(store: Arc<dyn Store>) -> Vec<StoredLog> {
    let blocks = arrival_blocks();
    for block in &blocks {
        assert!(store.insert_block(block).await.unwrap());
    }
    // A damaged block (a good index row over a body that is not zstd), older than the
    // rest and in a window of its own: compaction must leave it alone.
    let mut damaged = arrival_blocks().remove(0);
    damaged.summary.min_received_ns -= 3_600_000_000_000;
    damaged.summary.max_received_ns = damaged.summary.min_received_ns + 1;
    damaged.payload = b"not a block".to_vec();
    assert!(store.insert_block(&damaged).await.unwrap());
    let after_damage = LogQuery { start_ns: Some(BASE_NS), ..LogQuery::default() };
    let before_stats = store.stats().await.unwrap();
    let before_rows = everything(&*store).await;
    assert_eq!(before_rows.len(), MESSAGES);
    let before_searches = searches(&*store).await;
    let one_host = LogQuery { hosts: vec![host(5)], ..after_damage.clone() };
    let read_before = store.sources(&one_host, u64::MAX).await.unwrap();

    let expected: Vec<String> = {
        let mut all: Vec<&StoredLog> = before_rows.iter().collect();
        all.reverse();
        all.into_iter().map(|log| log.message.clone()).collect()
    };
    let paged = page_across_a_compaction(&*store).await;
    assert_eq!(paged, expected, "paging across a compaction: no gaps, no repeats");

    let after_stats = store.stats().await.unwrap();
    assert_eq!(after_stats.messages, before_stats.messages);
    assert_eq!(after_stats.raw_bytes, before_stats.raw_bytes, "the raw size is carried over");
    assert_eq!(after_stats.oldest_received_ns, before_stats.oldest_received_ns);
    assert_eq!(after_stats.newest_received_ns, before_stats.newest_received_ns);
    assert_eq!(after_stats.compacted_blocks, after_stats.blocks - 1, "all but the damaged block");
    assert!(after_stats.compacted_blocks as usize > blocks.len());
    // Windows of 1,200 to 2,800 messages from 40 hosts, cut at host boundaries into
    // blocks of at most 64 rows (a host with more gets two halves).
    assert!(after_stats.messages / after_stats.compacted_blocks >= 32, "{after_stats:?}");

    let after_rows = everything(&*store).await;
    assert_eq!(after_rows, before_rows, "every message once, every field the same");
    assert_eq!(searches(&*store).await, before_searches);
    let read_after = store.sources(&one_host, u64::MAX).await.unwrap();
    assert_eq!(read_after.sources, read_before.sources);
    assert_eq!(read_before.blocks_read, blocks.len() as u64, "every arrival block holds every host");
    assert!(
        read_after.blocks_read * 3 <= read_before.blocks_read,
        "one host: {} blocks read before, {} after",
        read_before.blocks_read,
        read_after.blocks_read
    );

    // Nothing is left to do; the damaged block stays, marked so it is not tried again.
    let (again, _) = compaction::compact_pending(&*store, &settings(), NOW_NS, |_| true).await.unwrap();
    assert_eq!(again.blocks_read, 0);
    assert_eq!(store.stats().await.unwrap().blocks, after_stats.blocks);

    // The Redis hand-off redelivers a block whose id was compacted away: not stored again.
    for block in &blocks[..3] {
        assert!(!store.insert_block(block).await.unwrap(), "a retired block id is stored once");
    }
    assert_eq!(store.stats().await.unwrap().messages, before_stats.messages);
    after_rows
}

/// The damaged block is counted, not compacted, and nothing else of it changes.
async fn damaged_blocks_are_skipped_and_counted(store: Arc<dyn Store>) {
    let mut damaged = arrival_blocks().remove(0);
    damaged.payload = b"not a block".to_vec();
    assert!(store.insert_block(&damaged).await.unwrap());
    let (done, _) = compaction::compact_pending(&*store, &settings(), NOW_NS, |_| true).await.unwrap();
    assert_eq!((done.undecodable_blocks, done.blocks_read, done.blocks_written), (1, 0, 0));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.blocks, stats.compacted_blocks, stats.messages), (1, 0, PER_BLOCK as i64));
    let (again, _) = compaction::compact_pending(&*store, &settings(), NOW_NS, |_| true).await.unwrap();
    assert_eq!(again.undecodable_blocks, 0, "tried once");
}

/// Seconds after `BASE_NS`, in nanoseconds.
fn at(seconds: i64) -> i64 {
    BASE_NS + seconds * 1_000_000_000
}

/// A window is rewritten whole once it has ended `after` ago, however often compaction
/// looks; the blocks grouped by host are merged into large ones once older than the
/// merge's `after`, and every message and search answer stays the same (ADR 0055).
async fn windows_are_rewritten_whole_then_merged(store: Arc<dyn Store>) -> Vec<StoredLog> {
    let blocks = arrival_blocks();
    for block in &blocks {
        assert!(store.insert_block(block).await.unwrap());
    }
    let before_rows = everything(&*store).await;
    let before_searches = searches(&*store).await;
    let merge = PassSettings {
        after_ns: 600_000_000_000,
        window_ns: 3_600_000_000_000,
        block_messages: 1_000,
        zstd_level: 19,
    };
    let settings = CompactionSettings { merge: Some(merge), ..settings() };
    let compact = |now_ns: i64| {
        let store = store.clone();
        async move { compaction::compact_pending(&*store, &settings, now_ns, |_| true).await.unwrap().0 }
    };
    // Windows of 300 s of receive time start 200 s before BASE_NS (1,700,000,000 s is
    // 200 s past a multiple of 300); blocks of 400 messages span 40 s. At 400 s the first
    // window [-200, 100) has ended more than `after` (60 s) ago; the second, [100, 400),
    // has not, though its first blocks are old enough.
    let done = compact(at(400)).await;
    assert_eq!((done.windows, done.blocks_read, done.merged_windows), (1, 3, 0), "{done:?}");
    let done = compact(at(455)).await;
    assert_eq!(done.windows, 0, "the second window has ended only 55 s ago: {done:?}");
    let done = compact(at(460)).await;
    assert_eq!((done.windows, done.blocks_read), (1, 7), "the second window, whole: {done:?}");
    // The rest, at once; the merge window [-800 s, 2,800 s) is not old enough yet.
    let done = compact(at(3_399)).await;
    assert_eq!((done.windows, done.blocks_read, done.merged_windows), (1, 5, 0), "{done:?}");
    let by_host = store.stats().await.unwrap();
    assert_eq!(
        (by_host.blocks, by_host.compacted_blocks, by_host.merged_blocks),
        (by_host.blocks, by_host.blocks, 0)
    );
    assert!(by_host.messages / by_host.blocks <= 64, "blocks of at most 64 rows: {by_host:?}");
    assert_eq!(everything(&*store).await, before_rows);

    let newest_before_merge = store.newest_block_seq().await.unwrap().unwrap();
    let done = compact(at(3_400)).await;
    assert_eq!(
        (done.windows, done.merged_windows, done.blocks_read),
        (1, 1, by_host.blocks as u64),
        "{done:?}"
    );
    // The live tail reads blocks committed since its last look: the merged ones hold old
    // messages under new sequence numbers, so it skips them.
    let newest = store.newest_block_seq().await.unwrap().unwrap();
    assert!(newest > newest_before_merge);
    let tail = LogQuery { block_seqs: Some((newest_before_merge, newest)), ..LogQuery::default() };
    assert!(
        store.query_logs(&tail).await.unwrap().logs.is_empty(),
        "the tail does not send merged rows again"
    );
    let merged = store.stats().await.unwrap();
    // 6,000 rows of 40 hosts (150 each), cut at host boundaries into blocks of at most
    // 1,000 rows: six hosts a block.
    assert_eq!((merged.blocks, merged.compacted_blocks, merged.merged_blocks), (7, 7, 7), "{merged:?}");
    assert!(merged.blocks * 10 < by_host.blocks);
    assert_eq!((merged.messages, merged.raw_bytes), (by_host.messages, by_host.raw_bytes));
    assert!(merged.stored_bytes < by_host.stored_bytes, "merged blocks are smaller: {merged:?} {by_host:?}");
    assert_eq!(everything(&*store).await, before_rows, "every message once, every field the same");
    assert_eq!(searches(&*store).await, before_searches);
    let one_host = LogQuery { hosts: vec![host(5)], start_ns: Some(BASE_NS), ..LogQuery::default() };
    assert_eq!(store.sources(&one_host, u64::MAX).await.unwrap().blocks_read, 1, "one host, one block");
    assert_eq!(compact(at(100_000)).await, compaction::Compacted::default(), "nothing left to do");
    // The writer's block ids stay retired through the merge.
    assert!(!store.insert_block(&blocks[0]).await.unwrap());
    everything(&*store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_rewritten_whole_then_merged_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = windows_are_rewritten_whole_then_merged(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    let postgres = windows_are_rewritten_whole_then_merged(
        open_postgres(server.create_database("compaction_merge")).await,
    )
    .await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

async fn open_sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    store::open(&StoreConfig::default(), dir).await.unwrap()
}

async fn open_postgres(url: String) -> Arc<dyn Store> {
    let config = StoreConfig { db_type: DbType::Postgres, database_url: Some(url), ..StoreConfig::default() };
    store::open(&config, std::path::Path::new("/nonexistent")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_message_once_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = compaction_keeps_every_message_once(open_sqlite(dir.path()).await).await;
    let damaged_dir = tempfile::tempdir().unwrap();
    damaged_blocks_are_skipped_and_counted(open_sqlite(damaged_dir.path()).await).await;
    let server = PostgresServer::start();
    let postgres =
        compaction_keeps_every_message_once(open_postgres(server.create_database("compaction")).await).await;
    damaged_blocks_are_skipped_and_counted(open_postgres(server.create_database("compaction_damaged")).await)
        .await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

/// Through `killkrill serve`: compaction runs in the background, shows in
/// `/api/v1/stats` and `/metrics`, and the live tail does not send compacted messages again.
#[test]
fn serve_compacts_in_the_background_and_the_tail_does_not_repeat() {
    serve_compacts_and_the_tail_does_not_repeat(&[]);
}

#[test]
fn serve_compacts_in_the_background_on_postgres() {
    let server = PostgresServer::start();
    let url = server.create_database("compaction_serve");
    serve_compacts_and_the_tail_does_not_repeat(&[("DB_TYPE", "postgres"), ("DATABASE_URL", &url)]);
}

fn serve_compacts_and_the_tail_does_not_repeat(backend: &[(&str, &str)]) {
    let temp = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("KILLKRILL_STORE__COMPACTION__AFTER", "3s"),
        // Windows are compacted whole once ended `after` ago.
        ("KILLKRILL_STORE__COMPACTION__WINDOW", "2s"),
        ("KILLKRILL_STORE__COMPACTION__INTERVAL_S", "1"),
        ("KILLKRILL_STORE__COMPACTION__BLOCK_MESSAGES", "8"),
    ];
    env.extend_from_slice(backend);
    let appliance = Appliance::start_with_env(&temp.path().join("data"), &[], &env);
    let tail = crate::query::open_tail(&appliance, "q=compactword");
    let first: Vec<_> = (0..40)
        .map(|n| (["c-1", "c-2", "c-3"][n % 3], "capp", 13u8, format!("compactword first {n}")))
        .collect();
    crate::query::send(&appliance, &first);
    appliance.wait_for_logs("q=compactword&limit=1000", 40);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, stats) = appliance.get_json("/api/v1/stats");
        // The store's figures are read before the compaction counters, so one answer can
        // hold the counters of a pass whose blocks the store figures do not show yet: wait
        // for both.
        if stats["compaction"]["messages"].as_u64().unwrap_or(0) >= 40
            && stats["store"]["compacted_blocks"].as_u64().unwrap_or(0) >= 3
        {
            assert_eq!(stats["compaction"]["enabled"], true);
            assert_eq!(stats["store"]["messages"], 40, "{stats}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no compaction within 60 s: {stats}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(appliance.metric("killkrill_compaction_messages_total") >= 40.0);
    assert!(appliance.metric("killkrill_compaction_blocks_written_total") >= 3.0);
    let second: Vec<_> = (0..5).map(|n| ("c-1", "capp", 13u8, format!("compactword second {n}"))).collect();
    crate::query::send(&appliance, &second);
    let mut tailed = Vec::new();
    while tailed.len() < 45 {
        let log = tail.recv_timeout(std::time::Duration::from_secs(20)).expect("tail events within 20 s");
        tailed.push(log["message"].as_str().unwrap().to_owned());
    }
    assert!(tail.recv_timeout(std::time::Duration::from_millis(2500)).is_err(), "no repeats: {tailed:?}");
    let mut want: Vec<String> = first.iter().chain(&second).map(|(.., text)| text.clone()).collect();
    want.sort();
    tailed.sort();
    assert_eq!(tailed, want, "each message once");
    // The API answers the same after compaction: every message, newest first.
    let logs = appliance.wait_for_logs("q=compactword&limit=1000", 45);
    assert_eq!(logs.len(), 45);
}
