//! clm-testkit: a fresh database per test on every backend the environment offers.
//!
//! SQLite always runs. PostgreSQL runs when `CLM_TEST_DATABASE_URL` is set: each test then
//! creates its own database on that server and drops it afterwards, and a server that
//! cannot be reached fails the test instead of skipping it.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, Database};

/// The environment variable naming the PostgreSQL server tests may use.
pub const TEST_DATABASE_URL: &str = "CLM_TEST_DATABASE_URL";

/// The database backends a persistence test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file in a fresh temporary directory.
    Sqlite,
    /// A fresh database on the server of `CLM_TEST_DATABASE_URL`.
    Postgres,
}

/// A database that exists for one test and is removed when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    dir: PathBuf,
    /// The server URL, the test database's name, and its URL.
    postgres: Option<(String, String, String)>,
}

impl TestDatabase {
    /// A fresh database of `backend`, or `None` for PostgreSQL when `CLM_TEST_DATABASE_URL`
    /// is not set. Panics when the server is configured but cannot be reached.
    pub async fn new(backend: Backend) -> Option<Self> {
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let Ok(server) = std::env::var(TEST_DATABASE_URL) else {
                    eprintln!(
                        "{TEST_DATABASE_URL} is not set: the PostgreSQL variant does not run"
                    );
                    return None;
                };
                let name = format!("clm_test_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(server.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL} is set but unreachable: {e}"));
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create the test database");
                admin.close().await.expect("close the admin connection");
                let url = with_database(&server, &name);
                Some((server, name, url))
            }
        };
        // Made only once the database exists: a variant that does not run leaves nothing.
        let dir = std::env::temp_dir().join(format!("clm-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create a temporary data directory");
        Some(Self {
            backend,
            dir,
            postgres,
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The data directory (used for SQLite files).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The PostgreSQL URL of the test database, for the PostgreSQL backend.
    pub fn database_url(&self) -> Option<String> {
        self.postgres.as_ref().map(|(_, _, url)| url.clone())
    }

    /// Where the service under test keeps its data.
    pub fn location(&self) -> clm_store::Location<'_> {
        match &self.postgres {
            Some((_, _, url)) => clm_store::Location::Postgres(url),
            None => clm_store::Location::DataDir(&self.dir),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((server, name, _)) = self.postgres.take() {
            // Drop runs inside or outside a runtime: use a thread with its own.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime to drop the test database");
                runtime.block_on(async {
                    let admin = Database::connect(server.as_str()).await?;
                    admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await?;
                    admin.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop a test database: {dropped:?}");
            }
        }
    }
}

/// `server` with its database path replaced by `name`, keeping the query string.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server
        .split_once('?')
        .map_or((server, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| {
        i + 3 + base[i + 3..].find('/').unwrap_or(base.len() - i - 3)
    });
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Declares one async test per backend: `backend_tests!(name, |db| async move { ... })`
/// yields `name::sqlite` and `name::postgres`, each given a fresh [`TestDatabase`].
#[macro_export]
macro_rules! backend_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::TestDatabase::new($crate::Backend::Sqlite)
                    .await
                    .expect("sqlite is always available");
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::TestDatabase::new($crate::Backend::Postgres).await {
                    ($body)(db).await;
                }
            }
        }
    };
}

/// The environment variable naming the Redis server tests may use.
pub const TEST_REDIS_URL: &str = "CLM_TEST_REDIS_URL";

/// The Redis URL of `CLM_TEST_REDIS_URL`, checked to answer PING: `None` when unset, a
/// panic when set but unreachable (a configured server is never silently skipped).
pub async fn test_redis_url() -> Option<String> {
    let Ok(url) = std::env::var(TEST_REDIS_URL) else {
        eprintln!("{TEST_REDIS_URL} is not set: the Redis variant does not run");
        return None;
    };
    let client = redis::Client::open(url.as_str()).expect("a valid CLM_TEST_REDIS_URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{TEST_REDIS_URL} is set but unreachable: {e}"));
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("{TEST_REDIS_URL} does not answer PING: {e}"));
    assert_eq!(pong, "PONG");
    Some(url)
}

/// A three-node Redis Cluster of the test's own: the machine's `redis-server` on free
/// loopback ports, joined with `redis-cli --cluster create`, stopped when dropped. Starts
/// only where the Redis variants run (`CLM_TEST_REDIS_URL` set); then a missing
/// `redis-server` or a cluster that does not form fails the test.
pub struct RedisCluster {
    nodes: Vec<(u16, std::process::Child)>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the cluster and waits until every node reports `cluster_state:ok`.
    pub async fn start() -> Option<Self> {
        use std::process::{Command, Stdio};
        test_redis_url().await?;
        let dir =
            std::env::temp_dir().join(format!("clm-cluster-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a directory for the cluster's node files");
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server starts (the Redis Cluster tests need it)");
            cluster.nodes.push((port, child));
        }
        for (port, _) in &cluster.nodes {
            cluster.wait_for(*port, "PING", "PONG").await;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for (port, _) in &cluster.nodes {
            cluster
                .wait_for(*port, "CLUSTER INFO", "cluster_state:ok")
                .await;
        }
        Some(cluster)
    }

    async fn wait_for(&self, port: u16, command: &str, expected: &str) {
        for _ in 0..200 {
            let output = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(command.split(' '))
                .output()
                .expect("redis-cli runs");
            if String::from_utf8_lossy(&output.stdout).contains(expected) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis node {port} never answered {command} with {expected}");
    }

    /// The nodes' URLs (`redis://127.0.0.1:PORT`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A key prefix no other test uses, so tests share one Redis without touching each
/// other's keys.
pub fn unique_prefix() -> String {
    format!("clmtest-{}", uuid::Uuid::now_v7().simple())
}

/// Removes the keys under `prefix` (see [`unique_prefix`]) from the Redis at `url`: what a
/// test's own servers wrote there, once they have stopped. Keys written with a short time
/// to live need not be removed; servers started as processes keep their default of an hour.
pub fn remove_prefixed_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    let mut connection = client.get_connection().expect("Redis answers");
    let keys: Vec<String> = redis::Commands::scan_match(&mut connection, format!("{prefix}:*"))
        .expect("SCAN runs")
        .collect::<Result<_, _>>()
        .expect("SCAN returns keys");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .exec(&mut connection)
            .expect("DEL runs");
    }
}

/// The SQLite write-ahead logs (`*-wal`) in `dir`, by file name, sorted.
pub fn sqlite_logs(dir: &std::path::Path) -> Vec<String> {
    let mut logs: Vec<String> = std::fs::read_dir(dir)
        .expect("a readable data directory")
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-wal"))
        .collect();
    logs.sort();
    logs
}

/// A loopback port that was free a moment ago, for a server started later (a child
/// process, or a service that must be down at first).
///
/// Chosen below the kernel's ephemeral range: a port the system hands out for `:0` binds
/// and outgoing connections can be taken by another test in the moment between this
/// check and the server's bind (it happened: `AddrInUse`), a port below that range only
/// by another explicit bind.
pub fn free_port() -> u16 {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let lowest = 10_000.min(ephemeral_from / 2);
    let span = u64::from(ephemeral_from - lowest);
    // RandomState is seeded afresh per process: tests in other processes pick elsewhere.
    let random = std::hash::RandomState::new();
    for attempt in 0..1000u32 {
        let port = lowest + (std::hash::BuildHasher::hash_one(&random, attempt) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {ephemeral_from}");
}

/// A file of the test fixtures (test-only keys and certificates; see `fixtures/README.md`).
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Checks a migrator one of whose migrations, `later` migrations before its last,
/// replaces the index `replaced` of `table` with `newest`: migrated to the end, `newest`
/// is there and `replaced` gone; rolled back past it, `replaced` is back without `newest`;
/// up again swaps them once more.
pub async fn check_migration_swaps_index<M: sea_orm_migration::MigratorTrait>(
    conn: &sea_orm::DatabaseConnection,
    later: u32,
    table: &str,
    replaced: &str,
    newest: &str,
) {
    use sea_orm_migration::SchemaManager;
    let state = || async {
        let manager = SchemaManager::new(conn);
        (
            manager.has_index(table, replaced).await.unwrap(),
            manager.has_index(table, newest).await.unwrap(),
        )
    };
    M::up(conn, None).await.unwrap();
    assert_eq!(state().await, (false, true), "after the migration");
    M::down(conn, Some(later + 1)).await.unwrap();
    assert_eq!(state().await, (true, false), "after rolling it back");
    M::up(conn, None).await.unwrap();
    assert_eq!(state().await, (false, true), "after migrating again");
}

/// How many of `M`'s migrations run before the one named `name`: tests that migrate to
/// just before a step find it by name, so a migration added later does not move them.
pub fn migrations_before<M: sea_orm_migration::MigratorTrait>(name: &str) -> u32 {
    M::migrations()
        .iter()
        .position(|m| m.name() == name)
        .expect("a migration of that name") as u32
}

/// Records `ids` of `tenant` in a dedupe table (`tenant_id`, `event_id`, `applied_at`), as
/// a build before would have left them.
pub async fn record_event_ids(
    conn: &sea_orm::DatabaseConnection,
    table: &str,
    tenant: &str,
    ids: &[&str],
) {
    use sea_orm::sea_query::{Alias, Query};
    let mut insert = Query::insert();
    insert.into_table(Alias::new(table)).columns([
        Alias::new("tenant_id"),
        Alias::new("event_id"),
        Alias::new("applied_at"),
    ]);
    for id in ids {
        insert.values_panic([tenant.into(), (*id).into(), 0i64.into()]);
    }
    conn.execute(&insert).await.unwrap();
}

/// Every event id in a dedupe table, in order.
pub async fn recorded_event_ids(conn: &sea_orm::DatabaseConnection, table: &str) -> Vec<String> {
    use sea_orm::sea_query::{Alias, Query};
    let select = Query::select()
        .column(Alias::new("event_id"))
        .from(Alias::new(table))
        .order_by(Alias::new("event_id"), sea_orm::Order::Asc)
        .to_owned();
    conn.query_all(&select)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index(0).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
