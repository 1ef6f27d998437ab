//! Identical searches that arrive together share one read of their first round of index
//! rows (docs/adr/0038). Under load, most of a repeated search's cost is that read (the
//! answer itself comes from `answer_cache`), and dozens of clients polling the same page
//! ask it at once.
//!
//! The first search to arrive leads: it opens a batch and waits for a connection; searches
//! arriving meanwhile join the batch. The leader closes the batch before its statement is
//! sent, so every search served by a read arrived before that read began: it sees every
//! block committed before it arrived, exactly as its own read would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::query::LogQuery;

/// What a batch's read gives every search in it.
type Shared<T> = Option<Arc<T>>;

pub struct SharedReads<T> {
    open: Arc<Mutex<HashMap<LogQuery, watch::Receiver<Shared<T>>>>>,
}

impl<T> Default for SharedReads<T> {
    fn default() -> Self {
        Self { open: Arc::default() }
    }
}

/// A search's part in a batch.
pub enum Turn<T> {
    /// Read, calling `close` once a connection is held and before the statement is sent,
    /// then `publish` the rows.
    Lead(Box<Leader<T>>),
    /// Wait for the leader's rows with `Follower::rows`.
    Follow(Follower<T>),
}

impl<T> SharedReads<T> {
    /// Joins the open batch of an identical search, or opens one.
    pub fn join(&self, query: &LogQuery) -> Turn<T> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receiver) = open.get(query) {
            return Turn::Follow(Follower { receiver: receiver.clone() });
        }
        let (sender, receiver) = watch::channel(None);
        open.insert(query.clone(), receiver);
        Turn::Lead(Box::new(Leader { open: self.open.clone(), query: Some(query.clone()), sender }))
    }

    /// Batches open now (for tests).
    #[cfg(test)]
    fn open_batches(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

pub struct Leader<T> {
    open: Arc<Mutex<HashMap<LogQuery, watch::Receiver<Shared<T>>>>>,
    /// Until the batch is closed.
    query: Option<LogQuery>,
    sender: watch::Sender<Shared<T>>,
}

impl<T> Leader<T> {
    /// No one joins after this: call it before the read's statement is sent.
    pub fn close(&mut self) {
        if let Some(query) = self.query.take() {
            self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&query);
        }
    }

    /// Hands the rows to every search of the batch.
    pub fn publish(&mut self, rows: Arc<T>) {
        self.close();
        self.sender.send_replace(Some(rows));
    }
}

impl<T> Drop for Leader<T> {
    /// A leader that failed or was cancelled (its client went away) closes its batch, and
    /// its followers, seeing the sender gone, read for themselves.
    fn drop(&mut self) {
        self.close();
    }
}

pub struct Follower<T> {
    receiver: watch::Receiver<Shared<T>>,
}

impl<T> Follower<T> {
    /// The leader's rows, or None when it gave up (the caller then reads for itself).
    pub async fn rows(mut self) -> Option<Arc<T>> {
        match self.receiver.wait_for(Option::is_some).await {
            Ok(rows) => rows.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_rows_and_a_closed_batch_takes_no_one() {
        let reads = SharedReads::<Vec<i64>>::default();
        let query = LogQuery::default();
        let Turn::Lead(mut leader) = reads.join(&query) else { panic!("the first leads") };
        let Turn::Follow(early) = reads.join(&query) else { panic!("the second follows") };
        leader.close();
        assert_eq!(reads.open_batches(), 0);
        let Turn::Lead(next) = reads.join(&query) else { panic!("after close, a new batch") };
        leader.publish(Arc::new(vec![3, 2, 1]));
        assert_eq!(early.rows().await.as_deref(), Some(&vec![3, 2, 1]));
        drop(next);
        assert_eq!(reads.open_batches(), 0, "a dropped leader closes its batch");
    }

    #[tokio::test]
    async fn followers_of_a_leader_that_gave_up_read_for_themselves() {
        let reads = SharedReads::<Vec<i64>>::default();
        let query = LogQuery::default();
        let Turn::Lead(leader) = reads.join(&query) else { panic!("the first leads") };
        let Turn::Follow(follower) = reads.join(&query) else { panic!("the second follows") };
        drop(leader);
        assert!(follower.rows().await.is_none());
        let other = LogQuery { limit: 7, ..LogQuery::default() };
        assert!(matches!(reads.join(&other), Turn::Lead(_)), "another search, another batch");
    }
}
