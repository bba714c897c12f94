//! Writes on SQLite and (when configured) PostgreSQL: writers of one database take turns
//! in the order they asked, a transaction dropped unfinished changes nothing, and schema
//! changes land through any pooled connection.
#![allow(unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use clm_testkit::{Backend, TestDatabase, backend_tests};

async fn open(db: &TestDatabase) -> DatabaseConnection {
    let conn = db_connection(db).await;
    conn.execute_unprepared("CREATE TABLE turns (writer BIGINT NOT NULL)")
        .await
        .unwrap();
    conn
}

async fn writers_in_order(conn: &DatabaseConnection) -> Vec<i64> {
    use sea_orm::Statement;
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        "SELECT writer FROM turns",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.try_get_by_index::<i64>(0).unwrap())
    .collect()
}

backend_tests!(
    a_dropped_transaction_changes_nothing_and_lets_the_next_writer_in,
    |db: TestDatabase| async move {
        let conn = open(&db).await;
        {
            let txn = clm_store::begin_write(&conn).await.unwrap();
            txn.execute_unprepared("INSERT INTO turns VALUES (1)")
                .await
                .unwrap();
            // Dropped here without a commit.
        }
        let txn = tokio::time::timeout(Duration::from_secs(5), clm_store::begin_write(&conn))
            .await
            .expect("the next writer gets in")
            .unwrap();
        txn.execute_unprepared("INSERT INTO turns VALUES (2)")
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(writers_in_order(&conn).await, vec![2]);
    }
);

/// SQLite's own busy handler retries a waiting writer after sleeps of up to 100 ms, in no
/// particular order; the write gate serves writers first come, first served, and wakes the
/// next one as soon as the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_take_turns_in_the_order_they_asked() {
    let db = TestDatabase::new(Backend::Sqlite).await.unwrap();
    let conn = open(&db).await;
    let first = clm_store::begin_write(&conn).await.unwrap();
    first
        .execute_unprepared("INSERT INTO turns VALUES (0)")
        .await
        .unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for writer in 1..=5_i64 {
        let conn = conn.clone();
        let asked = asked.clone();
        waiting.push(tokio::spawn(async move {
            asked.lock().unwrap().push(writer);
            let txn = clm_store::begin_write(&conn).await.unwrap();
            txn.execute_unprepared(&format!("INSERT INTO turns VALUES ({writer})"))
                .await
                .unwrap();
            txn.commit().await.unwrap();
        }));
        // Each writer is queued before the next one asks.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "no writer gets in while the first holds the database"
    );
    first.commit().await.unwrap();
    for w in waiting {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("every writer gets its turn")
            .unwrap();
    }
    let expected: Vec<i64> = std::iter::once(0)
        .chain(asked.lock().unwrap().iter().copied())
        .collect();
    assert_eq!(writers_in_order(&conn).await, expected);
    assert_eq!(expected, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn postgres_needs_no_gate() {
    let Some(db) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let conn = clm_store::connect("write_test", db.location())
        .await
        .unwrap();
    assert!(!clm_store::write_gate(&conn).await.is_held());
}

backend_tests!(
    an_index_is_created_again_through_a_connection_that_saw_it,
    |db: TestDatabase| async move {
        use clm_store::schema::{create_indexes, drop_indexes};
        use sea_orm_migration::SchemaManager;
        // Two pools on one database: on SQLite each connection caches the schema it last
        // read, and one whose cache still holds an index dropped elsewhere refused to
        // create it again ("already exists"), as a migration run up, down and up again
        // through a pool once did.
        let (first, second) = (open(&db).await, db_connection(&db).await);
        let index = [("turns", "turns_by_writer", &["writer"][..])];
        create_indexes(&SchemaManager::new(&first), &index)
            .await
            .unwrap();
        writers_in_order(&second).await;
        drop_indexes(&SchemaManager::new(&first), &index)
            .await
            .unwrap();
        create_indexes(&SchemaManager::new(&second), &index)
            .await
            .unwrap();
        let manager = SchemaManager::new(&first);
        assert!(manager.has_index("turns", "turns_by_writer").await.unwrap());
    }
);

async fn db_connection(db: &TestDatabase) -> DatabaseConnection {
    clm_store::connect("write_test", db.location())
        .await
        .unwrap()
}

/// Every pooled SQLite connection logs ahead, syncs each commit, keeps a statement's own
/// journal in memory, checkpoints every 10,000 pages of log and caches 16 MiB of pages (the
/// last three measured on ingest; see BENCHMARKS.md).
#[tokio::test]
async fn sqlite_connections_carry_their_settings() {
    use sea_orm::Statement;
    let db = TestDatabase::new(Backend::Sqlite).await.unwrap();
    let conn = db_connection(&db).await;
    // Held at once, so that each is a connection of its own.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(conn.begin().await.unwrap());
    }
    for txn in &held {
        let mut settings = Vec::new();
        for pragma in [
            "journal_mode",
            "synchronous",
            "foreign_keys",
            "temp_store",
            "wal_autocheckpoint",
            "cache_size",
        ] {
            let row = txn
                .query_one_raw(Statement::from_string(
                    txn.get_database_backend(),
                    format!("PRAGMA {pragma}"),
                ))
                .await
                .unwrap()
                .unwrap();
            let value = row
                .try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                .unwrap();
            settings.push(value);
        }
        // synchronous 2 is FULL, temp_store 2 is MEMORY.
        assert_eq!(settings, ["wal", "2", "1", "2", "10000", "-16384"]);
    }
}

/// SQLite empties a connection's page cache when it begins a transaction after another
/// connection changed the file: writes go through one connection of their own, whichever
/// connections the pool hands to readers meanwhile.
#[tokio::test]
async fn sqlite_writes_go_through_one_connection() {
    let db = TestDatabase::new(Backend::Sqlite).await.unwrap();
    let conn = open(&db).await;
    // A temporary table is seen by the connection that created it alone.
    let txn = clm_store::begin_write(&conn).await.unwrap();
    txn.execute_unprepared("CREATE TEMP TABLE mine (x INTEGER)")
        .await
        .unwrap();
    txn.commit().await.unwrap();
    for _ in 0..3 {
        // Readers hold three pooled connections at once, then give them back.
        let mut readers = Vec::new();
        for _ in 0..3 {
            readers.push(conn.begin().await.unwrap());
        }
        drop(readers);
        let txn = clm_store::begin_write(&conn).await.unwrap();
        txn.execute_unprepared("INSERT INTO mine VALUES (1)")
            .await
            .expect("a write transaction on the writing connection");
        txn.commit().await.unwrap();
        let gate = clm_store::write_gate(&conn).await;
        gate.db()
            .execute_unprepared("INSERT INTO mine VALUES (2)")
            .await
            .expect("a write under the gate on the writing connection");
    }
}

/// Closing a database waits for its connections to close: on SQLite the last one copies
/// the write-ahead log into the file and removes it, so the file alone holds the data.
#[tokio::test]
async fn a_closed_sqlite_database_leaves_no_log() {
    let db = TestDatabase::new(Backend::Sqlite).await.unwrap();
    let conn = open(&db).await;
    let txn = clm_store::begin_write(&conn).await.unwrap();
    txn.execute_unprepared(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
         INSERT INTO turns SELECT i FROM n",
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let logs = || clm_testkit::sqlite_logs(db.data_dir());
    assert_eq!(logs(), ["write_test.db-wal"], "written through the log");
    clm_store::close(&conn).await;
    assert!(logs().is_empty(), "{:?}", logs());
}
