//! The batch writer: takes closed batches off every listener's hand-off ring and commits
//! them to the store. A failed write is retried (and counted), never dropped; while it
//! retries, the rings fill and the listeners apply their full-ring policy (UDP counts,
//! TCP stops reading).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use killkrill_dataplane::handoff::BatchConsumer;

use crate::store::Store;
use crate::telemetry::metrics::StoreCounters;

const IDLE_POLL: Duration = Duration::from_millis(2);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs until every ring's producer is gone (its listener stopped) and the ring is
/// empty: it never abandons an accepted batch on its own.
pub async fn run_batch_writer(
    mut consumers: Vec<BatchConsumer>,
    store: Arc<dyn Store>,
    counters: Arc<StoreCounters>,
) {
    loop {
        let mut wrote_any = false;
        for consumer in &mut consumers {
            while let Some(batch) = consumer.pop() {
                wrote_any = true;
                let mut delay = RETRY_FIRST;
                loop {
                    match store.insert_logs(&batch).await {
                        Ok(stored) => {
                            counters.stored_messages.fetch_add(stored, Ordering::Relaxed);
                            counters.stored_batches.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(error) => {
                            counters.write_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %error, messages = batch.len(), retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying.");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(RETRY_MAX);
                        }
                    }
                }
                consumer.give_back(batch);
            }
        }
        if consumers.iter().all(BatchConsumer::is_finished) {
            return;
        }
        if !wrote_any {
            tokio::time::sleep(IDLE_POLL).await;
        }
    }
}
