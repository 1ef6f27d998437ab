//! The stream writer: one consumer of the writers' group. It stores each block and only
//! then acknowledges and deletes its entry (one transaction), so an entry leaves the
//! stream only once it is in the store. Entries a dead writer read and never acknowledged
//! are claimed after `claim_min_idle` (`XAUTOCLAIM`) by whichever writer looks first.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::watch;

use super::{Entry, RETRY_FIRST, RETRY_MAX, RedisLink, decode_entry};
use crate::Result;
use crate::store::{EncodedBlock, Store};
use crate::telemetry::metrics::{HandoffCounters, StoreCounters};

/// Entries taken per read or claim: a few blocks, so that a writer that dies holds few.
const ENTRIES_PER_READ: usize = 8;
/// How long a read waits for new entries; also how soon a stop request is seen.
const READ_BLOCK: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct WriterSettings {
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub claim_min_idle: Duration,
}

impl WriterSettings {
    /// Command timeout for the writer's connection: longer than its blocking reads.
    pub fn response_timeout(&self) -> Duration {
        READ_BLOCK + Duration::from_secs(10)
    }

    /// The stream where entries that cannot be decoded are kept, with the reason.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }

    /// How often to look for abandoned entries: often enough that they wait little
    /// longer than `claim_min_idle`, rarely enough to cost nothing.
    fn claim_interval(&self) -> Duration {
        (self.claim_min_idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Why a step of the writer ended early.
enum Interrupted {
    Stopping,
    Failed(crate::Error),
}

impl From<redis::RedisError> for Interrupted {
    fn from(error: redis::RedisError) -> Self {
        Interrupted::Failed(error.into())
    }
}

impl From<crate::Error> for Interrupted {
    fn from(error: crate::Error) -> Self {
        Interrupted::Failed(error)
    }
}

struct StreamWriter {
    link: RedisLink,
    settings: WriterSettings,
    store: Arc<dyn Store>,
    counters: Arc<HandoffCounters>,
    store_counters: Arc<StoreCounters>,
    stop: watch::Receiver<bool>,
}

/// Runs until `stop` turns true. Redis and store failures are retried with back-off and
/// counted; they never end the task.
pub async fn run_stream_writer(
    link: RedisLink,
    settings: WriterSettings,
    store: Arc<dyn Store>,
    counters: Arc<HandoffCounters>,
    store_counters: Arc<StoreCounters>,
    stop: watch::Receiver<bool>,
) {
    let mut writer = StreamWriter { link, settings, store, counters, store_counters, stop };
    writer.run().await;
}

impl StreamWriter {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(&mut self) {
        let mut delay = RETRY_FIRST;
        let mut group_ready = false;
        // Entries this consumer read and did not acknowledge (before an error, or in an
        // earlier life under the same name) are read again first ("0"), then new ones (">").
        let mut own_pending_done = false;
        let mut next_claim = Instant::now();
        while !self.stopping() {
            let step: Result<(), Interrupted> = async {
                let mut connection = self.link.connection().await?;
                if !group_ready {
                    self.create_group(&mut connection).await?;
                    group_ready = true;
                }
                if Instant::now() >= next_claim {
                    self.claim_abandoned(&mut connection).await?;
                    next_claim = Instant::now() + self.settings.claim_interval();
                }
                let from = if own_pending_done { ">" } else { "0" };
                let entries = self.read(&mut connection, from).await?;
                if from == "0" && entries.is_empty() {
                    own_pending_done = true;
                }
                for entry in entries {
                    self.store_and_ack(&mut connection, &entry).await?;
                }
                Ok(())
            }
            .await;
            match step {
                Ok(()) => delay = RETRY_FIRST,
                Err(Interrupted::Stopping) => break,
                Err(Interrupted::Failed(error)) => {
                    self.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                    if let crate::Error::Redis(error) = &error {
                        self.link.after_error(error).await;
                        // The stream or group may have been deleted: create them again.
                        if error.code() == Some("NOGROUP") {
                            group_ready = false;
                        }
                    }
                    own_pending_done = false;
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "Stream writer failed; retrying.");
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|stopping| *stopping) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        tracing::info!(consumer = %self.settings.consumer, "Stream writer stopped.");
    }

    /// Creates the group (and the stream) if missing, from the stream's start, so that
    /// blocks published before any writer existed are stored too.
    async fn create_group(&self, connection: &mut MultiplexedConnection) -> Result<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.stream)
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => Err(error.into()),
            _ => Ok(()),
        }
    }

    async fn read(&self, connection: &mut MultiplexedConnection, from: &str) -> Result<Vec<StreamId>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(ENTRIES_PER_READ)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.settings.stream)
            .arg(from)
            .query_async(connection)
            .await?;
        Ok(reply.map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect()).unwrap_or_default())
    }

    /// Takes over entries other writers read and left unacknowledged for longer than
    /// `claim_min_idle`, and stores them.
    async fn claim_abandoned(&self, connection: &mut MultiplexedConnection) -> Result<(), Interrupted> {
        let mut cursor = "0-0".to_owned();
        loop {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.settings.stream)
                .arg(&self.settings.group)
                .arg(&self.settings.consumer)
                .arg(self.settings.claim_min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(ENTRIES_PER_READ)
                .query_async(connection)
                .await?;
            if !reply.claimed.is_empty() {
                self.counters.claimed_entries.fetch_add(reply.claimed.len() as u64, Ordering::Relaxed);
                tracing::info!(entries = reply.claimed.len(), consumer = %self.settings.consumer, "Claimed entries a stopped writer left unacknowledged.");
            }
            for entry in &reply.claimed {
                self.store_and_ack(connection, entry).await?;
            }
            if reply.next_stream_id == "0-0" || self.stopping() {
                return Ok(());
            }
            cursor = reply.next_stream_id;
        }
    }

    async fn store_and_ack(
        &self,
        connection: &mut MultiplexedConnection,
        entry: &StreamId,
    ) -> Result<(), Interrupted> {
        match decode_entry(&entry.map) {
            Ok(Entry::Block(block)) => self.store(&block).await?,
            Ok(Entry::Deleted) => {}
            Err(error) => self.dead_letter(connection, entry, &error).await?,
        }
        // Acknowledge and delete together: an entry acknowledged but left in the stream
        // would count against the cap for ever.
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.settings.stream)
            .arg(&self.settings.group)
            .arg(&entry.id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.settings.stream)
            .arg(&entry.id)
            .ignore()
            .query_async::<()>(connection)
            .await?;
        Ok(())
    }

    /// Commits the block, retrying with back-off until the store takes it. On a stop
    /// request the entry is left pending (unacknowledged) for another writer.
    async fn store(&self, block: &EncodedBlock) -> Result<(), Interrupted> {
        let mut delay = RETRY_FIRST;
        loop {
            match self.store.insert_block(block).await {
                Ok(inserted) => {
                    let summary = &block.summary;
                    let messages = u64::from(summary.message_count);
                    let c = &self.counters;
                    c.consumed_blocks.fetch_add(1, Ordering::Relaxed);
                    c.consumed_messages.fetch_add(messages, Ordering::Relaxed);
                    if inserted {
                        self.store_counters.count_committed(block);
                    } else {
                        c.duplicate_blocks.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(error) => {
                    self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                    self.store_counters.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, block_id = %block.summary.block_id, retry_in_ms = delay.as_millis() as u64, "Stream writer could not store a block; retrying.");
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|stopping| *stopping) => return Err(Interrupted::Stopping),
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Keeps an entry that cannot be decoded (written by a newer build, or damaged) in the
    /// dead-letter stream with the reason, so that it is neither lost silently nor
    /// retried for ever.
    async fn dead_letter(
        &self,
        connection: &mut MultiplexedConnection,
        entry: &StreamId,
        error: &crate::Error,
    ) -> Result<()> {
        let mut add = redis::cmd("XADD");
        add.arg(self.settings.dead_letter_stream())
            .arg("*")
            .arg("source_id")
            .arg(&entry.id)
            .arg("error")
            .arg(error.to_string());
        for (name, value) in &entry.map {
            if let Value::BulkString(bytes) = value {
                add.arg(format!("entry.{name}")).arg(bytes.as_slice());
            }
        }
        add.query_async::<String>(connection).await?;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %error, entry = %entry.id, dead_letter_stream = %self.settings.dead_letter_stream(), "A hand-off entry could not be decoded; moved to the dead-letter stream.");
        Ok(())
    }
}
