//! The Redis cache: one multiplexed, self-reconnecting connection, pipelined batches, and
//! optionally a bounded local copy of what was read, kept current by Redis itself.

use std::num::NonZeroUsize;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::caching::CacheConfig;
use redis::{IntoConnectionInfo, ProtocolVersion};

use crate::{CacheBackend, CacheError, Put};

/// Redis behind a connection manager that connects on first use and reconnects by
/// itself; short timeouts keep a dead Redis from slowing requests down.
#[derive(Clone)]
pub struct RedisBackend {
    connection: ConnectionManager,
    /// Local copies are kept, so writes wait for their invalidations.
    local_copies: bool,
}

pub(crate) fn error(e: redis::RedisError) -> CacheError {
    CacheError(e.to_string())
}

/// `MGET keys`.
pub(crate) fn mget(keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("MGET");
    cmd.arg(keys);
    cmd
}

/// `DEL keys`.
pub(crate) fn del(keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("DEL");
    cmd.arg(keys);
    cmd
}

/// `SET key value EX seconds`, with `NX` for [`Put::IfAbsent`].
pub(crate) fn set_ex(key: &str, value: &[u8], seconds: u64, put: Put) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value).arg("EX").arg(seconds);
    if put == Put::IfAbsent {
        cmd.arg("NX");
    }
    cmd
}

/// The span of one Redis round trip (one command, or one pipeline of them).
pub(crate) fn redis_span(operation: &'static str, keys: usize) -> tracing::Span {
    tracing::info_span!(
        "redis",
        otel.kind = "client",
        otel.name = operation,
        db.system.name = "redis",
        db.operation.name = operation,
        db.operation.batch.size = keys,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    )
}

/// Runs `call` inside `span`, marking the span failed when it fails.
pub(crate) async fn traced<T>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    use tracing::Instrument;
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("otel.status_code", "ERROR");
        span.record("error.message", e.0.as_str());
    }
    result
}

/// The longest a local copy of a Redis value is used. Redis' invalidation drops a copy as
/// soon as the key changes, except in one race: a read's reply arrives, the invalidation
/// of a write that followed it is handled, and only then is the read's value stored as a
/// copy (the redis crate stores it after handing the reply back). Such a copy would live
/// on; this bounds how long.
pub const LOCAL_COPY_TTL: Duration = Duration::from_secs(1);

impl RedisBackend {
    /// With local copies, ends a pipeline of writes with a PING. Redis sends the
    /// invalidations of a connection's own writes after each write's reply; the connection
    /// reads them in order, so by the PING's reply every local copy the writes made stale
    /// is dropped, and a read that follows the write on this process sees the new value.
    fn settle_local_copies(&self, pipe: &mut redis::Pipeline) {
        if self.local_copies {
            pipe.cmd("PING").ignore();
        }
    }

    /// A backend for `url` (`redis://host:port/db`); nothing is connected yet, so a Redis
    /// that is down does not stop a service from starting. Every read goes to Redis.
    pub fn connect_lazy(url: &str) -> Result<Self, CacheError> {
        Self::connect(url, None)
    }

    /// As [`RedisBackend::connect_lazy`], keeping a local copy of up to `entries` values
    /// read (Redis' server-assisted client-side caching): a read of a copied key is
    /// answered in process, and Redis tells the connection when any client changes or
    /// removes a key it read, which drops the copy. A copy lives at most `ttl` (services
    /// use [`LOCAL_COPY_TTL`]) and never past the key's TTL in Redis; after a reconnect,
    /// copies made before it are not used.
    pub fn connect_lazy_with_local_copies(
        url: &str,
        entries: NonZeroUsize,
        ttl: Duration,
    ) -> Result<Self, CacheError> {
        Self::connect(url, Some((entries, ttl)))
    }

    fn connect(
        url: &str,
        local_copies: Option<(NonZeroUsize, Duration)>,
    ) -> Result<Self, CacheError> {
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut info = url.into_connection_info().map_err(error)?;
        if let Some((entries, ttl)) = local_copies {
            // Invalidation messages are pushed on the connection itself, which needs RESP3.
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(settings);
            config = config.set_cache_config(
                CacheConfig::new()
                    .set_size(entries)
                    .set_default_client_ttl(ttl),
            );
        }
        let client = redis::Client::open(info).map_err(error)?;
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(error)?;
        Ok(Self {
            connection,
            local_copies: local_copies.is_some(),
        })
    }
}

#[async_trait::async_trait]
impl CacheBackend for RedisBackend {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        if let [key] = keys {
            // One key as GET: a local copy answers it as it is, where an MGET is first split
            // into one new GET per key to look each up.
            let call = async {
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut connection)
                    .await
                    .map_err(error)?;
                Ok(vec![value])
            };
            return traced(redis_span("GET", 1), call).await;
        }
        let call = async { mget(keys).query_async(&mut connection).await.map_err(error) };
        traced(redis_span("MGET", keys.len()), call).await
    }

    async fn put_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
        put: Put,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        let seconds = ttl.as_secs().max(1);
        for (key, value) in entries {
            pipe.add_command(set_ex(key, value, seconds, put)).ignore();
        }
        self.settle_local_copies(&mut pipe);
        let mut connection = self.connection.clone();
        let call = async { pipe.query_async::<()>(&mut connection).await.map_err(error) };
        traced(redis_span("SET", entries.len()), call).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        pipe.add_command(del(keys)).ignore();
        self.settle_local_copies(&mut pipe);
        let mut connection = self.connection.clone();
        let call = async { pipe.query_async::<()>(&mut connection).await.map_err(error) };
        traced(redis_span("DEL", keys.len()), call).await
    }
}
