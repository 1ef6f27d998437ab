//! The block store against real backends: an SQLite file and a PostgreSQL server started
//! by the test. Every filter and several combinations are checked against an answer
//! computed here from what was sent; both backends must give the same answers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use killkrill::config::{DbType, StoreConfig};
use killkrill::store::{
    self, BlockEncoder, Cursor, LogQuery, Order, Removed, Retention, Store, StoredLog, TextQuery,
};
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;

use crate::servers::PostgresServer;

const BASE_NS: i64 = 1_700_000_000_000_000_000;
const HOSTS: [&str; 5] = ["web-01", "web-02", "db-01", "fw-edge", "Mail-03"];
const APPS: [&str; 4] = ["nginx", "postgres", "kernel", "sshd"];
const WORDS: [&str; 6] = ["accepted", "failed", "timeout", "link", "down", "error"];

/// One message as the test sent it.
#[derive(Clone, Debug)]
struct Sent {
    seq: usize,
    received_ns: i64,
    host: &'static str,
    app: &'static str,
    facility: u8,
    severity: u8,
    source: SocketAddr,
    text: String,
}

fn sent_message(seq: usize) -> Sent {
    let source_ip: IpAddr = if seq.is_multiple_of(7) {
        format!("2001:db8::{}", seq % 3 + 1).parse().unwrap()
    } else {
        format!("192.0.2.{}", seq % 4 + 1).parse().unwrap()
    };
    Sent {
        seq,
        // Not monotonic across blocks: later blocks overlap earlier ones in time.
        received_ns: BASE_NS + ((seq * 7_919) % 600) as i64 * 1_000_000_000 + seq as i64,
        host: HOSTS[seq % HOSTS.len()],
        app: APPS[(seq / 3) % APPS.len()],
        facility: [1, 4, 16, 23][seq % 4],
        severity: (seq % 8) as u8,
        source: SocketAddr::new(source_ip, 514),
        text: format!(
            "{} {} port {} m{seq}",
            WORDS[seq % WORDS.len()],
            WORDS[(seq / 5) % WORDS.len()],
            1000 + seq % 13
        ),
    }
}

fn frame(sent: &Sent) -> Vec<u8> {
    let pri = u32::from(sent.facility) * 8 + u32::from(sent.severity);
    format!("<{pri}>1 2024-01-01T00:00:00Z {} {} - - - {}", sent.host, sent.app, sent.text).into_bytes()
}

fn batch_of(messages: &[Sent]) -> LogBatch {
    let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
    for sent in messages {
        let options = ParseOptions {
            received_at: jiff::Timestamp::from_nanosecond(i128::from(sent.received_ns)).unwrap(),
            ..ParseOptions::default()
        };
        batch.push_syslog(&frame(sent), None, sent.source, &options);
    }
    batch
}

async fn insert(store: &dyn Store, messages: &[Sent]) {
    let mut encoder = BlockEncoder::new(3).unwrap();
    let batch = batch_of(messages);
    let block = encoder.encode(batch.iter()).unwrap();
    assert!(store.insert_block(&block).await.unwrap());
}

/// The messages' sequence numbers a query returns, in order.
fn seqs(logs: &[StoredLog]) -> Vec<usize> {
    logs.iter().map(|log| log.message.rsplit(" m").next().unwrap().parse::<usize>().unwrap()).collect()
}

/// What the store must answer, computed from what was sent.
fn expected(all: &[Sent], query: &LogQuery, matches: impl Fn(&Sent) -> bool) -> Vec<usize> {
    let mut found: Vec<&Sent> = all.iter().filter(|sent| matches(sent)).collect();
    // Ids grow with insertion order, which is seq order here; the sort key is
    // (received, id), newest first unless asked otherwise.
    found.sort_by_key(|sent| (sent.received_ns, sent.seq));
    if query.order == Order::Descending {
        found.reverse();
    }
    found.into_iter().take(query.limit as usize).map(|sent| sent.seq).collect()
}

fn text(q: &str) -> TextQuery {
    TextQuery::parse(q).unwrap()
}

fn has_word(sent: &Sent, word: &str) -> bool {
    sent.text.split(' ').any(|w| w.eq_ignore_ascii_case(word))
}

async fn open_sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    store::open(&StoreConfig::default(), dir).await.unwrap()
}

async fn open_postgres(url: String) -> Arc<dyn Store> {
    let config = StoreConfig { db_type: DbType::Postgres, database_url: Some(url), ..StoreConfig::default() };
    store::open(&config, std::path::Path::new("/nonexistent")).await.unwrap()
}

/// Loads 3,000 messages in blocks of uneven size, then checks every filter.
async fn filters_match_what_was_sent(store: Arc<dyn Store>) -> Vec<Vec<StoredLog>> {
    let all: Vec<Sent> = (0..3000).map(sent_message).collect();
    let mut start = 0;
    for size in [1, 499, 1000, 250, 1250] {
        insert(&*store, &all[start..start + size]).await;
        start += size;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.messages, 3000);
    assert_eq!(stats.blocks, 5);

    let minute = 60_000_000_000i64;
    let net: ipnet::IpNet = "192.0.2.0/31".parse().unwrap();
    type Case = (LogQuery, Box<dyn Fn(&Sent) -> bool>);
    let cases: Vec<Case> = vec![
        (LogQuery { limit: 50, ..LogQuery::default() }, Box::new(|_| true)),
        (LogQuery { limit: 50, order: Order::Ascending, ..LogQuery::default() }, Box::new(|_| true)),
        (
            LogQuery {
                start_ns: Some(BASE_NS + 2 * minute),
                end_ns: Some(BASE_NS + 3 * minute),
                limit: 10_000,
                ..LogQuery::default()
            },
            Box::new(move |s| s.received_ns >= BASE_NS + 2 * minute && s.received_ns < BASE_NS + 3 * minute),
        ),
        (
            LogQuery { hosts: vec!["WEB-01".into(), "mail-03".into()], limit: 10_000, ..LogQuery::default() },
            Box::new(|s| s.host == "web-01" || s.host == "Mail-03"),
        ),
        (
            LogQuery { apps: vec!["sshd".into()], limit: 100, ..LogQuery::default() },
            Box::new(|s| s.app == "sshd"),
        ),
        (
            LogQuery { severity_mask: Some(0b1_1111), limit: 10_000, ..LogQuery::default() },
            Box::new(|s| s.severity <= 4),
        ),
        (
            LogQuery { facility_mask: Some(1 << 16 | 1 << 23), limit: 10_000, ..LogQuery::default() },
            Box::new(|s| s.facility == 16 || s.facility == 23),
        ),
        (
            LogQuery {
                source: Some("2001:db8::2/128".parse().unwrap()),
                limit: 10_000,
                ..LogQuery::default()
            },
            Box::new(|s| s.source.ip() == "2001:db8::2".parse::<IpAddr>().unwrap()),
        ),
        (
            LogQuery { source: Some(net), limit: 10_000, ..LogQuery::default() },
            Box::new(move |s| net.contains(&s.source.ip())),
        ),
        (
            LogQuery { text: text("timeout"), limit: 10_000, ..LogQuery::default() },
            Box::new(|s| has_word(s, "timeout")),
        ),
        (
            LogQuery { text: text("\"link down\" -error"), limit: 10_000, ..LogQuery::default() },
            Box::new(|s| s.text.contains("link down") && !has_word(s, "error")),
        ),
        (
            LogQuery { text: text("port 1003"), limit: 10_000, ..LogQuery::default() },
            Box::new(|s| s.text.contains("port 1003")),
        ),
        (LogQuery { text: text("m2999"), limit: 10, ..LogQuery::default() }, Box::new(|s| s.seq == 2999)),
        (LogQuery { text: text("nosuchword"), limit: 10, ..LogQuery::default() }, Box::new(|_| false)),
        (
            LogQuery {
                hosts: vec!["db-01".into()],
                severity_mask: Some(1 << 3 | 1 << 7),
                text: text("failed"),
                start_ns: Some(BASE_NS + minute),
                order: Order::Ascending,
                limit: 10_000,
                ..LogQuery::default()
            },
            Box::new(move |s| {
                s.host == "db-01"
                    && (s.severity == 3 || s.severity == 7)
                    && has_word(s, "failed")
                    && s.received_ns >= BASE_NS + minute
            }),
        ),
    ];
    let mut answers = Vec::new();
    for (index, (query, matches)) in cases.iter().enumerate() {
        let page = store.query_logs(query).await.unwrap();
        let want = expected(&all, query, matches);
        assert!(!want.is_empty() || index == 13, "case {index} selects nothing: a useless case");
        assert_eq!(seqs(&page.logs), want, "case {index}: {query:?}");
        answers.push(page.logs);
    }

    // Every page of a paged search, in both orders: no gaps, no repeats.
    for order in [Order::Descending, Order::Ascending] {
        let query = LogQuery { text: text("accepted"), limit: 37, order, ..LogQuery::default() };
        let mut paged = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = store.query_logs(&LogQuery { cursor, ..query.clone() }).await.unwrap();
            paged.extend(seqs(&page.logs));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let all_at_once = LogQuery { limit: 10_000, ..query };
        assert_eq!(paged, expected(&all, &all_at_once, |s| has_word(s, "accepted")), "{order:?}");
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_answer_every_filter_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = filters_match_what_was_sent(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    let postgres = filters_match_what_was_sent(open_postgres(server.create_database("filters")).await).await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

/// One-host searches over many blocks (more than the first round of index rows reads,
/// decoded several at once, each block giving at most a page of rows), paged in both
/// orders: every page together is exactly what a scan of everything sent selects.
async fn one_host_searches_equal_a_full_scan(store: Arc<dyn Store>) -> Vec<Vec<usize>> {
    let all: Vec<Sent> = (0..4000).map(sent_message).collect();
    for chunk in all.chunks(100) {
        insert(&*store, chunk).await;
    }
    let mut answers = Vec::new();
    for host in HOSTS {
        for words in ["", "error", "timeout -link"] {
            for order in [Order::Descending, Order::Ascending] {
                let search = LogQuery {
                    hosts: vec![host.to_uppercase()],
                    text: text(words),
                    order,
                    limit: 10_000,
                    ..LogQuery::default()
                };
                let scan = expected(&all, &search, |s| {
                    s.host == host && store_side_text_match(&text(words), &s.text)
                });
                let mut paged = Vec::new();
                let mut cursor = None;
                loop {
                    let page =
                        store.query_logs(&LogQuery { limit: 37, cursor, ..search.clone() }).await.unwrap();
                    paged.extend(seqs(&page.logs));
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                assert!(!scan.is_empty(), "{host} {words:?}: the case selects something");
                assert_eq!(paged, scan, "{host} {words:?} {order:?}");
                answers.push(paged);
            }
        }
    }
    answers
}

/// The words and exclusions of `query` applied to what was sent.
fn store_side_text_match(query: &TextQuery, message: &str) -> bool {
    let has = |word: &str| message.split(' ').any(|w| w.eq_ignore_ascii_case(word));
    query.words.iter().all(|w| has(w)) && !query.excluded_words.iter().any(|w| has(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_searches_over_many_blocks_equal_a_full_scan_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = one_host_searches_equal_a_full_scan(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    let postgres =
        one_host_searches_equal_a_full_scan(open_postgres(server.create_database("one_host")).await).await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

/// Blocks of one host each, each with one of three marker words: a search by host and
/// word reads the word filters only of the blocks whose host filter lets them through
/// (ADR 0051), and must still find exactly the rows a scan finds. A word filter handed to
/// the wrong block would drop a block that holds the word.
async fn host_and_word_searches_over_blocks_of_one_host(store: Arc<dyn Store>) -> Vec<Vec<usize>> {
    const MARKS: [&str; 3] = ["alpha", "beta", "gamma"];
    let mut all = Vec::new();
    for block in 0..24 {
        let messages: Vec<Sent> = (block * 40..(block + 1) * 40)
            .map(|seq| Sent {
                host: HOSTS[block % HOSTS.len()],
                text: format!("{} {} m{seq}", MARKS[block % MARKS.len()], WORDS[seq % WORDS.len()]),
                ..sent_message(seq)
            })
            .collect();
        insert(&*store, &messages).await;
        all.extend(messages);
    }
    let mut answers = Vec::new();
    for host in HOSTS {
        for words in ["alpha", "beta -failed", "gamma timeout"] {
            let search = LogQuery {
                hosts: vec![host.to_owned()],
                text: text(words),
                limit: 10_000,
                ..LogQuery::default()
            };
            let scan =
                expected(&all, &search, |s| s.host == host && store_side_text_match(&text(words), &s.text));
            assert!(!scan.is_empty(), "{host} {words:?}: the case selects something");
            let page = store.query_logs(&search).await.unwrap();
            assert_eq!(seqs(&page.logs), scan, "{host} {words:?}");
            answers.push(scan);
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_word_searches_over_blocks_of_one_host_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = host_and_word_searches_over_blocks_of_one_host(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    let postgres = host_and_word_searches_over_blocks_of_one_host(
        open_postgres(server.create_database("by_host")).await,
    )
    .await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

/// Newest-first paging while newer data keeps arriving, and oldest-first paging while
/// data arrives at the end: every row is seen exactly once.
async fn paging_while_ingesting(store: Arc<dyn Store>) {
    let batch_size = 200;
    let message = |seq: usize| Sent { received_ns: BASE_NS + seq as i64 * 1_000_000, ..sent_message(seq) };
    let first: Vec<Sent> = (0..1000).map(message).collect();
    for chunk in first.chunks(batch_size) {
        insert(&*store, chunk).await;
    }
    let mut next_seq = 1000;
    for order in [Order::Descending, Order::Ascending] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let query = LogQuery { limit: 45, order, cursor, ..LogQuery::default() };
            let page = store.query_logs(&query).await.unwrap();
            // The API's path (with its answer cache) gives the same page, asked once or twice.
            for _ in 0..2 {
                let shared = store.query_logs_shared(&query).await.unwrap();
                assert_eq!(shared.page.logs, page.logs, "{order:?}: the shared page differs");
                assert_eq!(shared.page.next_cursor, page.next_cursor);
            }
            seen.extend(seqs(&page.logs));
            // More, newer data arrives between pages.
            let more: Vec<Sent> = (next_seq..next_seq + 30).map(message).collect();
            insert(&*store, &more).await;
            next_seq += 30;
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(seen.len() < 100_000, "paging does not end");
        }
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len(), "{order:?}: a row came twice");
        match order {
            // Newest first: everything that existed when paging started, nothing newer.
            Order::Descending => assert_eq!(unique, (0..1000).collect::<Vec<_>>(), "newest first"),
            // Oldest first: paging follows the arrivals to the end.
            Order::Ascending => assert_eq!(unique.len(), next_seq - 30, "oldest first"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_has_no_gaps_or_repeats_while_data_arrives() {
    let dir = tempfile::tempdir().unwrap();
    paging_while_ingesting(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    paging_while_ingesting(open_postgres(server.create_database("paging")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_delivered_twice_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start();
    for store in [open_sqlite(dir.path()).await, open_postgres(server.create_database("dedupe")).await] {
        let messages: Vec<Sent> = (0..10).map(sent_message).collect();
        let block = BlockEncoder::new(1).unwrap().encode(batch_of(&messages).iter()).unwrap();
        assert!(store.insert_block(&block).await.unwrap());
        assert!(!store.insert_block(&block).await.unwrap(), "the duplicate is recognised");
        assert_eq!(store.stats().await.unwrap().messages, 10);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_safe_to_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = PostgresServer::start();
    let url = server.create_database("twice");
    for _ in 0..2 {
        let sqlite = open_sqlite(dir.path()).await;
        insert(&*sqlite, &[sent_message(1)]).await;
        sqlite.close().await;
        let postgres = open_postgres(url.clone()).await;
        insert(&*postgres, &[sent_message(1)]).await;
        postgres.close().await;
    }
    assert_eq!(open_sqlite(dir.path()).await.stats().await.unwrap().messages, 2);
    assert_eq!(open_postgres(url).await.stats().await.unwrap().messages, 2);
}

/// PostgreSQL keeps a block's Bloom filters in its row (MAIN) and its compressed payload
/// out of line without a second compression (EXTERNAL), docs/adr/0050.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_the_filters_in_the_row_and_the_payload_out_of_it() {
    let server = PostgresServer::start();
    let url = server.create_database("storage");
    open_postgres(url.clone()).await.close().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let storage: Vec<(String, String)> = sqlx::query_as(
        "SELECT attname::text, attstorage::text FROM pg_attribute \
         WHERE attrelid = 'log_blocks'::regclass AND attname IN ('field_filter', 'token_filter', 'payload') \
         ORDER BY attname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = [("field_filter", "m"), ("payload", "e"), ("token_filter", "m")]
        .map(|(name, storage)| (name.to_owned(), storage.to_owned()));
    assert_eq!(storage, expected);
    pool.close().await;
}

/// Searches that must read many blocks no decoded-block cache holds yet (a new store
/// handle each time): on PostgreSQL their payloads come several to a statement (ADR 0050).
/// Every row comes back once, in order, whether the search reads every block or stops
/// with payloads read ahead that it did not need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_over_many_unread_blocks_find_every_row_on_postgres() {
    let server = PostgresServer::start();
    let url = server.create_database("read_ahead");
    let all: Vec<Sent> = (0..4000).map(sent_message).collect();
    let writer = open_postgres(url.clone()).await;
    for chunk in all.chunks(100) {
        insert(&*writer, chunk).await;
    }
    writer.close().await;
    for (words, order, limit) in [
        ("", Order::Descending, 10_000),
        ("error", Order::Ascending, 10_000),
        ("timeout -link", Order::Descending, 10_000),
        ("", Order::Descending, 50),
        ("failed", Order::Ascending, 50),
    ] {
        let reader = open_postgres(url.clone()).await;
        let search = LogQuery { text: text(words), order, limit, ..LogQuery::default() };
        let scan = expected(&all, &search, |sent| store_side_text_match(&text(words), &sent.text));
        let page = reader.query_logs(&search).await.unwrap();
        assert!(!scan.is_empty(), "{words:?}: the case selects something");
        assert_eq!(seqs(&page.logs), scan, "{words:?} {order:?} limit {limit}");
        reader.close().await;
    }
}

/// Four blocks a minute apart: age removes exactly the blocks wholly older than the
/// limit; size removes the oldest blocks until what is left fits, and nothing else.
async fn retention_removes_what_it_should(store: Arc<dyn Store>) {
    let minute = 60_000_000_000i64;
    let mut blocks = Vec::new();
    for block in 0..4 {
        let messages: Vec<Sent> = (0..100)
            .map(|n| Sent {
                received_ns: BASE_NS + block * minute + n,
                ..sent_message(block as usize * 100 + n as usize)
            })
            .collect();
        insert(&*store, &messages).await;
        blocks.push(messages);
    }
    let now = BASE_NS + 4 * minute;
    let nothing = store.enforce_retention(&Retention::default(), now).await.unwrap();
    assert_eq!(nothing, Removed::default());

    // Blocks 0 and 1 end before now - 2.5 minutes; block 2 ends after it.
    let by_age = Retention { max_age_ns: Some(2 * minute + minute / 2), ..Retention::default() };
    let removed = store.enforce_retention(&by_age, now).await.unwrap();
    assert_eq!((removed.blocks, removed.messages), (2, 200));
    let left = store
        .query_logs(&LogQuery { limit: 10_000, order: Order::Ascending, ..LogQuery::default() })
        .await
        .unwrap();
    assert_eq!(seqs(&left.logs), (200..400).collect::<Vec<_>>());

    // Room for one block only: the older of the two remaining goes.
    let stats = store.stats().await.unwrap();
    let by_size = Retention { max_bytes: Some(stats.stored_bytes - 1), ..Retention::default() };
    let removed = store.enforce_retention(&by_size, now).await.unwrap();
    assert_eq!((removed.blocks, removed.messages), (1, 100));
    let left = store
        .query_logs(&LogQuery { limit: 10_000, order: Order::Ascending, ..LogQuery::default() })
        .await
        .unwrap();
    assert_eq!(seqs(&left.logs), (300..400).collect::<Vec<_>>());
    assert_eq!(store.stats().await.unwrap().blocks, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_and_size_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    retention_removes_what_it_should(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    retention_removes_what_it_should(open_postgres(server.create_database("retention")).await).await;
}

/// The answer cache behind `query_logs_shared` (store/answer_cache.rs, docs/adr/0038): a
/// repeated search is answered from it (the same shared page) only while the blocks that
/// settled it are unchanged. New blocks, blocks removed by retention, and blocks written
/// through another handle on the same database (another process) show at once.
async fn repeated_searches_see_every_change(reader: Arc<dyn Store>, writer: Arc<dyn Store>) {
    let minute = 60_000_000_000i64;
    let block_of = |block: i64| -> Vec<Sent> {
        (0..100)
            .map(|n| Sent {
                received_ns: BASE_NS + block * minute + n,
                ..sent_message(block as usize * 100 + n as usize)
            })
            .collect()
    };
    for block in 0..3 {
        insert(&*writer, &block_of(block)).await;
    }
    let newest = LogQuery { limit: 10, ..LogQuery::default() };
    let oldest = LogQuery { limit: 10, order: Order::Ascending, ..LogQuery::default() };
    let errors = LogQuery { limit: 5, text: text("error"), ..LogQuery::default() };
    let first = reader.query_logs_shared(&newest).await.unwrap();
    assert_eq!(seqs(&first.page.logs), (290..300).rev().collect::<Vec<_>>());
    let again = reader.query_logs_shared(&newest).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "an unchanged store answers a repeat from the cache");
    let old = reader.query_logs_shared(&oldest).await.unwrap();
    assert_eq!(seqs(&old.page.logs), (0..10).collect::<Vec<_>>());
    let found = reader.query_logs_shared(&errors).await.unwrap();
    assert_eq!(found.page.logs, reader.query_logs(&errors).await.unwrap().logs);

    // A new block, written through the other handle: the newest rows change at once.
    insert(&*writer, &block_of(3)).await;
    let fresh = reader.query_logs_shared(&newest).await.unwrap();
    assert_eq!(seqs(&fresh.page.logs), (390..400).rev().collect::<Vec<_>>(), "new data is seen");
    assert_eq!(
        reader.query_logs_shared(&errors).await.unwrap().page.logs,
        reader.query_logs(&errors).await.unwrap().logs
    );
    // The oldest rows are the same (searched again: the new block is among the 16 index
    // rows of its first round).
    assert_eq!(
        seqs(&reader.query_logs_shared(&oldest).await.unwrap().page.logs),
        (0..10).collect::<Vec<_>>()
    );

    // Retention (through the other handle) removes the oldest block: its rows are gone.
    let now = BASE_NS + 4 * minute;
    let by_age = Retention { max_age_ns: Some(3 * minute + minute / 2), ..Retention::default() };
    assert_eq!(writer.enforce_retention(&by_age, now).await.unwrap().blocks, 1);
    let after = reader.query_logs_shared(&oldest).await.unwrap();
    assert_eq!(seqs(&after.page.logs), (100..110).collect::<Vec<_>>(), "removed rows are not served");
    // Paging from a cached page's cursor follows on exactly.
    let cursor = after.page.next_cursor;
    let next = reader.query_logs_shared(&LogQuery { cursor, ..oldest.clone() }).await.unwrap();
    assert_eq!(seqs(&next.page.logs), (110..120).collect::<Vec<_>>());

    // Everything removed: an empty answer, and then new data again.
    let everything = Retention { max_age_ns: Some(0), ..Retention::default() };
    writer.enforce_retention(&everything, BASE_NS + 10 * minute).await.unwrap();
    assert!(reader.query_logs_shared(&newest).await.unwrap().page.logs.is_empty());
    assert!(reader.query_logs_shared(&newest).await.unwrap().page.logs.is_empty());
    insert(&*writer, &block_of(7)).await;
    let back = reader.query_logs_shared(&newest).await.unwrap();
    assert_eq!(seqs(&back.page.logs), (790..800).rev().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_searches_see_new_and_removed_blocks_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    repeated_searches_see_every_change(open_sqlite(dir.path()).await, open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    let url = server.create_database("answers");
    repeated_searches_see_every_change(open_postgres(url.clone()).await, open_postgres(url).await).await;
}

/// Many clients polling the newest page while blocks keep arriving: a search that starts
/// after a commit returned always sees that block, however the shared first-round reads
/// batch the clients (store/shared_reads.rs).
async fn polling_clients_see_every_commit(store: Arc<dyn Store>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let committed = Arc::new(AtomicUsize::new(0));
    let block_of = |block: usize| -> Vec<Sent> {
        (0..20)
            .map(|n| Sent { received_ns: BASE_NS + (block * 20 + n) as i64, ..sent_message(block * 20 + n) })
            .collect()
    };
    insert(&*store, &block_of(0)).await;
    let blocks = 30;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (store, committed) = (store.clone(), committed.clone());
        clients.push(tokio::spawn(async move {
            let newest = LogQuery { limit: 1, ..LogQuery::default() };
            loop {
                let before = committed.load(Ordering::SeqCst);
                let page = store.query_logs_shared(&newest).await.unwrap();
                let seen = seqs(&page.page.logs)[0];
                assert!(
                    seen >= before * 20 + 19,
                    "block {before} was committed before the search began; saw m{seen}"
                );
                if before == blocks {
                    break;
                }
            }
        }));
    }
    for block in 1..=blocks {
        insert(&*store, &block_of(block)).await;
        committed.store(block, Ordering::SeqCst);
    }
    for client in clients {
        client.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_clients_see_every_commit_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    polling_clients_see_every_commit(open_sqlite(dir.path()).await).await;
    let server = PostgresServer::start();
    polling_clients_see_every_commit(open_postgres(server.create_database("polling")).await).await;
}
