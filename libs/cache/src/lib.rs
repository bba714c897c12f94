//! clm-cache: the score cache. One trait ([`CacheBackend`]) with implementations for Redis,
//! Redis Cluster and an in-process one (quick_cache) for the embedded default, behind [`ScoreCache`], which counts
//! hits, misses and errors and turns every cache failure into a miss: a cache problem
//! never fails a request, the database answers instead.
#![forbid(unsafe_code)]

mod memory;
mod redis_backend;
mod redis_cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use memory::MemoryBackend;
pub use redis_backend::{LOCAL_COPY_TTL, RedisBackend};
pub use redis_cluster::RedisClusterBackend;

/// A cache failure (never shown to callers).
#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub struct CacheError(pub String);

/// Identifies one cached score. It borrows its parts: a BatchGetScores call names a
/// hundred keys, and owning them was a hundred times three allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScoreKey<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The scoring model.
    pub model: &'a str,
    /// The contact.
    pub contact: &'a str,
}

impl ScoreKey<'_> {
    /// The key as stored: `{prefix}:{tenant}:score:{model}:{contact}`. Appended part by
    /// part into one allocation: `format!` took a tenth of a BatchGetScores call.
    pub fn render(&self, prefix: &str) -> String {
        const SCORE: &str = ":score:";
        let parts = [
            prefix,
            ":",
            self.tenant,
            SCORE,
            self.model,
            ":",
            self.contact,
        ];
        let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            key.push_str(part);
        }
        key
    }
}

/// A store of encoded scores.
#[async_trait::async_trait]
pub trait CacheBackend: Send + Sync + 'static {
    /// The values of `keys`, in order; `None` for a miss.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError>;
    /// Stores every entry with a time to live; with [`Put::IfAbsent`], only where the key
    /// holds no (live) value.
    async fn put_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
        put: Put,
    ) -> Result<(), CacheError>;
    /// Removes `keys`.
    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError>;
}

/// How [`CacheBackend::put_many`] treats a key that already holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Replace it: the write-through of a changed score.
    Always,
    /// Keep it: filling the cache from a database read, which a concurrent write-through
    /// of a newer score may have overtaken.
    IfAbsent,
}

/// Cache counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Reads answered by the cache.
    pub hits: u64,
    /// Reads the cache could not answer.
    pub misses: u64,
    /// Cache operations that failed and fell back to the database.
    pub errors: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 before the first read.
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// The score cache a service uses: keys, TTL, counters, and failures turned into misses.
#[derive(Clone)]
pub struct ScoreCache {
    backend: Arc<dyn CacheBackend>,
    prefix: Arc<str>,
    ttl: Duration,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ScoreCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoreCache")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ScoreCache {
    /// A cache over `backend`, keys under `prefix` (`clm` in production), entries living `ttl`.
    pub fn new(backend: Arc<dyn CacheBackend>, prefix: &str, ttl: Duration) -> Self {
        Self {
            backend,
            prefix: prefix.into(),
            ttl,
            counters: Arc::default(),
        }
    }

    /// Redis at `url` when given (with `cluster`, a Redis Cluster found from the
    /// comma-separated seed nodes of `url`), else the in-process cache of `capacity`
    /// entries. A single Redis is read through a local copy of up to `local_copies`
    /// entries (none when 0), kept current by Redis' invalidation messages.
    pub fn from_url(
        url: Option<&str>,
        cluster: bool,
        prefix: &str,
        ttl: Duration,
        capacity: u64,
        local_copies: usize,
    ) -> Result<Self, CacheError> {
        let backend: Arc<dyn CacheBackend> = match url {
            Some(url) if cluster => {
                let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
                Arc::new(RedisClusterBackend::connect_lazy(&nodes)?)
            }
            Some(url) => Arc::new(match std::num::NonZeroUsize::new(local_copies) {
                Some(entries) => {
                    RedisBackend::connect_lazy_with_local_copies(url, entries, LOCAL_COPY_TTL)?
                }
                None => RedisBackend::connect_lazy(url)?,
            }),
            None => Arc::new(MemoryBackend::new(capacity)),
        };
        Ok(Self::new(backend, prefix, ttl))
    }

    fn error(&self, operation: &str, error: &CacheError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(operation, %error, "score cache unavailable, using the database");
    }

    /// The cached values of `keys`, in order; a failure reads as all misses.
    pub async fn get_many(&self, keys: &[ScoreKey<'_>]) -> Vec<Option<Vec<u8>>> {
        let rendered: Vec<String> = keys.iter().map(|k| k.render(&self.prefix)).collect();
        let values = match self.backend.get_many(&rendered).await {
            Ok(values) if values.len() == keys.len() => values,
            Ok(_) => {
                self.error("get", &CacheError("wrong number of values".into()));
                vec![None; keys.len()]
            }
            Err(error) => {
                self.error("get", &error);
                vec![None; keys.len()]
            }
        };
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.counters.hits.fetch_add(hits, Ordering::Relaxed);
        self.counters
            .misses
            .fetch_add(keys.len() as u64 - hits, Ordering::Relaxed);
        values
    }

    /// Writes entries through; a failure is counted and logged, never returned.
    pub async fn put_many(&self, entries: Vec<(ScoreKey<'_>, Vec<u8>)>) {
        self.put(entries, Put::Always).await;
    }

    /// Fills the cache with entries read from the database, leaving keys that already hold
    /// a value: a write-through that landed since the read holds a newer one.
    pub async fn fill_many(&self, entries: Vec<(ScoreKey<'_>, Vec<u8>)>) {
        self.put(entries, Put::IfAbsent).await;
    }

    async fn put(&self, entries: Vec<(ScoreKey<'_>, Vec<u8>)>, put: Put) {
        if entries.is_empty() {
            return;
        }
        let rendered: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (k.render(&self.prefix), v))
            .collect();
        if let Err(error) = self.backend.put_many(&rendered, self.ttl, put).await {
            self.error("put", &error);
        }
    }

    /// Removes entries; a failure is counted and logged (the TTL bounds the staleness).
    pub async fn delete_many(&self, keys: &[ScoreKey<'_>]) {
        if keys.is_empty() {
            return;
        }
        let rendered: Vec<String> = keys.iter().map(|k| k.render(&self.prefix)).collect();
        if let Err(error) = self.backend.delete_many(&rendered).await {
            self.error("delete", &error);
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }
}
