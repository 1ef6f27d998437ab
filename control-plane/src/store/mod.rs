//! Where accepted messages are kept, behind one interface for every backend.
//! Handlers and the batch writer see `Arc<dyn Store>`; SQL stays in the backend modules.

mod migrations;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use killkrill_dataplane::batch::LogBatch;
use serde::Serialize;

pub use sqlite::SqliteStore;

use crate::config::{DbType, StoreConfig};
use crate::{Error, Result};

/// A log search.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Words that must all appear in the message (case-insensitive).
    pub terms: Vec<String>,
    /// At most this many rows, newest first.
    pub limit: u32,
}

/// A stored message as the API returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredLog {
    pub id: i64,
    /// RFC 3339 UTC.
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
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap round trip, for readiness.
    async fn ping(&self) -> Result<()>;
    /// Commits every message of the batch, or none.
    async fn insert_logs(&self, batch: &LogBatch) -> Result<u64>;
    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<StoredLog>>;
    /// Flushes and closes the store.
    async fn close(&self);
}

/// Opens the configured backend, running migrations.
pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match config.db_type {
        DbType::Sqlite => {
            let store = SqliteStore::open(config.database_url.as_deref(), data_dir).await?;
            Ok(Arc::new(store))
        }
        DbType::Postgres => Err(Error::Config(
            "store.db_type = \"postgres\" (DB_TYPE) is not available in this release yet; \
             use sqlite (the default)"
                .to_owned(),
        )),
    }
}
