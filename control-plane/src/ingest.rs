//! The batch writer: takes closed batches off every listener's hand-off ring, packs what
//! is waiting into compressed blocks, and commits them. Several blocks are encoded and
//! committed at once (one per encoder), so compression uses every core the control plane
//! has. A failed write is retried (and counted), never dropped; while it retries, the
//! rings fill and the listeners apply their full-ring policy (UDP counts, TCP stops
//! reading). Batches go back to their listener only once their block is committed, and
//! only then is the journal segment of a TCP or TLS batch deleted (`journal_replay`).
//! With the Redis hand-off, "committed" reads "published to the stream" (`handoff`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use killkrill_dataplane::batch::LogBatch;
use killkrill_dataplane::handoff::BatchConsumer;
use tokio::sync::mpsc;

use crate::handoff::StreamPublisher;
use crate::spool::Spool;
use crate::store::block::MAX_ROWS;
use crate::store::{BlockEncoder, EncodedBlock, Store};
use crate::telemetry::metrics::StoreCounters;
use crate::{Error, Result};

const IDLE_POLL: Duration = Duration::from_millis(2);
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How blocks are cut and compressed.
#[derive(Clone, Copy, Debug)]
pub struct BlockSettings {
    /// A block takes the batches waiting, up to this many messages.
    pub max_messages: usize,
    pub compression_level: i32,
    /// Blocks encoded at the same time (up to twice as many may be committing).
    pub encoders: usize,
}

/// Where encoded blocks go.
#[derive(Clone)]
pub enum BlockSink {
    /// Committed to this process's store.
    Store(Arc<dyn Store>),
    /// Published to the Redis Stream, for the stream writers to store.
    Stream(Arc<StreamPublisher>),
}

impl BlockSink {
    /// Delivers the block, retrying until the store (or the spool) or Redis confirms it.
    /// The spool serves the direct path; with Redis, the stream is the buffer.
    pub(crate) async fn deliver(
        &self,
        counters: &StoreCounters,
        block: &EncodedBlock,
        spool: Option<&Spool>,
    ) {
        match self {
            BlockSink::Store(store) => commit(&**store, counters, block, spool).await,
            BlockSink::Stream(publisher) => {
                publisher.publish(block).await;
            }
        }
    }

    /// The counter of batches whose block was delivered.
    fn batches_counter<'a>(&'a self, counters: &'a StoreCounters) -> &'a AtomicU64 {
        match self {
            BlockSink::Store(_) => &counters.stored_batches,
            BlockSink::Stream(publisher) => &publisher.counters().published_batches,
        }
    }
}

/// Batches taken off the rings for one block, with the ring each came from.
type Taken = Vec<(usize, LogBatch)>;

/// Runs until every ring's producer is gone (its listener stopped), the rings are empty,
/// every block is committed and no more rings can come through `feed` (the rings of
/// listeners started while it runs): it never abandons an accepted batch on its own.
pub async fn run_batch_writer(
    mut consumers: Vec<BatchConsumer>,
    feed: Option<std::sync::mpsc::Receiver<BatchConsumer>>,
    sink: BlockSink,
    counters: Arc<StoreCounters>,
    settings: BlockSettings,
    spool: Option<Arc<Spool>>,
) -> Result<()> {
    let max_messages = settings.max_messages.clamp(1, MAX_ROWS);
    let mut encoders = Vec::new();
    for _ in 0..settings.encoders.max(1) {
        encoders
            .push(BlockEncoder::new(settings.compression_level).map_err(|e| Error::Internal(e.to_string()))?);
    }
    let encoder_count = encoders.len();
    // An encoder comes back as soon as its block is encoded, so it can start the next
    // block while the previous one commits: on a machine with as many encoders as cores,
    // no core idles while a commit waits on the store. The batches come back once their
    // block is committed; at most two blocks per encoder are on their way at once.
    let max_jobs = 2 * encoder_count;
    let (encoder_sender, mut encoders_back) = mpsc::unbounded_channel::<BlockEncoder>();
    let (done_sender, mut done) = mpsc::unbounded_channel::<Taken>();
    let mut in_flight = 0usize;
    let mut next_ring = 0;
    let mut feed = feed;
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
        while let Ok(taken) = done.try_recv() {
            finish_job(&mut consumers, sink.batches_counter(&counters), taken);
            in_flight -= 1;
        }
        while let Ok(encoder) = encoders_back.try_recv() {
            encoders.push(encoder);
        }
        if in_flight >= max_jobs || encoders.is_empty() {
            // Every encoder is busy, or enough blocks wait on the store: wait for either.
            tokio::select! {
                Some(taken) = done.recv() => {
                    finish_job(&mut consumers, sink.batches_counter(&counters), taken);
                    in_flight -= 1;
                }
                Some(encoder) = encoders_back.recv() => encoders.push(encoder),
            }
            continue;
        }
        let taken = take_waiting(&mut consumers, &mut next_ring, max_messages);
        if taken.is_empty() {
            if in_flight == 0 {
                // Jobs name rings by index: only with none in flight may finished rings
                // (of listeners stopped at run time) go, with the batches they hold.
                consumers.retain(|consumer| !consumer.is_finished());
                if consumers.is_empty() && feed.is_none() {
                    return Ok(());
                }
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        let Some(encoder) = encoders.pop() else {
            continue;
        };
        in_flight += 1;
        let (sink, counters, done_sender, encoder_sender, spool) =
            (sink.clone(), counters.clone(), done_sender.clone(), encoder_sender.clone(), spool.clone());
        let level = settings.compression_level;
        tokio::spawn(async move {
            let taken = match encode(encoder, taken, &counters).await {
                Some((encoder, taken, block)) => {
                    let _ = encoder_sender.send(encoder);
                    sink.deliver(&counters, &block, spool.as_deref()).await;
                    taken
                }
                // A bug in the encoder took the batches with it; keep the writer going.
                None => match BlockEncoder::new(level) {
                    Ok(encoder) => {
                        let _ = encoder_sender.send(encoder);
                        Vec::new()
                    }
                    Err(_) => return,
                },
            };
            let _ = done_sender.send(taken);
        });
    }
}

/// Takes waiting batches round-robin over the rings (so no listener starves) until the
/// next one would pass `max_messages`.
fn take_waiting(consumers: &mut [BatchConsumer], next_ring: &mut usize, max_messages: usize) -> Taken {
    let mut taken = Vec::new();
    let mut messages = 0;
    let mut empty_rings = 0;
    while messages < max_messages && empty_rings < consumers.len() {
        let ring = *next_ring % consumers.len();
        *next_ring += 1;
        match consumers[ring].peek_len() {
            Some(len) if messages == 0 || messages + len <= max_messages => match consumers[ring].pop() {
                Some(batch) => {
                    messages += batch.len();
                    taken.push((ring, batch));
                    empty_rings = 0;
                }
                None => empty_rings += 1,
            },
            Some(_) => break,
            None => empty_rings += 1,
        }
    }
    taken
}

fn finish_job(consumers: &mut [BatchConsumer], delivered_batches: &AtomicU64, taken: Taken) {
    delivered_batches.fetch_add(taken.len() as u64, Ordering::Relaxed);
    for (ring, mut batch) in taken {
        // Durable now: the stream journal may forget the bytes it came from.
        if let Some(ticket) = batch.take_journal_ticket() {
            ticket.ack();
        }
        consumers[ring].give_back(batch);
    }
}

/// Encodes on a blocking thread (compression is CPU work), retrying on the
/// practically-impossible compressor failure rather than dropping the batches. None only
/// if the encoder panicked.
async fn encode(
    mut encoder: BlockEncoder,
    mut taken: Taken,
    counters: &StoreCounters,
) -> Option<(BlockEncoder, Taken, EncodedBlock)> {
    let mut delay = RETRY_FIRST;
    loop {
        let job = tokio::task::spawn_blocking(move || {
            let block = encoder.encode(taken.iter().flat_map(|(_, batch)| batch.iter()));
            (encoder, taken, block)
        })
        .await;
        let (returned_encoder, returned_taken, block) = match job {
            Ok(result) => result,
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %error, "Block encoder failed; its batches are lost.");
                return None;
            }
        };
        match block {
            Ok(block) => return Some((returned_encoder, returned_taken, block)),
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %error, retry_in_ms = delay.as_millis() as u64, "Block encoding failed; retrying.");
                encoder = returned_encoder;
                taken = returned_taken;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Writes the block to the spool (blocking I/O, on this worker thread); false when the
/// spool is full or failed, in which case the caller waits for the store instead.
fn spool_block(spool: &Spool, block: &EncodedBlock) -> bool {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let written =
        if multi_thread { tokio::task::block_in_place(|| spool.put(block)) } else { spool.put(block) };
    match written {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(error = %error, "Cannot write to the spool; waiting for the store instead.");
            false
        }
    }
}

/// Stores the block, or spools it while the store is down (once a block is spooled, the
/// next ones go to the spool too until it drains, so an outage costs one failed attempt,
/// not one per block); without room in the spool, retries with back-off until the store
/// takes it.
async fn commit(store: &dyn Store, counters: &StoreCounters, block: &EncodedBlock, spool: Option<&Spool>) {
    if let Some(spool) = spool
        && spool.pending() > 0
        && spool_block(spool, block)
    {
        return;
    }
    let mut delay = RETRY_FIRST;
    loop {
        match store.insert_block(block).await {
            Ok(_) => {
                // A duplicate (false) means an earlier attempt committed after all.
                counters.count_committed(block);
                return;
            }
            Err(error) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(spool) = spool
                    && spool_block(spool, block)
                {
                    tracing::warn!(error = %error, messages = block.summary.message_count, "Store write failed; the block went to the spool.");
                    return;
                }
                tracing::warn!(error = %error, messages = block.summary.message_count, retry_in_ms = delay.as_millis() as u64, "Store write failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use killkrill_dataplane::batch::BatchLimits;
    use killkrill_dataplane::handoff::batch_ring;
    use killkrill_dataplane::listener::ListenerKind;
    use killkrill_dataplane::metrics::MetricPoint;
    use killkrill_parsers::syslog::ParseOptions;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::config::StoreConfig;
    use crate::store::{
        self, LogPage, LogQuery, MetricQuery, MetricSeries, MetricStore, Removed, Retention, SourcesSeen,
        StoreStats,
    };

    /// A SQLite store whose commits wait for a permit, counting the blocks that reached it.
    struct GatedStore {
        inner: Arc<dyn Store>,
        gate: Semaphore,
        arrived: AtomicUsize,
        waiting: AtomicUsize,
        most_waiting: AtomicUsize,
    }

    #[async_trait]
    impl MetricStore for GatedStore {
        async fn insert_metric_points(&self, listener: &str, points: &[MetricPoint]) -> Result<u64> {
            self.inner.insert_metric_points(listener, points).await
        }
        async fn query_metrics(&self, query: &MetricQuery) -> Result<Vec<MetricSeries>> {
            self.inner.query_metrics(query).await
        }
        async fn metric_names(&self) -> Result<Vec<String>> {
            self.inner.metric_names().await
        }
        async fn remove_metrics_before(&self, cutoff_ns: i64) -> Result<u64> {
            self.inner.remove_metrics_before(cutoff_ns).await
        }
    }

    #[async_trait]
    impl Store for GatedStore {
        async fn ping(&self) -> Result<()> {
            self.inner.ping().await
        }
        async fn insert_block(&self, block: &EncodedBlock) -> Result<bool> {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            let waiting = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_waiting.fetch_max(waiting, Ordering::SeqCst);
            let permit = self.gate.acquire().await.map_err(|e| Error::Internal(e.to_string()))?;
            permit.forget();
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.inner.insert_block(block).await
        }
        async fn query_logs(&self, query: &LogQuery) -> Result<LogPage> {
            self.inner.query_logs(query).await
        }
        async fn sources(&self, query: &LogQuery, max_blocks: u64) -> Result<SourcesSeen> {
            self.inner.sources(query, max_blocks).await
        }
        async fn stats(&self) -> Result<StoreStats> {
            self.inner.stats().await
        }
        async fn newest_block_seq(&self) -> Result<Option<i64>> {
            self.inner.newest_block_seq().await
        }
        async fn enforce_retention(&self, retention: &Retention, now_ns: i64) -> Result<Removed> {
            self.inner.enforce_retention(retention, now_ns).await
        }
        async fn close(&self) {
            self.inner.close().await
        }
    }

    fn batch_of(messages: usize, first: usize) -> LogBatch {
        let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
        for n in first..first + messages {
            let frame = format!("<13>1 2026-12-06T04:00:00Z host app - - - message {n}");
            let source = "192.0.2.1:514".parse().unwrap();
            batch.push_syslog(frame.as_bytes(), None, source, &ParseOptions::default());
        }
        batch
    }

    /// With the store holding every commit, one encoder still encodes a second block (it
    /// does not wait on the first commit), stops at two blocks waiting, and gives no batch
    /// back before its block is committed; once commits go through, everything is stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_encoder_does_not_wait_on_the_commit_and_batches_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let inner = store::open(&StoreConfig::default(), dir.path()).await.unwrap();
        let gated = Arc::new(GatedStore {
            inner,
            gate: Semaphore::new(0),
            arrived: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            most_waiting: AtomicUsize::new(0),
        });
        let (mut producer, consumer) = batch_ring(8);
        for block in 0..5 {
            assert!(producer.push(batch_of(10, block * 10)).is_ok());
        }
        drop(producer);
        let counters = Arc::new(StoreCounters::default());
        let settings = BlockSettings { max_messages: 10, compression_level: 1, encoders: 1 };
        let writer = tokio::spawn(run_batch_writer(
            vec![consumer],
            None,
            BlockSink::Store(gated.clone()),
            counters.clone(),
            settings,
            None,
        ));
        let second_block = async {
            while gated.arrived.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        // A bound on the wait so that a writer that waits on commits fails instead of hanging.
        let reached = tokio::time::timeout(Duration::from_secs(60), second_block).await;
        assert!(reached.is_ok(), "the encoder waited for its first block's commit");
        assert_eq!(counters.stored_batches.load(Ordering::SeqCst), 0, "no batch goes back before its commit");
        gated.gate.add_permits(5);
        writer.await.unwrap().unwrap();
        assert_eq!(counters.stored_messages.load(Ordering::SeqCst), 50);
        assert_eq!(counters.stored_batches.load(Ordering::SeqCst), 5);
        assert_eq!(gated.arrived.load(Ordering::SeqCst), 5);
        assert!(gated.most_waiting.load(Ordering::SeqCst) <= 2, "at most two blocks per encoder wait");
    }
}
