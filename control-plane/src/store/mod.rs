//! Where accepted messages are kept, behind one interface for every backend.
//! Handlers and the batch writer see `Arc<dyn Store>`; SQL stays in `sql`, the block
//! format in `block`, and the search logic that both backends share in `query`.

mod answer_cache;
pub mod auth;
mod auth_sql;
pub mod block;
mod block_cache;
pub mod compaction;
pub mod metrics;
mod metrics_sql;
mod migrations;
pub mod query;
mod shared_reads;
mod sql;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::Serialize;

pub use auth::{ApiKeyRecord, AuditRecord, AuthStore, Role, UserChange, UserRecord};
pub use block::{BlockEncoder, EncodedBlock};
pub use metrics::{MetricAgg, MetricQuery, MetricSeries, MetricStore, MetricValue};
pub use query::{Cursor, LogQuery, Order, TextQuery};
pub use sql::SqlStore;

use crate::config::{DbType, StoreConfig};
use crate::{Error, Result};

/// A stored message as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredLog {
    /// Stable id: the block's sequence number and the row inside it.
    pub id: i64,
    /// RFC 3339 UTC, nanoseconds.
    pub received_at: String,
    pub source: String,
    pub listener: String,
    pub format: String,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub version: Option<u8>,
    /// The sender's timestamp, RFC 3339 UTC with the sender's precision.
    pub timestamp: Option<String>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    pub structured_data: Option<String>,
    /// The message as text (invalid UTF-8 replaced).
    pub message: String,
    /// The exact frame, base64, when it did not parse cleanly.
    pub raw_b64: Option<String>,
    pub parse_error: Option<String>,
    /// Set when the TCP framing cut or ended the frame abnormally.
    pub frame_flag: Option<String>,
}

/// One page of a search.
#[derive(Clone, Debug, Default)]
pub struct LogPage {
    pub logs: Vec<StoredLog>,
    /// Present when more rows match: pass it back to get the next page.
    pub next_cursor: Option<Cursor>,
}

/// A page that may be shared by every client asking the same search over the same blocks
/// (`store/answer_cache.rs`), with its JSON encoding, made once by the first client that
/// needs it.
#[derive(Debug, Default)]
pub struct SharedPage {
    pub page: LogPage,
    json: OnceLock<axum::body::Bytes>,
}

impl SharedPage {
    pub fn new(page: LogPage) -> Self {
        Self { page, json: OnceLock::new() }
    }

    /// The page as JSON, encoded by `encode` the first time only.
    pub fn json<E>(
        &self,
        encode: impl FnOnce(&LogPage) -> std::result::Result<Vec<u8>, E>,
    ) -> std::result::Result<axum::body::Bytes, E> {
        if let Some(json) = self.json.get() {
            return Ok(json.clone());
        }
        let json = axum::body::Bytes::from(encode(&self.page)?);
        // Another client may have encoded it meanwhile: both encodings are equal.
        Ok(self.json.get_or_init(|| json).clone())
    }
}

/// What the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub blocks: i64,
    pub messages: i64,
    /// Bytes of the frames as received.
    pub raw_bytes: i64,
    /// Bytes of blocks and their filters as stored (before the database's own overhead).
    pub stored_bytes: i64,
    pub oldest_received_ns: Option<i64>,
    pub newest_received_ns: Option<i64>,
    /// Blocks written by compaction (docs/adr/0037), merged ones included.
    pub compacted_blocks: i64,
    /// Of those, blocks that the merge of older data wrote (docs/adr/0055).
    pub merged_blocks: i64,
}

/// What `log_blocks.compacted` says of a block: how it was written (docs/adr/0037, 0055).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockTier {
    /// As the writer cut it, rows in arrival order.
    Arrival = 0,
    /// Compaction's rewrite of one window's rows, grouped by host.
    ByHost = 1,
    /// Compaction could not decode it: left as it was and not tried again.
    Undecodable = 2,
    /// Older blocks grouped by host, merged into large ones.
    Merged = 3,
}

impl BlockTier {
    /// The value of the `compacted` column.
    pub fn column(self) -> i64 {
        self as i64
    }
}

/// The index row of a block that compaction may rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub seq: i64,
    pub block_id: String,
    pub min_received_ns: i64,
    pub max_received_ns: i64,
    pub message_count: i64,
    pub raw_bytes: i64,
    pub stored_bytes: i64,
}

/// A sender seen in the searched window: one hostname from one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceSeen {
    /// The HOSTNAME the messages carried (null when they had none).
    pub hostname: Option<String>,
    /// The sender's IP address.
    pub address: String,
    pub messages: u64,
    /// Receive times of the first and last message in the window, RFC 3339.
    pub first_seen: String,
    pub last_seen: String,
}

/// Senders seen, most messages first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourcesSeen {
    pub sources: Vec<SourceSeen>,
    /// Blocks read to answer.
    pub blocks_read: u64,
    /// True when the window held more blocks than one answer reads (narrow it with
    /// `start` for an exact answer); the counts then cover the newest blocks only.
    pub truncated: bool,
}

/// How long and how much the store keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Blocks whose newest message is older than this go (None: no age limit).
    pub max_age_ns: Option<i64>,
    /// The oldest blocks go until the stored bytes fit (None: no size limit).
    pub max_bytes: Option<i64>,
    /// Metric points whose interval started longer ago than this go, and with them
    /// series left without points (None: metrics are kept).
    pub metric_max_age_ns: Option<i64>,
}

/// What one retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub blocks: u64,
    pub messages: u64,
    pub stored_bytes: u64,
    pub metric_points: u64,
}

/// One live setting as kept in the `runtime_config` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfigEntry {
    pub key: String,
    /// The section's JSON.
    pub value: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
    pub updated_by: Option<String>,
}

/// Logs here; metrics through the [`MetricStore`] half (`store/metrics_sql.rs`).
#[async_trait]
pub trait Store: MetricStore + Send + Sync {
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;
    /// Commits the block; false when a block with the same id is already stored.
    async fn insert_block(&self, block: &EncodedBlock) -> Result<bool>;
    async fn query_logs(&self, query: &LogQuery) -> Result<LogPage>;
    /// The same search, as a page that identical searches over unchanged blocks may share
    /// (the API's path: a backend with an answer cache answers repeats from it).
    async fn query_logs_shared(&self, query: &LogQuery) -> Result<Arc<SharedPage>> {
        Ok(Arc::new(SharedPage::new(self.query_logs(query).await?)))
    }
    /// Hostnames and addresses of the messages matching `query` (its limit, order and
    /// cursor are ignored), reading at most `max_blocks` blocks, newest first.
    async fn sources(&self, query: &LogQuery, max_blocks: u64) -> Result<SourcesSeen>;
    async fn stats(&self) -> Result<StoreStats>;
    /// The sequence number of the last block committed (None when the store is empty).
    async fn newest_block_seq(&self) -> Result<Option<i64>>;
    /// Removes whole blocks past the age limit, then the oldest blocks until the stored
    /// bytes fit the size limit. A block goes only when all of it may go by age, or when
    /// the size limit needs its room.
    async fn enforce_retention(&self, retention: &Retention, now_ns: i64) -> Result<Removed>;
    /// Up to `limit` blocks of `tier`, oldest first by their first message
    /// (`store/compaction.rs`).
    async fn compaction_candidates(&self, _tier: BlockTier, _limit: i64) -> Result<Vec<BlockMeta>> {
        Ok(Vec::new())
    }
    /// The compressed body of one block (None when it is gone).
    async fn block_payload(&self, _seq: i64) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// In one transaction: removes the `old` blocks (of tier `from`), keeps their ids as
    /// retired (a redelivery of one is then not stored again), and inserts `new` as blocks
    /// of tier `to`. False, with nothing changed, when any old block is gone or no longer
    /// of tier `from` (retention or another control plane got there first).
    async fn replace_blocks(
        &self,
        _old: &[BlockMeta],
        _from: BlockTier,
        _new: &[EncodedBlock],
        _to: BlockTier,
    ) -> Result<bool> {
        Err(Error::Internal("this store cannot compact".to_owned()))
    }
    /// Marks a block compaction could not decode, so that it is left as it is and not
    /// tried again.
    async fn mark_undecodable(&self, _seq: i64, _from: BlockTier) -> Result<()> {
        Ok(())
    }
    /// Every live setting kept (`runtime_config`), by key.
    async fn runtime_config(&self) -> Result<Vec<RuntimeConfigEntry>> {
        Ok(Vec::new())
    }
    /// Keeps (inserts or replaces) one live setting.
    async fn put_runtime_config(&self, _entry: &RuntimeConfigEntry) -> Result<()> {
        Err(Error::Internal("this store keeps no live settings".to_owned()))
    }
    /// Forgets one live setting (the file's value applies at the next start); false when
    /// none was kept.
    async fn delete_runtime_config(&self, _key: &str) -> Result<bool> {
        Ok(false)
    }
    /// Flushes and closes the store.
    async fn close(&self);
}

/// Opens the configured backend, running migrations.
pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Arc<dyn Store>> {
    Ok(open_with_auth(config, data_dir).await?.0)
}

/// Opens the configured backend, running migrations: its logs-and-metrics half and its
/// auth half (one pool behind both).
pub async fn open_with_auth(
    config: &StoreConfig,
    data_dir: &Path,
) -> Result<(Arc<dyn Store>, Arc<dyn AuthStore>)> {
    let store = match config.db_type {
        DbType::Sqlite => SqlStore::open_sqlite(config.database_url.as_deref(), data_dir).await?,
        DbType::Postgres => {
            let url = config.database_url.as_deref().ok_or_else(|| {
                Error::Config(
                    "store.db_type = \"postgres\" needs store.database_url (DATABASE_URL)".to_owned(),
                )
            })?;
            SqlStore::open_postgres(url).await?
        }
    };
    let store = Arc::new(store);
    Ok((store.clone(), store))
}

/// RFC 3339 in UTC with exactly `digits` fractional digits.
pub(crate) fn rfc3339_with_digits(unix_nanos: i64, digits: u8) -> Option<String> {
    let timestamp = jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)).ok()?;
    let digits = digits.min(9);
    Some(format!("{:.*}", usize::from(digits), timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_the_senders_precision() {
        assert_eq!(
            rfc3339_with_digits(1_700_000_000_003_000_000, 3).as_deref(),
            Some("2023-11-14T22:13:20.003Z")
        );
        assert_eq!(
            rfc3339_with_digits(1_700_000_000_000_000_000, 0).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }
}
