//! The metric tables against real backends: points of several listeners and intervals
//! merge at query time, tag filters use the tag index, and SQLite and PostgreSQL agree.

use std::sync::Arc;

use killkrill::config::{DbType, StoreConfig};
use killkrill::store::{self, MetricAgg, MetricQuery, MetricSeries, Store};
use killkrill_dataplane::metrics::histogram::{encode, new_histogram, scaled};
use killkrill_dataplane::metrics::{MetricKind, MetricPoint};

use crate::servers::PostgresServer;

const BASE_NS: i64 = 1_700_000_000_000_000_000;
const INTERVAL_NS: i64 = 10_000_000_000;

fn timer_point(host: &str, interval: i64, values: &[f64]) -> MetricPoint {
    let mut histogram = new_histogram();
    for value in values {
        histogram.record(scaled(*value)).unwrap();
    }
    MetricPoint {
        name: "api.latency".into(),
        tags: vec![("dc".into(), "x".into()), ("host".into(), host.into())],
        kind: MetricKind::Timer,
        interval_start_ns: BASE_NS + interval * INTERVAL_NS,
        interval_ns: INTERVAL_NS,
        count: values.len() as f64,
        sum: values.iter().sum(),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        last: *values.last().unwrap(),
        p50: None,
        p90: None,
        p99: None,
        histogram: Some(encode(&histogram)),
    }
}

fn query(tags: &[(&str, &str)], agg: MetricAgg, step_ns: i64) -> MetricQuery {
    MetricQuery {
        name: "api.latency".into(),
        tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        start_ns: BASE_NS,
        end_ns: BASE_NS + 6 * INTERVAL_NS,
        step_ns,
        agg,
    }
}

async fn merges_across_listeners_and_intervals(store: Arc<dyn Store>) -> Vec<Vec<MetricSeries>> {
    let values: Vec<f64> = (1..=600).map(f64::from).collect();
    // Host a: two listeners share each interval's samples; host b: one listener.
    for interval in 0..6 {
        let slice = &values[interval as usize * 100..(interval as usize + 1) * 100];
        let (first, second) = slice.split_at(50);
        store.insert_metric_points("statsd-udp", &[timer_point("a", interval, first)]).await.unwrap();
        store.insert_metric_points("statsd-udp", &[timer_point("a", interval, second)]).await.unwrap();
        store.insert_metric_points("statsd-udp", &[timer_point("b", interval, &[1000.0])]).await.unwrap();
    }
    // Outside the range: never counted.
    store.insert_metric_points("statsd-udp", &[timer_point("a", 6, &[5.0])]).await.unwrap();
    let whole = 6 * INTERVAL_NS;
    let mut answers = Vec::new();
    let only_a = store.query_metrics(&query(&[("host", "a")], MetricAgg::Count, whole)).await.unwrap();
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].points[0].value, Some(600.0));
    let p50 =
        store.query_metrics(&query(&[("host", "a"), ("dc", "x")], MetricAgg::P50, whole)).await.unwrap();
    let p50 = p50[0].points[0].value.unwrap();
    assert!((p50 - 300.0).abs() <= 3.0, "exact merge of 12 histograms: {p50}");
    let both = store.query_metrics(&query(&[("dc", "x")], MetricAgg::Sum, whole)).await.unwrap();
    assert_eq!(both.len(), 2, "one series per tag set");
    assert_eq!(both[0].points[0].value, Some(180_300.0));
    assert_eq!(both[1].points[0].value, Some(6000.0));
    let per_interval =
        store.query_metrics(&query(&[("host", "b")], MetricAgg::Max, INTERVAL_NS)).await.unwrap();
    assert_eq!(per_interval[0].points.len(), 6);
    assert!(store.query_metrics(&query(&[("host", "c")], MetricAgg::Sum, whole)).await.unwrap().is_empty());
    assert_eq!(store.metric_names().await.unwrap(), ["api.latency"]);
    answers.push(only_a);
    answers.push(both);
    answers.push(per_interval);
    store.close().await;
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_points_merge_the_same_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = merges_across_listeners_and_intervals(
        store::open(&StoreConfig::default(), dir.path()).await.unwrap(),
    )
    .await;
    let server = PostgresServer::start();
    let config = StoreConfig {
        db_type: DbType::Postgres,
        database_url: Some(server.create_database("metrics")),
        ..StoreConfig::default()
    };
    let postgres = merges_across_listeners_and_intervals(
        store::open(&config, std::path::Path::new("/nonexistent")).await.unwrap(),
    )
    .await;
    assert_eq!(sqlite, postgres, "the two backends differ");
}

/// Host a has points in intervals 0..6, host b only in interval 0; the cutoff is the
/// start of interval 3.
async fn retention_removes_old_points_and_empty_series(store: Arc<dyn Store>) {
    for interval in 0..6 {
        store.insert_metric_points("statsd-udp", &[timer_point("a", interval, &[1.0])]).await.unwrap();
    }
    let mut lonely = timer_point("b", 0, &[5.0]);
    lonely.name = "old.only".into();
    store.insert_metric_points("statsd-udp", &[lonely]).await.unwrap();
    assert_eq!(store.metric_names().await.unwrap(), ["api.latency", "old.only"]);

    let now = BASE_NS + 10 * INTERVAL_NS;
    let retention =
        store::Retention { metric_max_age_ns: Some(7 * INTERVAL_NS), ..store::Retention::default() };
    let removed = store.enforce_retention(&retention, now).await.unwrap();
    assert_eq!(
        removed,
        store::Removed { metric_points: 4, ..store::Removed::default() },
        "a's 0..3 and b's 0"
    );
    assert_eq!(store.metric_names().await.unwrap(), ["api.latency"], "a series without points goes");
    let left = store.query_metrics(&query(&[], MetricAgg::Count, INTERVAL_NS)).await.unwrap();
    let kept: Vec<(&str, Option<f64>)> =
        left[0].points.iter().map(|point| (point.time.as_str(), point.value)).collect();
    assert_eq!(kept.len(), 3, "intervals 3, 4 and 5 only: {kept:?}");
    assert!(kept.iter().all(|(_, count)| *count == Some(1.0)), "{kept:?}");
    assert_eq!(kept[0].0, "2023-11-14T22:13:50.000Z", "the first kept is interval 3");

    // A later point of a removed series creates it again.
    let mut again = timer_point("b", 9, &[6.0]);
    again.name = "old.only".into();
    store.insert_metric_points("statsd-udp", &[again]).await.unwrap();
    assert_eq!(store.metric_names().await.unwrap(), ["api.latency", "old.only"]);
    let nothing = store.enforce_retention(&retention, now).await.unwrap();
    assert_eq!(nothing, store::Removed::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_retention_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    retention_removes_old_points_and_empty_series(
        store::open(&StoreConfig::default(), dir.path()).await.unwrap(),
    )
    .await;
    let server = PostgresServer::start();
    let config = StoreConfig {
        db_type: DbType::Postgres,
        database_url: Some(server.create_database("metric_retention")),
        ..StoreConfig::default()
    };
    retention_removes_old_points_and_empty_series(
        store::open(&config, std::path::Path::new("/nonexistent")).await.unwrap(),
    )
    .await;
}

/// `count` counter points of one interval, one series each (host tag `h<i>`).
fn many_series(count: usize, interval: i64) -> Vec<MetricPoint> {
    (0..count)
        .map(|index| MetricPoint {
            name: "requests".into(),
            tags: vec![("host".into(), format!("h{index}")), ("dc".into(), "x".into())],
            kind: MetricKind::Counter,
            interval_start_ns: BASE_NS + interval * INTERVAL_NS,
            interval_ns: INTERVAL_NS,
            count: 1.0,
            sum: index as f64,
            min: index as f64,
            max: index as f64,
            last: index as f64,
            p50: None,
            p90: None,
            p99: None,
            histogram: None,
        })
        .collect()
}

fn requests(tags: &[(&str, &str)]) -> MetricQuery {
    MetricQuery { name: "requests".into(), ..query(tags, MetricAgg::Sum, 3 * INTERVAL_NS) }
}

/// Thousands of series in one batch, the same series again in the next intervals (from
/// the series cache), and a cache made stale behind the store's back: every point lands
/// on its own series, and the tag index finds each.
async fn many_series_and_a_stale_cache(store: Arc<dyn Store>, other: Arc<dyn Store>) {
    const SERIES: usize = 2_500;
    for interval in 0..2 {
        assert_eq!(
            store.insert_metric_points("statsd-udp", &many_series(SERIES, interval)).await.unwrap(),
            2_500
        );
    }
    let all = store.query_metrics(&requests(&[("dc", "x")])).await.unwrap();
    assert_eq!(all.len(), SERIES, "one series per host");
    let h1234 = store.query_metrics(&requests(&[("host", "h1234")])).await.unwrap();
    assert_eq!(h1234.len(), 1);
    assert_eq!(h1234[0].points[0].value, Some(2.0 * 1234.0), "both intervals' sums");

    // Another process's retention removes every series this store has cached ids for.
    let retention = store::Retention { metric_max_age_ns: Some(INTERVAL_NS), ..store::Retention::default() };
    let removed = other.enforce_retention(&retention, BASE_NS + 10 * INTERVAL_NS).await.unwrap();
    assert_eq!(removed.metric_points, 2 * SERIES as u64);
    assert!(other.query_metrics(&requests(&[("dc", "x")])).await.unwrap().is_empty());
    // The stale ids fail the write once; the store looks the series up again, creating them.
    assert_eq!(store.insert_metric_points("statsd-udp", &many_series(SERIES, 2)).await.unwrap(), 2_500);
    let again = other.query_metrics(&requests(&[("host", "h7")])).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].points.iter().filter_map(|point| point.value).collect::<Vec<_>>(), [7.0]);
    store.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_series_and_a_stale_series_cache_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_config = StoreConfig::default();
    let open_sqlite = || store::open(&sqlite_config, dir.path());
    many_series_and_a_stale_cache(open_sqlite().await.unwrap(), open_sqlite().await.unwrap()).await;
    let server = PostgresServer::start();
    let config = StoreConfig {
        db_type: DbType::Postgres,
        database_url: Some(server.create_database("metric_series_cache")),
        ..StoreConfig::default()
    };
    let open_postgres = || store::open(&config, std::path::Path::new("/nonexistent"));
    many_series_and_a_stale_cache(open_postgres().await.unwrap(), open_postgres().await.unwrap()).await;
}
