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
