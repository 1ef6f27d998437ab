//! The scale-out hand-off through Redis Streams (docs/scale-out.md, docs/adr/0017).
//!
//! With `ingest.handoff = "redis"` the batch writer publishes every encoded block to one
//! stream instead of committing it ([`StreamPublisher`]); stream writers in any control
//! plane read the stream as one consumer group, store each block and acknowledge it only
//! after the commit ([`run_stream_writer`]). Delivery is at least once; the store is
//! idempotent by block id, so a block delivered twice is stored once.
//!
//! Bounded without silent loss: the stream holds at most `redis_stream_max_len` entries,
//! and an entry leaves it only when a writer has stored it (acknowledge and delete in one
//! transaction). A publisher that finds the stream at its cap waits and retries, counting
//! it, exactly as it does when Redis is down; it never asks Redis to trim (`XADD MAXLEN`
//! trims the oldest entries whether stored or not).

mod entry;
mod publisher;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub use entry::{ENTRY_VERSION, Entry, block_fields, decode_entry};
pub use publisher::StreamPublisher;
pub use writer::{WriterSettings, run_stream_writer};

use crate::config::{Config, HandoffMode};
use crate::ingest::BlockSink;
use crate::store::Store;
use crate::telemetry::metrics::{HandoffCounters, StoreCounters};
use crate::{Error, Result};

pub(crate) const RETRY_FIRST: Duration = Duration::from_millis(50);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One connection to Redis, opened on first use and opened again after it fails, so that
/// a Redis that is down at start-up or restarts costs retries, never a restart of ours.
pub struct RedisLink {
    client: redis::Client,
    config: AsyncConnectionConfig,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl RedisLink {
    /// Parses the URL (no connection yet); `response_timeout` bounds every command, so it
    /// must be longer than any `BLOCK` a caller asks for.
    pub fn new(url: &str, response_timeout: Duration) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|error| Error::Config(format!("store.redis_url (REDIS_URL) is not usable: {error}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response_timeout));
        Ok(Self { client, config, connection: Mutex::new(None) })
    }

    /// The open connection, connecting if there is none.
    pub async fn connection(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        let connection = self.client.get_multiplexed_async_connection_with_config(&self.config).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connection after an error that may have broken it (the next call
    /// connects again). A multiplexed connection never reconnects by itself.
    pub async fn after_error(&self, error: &redis::RedisError) {
        if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            *self.connection.lock().await = None;
        }
    }
}

/// The default consumer name: unique per process on a host, readable in `XINFO`.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "killkrill".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The hand-off as `serve` runs it: where the batch writer sends blocks, and the stream
/// writer task if this process runs one.
pub struct Handoff {
    pub sink: BlockSink,
    pub counters: Arc<HandoffCounters>,
    writer: Option<(JoinHandle<()>, watch::Sender<bool>)>,
}

impl Handoff {
    /// Sets up what the configuration asks for; connects to nothing yet (a Redis that is
    /// down is waited for, with retries, by the publisher and the writer).
    pub fn start(config: &Config, store: Arc<dyn Store>, store_counters: Arc<StoreCounters>) -> Result<Self> {
        let counters = Arc::new(HandoffCounters::default());
        let ingest = &config.ingest;
        let url = config.store.redis_url.as_deref().unwrap_or_default();
        let sink = match ingest.handoff {
            HandoffMode::Direct => BlockSink::Store(store.clone()),
            HandoffMode::Redis => {
                let link = RedisLink::new(url, publisher::RESPONSE_TIMEOUT)?;
                let publisher = StreamPublisher::new(
                    link,
                    ingest.redis_stream.clone(),
                    ingest.redis_stream_max_len,
                    counters.clone(),
                );
                tracing::info!(stream = %ingest.redis_stream, max_len = ingest.redis_stream_max_len, "Blocks are handed off through Redis.");
                BlockSink::Stream(Arc::new(publisher))
            }
        };
        let writer = if ingest.runs_redis_writer() {
            if config.store.db_type == crate::config::DbType::Sqlite {
                tracing::warn!(
                    "The stream writer stores into this process's SQLite file: other control planes will not see those blocks; use DB_TYPE=postgres to share them."
                );
            }
            let settings = WriterSettings {
                stream: ingest.redis_stream.clone(),
                group: ingest.redis_group.clone(),
                consumer: ingest.redis_consumer.clone().unwrap_or_else(default_consumer_name),
                claim_min_idle: Duration::from_millis(ingest.redis_claim_min_idle_ms),
            };
            let link = RedisLink::new(url, settings.response_timeout())?;
            tracing::info!(stream = %settings.stream, group = %settings.group, consumer = %settings.consumer, "Stream writer started.");
            let (stop_sender, stop) = watch::channel(false);
            let task = tokio::spawn(run_stream_writer(
                link,
                settings,
                store,
                counters.clone(),
                store_counters,
                stop,
            ));
            Some((task, stop_sender))
        } else {
            None
        };
        Ok(Self { sink, counters, writer })
    }

    /// Stops the stream writer: it finishes the entry it is storing; entries it read and
    /// did not store stay pending for another writer (or this one after a restart).
    pub async fn stop(self) {
        if let Some((task, stop)) = self.writer {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}
