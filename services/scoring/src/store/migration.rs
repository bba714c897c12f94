//! The scoring schema. Every index leads with `tenant_id`.

use clm_store::schema::{self, IndexSpec, ReplaceIndex, TableSpec};
use sea_orm_migration::prelude::*;

/// The scoring service's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateScoringTables)];
        migrations.extend(clm_outbox::migrations());
        migrations.push(Box::new(COVER_LEDGER_BY_CONTACT));
        migrations.push(Box::new(StatesAsBytes));
        migrations.push(Box::new(ForgetIdsKeptByHistory));
        migrations
    }
}

struct CreateScoringTables;

impl MigrationName for CreateScoringTables {
    fn name(&self) -> &str {
        "m20261122_000001_create_scoring_tables"
    }
}

const TABLES: &[TableSpec] = &[
    (
        "scoring_models",
        &[
            ("tenant_id", "String"),
            ("id", "String"),
            ("version", "i64"),
            ("display_name", "String"),
            ("is_default", "bool"),
            ("spec", "Json"),
            ("created_at", "i64"),
            ("updated_at", "i64"),
        ],
        &["tenant_id", "id"],
    ),
    (
        "scoring_model_versions",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("version", "i64"),
            ("spec", "Json"),
            ("created_at", "i64"),
        ],
        &["tenant_id", "model_id", "version"],
    ),
    (
        "applied_events",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("applied_at", "i64"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "interaction_history",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("contact_id", "String"),
            ("kind", "String"),
            ("occurred_at", "i64"),
            ("properties", "Json"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "contact_profiles",
        &[
            ("tenant_id", "String"),
            ("contact_id", "String"),
            ("attributes", "Json"),
            ("updated_at", "i64"),
        ],
        &["tenant_id", "contact_id"],
    ),
    (
        "score_ledger",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("event_id", "String"),
            ("rule_id", "String"),
            ("contact_id", "String"),
            ("points", "f64"),
            ("occurred_at", "i64"),
            ("recorded_at", "i64"),
        ],
        &["tenant_id", "model_id", "event_id", "rule_id"],
    ),
    (
        "scores",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("contact_id", "String"),
            ("state", "Json"),
            ("band", "String"),
            ("updated_at", "i64"),
        ],
        &["tenant_id", "model_id", "contact_id"],
    ),
    (
        "band_events",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("contact_id", "String"),
            ("event_id", "String"),
            ("from_band", "String"),
            ("to_band", "String"),
            ("total", "f64"),
            ("occurred_at", "i64"),
        ],
        &["tenant_id", "model_id", "contact_id", "event_id"],
    ),
    (
        "scoring_tombstones",
        &[
            ("tenant_id", "String"),
            ("contact_id", "String"),
            ("merged_into", "Option<String>"),
        ],
        &["tenant_id", "contact_id"],
    ),
];

const INDEXES: &[IndexSpec] = &[
    (
        "interaction_history",
        "history_by_contact",
        &["tenant_id", "contact_id", "occurred_at"],
    ),
    LEDGER_BY_CONTACT,
    (
        "band_events",
        "band_events_by_event",
        &["tenant_id", "model_id", "event_id"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for CreateScoringTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        schema::create(manager, TABLES, INDEXES).await?;
        manager
            .create_index(
                Index::create()
                    .name("scoring_models_name")
                    .table(Alias::new("scoring_models"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("display_name"))
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        schema::drop(manager, TABLES).await
    }
}

const LEDGER_BY_CONTACT: IndexSpec = (
    "score_ledger",
    "ledger_by_contact",
    &["tenant_id", "model_id", "contact_id", "occurred_at"],
);

/// Each applied call re-folds the ledgers of the contacts it touches: the event, rule and
/// points were not in the by-contact index, so every entry was a lookup in the table, a
/// page read apiece. The index now holds them.
const COVER_LEDGER_BY_CONTACT: ReplaceIndex = ReplaceIndex {
    name: "m20261201_000001_cover_ledger_by_contact",
    old: LEDGER_BY_CONTACT,
    new: (
        "score_ledger",
        "ledger_by_contact_covering",
        &[
            "tenant_id",
            "model_id",
            "contact_id",
            "occurred_at",
            "event_id",
            "rule_id",
            "points",
        ],
    ),
};

/// Score states as `state_bytes` encodes them (protobuf), not JSON: under half the size, so
/// each ingest call rewrites fewer pages of the scores table and decodes and encodes its
/// states without JSON's parsing. The JSON already stored becomes its UTF-8 bytes, which
/// `state_bytes::decode` still reads; each state is rewritten in the new form when its
/// contact is next scored.
struct StatesAsBytes;

impl MigrationName for StatesAsBytes {
    fn name(&self) -> &str {
        "m20261203_000001_score_states_as_bytes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for StatesAsBytes {
    /// In one transaction on SQLite too (by default only PostgreSQL's migrations are): its
    /// steps then run on one connection of the pool, and a failed step leaves nothing done.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE scores ALTER COLUMN state TYPE bytea \
                     USING convert_to(state::text, 'UTF8')",
                )
                .await?;
            }
            _ => {
                // SQLite cannot change a column's type: a new column takes the values.
                db.execute_unprepared(
                    "ALTER TABLE scores ADD COLUMN state_bytes blob NOT NULL DEFAULT x''; \
                     UPDATE scores SET state_bytes = CAST(state AS blob); \
                     ALTER TABLE scores DROP COLUMN state; \
                     ALTER TABLE scores RENAME COLUMN state_bytes TO state",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        states_back_to_json(db, backend).await?;
        match backend {
            sea_orm::DbBackend::Postgres => {
                db.execute_unprepared(
                    "ALTER TABLE scores ALTER COLUMN state TYPE json \
                     USING convert_from(state, 'UTF8')::json",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "ALTER TABLE scores ADD COLUMN state_json json_text NOT NULL DEFAULT '{}'; \
                     UPDATE scores SET state_json = CAST(state AS text); \
                     ALTER TABLE scores DROP COLUMN state; \
                     ALTER TABLE scores RENAME COLUMN state_json TO state",
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Rewrites each state stored in the new form as JSON, 500 at a time (SQL cannot read
/// protobuf); a state that decodes as neither is removed, and folded again from the
/// ledger when its contact is next scored.
async fn states_back_to_json(
    db: &SchemaManagerConnection<'_>,
    backend: sea_orm::DbBackend,
) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, Statement};
    let (select, update, delete) = match backend {
        sea_orm::DbBackend::Postgres => (
            "SELECT tenant_id, model_id, contact_id, state FROM scores \
             WHERE get_byte(state, 0) <> 123 LIMIT 500",
            "UPDATE scores SET state = $1 WHERE tenant_id = $2 AND model_id = $3 AND contact_id = $4",
            "DELETE FROM scores WHERE tenant_id = $1 AND model_id = $2 AND contact_id = $3",
        ),
        _ => (
            "SELECT tenant_id, model_id, contact_id, state FROM scores \
             WHERE substr(state, 1, 1) <> x'7b' LIMIT 500",
            "UPDATE scores SET state = ? WHERE tenant_id = ? AND model_id = ? AND contact_id = ?",
            "DELETE FROM scores WHERE tenant_id = ? AND model_id = ? AND contact_id = ?",
        ),
    };
    loop {
        let rows = db
            .query_all_raw(Statement::from_string(backend, select))
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let key: (String, String, String) = (
                row.try_get_by_index(0)?,
                row.try_get_by_index(1)?,
                row.try_get_by_index(2)?,
            );
            let bytes: Vec<u8> = row.try_get_by_index(3)?;
            let json = crate::state_bytes::decode(&bytes)
                .map(|state| serde_json::to_vec(&state).expect("a state always serialises"));
            let (sql, values): (&str, Vec<sea_orm::Value>) = match json {
                Some(json) => (
                    update,
                    vec![json.into(), key.0.into(), key.1.into(), key.2.into()],
                ),
                None => (delete, vec![key.0.into(), key.1.into(), key.2.into()]),
            };
            db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
    }
}

/// Interactions are recorded by their history rows alone; builds before kept each id in
/// `applied_events` too. The ids whose history row is stored go (the row keeps them
/// applied); those of erased contacts, whose history is gone, and of other events stay.
struct ForgetIdsKeptByHistory;

impl MigrationName for ForgetIdsKeptByHistory {
    fn name(&self) -> &str {
        "m20261203_000002_forget_ids_kept_by_history"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ForgetIdsKeptByHistory {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        clm_store::forget_ids_kept_by(
            manager.get_connection(),
            ("applied_events", "interaction_history"),
        )
        .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The history keeps the ids applied either way: nothing to restore.
        Ok(())
    }
}
