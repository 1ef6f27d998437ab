//! The Redis Streams hand-off against real servers: redis-server and PostgreSQL started
//! by the test on free ports; writers in this process, and the real binary end to end.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use killkrill::config::{DbType, StoreConfig};
use killkrill::handoff::{RedisLink, StreamPublisher, WriterSettings, run_stream_writer};
use killkrill::store::{
    self, BlockEncoder, EncodedBlock, LogPage, LogQuery, Removed, Retention, SourcesSeen, Store, StoreStats,
};
use killkrill::store::{MetricQuery, MetricSeries, MetricStore};
use killkrill::telemetry::metrics::{HandoffCounters, StoreCounters};
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_dataplane::metrics::MetricPoint;
use killkrill_parsers::syslog::ParseOptions;
use tokio::sync::watch;

use crate::harness::Appliance;
use crate::servers::{PostgresServer, RedisServer};

const MESSAGES_PER_BLOCK: usize = 40;

/// Block `number` holds messages `number * MESSAGES_PER_BLOCK ..` with unique markers.
fn block(number: usize) -> EncodedBlock {
    let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
    let source = "192.0.2.1:514".parse().unwrap();
    for seq in number * MESSAGES_PER_BLOCK..(number + 1) * MESSAGES_PER_BLOCK {
        let frame = format!("<13>1 2024-01-01T00:00:00Z host app - - - handoff message m{seq}");
        batch.push_syslog(frame.as_bytes(), None, source, &ParseOptions::default());
    }
    BlockEncoder::new(1).unwrap().encode(batch.iter()).unwrap()
}

async fn open_postgres(url: String) -> Arc<dyn Store> {
    let config = StoreConfig { db_type: DbType::Postgres, database_url: Some(url), ..StoreConfig::default() };
    store::open(&config, std::path::Path::new("/nonexistent")).await.unwrap()
}

/// A store that commits its `stall_after`-th block and then never answers: a writer
/// that dies between its commit and its acknowledgement.
struct StallingStore {
    inner: Arc<dyn Store>,
    commits_left: AtomicUsize,
    stalled: AtomicBool,
}

#[async_trait]
impl MetricStore for StallingStore {
    async fn insert_metric_points(&self, listener: &str, points: &[MetricPoint]) -> killkrill::Result<u64> {
        self.inner.insert_metric_points(listener, points).await
    }
    async fn query_metrics(&self, query: &MetricQuery) -> killkrill::Result<Vec<MetricSeries>> {
        self.inner.query_metrics(query).await
    }
    async fn metric_names(&self) -> killkrill::Result<Vec<String>> {
        self.inner.metric_names().await
    }
    async fn remove_metrics_before(&self, cutoff_ns: i64) -> killkrill::Result<u64> {
        self.inner.remove_metrics_before(cutoff_ns).await
    }
}

#[async_trait]
impl Store for StallingStore {
    async fn ping(&self) -> killkrill::Result<()> {
        self.inner.ping().await
    }
    async fn insert_block(&self, block: &EncodedBlock) -> killkrill::Result<bool> {
        let inserted = self.inner.insert_block(block).await?;
        if self.commits_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.stalled.store(true, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        Ok(inserted)
    }
    async fn query_logs(&self, query: &LogQuery) -> killkrill::Result<LogPage> {
        self.inner.query_logs(query).await
    }
    async fn sources(&self, query: &LogQuery, max_blocks: u64) -> killkrill::Result<SourcesSeen> {
        self.inner.sources(query, max_blocks).await
    }
    async fn stats(&self) -> killkrill::Result<StoreStats> {
        self.inner.stats().await
    }
    async fn newest_block_seq(&self) -> killkrill::Result<Option<i64>> {
        self.inner.newest_block_seq().await
    }
    async fn enforce_retention(&self, retention: &Retention, now_ns: i64) -> killkrill::Result<Removed> {
        self.inner.enforce_retention(retention, now_ns).await
    }
    async fn close(&self) {}
}

fn settings(consumer: &str) -> WriterSettings {
    WriterSettings {
        stream: "test:blocks".to_owned(),
        group: "test-writers".to_owned(),
        consumer: consumer.to_owned(),
        claim_min_idle: Duration::from_millis(300),
    }
}

struct Writer {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<HandoffCounters>,
    stop: watch::Sender<bool>,
}

fn spawn_writer(url: &str, consumer: &str, store: Arc<dyn Store>) -> Writer {
    let settings = settings(consumer);
    let link = RedisLink::new(url, settings.response_timeout()).unwrap();
    let counters = Arc::new(HandoffCounters::default());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_stream_writer(
        link,
        settings,
        store,
        counters.clone(),
        Arc::new(StoreCounters::default()),
        stopped,
    ));
    Writer { task, counters, stop }
}

async fn wait_until(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of blocks 0..blocks, each exactly once, read back through the store.
async fn assert_each_message_once(store: &dyn Store, blocks: usize) {
    let page = store.query_logs(&LogQuery { limit: 100_000, ..LogQuery::default() }).await.unwrap();
    let mut seqs: Vec<usize> =
        page.logs.iter().map(|log| log.message.rsplit(" m").next().unwrap().parse().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..blocks * MESSAGES_PER_BLOCK).collect::<Vec<_>>(), "each message exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_one_killed_mid_stream_store_every_block_exactly_once() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let database_url = postgres.create_database("two_writers");
    let store = open_postgres(database_url.clone()).await;
    let publish_counters = Arc::new(HandoffCounters::default());
    let publisher = Arc::new(StreamPublisher::new(
        RedisLink::new(&redis.url, Duration::from_secs(10)).unwrap(),
        "test:blocks".to_owned(),
        10_000,
        publish_counters.clone(),
    ));

    // Writer A stores three blocks, commits a fourth and dies before acknowledging it.
    let stalling = Arc::new(StallingStore {
        inner: store.clone(),
        commits_left: AtomicUsize::new(4),
        stalled: AtomicBool::new(false),
    });
    let writer_a = spawn_writer(&redis.url, "writer-a", stalling.clone());
    for number in 0..6 {
        publisher.publish(&block(number)).await;
    }
    wait_until("writer A has stalled", Duration::from_secs(20), async || {
        stalling.stalled.load(Ordering::SeqCst)
    })
    .await;
    writer_a.task.abort();
    let _ = writer_a.task.await;

    // Writer B starts while the rest of the stream is still being published.
    let writer_b = spawn_writer(&redis.url, "writer-b", store.clone());
    const BLOCKS: usize = 30;
    let rest = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            for number in 6..BLOCKS {
                publisher.publish(&block(number)).await;
            }
        }
    });
    rest.await.unwrap();
    wait_until("every block is stored", Duration::from_secs(30), async || {
        store.stats().await.unwrap().messages == (BLOCKS * MESSAGES_PER_BLOCK) as i64
    })
    .await;
    let mut connection =
        redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    wait_until("the stream is empty and nothing is pending", Duration::from_secs(10), async || {
        let length: u64 = redis::cmd("XLEN").arg("test:blocks").query_async(&mut connection).await.unwrap();
        let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg("test:blocks")
            .arg("test-writers")
            .query_async(&mut connection)
            .await
            .unwrap();
        length == 0 && pending.0 == 0
    })
    .await;

    assert_eq!(publish_counters.published_blocks.load(Ordering::Relaxed), BLOCKS as u64);
    let b = &writer_b.counters;
    assert!(b.claimed_entries.load(Ordering::Relaxed) >= 1, "B claimed what A left pending");
    assert!(
        b.duplicate_blocks.load(Ordering::Relaxed) >= 1,
        "the block A committed unacknowledged came again"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.blocks, BLOCKS as i64);
    let (rows, distinct): (i64, i64) = {
        use sqlx::Row as _;
        let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
        let row =
            sqlx::query("SELECT COUNT(*) AS rows, COUNT(DISTINCT block_id) AS distinct_ids FROM log_blocks")
                .fetch_one(&pool)
                .await
                .unwrap();
        (row.get("rows"), row.get("distinct_ids"))
    };
    assert_eq!((rows, distinct), (BLOCKS as i64, BLOCKS as i64));
    assert_each_message_once(&*store, BLOCKS).await;

    let _ = writer_b.stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), writer_b.task).await.expect("writer B stops").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_publisher_waits_and_trims_nothing() {
    let redis = RedisServer::start();
    let counters = Arc::new(HandoffCounters::default());
    let publisher = Arc::new(StreamPublisher::new(
        RedisLink::new(&redis.url, Duration::from_secs(10)).unwrap(),
        "capped:blocks".to_owned(),
        3,
        counters.clone(),
    ));
    for number in 0..3 {
        publisher.publish(&block(number)).await;
    }
    let fourth = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.publish(&block(3)).await }
    });
    wait_until("the full stream is noticed", Duration::from_secs(10), async || {
        counters.stream_full.load(Ordering::Relaxed) >= 2
    })
    .await;
    assert!(!fourth.is_finished(), "a publish past the cap waits");
    let mut connection =
        redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let first: Vec<(String, Vec<(String, redis::Value)>)> = redis::cmd("XRANGE")
        .arg("capped:blocks")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(first.len(), 3, "nothing was trimmed");

    // A writer stores (and deletes) the entries: the waiting publish goes through.
    let postgres = PostgresServer::start();
    let store = open_postgres(postgres.create_database("capped")).await;
    let settings = WriterSettings { stream: "capped:blocks".to_owned(), ..settings("writer") };
    let (stop, stopped) = watch::channel(false);
    let writer = tokio::spawn(run_stream_writer(
        RedisLink::new(&redis.url, settings.response_timeout()).unwrap(),
        settings,
        store.clone(),
        Arc::new(HandoffCounters::default()),
        Arc::new(StoreCounters::default()),
        stopped,
    ));
    tokio::time::timeout(Duration::from_secs(20), fourth).await.expect("the publish completes").unwrap();
    wait_until("all four blocks are stored", Duration::from_secs(20), async || {
        store.stats().await.unwrap().blocks == 4
    })
    .await;
    assert_each_message_once(&*store, 4).await;
    assert_eq!(counters.published_blocks.load(Ordering::Relaxed), 4);
    let _ = stop.send(true);
    writer.await.unwrap();
}

fn redis_appliance(postgres_url: &str, redis_url: &str) -> Appliance {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    Appliance::start_with_env(
        &data_dir,
        &[],
        &[
            ("DB_TYPE", "postgres"),
            ("DATABASE_URL", postgres_url),
            ("REDIS_URL", redis_url),
            ("KILLKRILL_INGEST__HANDOFF", "redis"),
            ("KILLKRILL_INGEST__REDIS_CLAIM_MIN_IDLE_MS", "1000"),
        ],
    )
    .keeping(temp)
}

#[test]
fn syslog_over_udp_is_searchable_through_the_redis_handoff() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let appliance = redis_appliance(&postgres.create_database("e2e"), &redis.url);
    let port = appliance.listener("syslog-udp").port().to_string();
    for number in 0..5 {
        crate::harness::logger(
            &["-n", "127.0.0.1", "-P", &port, "--udp", "-t", "e2eredis"],
            &format!("through redis handoffword {number}"),
        );
    }
    let logs = appliance.wait_for_logs("q=handoffword&limit=100", 5);
    let mut messages: Vec<&str> = logs.iter().map(|log| log["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    assert_eq!(messages, (0..5).map(|n| format!("through redis handoffword {n}")).collect::<Vec<_>>());
    assert!(logs.iter().all(|log| log["app_name"] == "e2eredis" && log["listener"] == "syslog-udp"));
    assert!(appliance.metric("killkrill_stream_published_messages_total") >= 5.0);
    assert!(appliance.metric("killkrill_stream_consumed_messages_total") >= 5.0);
    assert_eq!(appliance.metric("killkrill_store_messages_total"), 5.0, "stored by the stream writer");
    assert!(appliance.terminate().success());
}

/// Sends `count` newline-framed messages over TCP with `marker`.
fn send_tcp(appliance: &Appliance, marker: &str, count: usize) {
    let mut stream = TcpStream::connect(appliance.listener("syslog-tcp")).unwrap();
    for number in 0..count {
        writeln!(stream, "<14>1 2024-01-01T00:00:00Z host app - - - {marker} {number}").unwrap();
    }
    stream.flush().unwrap();
}

fn wait_for_metric_above(appliance: &Appliance, series: &str, floor: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = appliance.metric(series);
        if value > floor {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_all_searchable_once(appliance: &Appliance, marker: &str, count: usize) {
    let logs = appliance.wait_for_logs(&format!("q={marker}&limit=1000"), count);
    let mut numbers: Vec<usize> = logs
        .iter()
        .map(|log| log["message"].as_str().unwrap().rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..count).collect::<Vec<_>>(), "{marker}: every message exactly once");
}

#[test]
fn redis_down_at_start_and_going_away_loses_nothing_accepted() {
    const PUBLISH_ERRORS: &str = "killkrill_stream_errors_total{stage=\"publish\"}";
    let postgres = PostgresServer::start();
    let mut redis = RedisServer::not_started();
    let appliance = redis_appliance(&postgres.create_database("redis_down"), &redis.url);

    // Redis is not there yet: the block is accepted and its publish retried.
    send_tcp(&appliance, "beforeredis", 50);
    let errors = wait_for_metric_above(&appliance, PUBLISH_ERRORS, 0.0);
    assert_eq!(appliance.metric("killkrill_stream_published_blocks_total"), 0.0);
    redis.restart();
    assert_all_searchable_once(&appliance, "beforeredis", 50);

    // Redis goes away (everything so far is stored), messages keep coming, Redis returns empty.
    redis.kill();
    send_tcp(&appliance, "whileaway", 50);
    wait_for_metric_above(&appliance, PUBLISH_ERRORS, errors);
    redis.restart();
    assert_all_searchable_once(&appliance, "whileaway", 50);
    assert_all_searchable_once(&appliance, "beforeredis", 50);
    assert!(
        appliance.metric("killkrill_stream_errors_total{stage=\"consume\"}") >= 1.0,
        "the writer saw it too"
    );
    assert!(appliance.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_cannot_be_decoded_goes_to_the_dead_letter_stream() {
    let redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let store = open_postgres(postgres.create_database("dead_letter")).await;
    let mut connection =
        redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let bad_id: String = redis::cmd("XADD")
        .arg("test:blocks")
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("block_id")
        .arg("abc")
        .query_async(&mut connection)
        .await
        .unwrap();
    let publisher = StreamPublisher::new(
        RedisLink::new(&redis.url, Duration::from_secs(10)).unwrap(),
        "test:blocks".to_owned(),
        100,
        Arc::new(HandoffCounters::default()),
    );
    publisher.publish(&block(0)).await;
    let writer = spawn_writer(&redis.url, "writer", store.clone());
    wait_until("the good block is stored", Duration::from_secs(20), async || {
        store.stats().await.unwrap().blocks == 1
    })
    .await;
    wait_until("the bad entry is dead-lettered", Duration::from_secs(10), async || {
        writer.counters.dead_lettered.load(Ordering::Relaxed) == 1
    })
    .await;
    let dead: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("test:blocks:dead")
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    assert_eq!(fields["source_id"], bad_id);
    assert!(fields["error"].contains("format_version is missing"), "{fields:?}");
    assert_eq!(fields["entry.block_id"], "abc", "the original fields are kept");
    let length: u64 = redis::cmd("XLEN").arg("test:blocks").query_async(&mut connection).await.unwrap();
    assert_eq!(length, 0, "both entries left the stream once handled");
    assert_each_message_once(&*store, 1).await;
    let _ = writer.stop.send(true);
    writer.task.await.unwrap();
}

#[test]
fn a_redis_handoff_without_a_usable_redis_url_is_refused_at_start() {
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&[("KILLKRILL_INGEST__HANDOFF", "redis")], "REDIS_URL"),
        (&[("KILLKRILL_INGEST__HANDOFF", "redis"), ("REDIS_URL", "http://not-redis/")], "store.redis_url"),
    ];
    for (env, needle) in cases {
        let temp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(crate::harness::BINARY)
            .args(["serve", "--data-dir"])
            .arg(temp.path().join("data"))
            .args(["--api-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--syslog-udp", "127.0.0.1:0", "--syslog-tcp", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{env:?}: still running; it should have been refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{env:?}: {stderr}");
    }
}
