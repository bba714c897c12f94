//! The in-process cache of the embedded default.

use std::time::Duration;

use moka::future::Cache;

use crate::{CacheBackend, CacheError, Put};

/// A bounded in-process cache (moka). One TTL for the whole cache, set by the first write.
#[derive(Clone)]
pub struct MemoryBackend {
    entries: Cache<String, (Vec<u8>, std::time::Instant)>,
}

impl MemoryBackend {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder().max_capacity(capacity).build(),
        }
    }
}

#[async_trait::async_trait]
impl CacheBackend for MemoryBackend {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let now = std::time::Instant::now();
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(match self.entries.get(key).await {
                Some((value, expires)) if expires > now => Some(value),
                _ => None,
            });
        }
        Ok(values)
    }

    async fn put_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
        put: Put,
    ) -> Result<(), CacheError> {
        let now = std::time::Instant::now();
        let expires = now + ttl;
        for (key, value) in entries {
            let entry = (value.clone(), expires);
            match put {
                Put::Always => self.entries.insert(key.clone(), entry).await,
                Put::IfAbsent => {
                    // An expired entry counts as absent.
                    self.entries
                        .entry(key.clone())
                        .or_insert_with_if(async { entry }, |(_, at)| *at <= now)
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.entries.invalidate(key).await;
        }
        Ok(())
    }
}
