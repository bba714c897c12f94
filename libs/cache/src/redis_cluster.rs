//! The Redis Cluster cache: keys spread over the cluster's primaries by hash slot.

use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use tokio::sync::OnceCell;

use crate::redis_backend::{del, error, mget, redis_span, set_ex, traced};
use crate::{CacheBackend, CacheError, Put};

/// A Redis Cluster, found from one or more seed nodes. The connection is made on first use
/// (and tried again on the next use while it fails), so a cluster that is down does not
/// stop a service from starting; once made, it follows slot moves and reconnects nodes by
/// itself. MGET and DEL are split by slot and answered in order by the client; writes go
/// as one SET per key, concurrently over the nodes' multiplexed connections.
pub struct RedisClusterBackend {
    client: ClusterClient,
    connection: OnceCell<ClusterConnection>,
}

impl RedisClusterBackend {
    /// A backend for the cluster that `nodes` (`redis://host:port` each) belong to.
    pub fn connect_lazy(nodes: &[&str]) -> Result<Self, CacheError> {
        let client = ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(Duration::from_millis(250))
            .response_timeout(Duration::from_millis(250))
            .retries(1)
            .build()
            .map_err(error)?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
        })
    }

    async fn connection(&self) -> Result<ClusterConnection, CacheError> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
            .map_err(error)
    }
}

#[async_trait::async_trait]
impl CacheBackend for RedisClusterBackend {
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let call = async {
            let mut connection = self.connection().await?;
            mget(keys).query_async(&mut connection).await.map_err(error)
        };
        traced(redis_span("MGET", keys.len()), call).await
    }

    async fn put_many(
        &self,
        entries: &[(String, Vec<u8>)],
        ttl: Duration,
        put: Put,
    ) -> Result<(), CacheError> {
        let seconds = ttl.as_secs().max(1);
        let call = async {
            let connection = self.connection().await?;
            let sets = entries.iter().map(|(key, value)| {
                let mut connection = connection.clone();
                async move {
                    set_ex(key, value, seconds, put)
                        .query_async::<()>(&mut connection)
                        .await
                }
            });
            futures_util::future::try_join_all(sets)
                .await
                .map(|_| ())
                .map_err(error)
        };
        traced(redis_span("SET", entries.len()), call).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let call = async {
            let mut connection = self.connection().await?;
            del(keys)
                .query_async::<()>(&mut connection)
                .await
                .map_err(error)
        };
        traced(redis_span("DEL", keys.len()), call).await
    }
}
