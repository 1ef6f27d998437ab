//! Publishing blocks to the stream, bounded by a cap that never costs a stored-or-not
//! block: the length check and the `XADD` run as one script, atomically, so any number of
//! publishers together never push the stream past its cap, and nothing is trimmed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{RETRY_FIRST, RETRY_MAX, RedisLink, block_fields};
use crate::Result;
use crate::store::EncodedBlock;
use crate::telemetry::metrics::HandoffCounters;

/// A block is about a megabyte: give its write a generous bound.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds the entry unless the stream already holds `ARGV[1]` entries (then returns nil).
const BOUNDED_XADD: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
";

pub struct StreamPublisher {
    link: RedisLink,
    stream: String,
    max_len: u64,
    counters: Arc<HandoffCounters>,
    script: redis::Script,
}

/// How one publish attempt ended.
enum Attempt {
    Added(String),
    StreamFull,
}

impl StreamPublisher {
    pub fn new(link: RedisLink, stream: String, max_len: u64, counters: Arc<HandoffCounters>) -> Self {
        Self { link, stream, max_len, counters, script: redis::Script::new(BOUNDED_XADD) }
    }

    pub fn counters(&self) -> &HandoffCounters {
        &self.counters
    }

    /// Publishes the block, retrying with back-off (Redis down, or the stream at its cap)
    /// until Redis confirms the entry; returns its id. An attempt whose answer was lost
    /// may have added the entry anyway: the retry then adds it twice, and the writers
    /// store it once (same block id).
    pub async fn publish(&self, block: &EncodedBlock) -> String {
        let mut delay = RETRY_FIRST;
        let mut full_since_logged = false;
        loop {
            match self.try_publish(block).await {
                Ok(Attempt::Added(id)) => {
                    let c = &self.counters;
                    c.published_blocks.fetch_add(1, Ordering::Relaxed);
                    c.published_messages.fetch_add(u64::from(block.summary.message_count), Ordering::Relaxed);
                    return id;
                }
                Ok(Attempt::StreamFull) => {
                    self.counters.stream_full.fetch_add(1, Ordering::Relaxed);
                    if !full_since_logged {
                        tracing::warn!(stream = %self.stream, max_len = self.max_len, "Stream is at its cap: waiting for the writers before publishing more.");
                        full_since_logged = true;
                    }
                }
                Err(error) => {
                    self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, messages = block.summary.message_count, retry_in_ms = delay.as_millis() as u64, "Publishing a block to Redis failed; retrying.");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    async fn try_publish(&self, block: &EncodedBlock) -> Result<Attempt> {
        let mut connection = self.link.connection().await?;
        let mut invocation = self.script.key(&self.stream);
        invocation.arg(self.max_len);
        for (name, value) in block_fields(block) {
            invocation.arg(name).arg(value.as_ref());
        }
        let added: redis::RedisResult<Option<String>> = invocation.invoke_async(&mut connection).await;
        match added {
            Ok(Some(id)) => Ok(Attempt::Added(id)),
            Ok(None) => Ok(Attempt::StreamFull),
            Err(error) => {
                self.link.after_error(&error).await;
                Err(error.into())
            }
        }
    }
}
