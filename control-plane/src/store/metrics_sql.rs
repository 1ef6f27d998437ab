//! Metrics on SQLite and PostgreSQL: the same tables on both (migrations `*_metrics.sql`),
//! statements written once with `QueryBuilder` and run on whichever pool is open.

use std::collections::HashMap;

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
/// Series one query may return; more means the tag filters are too loose.
pub const MAX_SERIES_PER_QUERY: usize = 10_000;

#[async_trait]
impl MetricStore for SqlStore {
    async fn insert_metric_points(&self, listener: &str, points: &[MetricPoint]) -> Result<u64> {
        if points.is_empty() {
            return Ok(0);
        }
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            // Series ids of this batch, by (name, kind, tags).
            let mut ids: HashMap<(&str, &str, String), i64> = HashMap::new();
            let mut series_of = Vec::with_capacity(points.len());
            for point in points {
                let key = (point.name.as_str(), point.kind.label(), tags_json(&point.tags));
                if let Some(id) = ids.get(&key) {
                    series_of.push(*id);
                    continue;
                }
                let lookup = |sql: &mut QueryBuilder<'_, _>| {
                    sql.push("SELECT id FROM metric_series WHERE name = ")
                        .push_bind(key.0.to_owned())
                        .push(" AND kind = ")
                        .push_bind(key.1)
                        .push(" AND tags = ")
                        .push_bind(key.2.clone());
                };
                let mut sql = QueryBuilder::new("");
                lookup(&mut sql);
                let found: Option<i64> = sql.build_query_scalar().fetch_optional(&mut *tx).await?;
                let id = match found {
                    Some(id) => id,
                    None => {
                        // ON CONFLICT: another writer may create the same series meanwhile.
                        let mut insert = QueryBuilder::new("INSERT INTO metric_series (name, kind, tags) VALUES (");
                        insert
                            .separated(", ")
                            .push_bind(key.0.to_owned())
                            .push_bind(key.1)
                            .push_bind(key.2.clone());
                        insert.push(") ON CONFLICT (name, kind, tags) DO NOTHING");
                        insert.build().execute(&mut *tx).await?;
                        let mut sql = QueryBuilder::new("");
                        lookup(&mut sql);
                        let id: i64 = sql.build_query_scalar().fetch_one(&mut *tx).await?;
                        for (tag_key, value) in &point.tags {
                            let mut tag = QueryBuilder::new(
                                "INSERT INTO metric_series_tags (key, value, series_id) VALUES (",
                            );
                            tag.separated(", ").push_bind(tag_key.as_str()).push_bind(value.as_str()).push_bind(id);
                            tag.push(") ON CONFLICT DO NOTHING");
                            tag.build().execute(&mut *tx).await?;
                        }
                        id
                    }
                };
                ids.insert(key, id);
                series_of.push(id);
            }
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
            Ok(points.len() as u64)
        })
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
            Ok(removed)
        })
    }
}
