//! Metrics on SQLite and PostgreSQL: the same tables on both (migrations `*_metrics.sql`),
//! statements written once with `QueryBuilder` and run on whichever pool is open.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use killkrill_dataplane::metrics::MetricPoint;
use sqlx::{QueryBuilder, Row};

use super::metrics::{
    MetricQuery, MetricSeries, MetricStore, StoredPoint, StoredSeries, bucket_series, tags_json,
};
use super::sql::{Pool, SqlStore, on_pool};
use crate::{Error, Result};

/// Point rows per INSERT: 13 parameters each stays under SQLite's 32,766.
const POINTS_PER_INSERT: usize = 1_000;
/// Series per INSERT or look-up of series (3 parameters each), and tag rows per INSERT.
const SERIES_PER_STATEMENT: usize = 500;
/// Series one query may return; more means the tag filters are too loose.
pub const MAX_SERIES_PER_QUERY: usize = 10_000;
/// Series ids the cache holds before it starts afresh (about 200 bytes each).
const MAX_CACHED_SERIES: usize = 500_000;

/// A series as stored: name, kind and tags as JSON with sorted keys.
type SeriesKey = (String, &'static str, String);

/// Series ids by name, kind and tags, kept across batches. A listener flushes the same
/// series interval after interval; looking each up again cost a statement per series
/// and held the metric writer near 21,000 points/s for series it had stored before
/// (the `store/metric_points` bench; 126,000 – 153,000 with the cache, docs/adr/0045). Cleared when retention removes series; an
/// insert that fails with cached ids (a series removed by another process) looks them
/// all up again once.
#[derive(Default)]
pub(super) struct SeriesIds(Mutex<HashMap<SeriesKey, i64>>);

impl SeriesIds {
    fn ids(&self) -> MutexGuard<'_, HashMap<SeriesKey, i64>> {
        // The map holds no invariant a panicking holder could break.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn clear(&self) {
        self.ids().clear();
    }
}

#[async_trait]
impl MetricStore for SqlStore {
    async fn insert_metric_points(&self, listener: &str, points: &[MetricPoint]) -> Result<u64> {
        if points.is_empty() {
            return Ok(0);
        }
        let keys: Vec<SeriesKey> = points
            .iter()
            .map(|point| (point.name.clone(), point.kind.label(), tags_json(&point.tags)))
            .collect();
        let cached: Vec<Option<i64>> = {
            let ids = self.series_ids.ids();
            keys.iter().map(|key| ids.get(key).copied()).collect()
        };
        let used_cache = cached.iter().any(Option::is_some);
        match self.write_points(listener, points, &keys, cached).await {
            Err(error) if used_cache => {
                tracing::debug!(error = %error, "Metric write with cached series ids failed; looking them up again.");
                self.series_ids.clear();
                self.write_points(listener, points, &keys, vec![None; points.len()]).await
            }
            written => written,
        }
    }

    async fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<MetricSeries>> {
        let (series, points) = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("SELECT id, kind, tags FROM metric_series WHERE name = ");
            sql.push_bind(query.name.as_str());
            for (key, value) in &query.tags {
                sql.push(" AND id IN (SELECT series_id FROM metric_series_tags WHERE key = ")
                    .push_bind(key.as_str())
                    .push(" AND value = ")
                    .push_bind(value.as_str())
                    .push(")");
            }
            sql.push(" ORDER BY tags, kind LIMIT ").push_bind(MAX_SERIES_PER_QUERY as i64 + 1);
            let rows = sql.build().fetch_all(pool).await?;
            let series = rows
                .iter()
                .map(|row| {
                    Ok(StoredSeries { id: row.try_get("id")?, kind: row.try_get("kind")?, tags: row.try_get("tags")? })
                })
                .collect::<Result<Vec<_>>>()?;
            if series.len() > MAX_SERIES_PER_QUERY {
                return Err(Error::BadRequest {
                    parameter: "tag",
                    message: format!("more than {MAX_SERIES_PER_QUERY} series match; filter by more tags"),
                });
            }
            let mut points = Vec::new();
            // Bounded IN lists keep each statement's parameters well under both limits.
            for ids in series.chunks(500) {
                let mut sql = QueryBuilder::new(
                    "SELECT series_id, start_ns, sample_count, value_sum, value_min, value_max, value_last, \
                     histogram FROM metric_points WHERE start_ns >= ",
                );
                sql.push_bind(query.start_ns).push(" AND start_ns < ").push_bind(query.end_ns);
                sql.push(" AND series_id IN (");
                let mut list = sql.separated(", ");
                for stored in ids {
                    list.push_bind(stored.id);
                }
                sql.push(") ORDER BY start_ns");
                for row in sql.build().fetch_all(pool).await? {
                    points.push(StoredPoint {
                        series_id: row.try_get("series_id")?,
                        start_ns: row.try_get("start_ns")?,
                        count: row.try_get("sample_count")?,
                        sum: row.try_get("value_sum")?,
                        min: row.try_get("value_min")?,
                        max: row.try_get("value_max")?,
                        last: row.try_get("value_last")?,
                        histogram: row.try_get("histogram")?,
                    });
                }
            }
            Ok::<_, Error>((series, points))
        })?;
        let query = query.clone();
        // Merging histograms is CPU work: keep it off the async threads.
        tokio::task::spawn_blocking(move || {
            let mut points = points;
            points.sort_by_key(|point| point.start_ns);
            bucket_series(&query, &series, &points)
        })
        .await
        .map_err(|error| Error::Internal(format!("metric query stopped: {error}")))
    }

    async fn metric_names(&self) -> Result<Vec<String>> {
        on_pool!(&self.pool, pool => {
            let names: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT name FROM metric_series ORDER BY name").fetch_all(pool).await?;
            Ok(names)
        })
    }

    async fn remove_metrics_before(&self, cutoff_ns: i64) -> Result<u64> {
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            let mut sql = QueryBuilder::new("DELETE FROM metric_points WHERE start_ns < ");
            sql.push_bind(cutoff_ns);
            let removed = sql.build().execute(&mut *tx).await?.rows_affected();
            if removed > 0 {
                // A writer that looked a series up just before this commits and then adds a
                // point to it fails on the foreign key and retries, creating it afresh.
                const ORPHANS: &str = "SELECT s.id FROM metric_series s \
                     WHERE NOT EXISTS (SELECT 1 FROM metric_points p WHERE p.series_id = s.id)";
                sqlx::query(&format!("DELETE FROM metric_series_tags WHERE series_id IN ({ORPHANS})"))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&format!("DELETE FROM metric_series WHERE id IN ({ORPHANS})"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            if removed > 0 {
                // Series without points went with them: ids cached for them are stale.
                self.series_ids.clear();
            }
            Ok(removed)
        })
    }
}

impl SqlStore {
    /// Stores `points` in one transaction; `cached[i]` is the series id of `keys[i]` if
    /// known. Unknown series are created (or found, if another writer created them) a
    /// statement per [`SERIES_PER_STATEMENT`], not one per series.
    async fn write_points(
        &self,
        listener: &str,
        points: &[MetricPoint],
        keys: &[SeriesKey],
        cached: Vec<Option<i64>>,
    ) -> Result<u64> {
        // The first point of each series not cached: its tags go to the tag index.
        let mut unknown: HashMap<&SeriesKey, usize> = HashMap::new();
        for (index, (key, id)) in keys.iter().zip(&cached).enumerate() {
            if id.is_none() {
                unknown.entry(key).or_insert(index);
            }
        }
        let unknown: Vec<(&SeriesKey, usize)> = unknown.into_iter().collect();
        let mut found: HashMap<&SeriesKey, i64> = HashMap::with_capacity(unknown.len());
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            for chunk in unknown.chunks(SERIES_PER_STATEMENT) {
                // ON CONFLICT: the series may exist, or another writer may create it meanwhile.
                let mut insert = QueryBuilder::new("INSERT INTO metric_series (name, kind, tags) ");
                insert.push_values(chunk, |mut row, (key, _)| {
                    row.push_bind(key.0.as_str()).push_bind(key.1).push_bind(key.2.as_str());
                });
                insert.push(" ON CONFLICT (name, kind, tags) DO NOTHING");
                insert.build().execute(&mut *tx).await?;
                let mut lookup =
                    QueryBuilder::new("SELECT id, name, kind, tags FROM metric_series WHERE (name, kind, tags) IN (");
                lookup.push_values(chunk, |mut row, (key, _)| {
                    row.push_bind(key.0.as_str()).push_bind(key.1).push_bind(key.2.as_str());
                });
                lookup.push(")");
                let asked: HashMap<(&str, &str, &str), &SeriesKey> =
                    chunk.iter().map(|&(key, _)| ((key.0.as_str(), key.1, key.2.as_str()), key)).collect();
                for row in lookup.build().fetch_all(&mut *tx).await? {
                    let (name, kind, tags): (&str, &str, &str) =
                        (row.try_get("name")?, row.try_get("kind")?, row.try_get("tags")?);
                    if let Some(&key) = asked.get(&(name, kind, tags)) {
                        found.insert(key, row.try_get("id")?);
                    }
                }
                let mut tag_rows = Vec::new();
                for &(key, first) in chunk {
                    let id = *found
                        .get(key)
                        .ok_or_else(|| Error::Internal(format!("metric series {} was not created", key.0)))?;
                    tag_rows.extend(points[first].tags.iter().map(|(tag, value)| (tag.as_str(), value.as_str(), id)));
                }
                for rows in tag_rows.chunks(SERIES_PER_STATEMENT) {
                    let mut tags =
                        QueryBuilder::new("INSERT INTO metric_series_tags (key, value, series_id) ");
                    tags.push_values(rows, |mut row, &(tag, value, id)| {
                        row.push_bind(tag).push_bind(value).push_bind(id);
                    });
                    tags.push(" ON CONFLICT DO NOTHING");
                    tags.build().execute(&mut *tx).await?;
                }
            }
            let series_of: Vec<i64> = keys
                .iter()
                .zip(&cached)
                .map(|(key, id)| id.or_else(|| found.get(key).copied()).unwrap_or_default())
                .collect();
            for (chunk, chunk_ids) in points.chunks(POINTS_PER_INSERT).zip(series_of.chunks(POINTS_PER_INSERT)) {
                let mut sql = QueryBuilder::new(
                    "INSERT INTO metric_points (series_id, start_ns, interval_ns, listener, sample_count, \
                     value_sum, value_min, value_max, value_last, p50, p90, p99, histogram) ",
                );
                sql.push_values(chunk.iter().zip(chunk_ids), |mut row, (point, id)| {
                    row.push_bind(*id)
                        .push_bind(point.interval_start_ns)
                        .push_bind(point.interval_ns)
                        .push_bind(listener)
                        .push_bind(point.count)
                        .push_bind(point.sum)
                        .push_bind(point.min)
                        .push_bind(point.max)
                        .push_bind(point.last)
                        .push_bind(point.p50)
                        .push_bind(point.p90)
                        .push_bind(point.p99)
                        .push_bind(point.histogram.as_deref());
                });
                sql.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, Error>(())
        })?;
        // Only committed series are remembered.
        let mut ids = self.series_ids.ids();
        if ids.len() + found.len() > MAX_CACHED_SERIES {
            ids.clear();
        }
        ids.extend(found.into_iter().map(|(key, id)| (key.clone(), id)));
        Ok(points.len() as u64)
    }
}
