//! The in-process cache of the embedded default.

use std::time::Duration;

use moka::future::Cache;

use crate::{CacheBackend, CacheError};

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
    ) -> Result<(), CacheError> {
        let expires = std::time::Instant::now() + ttl;
        for (key, value) in entries {
            self.entries
                .insert(key.clone(), (value.clone(), expires))
                .await;
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
