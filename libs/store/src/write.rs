//! Write transactions, one at a time per SQLite database.
//!
//! SQLite lets one connection write at a time; a second writer that finds the lock taken
//! sleeps in SQLite's busy handler in steps of up to 100 ms before it tries again. Under a
//! steady stream of writers (a service's requests and its outbox relays) those sleeps
//! dominated the time a batch took. Writers of one database in this process therefore
//! queue first on an async, first-come-first-served gate, and take the SQLite lock only
//! when it is free. PostgreSQL locks rows, not the database, and needs no gate.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, Statement,
};
use tokio::sync::OwnedMutexGuard;

/// The gate of each SQLite file opened by this process.
static GATES: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

/// Waits for the right to write to `db` and holds it until the guard is dropped; `None` on
/// PostgreSQL. Hold it around a write that runs outside [`begin_write`].
pub async fn write_gate(db: &DatabaseConnection) -> Option<OwnedMutexGuard<()>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf();
    let gate = GATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(file)
        .or_default()
        .clone();
    Some(gate.lock_owned().await)
}

/// Begins a transaction that will write. On SQLite it waits for the database's write gate
/// and then takes the write lock at BEGIN (`BEGIN IMMEDIATE`): a deferred transaction that
/// reads first and writes later cannot wait for the lock and fails with "database is
/// locked" under concurrent writers.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    // Names the database on the caller's `db.transaction` span, where it has one.
    tracing::Span::current().record("db.system.name", crate::system_name(db));
    let gate = write_gate(db).await;
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    Ok(WriteTxn { txn, _gate: gate })
}

/// A write transaction holding its database's write gate until it ends. It is used like
/// the [`DatabaseTransaction`] it wraps; dropping it without `commit` rolls back.
pub struct WriteTxn {
    // Declared first: dropped (rolled back) before the gate opens.
    txn: DatabaseTransaction,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    /// Commits, then lets the next writer in.
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    /// Rolls back, then lets the next writer in.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}
