//! Identical searches that arrive together share one read of their first round of index
//! rows (docs/adr/0038). Under load, most of a repeated search's cost is that read (the
//! answer itself comes from `answer_cache`), and dozens of clients polling the same page
//! ask it at once.
//!
//! The first search to arrive leads: it opens a batch, waits until the read of the
//! previous batch of the same search (if any) is done, then for a connection; searches
//! arriving meanwhile join the batch. So one read per search is in flight at a time, and
//! under load each read serves everyone who arrived during the one before. The leader
//! closes the batch before its statement is sent, so every search served by a read arrived
//! before that read began: it sees every block committed before it arrived, exactly as its
//! own read would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::query::LogQuery;

/// What a batch's read gives every search in it.
type Shared<T> = Option<Arc<T>>;

pub struct SharedReads<T> {
    batches: Arc<Mutex<HashMap<LogQuery, Batches<T>>>>,
}

/// The batches of one search: the one taking joiners, and the one whose read is running.
struct Batches<T> {
    open: Option<watch::Receiver<Shared<T>>>,
    reading: Option<watch::Receiver<Shared<T>>>,
}

impl<T> Default for SharedReads<T> {
    fn default() -> Self {
        Self { batches: Arc::default() }
    }
}

/// A search's part in a batch.
pub enum Turn<T> {
    /// Wait for `Leader::turn`, read, calling `close` once a connection is held and before
    /// the statement is sent, then `publish` the rows.
    Lead(Box<Leader<T>>),
    /// Wait for the leader's rows with `Follower::rows`.
    Follow(Follower<T>),
}

impl<T> SharedReads<T> {
    /// Joins the open batch of an identical search, or opens one.
    pub fn join(&self, query: &LogQuery) -> Turn<T> {
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = batches.entry(query.clone()).or_insert(Batches { open: None, reading: None });
        if let Some(receiver) = &entry.open {
            return Turn::Follow(Follower { receiver: receiver.clone() });
        }
        let (sender, receiver) = watch::channel(None);
        entry.open = Some(receiver.clone());
        Turn::Lead(Box::new(Leader {
            batches: self.batches.clone(),
            query: query.clone(),
            previous: entry.reading.clone(),
            own: receiver,
            closed: false,
            sender,
        }))
    }

    /// Searches with a batch open or reading now (for tests).
    #[cfg(test)]
    fn searches(&self) -> usize {
        self.batches.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

pub struct Leader<T> {
    batches: Arc<Mutex<HashMap<LogQuery, Batches<T>>>>,
    query: LogQuery,
    /// The read of the batch before, running when this one opened.
    previous: Option<watch::Receiver<Shared<T>>>,
    own: watch::Receiver<Shared<T>>,
    closed: bool,
    sender: watch::Sender<Shared<T>>,
}

impl<T> Leader<T> {
    /// Waits until the previous batch's read is done (or given up), still taking joiners.
    pub async fn turn(&mut self) {
        if let Some(mut previous) = self.previous.take() {
            // An error means its leader gave up: the turn is ours as well.
            let _ = previous.wait_for(Option::is_some).await;
        }
    }

    /// No one joins after this: call it before the read's statement is sent.
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = batches.get_mut(&self.query) {
            entry.open = None;
            entry.reading = Some(self.own.clone());
        }
    }

    /// Hands the rows to every search of the batch.
    pub fn publish(&mut self, rows: Arc<T>) {
        self.close();
        self.sender.send_replace(Some(rows));
        self.forget();
    }

    /// Takes this batch out of the map once its read is over, and the search's entry
    /// once no batch of it is left.
    fn forget(&mut self) {
        let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = batches.get_mut(&self.query) else { return };
        let ours = |batch: &Option<watch::Receiver<Shared<T>>>| {
            batch.as_ref().is_some_and(|batch| batch.same_channel(&self.own))
        };
        if ours(&entry.open) {
            entry.open = None;
        }
        if ours(&entry.reading) {
            entry.reading = None;
        }
        if entry.open.is_none() && entry.reading.is_none() {
            batches.remove(&self.query);
        }
    }
}

impl<T> Drop for Leader<T> {
    /// A leader that failed or was cancelled (its client went away) takes its batch away;
    /// its followers, seeing the sender gone, read for themselves, and the next batch's
    /// leader goes ahead.
    fn drop(&mut self) {
        self.forget();
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

    fn lead<T>(turn: Turn<T>) -> Box<Leader<T>> {
        match turn {
            Turn::Lead(leader) => leader,
            Turn::Follow(_) => panic!("expected to lead"),
        }
    }

    fn follow<T>(turn: Turn<T>) -> Follower<T> {
        match turn {
            Turn::Follow(follower) => follower,
            Turn::Lead(_) => panic!("expected to follow"),
        }
    }

    #[tokio::test]
    async fn followers_get_the_leaders_rows_and_a_closed_batch_takes_no_one() {
        let reads = SharedReads::<Vec<i64>>::default();
        let query = LogQuery::default();
        let mut first = lead(reads.join(&query));
        first.turn().await;
        let early = follow(reads.join(&query));
        first.close();
        // The first batch is reading: a new arrival opens the next batch, whose leader
        // waits for that read, and later arrivals join it.
        let mut second = lead(reads.join(&query));
        let late = follow(reads.join(&query));
        first.publish(Arc::new(vec![1, 2, 3]));
        assert_eq!(early.rows().await.as_deref(), Some(&vec![1, 2, 3]));
        second.turn().await;
        second.close();
        second.publish(Arc::new(vec![1, 2, 3, 4]));
        assert_eq!(late.rows().await.as_deref(), Some(&vec![1, 2, 3, 4]), "a read begun after it arrived");
        drop((first, second));
        assert_eq!(reads.searches(), 0, "nothing is left once the reads are done");
    }

    #[tokio::test]
    async fn a_leader_that_gives_up_lets_its_followers_and_the_next_leader_go_on() {
        let reads = SharedReads::<Vec<i64>>::default();
        let query = LogQuery::default();
        let mut first = lead(reads.join(&query));
        let follower = follow(reads.join(&query));
        first.close();
        let mut second = lead(reads.join(&query));
        drop(first);
        assert!(follower.rows().await.is_none(), "the follower reads for itself");
        second.turn().await;
        drop(second);
        assert_eq!(reads.searches(), 0);
        let other = LogQuery { limit: 7, ..LogQuery::default() };
        assert!(matches!(reads.join(&other), Turn::Lead(_)), "another search, another batch");
    }
}
