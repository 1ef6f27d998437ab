//! The hand-off from a listener thread to the control plane: a bounded lock-free
//! single-producer single-consumer ring of closed batches per listener.
//!
//! A full ring is never a silent drop: UDP listeners count the messages they could not
//! hand off, TCP listeners stop reading (backpressure) until the ring has room.

use crate::batch::LogBatch;

/// Producer side, owned by a listener thread.
pub struct BatchProducer {
    inner: rtrb::Producer<LogBatch>,
}

/// Consumer side, owned by the control plane's batch writer.
pub struct BatchConsumer {
    inner: rtrb::Consumer<LogBatch>,
}

/// Creates a ring holding up to `capacity` batches.
pub fn batch_ring(capacity: usize) -> (BatchProducer, BatchConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
    (BatchProducer { inner: producer }, BatchConsumer { inner: consumer })
}

impl BatchProducer {
    /// Hands `batch` off, or gives it back when the ring is full.
    pub fn push(&mut self, batch: LogBatch) -> Result<(), LogBatch> {
        self.inner.push(batch).map_err(|rtrb::PushError::Full(batch)| batch)
    }

    /// True when the ring has no room for another batch.
    pub fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    /// True when the consumer is gone (the control plane stopped).
    pub fn is_abandoned(&self) -> bool {
        self.inner.is_abandoned()
    }
}

impl BatchConsumer {
    /// The next batch, if one is waiting.
    pub fn pop(&mut self) -> Option<LogBatch> {
        self.inner.pop().ok()
    }

    /// True when the producer is gone and nothing is left to pop.
    pub fn is_finished(&self) -> bool {
        self.inner.is_abandoned() && self.inner.is_empty()
    }
}
