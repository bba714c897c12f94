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

/// Every pooled PostgreSQL connection searches the service's schema and plans each
/// statement for the values bound to it (see `connect_postgres`).
#[tokio::test]
async fn postgres_connections_carry_their_settings() {
    let Some(db) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let conn = db_connection(&db).await;
    for settings in
        settings_of_three_connections(&conn, "SHOW", &["search_path", "plan_cache_mode"]).await
    {
        assert_eq!(settings, ["write_test", "force_custom_plan"]);
    }
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
    let db = TestDatabase::new(Backend::Sqlite).await.unwrap();
    let conn = db_connection(&db).await;
    let pragmas = [
        "journal_mode",
        "synchronous",
        "foreign_keys",
        "temp_store",
        "wal_autocheckpoint",
        "cache_size",
    ];
    for settings in settings_of_three_connections(&conn, "PRAGMA", &pragmas).await {
        // synchronous 2 is FULL, temp_store 2 is MEMORY.
        assert_eq!(settings, ["wal", "2", "1", "2", "10000", "-16384"]);
    }
}

/// The values of `settings` (each read by `<verb> <setting>`) on three pooled connections,
/// held at once so that each is a connection of its own.
async fn settings_of_three_connections(
    conn: &DatabaseConnection,
    verb: &str,
    settings: &[&str],
) -> Vec<Vec<String>> {
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(conn.begin().await.unwrap());
    }
    let mut values = Vec::new();
    for txn in &held {
        let mut of_connection = Vec::new();
        for setting in settings {
            let row = txn
                .query_one_raw(sea_orm::Statement::from_string(
                    txn.get_database_backend(),
                    format!("{verb} {setting}"),
                ))
                .await
                .unwrap()
                .unwrap();
            let value = row
                .try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                .unwrap();
            of_connection.push(value);
        }
        values.push(of_connection);
    }
    values
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

/// A table with a column of every kind the services store, for multi-row inserts.
mod sample {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "samples")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub at: i64,
        pub score: Option<i32>,
        pub points: f64,
        pub forced: bool,
        pub state: Option<Vec<u8>>,
        pub attributes: Json,
        pub note: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

async fn samples_table(conn: &DatabaseConnection) {
    let schema = sea_orm::Schema::new(conn.get_database_backend());
    conn.execute(&schema.create_table_from_entity(sample::Entity))
        .await
        .unwrap();
}

fn samples(ids: std::ops::Range<u32>) -> Vec<sample::Model> {
    ids.map(|i| sample::Model {
        tenant_id: "t1".into(),
        event_id: format!("e{i}"),
        at: 1_700_000_000_000 + i64::from(i),
        score: (i % 3 == 0).then_some(i as i32 - 5),
        points: f64::from(i) / 3.0,
        forced: i % 2 == 0,
        state: None,
        attributes: serde_json::json!({"plan": format!("p{i}"), "quote": "a \"b\" \\ c", "n": i}),
        note: (i % 2 == 1).then(|| format!("line\n{i} é")),
    })
    .collect()
}

/// How many parameters `insert` binds on `conn`'s backend.
fn parameters(insert: &impl sea_orm::QueryTrait, conn: &DatabaseConnection) -> usize {
    let statement = insert.build(conn.get_database_backend());
    statement.values.map_or(0, |values| values.0.len())
}

async fn all_samples(conn: &DatabaseConnection) -> Vec<sample::Model> {
    use sea_orm::{EntityTrait, QueryOrder};
    sample::Entity::find()
        .order_by_asc(sample::Column::At)
        .all(conn)
        .await
        .unwrap()
}

backend_tests!(
    multi_row_inserts_store_every_value_as_given,
    |db: TestDatabase| async move {
        use sea_orm::{IntoActiveModel, TryInsertResult};
        let conn = db_connection(&db).await;
        samples_table(&conn).await;
        let rows: Vec<_> = samples(0..300)
            .into_iter()
            .map(IntoActiveModel::into_active_model)
            .collect();
        let insert = clm_store::insert_many(&conn, rows[..200].to_vec());
        // On PostgreSQL the rows travel as one parameter; elsewhere, one per value.
        let parameters = parameters(&insert, &conn);
        match db.backend() {
            Backend::Postgres => assert_eq!(parameters, 1),
            Backend::Sqlite => assert_eq!(parameters, 200 * 9),
        }
        insert.exec_without_returning(&conn).await.unwrap();
        // Conflicts are skipped and the keys returned are those of the rows taken.
        let taken = clm_store::insert_many(&conn, rows[150..].to_vec())
            .on_conflict_do_nothing()
            .exec_with_returning_keys(&conn)
            .await
            .unwrap();
        let TryInsertResult::Inserted(keys) = taken else {
            panic!("rows 200..300 are new")
        };
        let mut keys: Vec<String> = keys.into_iter().map(|(_, id)| id).collect();
        keys.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
        let expected: Vec<String> = (200..300).map(|i| format!("e{i}")).collect();
        assert_eq!(keys, expected);
        assert_eq!(all_samples(&conn).await, samples(0..300));
    }
);

backend_tests!(
    rows_json_cannot_carry_go_as_values,
    |db: TestDatabase| async move {
        use sea_orm::IntoActiveModel;
        let conn = db_connection(&db).await;
        samples_table(&conn).await;
        // A float JSON has no number for, and bytes (which would travel as hex text).
        let mut rows = samples(0..6);
        rows[1].points = f64::INFINITY;
        rows[4].state = Some(vec![0, 4, 0xff]);
        for batch in rows.chunks(3) {
            let insert = clm_store::insert_many(
                &conn,
                batch.iter().cloned().map(sample::Model::into_active_model),
            );
            assert_eq!(parameters(&insert, &conn), 3 * 9);
            insert.exec_without_returning(&conn).await.unwrap();
        }
        assert_eq!(all_samples(&conn).await, rows);
    }
);
