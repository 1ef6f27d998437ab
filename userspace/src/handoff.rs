//! The hand-off from a listener thread to the control plane: a bounded lock-free
//! single-producer single-consumer ring of closed batches per listener.
//!
//! A full ring is never a silent drop: UDP listeners count the messages they could not
//! hand off, TCP listeners stop reading (backpressure) until the ring has room.
//!
//! A second ring runs the other way: the writer gives stored batches back, emptied, so a
//! listener reuses their arenas instead of allocating (and page-faulting) fresh ones for
//! every batch.

use crate::batch::LogBatch;

/// Producer side, owned by a listener thread.
pub struct BatchProducer {
    inner: rtrb::Producer<LogBatch>,
    returned: rtrb::Consumer<LogBatch>,
}

/// Consumer side, owned by the control plane's batch writer.
pub struct BatchConsumer {
    inner: rtrb::Consumer<LogBatch>,
    returning: rtrb::Producer<LogBatch>,
}

/// Creates a ring holding up to `capacity` batches (and its return ring).
pub fn batch_ring(capacity: usize) -> (BatchProducer, BatchConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity.max(1));
    // A few spare batches are enough: the listener needs one at a time.
    let (returning, returned) = rtrb::RingBuffer::new(4);
    (BatchProducer { inner: producer, returned }, BatchConsumer { inner: consumer, returning })
}

impl BatchProducer {
    /// Hands `batch` off, or gives it back when the ring is full.
    pub fn push(&mut self, batch: LogBatch) -> Result<(), LogBatch> {
        self.inner.push(batch).map_err(|rtrb::PushError::Full(batch)| batch)
    }

    /// An emptied batch the writer gave back, if one is waiting.
    pub fn reuse(&mut self) -> Option<LogBatch> {
        self.returned.pop().ok()
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

    /// Messages in the next batch, if one is waiting (lets the writer size its blocks).
    pub fn peek_len(&self) -> Option<usize> {
        self.inner.peek().ok().map(LogBatch::len)
    }

    /// Gives a stored batch back to its listener for reuse; dropped if none is needed.
    pub fn give_back(&mut self, mut batch: LogBatch) {
        batch.clear();
        let _ = self.returning.push(batch);
    }

    /// True when the producer is gone and nothing is left to pop.
    pub fn is_finished(&self) -> bool {
        self.inner.is_abandoned() && self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use killkrill_parsers::syslog::ParseOptions;

    use super::*;
    use crate::batch::BatchLimits;
    use crate::listener::ListenerKind;

    #[test]
    fn stored_batches_come_back_empty_for_reuse() {
        let (mut producer, mut consumer) = batch_ring(2);
        let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
        batch.push_syslog(b"<13>one", None, "192.0.2.1:514".parse().unwrap(), &ParseOptions::default());
        assert!(producer.reuse().is_none(), "nothing given back yet");
        producer.push(batch).unwrap();
        let stored = consumer.pop().unwrap();
        assert_eq!(stored.len(), 1);
        consumer.give_back(stored);
        let reused = producer.reuse().expect("the batch comes back");
        assert!(reused.is_empty() && reused.arena_len() == 0, "it comes back empty");
        assert_eq!(reused.listener(), ListenerKind::SyslogUdp);
    }
}
