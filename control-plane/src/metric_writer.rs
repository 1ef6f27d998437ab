//! The metric writer: takes the points each metrics listener flushed off its ring and
//! stores them, one transaction per flushed batch. A failed write is retried with
//! back-off (and counted), never dropped; while it retries the rings fill and the
//! listeners count the points they cannot hand off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use killkrill_dataplane::metrics::{MetricBatch, MetricConsumer};

use crate::store::Store;

const IDLE_POLL: Duration = Duration::from_millis(20);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the metric writer stored and how often the store refused.
#[derive(Debug, Default)]
pub struct MetricWriterCounters {
    pub stored_points: AtomicU64,
    pub stored_batches: AtomicU64,
    /// Failed writes; the batch is retried, not dropped.
    pub write_errors: AtomicU64,
}

/// Runs until every listener is gone, its ring is empty and no more rings can come
/// through `feed` (the rings of metrics listeners started while it runs).
pub async fn run_metric_writer(
    mut consumers: Vec<MetricConsumer>,
    mut feed: Option<std::sync::mpsc::Receiver<MetricConsumer>>,
    store: Arc<dyn Store>,
    counters: Arc<MetricWriterCounters>,
) {
    loop {
        if let Some(receiver) = &feed {
            loop {
                match receiver.try_recv() {
                    Ok(consumer) => consumers.push(consumer),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        feed = None;
                        break;
                    }
                }
            }
        }
        let mut idle = true;
        for consumer in &mut consumers {
            while let Some(batch) = consumer.pop() {
                idle = false;
                commit(&*store, &counters, &batch).await;
            }
        }
        if idle {
            consumers.retain(|consumer| !consumer.is_finished());
            if consumers.is_empty() && feed.is_none() {
                return;
            }
            tokio::time::sleep(IDLE_POLL).await;
        }
    }
}

async fn commit(store: &dyn Store, counters: &MetricWriterCounters, batch: &MetricBatch) {
    let mut delay = RETRY_FIRST;
    loop {
        match store.insert_metric_points(batch.listener.label(), &batch.points).await {
            Ok(stored) => {
                counters.stored_points.fetch_add(stored, Ordering::Relaxed);
                counters.stored_batches.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    error = %error,
                    points = batch.points.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "Metric write failed; retrying."
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}
