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
