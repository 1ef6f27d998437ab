//! Recently verified API keys, so that a client sending thousands of requests a second
//! with one key costs a hash and a map look-up per request instead of a store round trip
//! (docs/adr/0035). Only keys the store confirmed are kept, each for `ttl` at most;
//! deleting a key through this control plane drops it at once. Another control plane on
//! the same PostgreSQL store learns of a deletion within `ttl` (the setting's price,
//! documented in docs/configuration.md).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::ApiKeyRecord;

/// Distinct keys kept at most; past it the cache starts again empty (a handful of keys
/// is the normal case, so this only bounds memory against churn).
const MAX_ENTRIES: usize = 4_096;

pub struct ApiKeyCache {
    ttl: Duration,
    /// By the key's SHA-256 (hex), the record and when the store confirmed it.
    entries: RwLock<HashMap<String, (ApiKeyRecord, Instant)>>,
    /// Counts removals: a look-up that started before a key was deleted must not put
    /// the key back afterwards.
    generation: AtomicU64,
}

impl ApiKeyCache {
    /// `ttl` zero: nothing is kept, every request asks the store.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()), generation: AtomicU64::new(0) }
    }

    /// The record of the key with this hash, when the store confirmed it less than `ttl` ago.
    pub fn get(&self, key_hash: &str) -> Option<ApiKeyRecord> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (record, confirmed) = entries.get(key_hash)?;
        (confirmed.elapsed() < self.ttl).then(|| record.clone())
    }

    /// Read before asking the store; hand it to [`Self::insert`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps what the store confirmed, unless a key was removed since `generation` was
    /// read (the answer may predate the deletion).
    pub fn insert(&self, key_hash: &str, record: ApiKeyRecord, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key_hash) {
            entries.retain(|_, (_, confirmed)| confirmed.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key_hash.to_owned(), (record, Instant::now()));
    }

    /// Notes a new `last_used_ns` on a kept key without extending its life.
    pub fn touched(&self, key_hash: &str, now_ns: i64) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((record, _)) = entries.get_mut(key_hash) {
            record.last_used_ns = Some(now_ns);
        }
    }

    /// Forgets the key with this id (it was deleted).
    pub fn remove_id(&self, id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (record, _)| record.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Role;

    fn record(id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.to_owned(),
            name: "ci".to_owned(),
            role: Role::Viewer,
            prefix: "kk_abc".to_owned(),
            created_ns: 1,
            last_used_ns: None,
        }
    }

    #[test]
    fn keys_are_kept_until_removed_or_expired() {
        let cache = ApiKeyCache::new(Duration::from_secs(60));
        cache.insert("hash-a", record("a"), cache.generation());
        cache.insert("hash-b", record("b"), cache.generation());
        assert_eq!(cache.get("hash-a").map(|r| r.id), Some("a".to_owned()));
        cache.remove_id("a");
        assert_eq!(cache.get("hash-a"), None);
        assert!(cache.get("hash-b").is_some());

        let expired = ApiKeyCache::new(Duration::from_millis(1));
        expired.insert("hash-a", record("a"), expired.generation());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(expired.get("hash-a"), None);
    }

    #[test]
    fn a_lookup_from_before_a_deletion_is_not_kept() {
        let cache = ApiKeyCache::new(Duration::from_secs(60));
        let before = cache.generation();
        cache.remove_id("a");
        cache.insert("hash-a", record("a"), before);
        assert_eq!(cache.get("hash-a"), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = ApiKeyCache::new(Duration::ZERO);
        cache.insert("hash-a", record("a"), cache.generation());
        assert_eq!(cache.get("hash-a"), None);
    }

    #[test]
    fn touching_updates_last_used() {
        let cache = ApiKeyCache::new(Duration::from_secs(60));
        cache.insert("hash-a", record("a"), cache.generation());
        cache.touched("hash-a", 42);
        assert_eq!(cache.get("hash-a").and_then(|r| r.last_used_ns), Some(42));
    }
}
