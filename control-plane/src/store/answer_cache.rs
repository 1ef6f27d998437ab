//! Answers of recent searches, for clients that ask the same thing many times a second (a
//! dashboard, a `limit=10` poll of the newest messages; docs/adr/0038).
//!
//! An answer is a function of the search and of the blocks it read, and blocks never
//! change once committed (a sequence number is never reused). A search whose answer was
//! settled by the blocks of its first round of index rows is kept with the sequence
//! numbers of that round; a later identical search reads which blocks its first round
//! names again (the one index query it cannot skip, reduced to one text value) and gets
//! the kept answer only when the same blocks come back. The order of a round follows from
//! its blocks' unchanging index rows, so the sets are compared (sorted). A new block that sorts among them, a block removed by retention or replaced by
//! compaction, changes that list and the search runs afresh: no answer is ever stale,
//! whichever process changed the store. Searches with relative times resolve them first,
//! so their key changes with the clock and they are simply never found again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::SharedPage;
use super::query::LogQuery;

/// Estimated bytes kept at most (each answer once as rows and once as JSON).
const BUDGET_BYTES: usize = 16 << 20;
/// An answer larger than this is not kept: it would push out many small ones.
const LARGEST_ANSWER_BYTES: usize = BUDGET_BYTES / 8;
/// Per row beyond its text fields (the fixed fields, as rows and as JSON).
const ROW_OVERHEAD_BYTES: usize = 512;

#[derive(Default)]
pub struct AnswerCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    answers: HashMap<LogQuery, Entry>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    /// The sequence numbers of the first round's index rows, sorted.
    first_round: Vec<i64>,
    page: Arc<SharedPage>,
    size: usize,
    used: u64,
}

impl AnswerCache {
    /// The kept answer to `query`, if it was settled by exactly the blocks `first_round`
    /// names (the sorted sequence numbers of the search's first round, read now).
    pub fn get(&self, query: &LogQuery, first_round: &[i64]) -> Option<Arc<SharedPage>> {
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        let entry = entries.answers.get_mut(query)?;
        if entry.first_round != first_round {
            return None;
        }
        entry.used = now;
        Some(entry.page.clone())
    }

    /// Whether an answer to `query` is kept, whatever blocks settled it: when none is, the
    /// search has nothing to check and skips the read of its first round's block list.
    pub fn holds(&self, query: &LogQuery) -> bool {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).answers.contains_key(query)
    }

    /// Keeps the answer to `query`, settled by the blocks `first_round` names (sorted), dropping
    /// the least recently used answers past the budget.
    pub fn insert(&self, query: &LogQuery, first_round: Vec<i64>, page: Arc<SharedPage>) {
        let size = estimated_bytes(&page);
        if size > LARGEST_ANSWER_BYTES {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let used = entries.clock;
        let entry = Entry { first_round, page, size, used };
        if let Some(old) = entries.answers.insert(query.clone(), entry) {
            entries.bytes -= old.size;
        }
        entries.bytes += size;
        while entries.bytes > BUDGET_BYTES {
            let Some(oldest) =
                entries.answers.iter().min_by_key(|(_, entry)| entry.used).map(|(query, _)| query.clone())
            else {
                break;
            };
            if let Some(old) = entries.answers.remove(&oldest) {
                entries.bytes -= old.size;
            }
        }
    }

    /// Answers kept now (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).answers.len()
    }
}

fn estimated_bytes(page: &SharedPage) -> usize {
    let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
    let rows: usize = page
        .page
        .logs
        .iter()
        .map(|log| {
            ROW_OVERHEAD_BYTES
                + log.message.len()
                + text(&log.structured_data)
                + text(&log.raw_b64)
                + text(&log.parse_error)
        })
        .sum();
    // Once as rows, once as the JSON the API sends.
    2 * rows + 256
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LogPage, StoredLog};

    fn page(message: &str, rows: usize) -> Arc<SharedPage> {
        let log = StoredLog {
            id: 1,
            received_at: String::new(),
            source: String::new(),
            listener: String::new(),
            format: String::new(),
            facility: None,
            severity: None,
            version: None,
            timestamp: None,
            hostname: None,
            app_name: None,
            procid: None,
            msgid: None,
            structured_data: None,
            message: message.to_owned(),
            raw_b64: None,
            parse_error: None,
            frame_flag: None,
        };
        Arc::new(SharedPage::new(LogPage { logs: vec![log; rows], next_cursor: None }))
    }

    #[test]
    fn an_answer_is_found_only_with_the_same_first_round() {
        let cache = AnswerCache::default();
        let query = LogQuery { limit: 10, ..LogQuery::default() };
        cache.insert(&query, vec![7, 8, 9], page("a", 1));
        assert!(cache.get(&query, &[7, 8, 9]).is_some());
        assert!(cache.get(&query, &[7, 8, 9, 10]).is_none(), "a new block");
        assert!(cache.get(&query, &[8, 9]).is_none(), "a block removed");
        assert!(cache.get(&LogQuery { limit: 11, ..query.clone() }, &[7, 8, 9]).is_none());
    }

    #[test]
    fn the_budget_drops_the_least_recently_used_and_skips_huge_answers() {
        let cache = AnswerCache::default();
        let big = "x".repeat(LARGEST_ANSWER_BYTES / 4);
        let queries: Vec<LogQuery> =
            (1..=40).map(|limit| LogQuery { limit, ..LogQuery::default() }).collect();
        cache.insert(&queries[0], vec![1], page(&big, 1));
        for query in &queries[1..] {
            // The first stays in use; the others push each other out.
            assert!(cache.get(&queries[0], &[1]).is_some());
            cache.insert(query, vec![1], page(&big, 1));
        }
        assert!(cache.get(&queries[0], &[1]).is_some());
        assert!(cache.get(&queries[1], &[1]).is_none());
        assert!(cache.len() < queries.len());
        let huge = LogQuery { limit: 1000, ..LogQuery::default() };
        cache.insert(&huge, vec![1], page(&big, 8));
        assert!(cache.get(&huge, &[1]).is_none());
    }
}
