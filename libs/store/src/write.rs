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

/// The gate of each SQLite file opened by this process, guarding the connection the file
/// is written through (`None` before one is registered and after it is closed; writes
/// then go through the caller's pool).
///
/// SQLite empties a connection's page cache when it begins a transaction after another
/// connection changed the file. Writes taken from the pool in turn therefore each began
/// with an empty cache and read every page they touched again; written through one
/// connection, they keep finding the index pages the writes before them left.
type Gate = Arc<tokio::sync::Mutex<Option<DatabaseConnection>>>;

static GATES: LazyLock<Mutex<HashMap<PathBuf, Gate>>> = LazyLock::new(Mutex::default);

/// The gate of the SQLite file `db` opens.
fn gate_of(db: &DatabaseConnection) -> Gate {
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_path_buf();
    GATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(file)
        .or_default()
        .clone()
}

/// Registers `writer` as the pool its SQLite file is written through, unless the file
/// has one already.
pub(crate) async fn register_writer(writer: DatabaseConnection) {
    gate_of(&writer).lock().await.get_or_insert(writer);
}

/// Forgets and returns the connection `db`'s file is written through (for closing it),
/// once the writer before has finished.
pub(crate) async fn take_writer(db: &DatabaseConnection) -> Option<DatabaseConnection> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    gate_of(db).lock().await.take()
}

/// The right to write to a database, held until dropped, with the connection to write
/// through: on SQLite the file's one writing connection (or `db` when it has none), on
/// PostgreSQL `db` itself, with no gate (it locks rows, not the database).
pub struct WriteGate {
    db: DatabaseConnection,
    guard: Option<OwnedMutexGuard<Option<DatabaseConnection>>>,
}

impl WriteGate {
    /// The connection to write through while the gate is held.
    pub fn db(&self) -> &DatabaseConnection {
        self.guard
            .as_deref()
            .and_then(Option::as_ref)
            .unwrap_or(&self.db)
    }

    /// True when the gate is held (SQLite); PostgreSQL needs none.
    pub fn is_held(&self) -> bool {
        self.guard.is_some()
    }
}

/// Waits for the right to write to `db` and holds it until the returned gate is dropped.
/// Hold it around a write that runs outside [`begin_write`], made through [`WriteGate::db`].
pub async fn write_gate(db: &DatabaseConnection) -> WriteGate {
    let guard = if db.get_database_backend() == DbBackend::Sqlite {
        Some(gate_of(db).lock_owned().await)
    } else {
        None
    };
    WriteGate {
        db: db.clone(),
        guard,
    }
}

/// Begins a transaction that will write. On SQLite it waits for the database's write gate
/// and then takes the write lock at BEGIN (`BEGIN IMMEDIATE`), on the file's writing
/// connection: a deferred transaction that reads first and writes later cannot wait for
/// the lock and fails with "database is locked" under concurrent writers.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    // Names the database on the caller's `db.transaction` span, where it has one.
    tracing::Span::current().record("db.system.name", crate::system_name(db));
    let gate = write_gate(db).await;
    let txn = gate
        .db()
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
    _gate: WriteGate,
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
