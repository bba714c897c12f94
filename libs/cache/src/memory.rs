//! The in-process cache of the embedded default.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, EntryAction, EntryResult};

use crate::{CacheBackend, CacheError, Put};

/// A bounded in-process cache (quick_cache). Each entry carries its own expiry, so the
/// cache needs no clock of its own: a read costs a hash lookup under a shard's read lock.
/// (moka's bookkeeping of each read, its frequency sketch and queues, was a sixth of a
/// BatchGetScores(100) call's handling.)
#[derive(Clone)]
pub struct MemoryBackend {
    entries: Arc<Cache<String, (Vec<u8>, Instant)>>,
}

impl MemoryBackend {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            entries: Arc::new(Cache::new(capacity)),
        }
    }

    /// Stores `entry` under `key` unless the key holds a live value.
    fn insert_if_absent(&self, key: &str, entry: (Vec<u8>, Instant), now: Instant) {
        // A zero timeout: when another fill of the same key is under way, it stores the
        // same database read, so this one is dropped.
        let guard = match self.entries.entry(key, Some(Duration::ZERO), |_, (_, at)| {
            if *at <= now {
                EntryAction::ReplaceWithGuard
            } else {
                EntryAction::Retain(())
            }
        }) {
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => guard,
            EntryResult::Retained(()) | EntryResult::Removed(..) | EntryResult::Timeout => {
                return;
            }
        };
        // Refused only when a write-through replaced the placeholder meanwhile: it holds
        // the newer score.
        let _ = guard.insert(entry);
    }
}

#[async_trait::async_trait]
impl CacheBackend for MemoryBackend {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|key| match self.entries.get(key.as_str()) {
                Some((value, expires)) if expires > now => Some(value),
                _ => None,
            })
            .collect())
    }

    async fn put_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
        put: Put,
    ) -> Result<(), CacheError> {
        let now = Instant::now();
        let expires = now + ttl;
        for (key, value) in entries {
            let entry = (value.clone(), expires);
            match put {
                Put::Always => self.entries.insert(key.clone(), entry),
                // An expired entry counts as absent.
                Put::IfAbsent => self.insert_if_absent(key, entry, now),
            }
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.entries.remove(key.as_str());
        }
        Ok(())
    }
}
