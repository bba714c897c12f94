//! The lifecycle schema. Every index leads with `tenant_id`.

use clm_store::schema::{self, IndexSpec, ReplaceIndex, TableSpec};
use sea_orm_migration::prelude::*;

/// The lifecycle service's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateLifecycleTables)];
        migrations.extend(clm_outbox::migrations());
        migrations.push(Box::new(COVER_ACTIVITIES_BY_CONTACT));
        migrations.push(Box::new(ForgetIdsKeptByActivities));
        migrations
    }
}

struct CreateLifecycleTables;

impl MigrationName for CreateLifecycleTables {
    fn name(&self) -> &str {
        "m20261122_000001_create_lifecycle_tables"
    }
}

const TABLES: &[TableSpec] = &[
    (
        "stage_models",
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
        "applied_signals",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("applied_at", "i64"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "contact_facts",
        &[
            ("tenant_id", "String"),
            ("contact_id", "String"),
            ("attributes", "Json"),
            ("score", "f64"),
            ("band", "String"),
            ("updated_at", "i64"),
        ],
        &["tenant_id", "contact_id"],
    ),
    (
        "activities",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("contact_id", "String"),
            ("kind", "String"),
            ("occurred_at", "i64"),
            ("amount_micros", "i64"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "contact_stages",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("contact_id", "String"),
            ("stage", "String"),
            ("entered_at", "i64"),
        ],
        &["tenant_id", "model_id", "contact_id"],
    ),
    (
        "stage_history",
        &[
            ("id", "auto"),
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("contact_id", "String"),
            ("from_stage", "String"),
            ("to_stage", "String"),
            ("entered_at", "i64"),
            ("exited_at", "Option<i64>"),
            ("cause", "String"),
            ("event_id", "String"),
            ("actor", "String"),
            ("reason", "String"),
            ("forced", "bool"),
        ],
        &[],
    ),
    (
        "segments",
        &[
            ("tenant_id", "String"),
            ("id", "String"),
            ("display_name", "String"),
            ("filter", "String"),
            ("created_at", "i64"),
        ],
        &["tenant_id", "id"],
    ),
    (
        "segment_members",
        &[
            ("tenant_id", "String"),
            ("segment_id", "String"),
            ("contact_id", "String"),
            ("entered_at", "i64"),
        ],
        &["tenant_id", "segment_id", "contact_id"],
    ),
    (
        "lifecycle_events",
        &[
            ("id", "auto"),
            ("tenant_id", "String"),
            ("kind", "i32"),
            ("contact_id", "String"),
            ("occurred_at", "i64"),
            ("from_stage", "String"),
            ("to_stage", "String"),
            ("segment_id", "String"),
            ("action", "String"),
            ("cause", "String"),
        ],
        &[],
    ),
    (
        "fired_triggers",
        &[
            ("tenant_id", "String"),
            ("model_id", "String"),
            ("trigger_id", "String"),
            ("contact_id", "String"),
            ("due_at", "i64"),
        ],
        &[
            "tenant_id",
            "model_id",
            "trigger_id",
            "contact_id",
            "due_at",
        ],
    ),
    (
        "lifecycle_tombstones",
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
        "stage_history",
        "history_by_contact",
        &["tenant_id", "model_id", "contact_id", "id"],
    ),
    ("lifecycle_events", "events_by_tenant", &["tenant_id", "id"]),
    ACTIVITIES_BY_CONTACT,
    (
        "contact_stages",
        "contacts_by_stage",
        &["tenant_id", "model_id", "stage"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for CreateLifecycleTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        schema::create(manager, TABLES, INDEXES).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        schema::drop(manager, TABLES).await
    }
}

const ACTIVITIES_BY_CONTACT: IndexSpec = (
    "activities",
    "activities_by_contact",
    &["tenant_id", "contact_id", "occurred_at"],
);

/// Each applied call reads the histories of the contacts it touches: the kind and amount
/// were not in the by-contact index, so every activity was a lookup in the table, a page
/// read apiece. The index now holds them.
const COVER_ACTIVITIES_BY_CONTACT: ReplaceIndex = ReplaceIndex {
    name: "m20261201_000001_cover_activities_by_contact",
    old: ACTIVITIES_BY_CONTACT,
    new: (
        "activities",
        "activities_by_contact_covering",
        &[
            "tenant_id",
            "contact_id",
            "occurred_at",
            "kind",
            "amount_micros",
        ],
    ),
};

/// Interactions are recorded by their activity rows alone; builds before kept each id in
/// `applied_signals` too. The ids whose activity is stored go (the row keeps them
/// applied); those of erased contacts, whose activities are gone, and of other signals stay.
struct ForgetIdsKeptByActivities;

impl MigrationName for ForgetIdsKeptByActivities {
    fn name(&self) -> &str {
        "m20261203_000001_forget_ids_kept_by_activities"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ForgetIdsKeptByActivities {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        clm_store::forget_ids_kept_by(manager.get_connection(), ("applied_signals", "activities"))
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The activities keep the ids applied either way: nothing to restore.
        Ok(())
    }
}
