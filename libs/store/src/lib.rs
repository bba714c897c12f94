//! clm-store: connects a service to its database (an SQLite file under the data directory
//! by default, or its own schema in PostgreSQL) and runs its migrations.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;

pub use sea_orm::DbErr;

mod bulk;
mod dedupe;
pub mod schema;
mod write;

pub use bulk::insert_many;
pub use dedupe::{find_event_ids, forget_ids_kept_by, insert_new, keep_event_ids};
pub use write::{WriteGate, WriteTxn, begin_write, write_gate};

/// Errors while opening a database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not a PostgreSQL URL.
    #[error("database url must start with postgres:// or postgresql:// (got scheme {0:?})")]
    UnsupportedUrl(String),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database refused the connection or a statement.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Where a service keeps its data.
#[derive(Debug, Clone)]
pub enum Location<'a> {
    /// The embedded default: `<dir>/<service>.db`.
    DataDir(&'a Path),
    /// A PostgreSQL database; the service keeps its tables in a schema named after it.
    Postgres(&'a str),
}

/// Opens the database of `service` (a short name such as `contacts`).
pub async fn connect(
    service: &str,
    location: Location<'_>,
) -> Result<DatabaseConnection, StoreError> {
    match location {
        Location::DataDir(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
            let path = dir.join(format!("{service}.db"));
            connect_sqlite(&path).await
        }
        Location::Postgres(url) => connect_postgres(url, service).await,
    }
}

/// Rows SQLite's driver thread may read ahead of the caller.
const ROW_BUFFER: usize = 4096;

/// Each SQLite connection's page cache, in KiB (SQLite's negative form).
const SQLITE_CACHE_SIZE: &str = "-16384";

async fn connect_sqlite(path: &Path) -> Result<DatabaseConnection, StoreError> {
    let db = Database::connect(sqlite_options(path, 8)).await?;
    // Writes go through a pool of their own, of one connection (see `write::WRITERS`); it
    // lets its connection go after a minute without writes.
    let mut writer = sqlite_options(path, 1);
    writer
        .min_connections(0)
        .idle_timeout(Duration::from_secs(60));
    write::register_writer(Database::connect(writer).await?).await;
    Ok(db)
}

/// How every connection to the SQLite file at `path` is opened, in pools of up to
/// `max_connections`.
fn sqlite_options(path: &Path, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(format!("sqlite://{}?mode=rwc", path.display()));
    options
        .max_connections(max_connections)
        .min_connections(1)
        .sqlx_logging(false)
        // A file does not go away under an open connection: no ping (a round trip to the
        // driver's thread) before each use.
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers run beside the writer; FULL keeps an acknowledged write
            // durable across a power loss, not only a process crash.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // A statement inside a larger transaction journals the pages it changes
                // that the transaction had already changed, so it can be undone alone; by
                // default that journal spills to a temporary file past 64 KiB, and ingest's
                // multi-row statements spent a tenth of their time writing it there.
                .pragma("temp_store", "memory")
                // Checkpoint (copy the log into the file, inside a commit) every 10,000
                // pages of log, not SQLite's 1,000: an index page that ingest changes again
                // and again is copied once per checkpoint, so fewer copies and fsyncs. The
                // log may grow to ~40 MB per database before it is reused.
                .pragma("wal_autocheckpoint", "10000")
                // The driver's thread hands rows to the caller through a bounded channel;
                // with its default of 50 a report reading 100,000 rows switches threads
                // thousands of times.
                .row_buffer_size(ROW_BUFFER)
                // A page cache of 16 MiB, not SQLite's 2 MiB: an ingest transaction
                // changes more pages than 2 MiB holds, and SQLite then wrote changed pages
                // to the log before the commit (often again at the commit) and read evicted
                // index pages back: the whole chain took 6-9 % more CPU. Memory is taken
                // as pages are read, so an idle service stays small.
                .pragma("cache_size", SQLITE_CACHE_SIZE)
        });
    options
}

async fn connect_postgres(url: &str, schema: &str) -> Result<DatabaseConnection, StoreError> {
    let scheme = url.split("://").next().unwrap_or_default();
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(StoreError::UnsupportedUrl(scheme.to_owned()));
    }
    // The schema must exist before connections that search it are opened.
    {
        let mut admin = ConnectOptions::new(url.to_owned());
        admin.max_connections(1).sqlx_logging(false);
        let admin = Database::connect(admin).await?;
        admin
            .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
        admin.close().await?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        // A ping (a round trip) only for a connection idle long enough to have been cut by
        // the server or a proxy, not before every statement.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false)
        .set_schema_search_path(schema.to_owned())
        // Every statement planned for the values it is given. The services' reads take a
        // call's keys as an IN list of up to 1,000 parameters. Under the default plan cache
        // mode PostgreSQL keeps a generic plan after five executions, and one chosen while
        // a table was small (before its first ANALYZE) is a scan whose filter builds the
        // list again for every row and compares each key in turn: a quarter of
        // PostgreSQL's CPU in the ingest bench. Planned with the values, the list is a
        // hash set, and the index is used once the statistics say it is worth it. Set as
        // a start-up option, as sea-orm sets statement_timeout.
        .map_sqlx_postgres_opts(|options| {
            options.options([("plan_cache_mode", "force_custom_plan")])
        });
    Ok(Database::connect(options).await?)
}

/// Applies every pending migration of `M`.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), StoreError> {
    M::up(db, None).await?;
    Ok(())
}

/// How long [`close`] waits for connections still in use.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Closes `db`'s connections once those in use are returned, for a service that stops. On
/// SQLite the last connection to close copies the write-ahead log into the file and
/// removes it, so a stopped service's file holds all its data (a copy of it is a whole
/// backup); a service that exits with connections open leaves its log for the next start.
pub async fn close(db: &DatabaseConnection) {
    // The writing connection first, once the write in progress (if any) has finished.
    let writer = tokio::time::timeout(CLOSE_WAIT, write::take_writer(db))
        .await
        .ok()
        .flatten();
    for pool in writer.iter().chain([db]) {
        match tokio::time::timeout(CLOSE_WAIT, pool.close_by_ref()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "closing the database failed"),
            Err(_) => tracing::warn!(
                wait_s = CLOSE_WAIT.as_secs(),
                "database connections still in use; leaving them open"
            ),
        }
    }
}

/// True when `db` is PostgreSQL.
pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// What a tombstone stores in place of an erased contact's id: `sha256:` and the hex
/// SHA-256 of tenant and id. Late events for the id still find their tombstone (the
/// pseudonym is recomputed from the id they carry), but no table keeps the id itself.
pub fn pseudonym(tenant: &str, contact_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(tenant.as_bytes())
        .chain_update([0u8])
        .chain_update(contact_id.as_bytes())
        .finalize();
    // Ingest looks up every contact of a batch by its pseudonym: not a String per byte.
    format!("sha256:{}", hex::encode(digest))
}

/// The OpenTelemetry `db.system.name` of `db`.
pub fn system_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgresql",
        DbBackend::Sqlite => "sqlite",
        _ => "other_sql",
    }
}

/// Publishes the connection pool's size and idle connections (`clm_db_pool_connections`,
/// `clm_db_pool_idle`) on `metrics`, read at every scrape.
pub fn register_pool_metrics(metrics: &clm_runtime::Metrics, db: DatabaseConnection) {
    let size = metrics.gauge("db_pool_connections", "Open database connections");
    let idle = metrics.gauge("db_pool_idle", "Idle database connections");
    metrics.on_scrape(std::sync::Arc::new(move || {
        let (open, unused) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        size.set(i64::from(open));
        idle.set(unused as i64);
        Box::pin(async {})
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pseudonym_is_the_hex_sha256_of_tenant_and_id() {
        // Tombstones already stored hold this form: it may never change.
        assert_eq!(
            super::pseudonym("default", "ada"),
            "sha256:93af010dd8708f596294a1a840c57f11282ca7fe5e72aa6fa4adff7a34957d89"
        );
    }
}
