//! The score cache on the in-process backend, and on Redis (with and without local copies)
//! and on a three-node Redis Cluster (with `CLM_TEST_REDIS_URL`).
#![allow(unreachable_pub)]

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clm_cache::{
    CacheBackend, LOCAL_COPY_TTL, MemoryBackend, RedisBackend, RedisClusterBackend, ScoreCache,
    ScoreKey,
};
use clm_testkit::{test_redis_url, unique_prefix};

fn key(contact: &str) -> ScoreKey<'_> {
    ScoreKey {
        tenant: "t1",
        model: "m1",
        contact,
    }
}

fn local_copies(url: &str) -> RedisBackend {
    local_copies_living(url, LOCAL_COPY_TTL)
}

/// A score cache over Redis with local copies, under a prefix of its own.
fn copying_cache(url: &str) -> ScoreCache {
    ScoreCache::new(
        Arc::new(local_copies(url)),
        &unique_prefix(),
        Duration::from_secs(60),
    )
}

fn local_copies_living(url: &str, ttl: Duration) -> RedisBackend {
    RedisBackend::connect_lazy_with_local_copies(url, NonZeroUsize::new(1_000).unwrap(), ttl)
        .unwrap()
}

/// Runs `body` on the memory backend and, when configured, on Redis and a Redis Cluster.
macro_rules! cache_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn memory() {
                let backend: Arc<dyn CacheBackend> = Arc::new(MemoryBackend::new(10_000));
                ($body)(backend).await;
            }

            #[tokio::test]
            async fn redis() {
                if let Some(url) = test_redis_url().await {
                    let backend: Arc<dyn CacheBackend> =
                        Arc::new(RedisBackend::connect_lazy(&url).unwrap());
                    ($body)(backend).await;
                }
            }

            #[tokio::test]
            async fn redis_with_local_copies() {
                if let Some(url) = test_redis_url().await {
                    let backend: Arc<dyn CacheBackend> = Arc::new(local_copies(&url));
                    ($body)(backend).await;
                }
            }

            #[tokio::test]
            async fn redis_cluster() {
                if let Some(cluster) = clm_testkit::RedisCluster::start().await {
                    let urls = cluster.urls();
                    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
                    let backend: Arc<dyn CacheBackend> =
                        Arc::new(RedisClusterBackend::connect_lazy(&nodes).unwrap());
                    ($body)(backend).await;
                }
            }
        }
    };
}

cache_tests!(values_round_trip_in_batches, |backend| async move {
    let cache = ScoreCache::new(backend, &unique_prefix(), Duration::from_secs(60));
    assert_eq!(
        cache.get_many(&[key("a"), key("b")]).await,
        vec![None, None]
    );
    cache
        .put_many(vec![
            (key("a"), b"alpha".to_vec()),
            (key("b"), b"beta".to_vec()),
        ])
        .await;
    let values = cache.get_many(&[key("b"), key("missing"), key("a")]).await;
    assert_eq!(
        values,
        vec![Some(b"beta".to_vec()), None, Some(b"alpha".to_vec())]
    );
    cache.delete_many(&[key("a")]).await;
    assert_eq!(cache.get_many(&[key("a")]).await, vec![None]);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.errors), (2, 4, 0));
    assert!((stats.hit_ratio() - 2.0 / 6.0).abs() < 1e-9);
    cache.delete_many(&[key("b")]).await;
});

cache_tests!(a_fill_keeps_the_value_written_since, |backend| async move {
    let cache = ScoreCache::new(backend, &unique_prefix(), Duration::from_secs(60));
    // A database read fills an empty key...
    cache.fill_many(vec![(key("a"), b"read".to_vec())]).await;
    assert_eq!(
        cache.get_many(&[key("a")]).await,
        vec![Some(b"read".to_vec())]
    );
    // ...but not one a write-through has changed since the read.
    cache.put_many(vec![(key("a"), b"newer".to_vec())]).await;
    cache.fill_many(vec![(key("a"), b"older".to_vec())]).await;
    assert_eq!(
        cache.get_many(&[key("a")]).await,
        vec![Some(b"newer".to_vec())]
    );
    cache.delete_many(&[key("a")]).await;
});

cache_tests!(entries_expire_after_their_ttl, |backend| async move {
    let cache = ScoreCache::new(backend, &unique_prefix(), Duration::from_secs(1));
    cache.put_many(vec![(key("short"), b"v".to_vec())]).await;
    assert!(cache.get_many(&[key("short")]).await[0].is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(cache.get_many(&[key("short")]).await[0].is_none());
    // An expired entry counts as absent to a fill.
    cache
        .fill_many(vec![(key("short"), b"again".to_vec())])
        .await;
    assert_eq!(
        cache.get_many(&[key("short")]).await,
        vec![Some(b"again".to_vec())]
    );
});

cache_tests!(prefixes_keep_tests_and_tenants_apart, |backend: Arc<
    dyn CacheBackend,
>| async move {
    let one = ScoreCache::new(backend.clone(), &unique_prefix(), Duration::from_secs(60));
    let two = ScoreCache::new(backend, &unique_prefix(), Duration::from_secs(60));
    one.put_many(vec![(key("a"), b"one".to_vec())]).await;
    assert_eq!(two.get_many(&[key("a")]).await, vec![None]);
    let other_tenant = ScoreKey {
        tenant: "t2",
        ..key("a")
    };
    assert_eq!(one.get_many(&[other_tenant]).await, vec![None]);
    one.delete_many(&[key("a")]).await;
});

#[tokio::test]
async fn a_dead_redis_reads_as_misses_and_is_counted() {
    // Nothing listens on port 1: every operation fails fast.
    let backend: Arc<dyn CacheBackend> =
        Arc::new(RedisBackend::connect_lazy("redis://127.0.0.1:1").unwrap());
    let cache = ScoreCache::new(backend, "clmtest-dead", Duration::from_secs(60));
    cache.put_many(vec![(key("a"), b"v".to_vec())]).await;
    assert_eq!(
        cache.get_many(&[key("a"), key("b")]).await,
        vec![None, None]
    );
    cache.delete_many(&[key("a")]).await;
    let stats = cache.stats();
    assert_eq!(stats.errors, 3);
    assert_eq!((stats.hits, stats.misses), (0, 2));
}

#[tokio::test]
async fn an_unreachable_cluster_reads_as_misses_and_is_counted() {
    let backend: Arc<dyn CacheBackend> =
        Arc::new(RedisClusterBackend::connect_lazy(&["redis://127.0.0.1:1"]).unwrap());
    let cache = ScoreCache::new(backend, "clmtest-dead-cluster", Duration::from_secs(60));
    cache.put_many(vec![(key("a"), b"v".to_vec())]).await;
    assert_eq!(cache.get_many(&[key("a")]).await, vec![None]);
    cache.delete_many(&[key("a")]).await;
    assert_eq!(cache.stats().errors, 3);
}

/// Reads `key` through `cache` until it reads `want`, for at most two seconds (a local
/// copy's TTL and a second).
async fn eventually_reads(cache: &ScoreCache, key: &ScoreKey<'_>, want: Option<&[u8]>) {
    let deadline = Instant::now() + LOCAL_COPY_TTL + Duration::from_secs(1);
    loop {
        let got = cache.get_many(std::slice::from_ref(key)).await.remove(0);
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still reads {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn local_copies_answer_reads_without_touching_redis() {
    let Some(url) = test_redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    // Copies that outlive the wait below.
    let cache = ScoreCache::new(
        Arc::new(local_copies_living(&url, Duration::from_secs(60))),
        &prefix,
        Duration::from_secs(60),
    );
    cache
        .put_many(vec![(key("a"), b"v".to_vec()), (key("b"), b"w".to_vec())])
        .await;
    // One key is read alone (GET), two together (MGET): both are copied.
    assert!(cache.get_many(&[key("a")]).await[0].is_some());
    assert!(cache.get_many(&[key("a"), key("b")]).await[1].is_some());
    // Redis keeps each key's last access to the second: reads answered locally leave it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        cache.get_many(&[key("a")]).await[0].as_deref(),
        Some(&b"v"[..])
    );
    let both = cache.get_many(&[key("a"), key("b")]).await;
    assert_eq!(
        [both[0].as_deref(), both[1].as_deref()],
        [Some(&b"v"[..]), Some(&b"w"[..])]
    );
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for name in ["a", "b"] {
        let rendered = key(name).render(&prefix);
        let idle: i64 = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg(&rendered)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(
            idle >= 2,
            "a later read of {name} went to Redis (idle {idle} s)"
        );
    }
    cache.delete_many(&[key("a"), key("b")]).await;
}

#[tokio::test]
async fn another_process_writes_and_deletes_reach_local_copies() {
    let Some(url) = test_redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let ttl = Duration::from_secs(60);
    let reader = ScoreCache::new(Arc::new(local_copies(&url)), &prefix, ttl);
    let writer = ScoreCache::new(Arc::new(local_copies(&url)), &prefix, ttl);
    // A miss is copied too: the first write must replace it.
    assert_eq!(reader.get_many(&[key("a")]).await, vec![None]);
    writer.put_many(vec![(key("a"), b"one".to_vec())]).await;
    eventually_reads(&reader, &key("a"), Some(b"one")).await;
    writer.put_many(vec![(key("a"), b"two".to_vec())]).await;
    eventually_reads(&reader, &key("a"), Some(b"two")).await;
    writer.delete_many(&[key("a")]).await;
    eventually_reads(&reader, &key("a"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reads_its_own_writes_at_once() {
    let Some(url) = test_redis_url().await else {
        return;
    };
    let cache = copying_cache(&url);
    for i in 0..200u32 {
        let value = i.to_be_bytes().to_vec();
        cache.put_many(vec![(key("a"), value.clone())]).await;
        assert_eq!(
            cache.get_many(&[key("a")]).await,
            vec![Some(value)],
            "write {i}"
        );
    }
    cache.delete_many(&[key("a")]).await;
    assert_eq!(cache.get_many(&[key("a")]).await, vec![None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_see_the_last_write_within_the_copy_ttl() {
    let Some(url) = test_redis_url().await else {
        return;
    };
    // One process: readers and the writer share the backend, as GetScore and the applying
    // of signals do. A read in flight while a write lands can store its older value after
    // the write's invalidation; the copy TTL bounds how long that copy is used.
    let cache = copying_cache(&url);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    cache.get_many(&[key("a")]).await;
                    // A read answered locally never waits: let the writer run.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for i in 0..300u32 {
        cache
            .put_many(vec![(key("a"), i.to_be_bytes().to_vec())])
            .await;
    }
    // Within the copy TTL (one second) and a second's margin.
    eventually_reads(&cache, &key("a"), Some(&299u32.to_be_bytes())).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    cache.delete_many(&[key("a")]).await;
}
