//! The scoring schema. Every index leads with `tenant_id`.

use sea_orm_migration::prelude::*;

/// The scoring service's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateScoringTables),
            Box::new(clm_outbox::CreateOutboxTable),
        ]
    }
}

struct CreateScoringTables;

impl MigrationName for CreateScoringTables {
    fn name(&self) -> &str {
        "m20261122_000001_create_scoring_tables"
    }
}

fn column(name: &str, kind: &str) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match kind {
        "String" => c.string().not_null(),
        "Option<String>" => c.string().null(),
        "i64" => c.big_integer().not_null(),
        "f64" => c.double().not_null(),
        "bool" => c.boolean().not_null(),
        _ => c.json().not_null(),
    };
    c
}

fn table(name: &str, columns: &[(&str, &str)], key: &[&str]) -> TableCreateStatement {
    let mut t = Table::create();
    t.table(Alias::new(name));
    for (column_name, kind) in columns {
        t.col(column(column_name, kind));
    }
    let mut pk = Index::create();
    for k in key {
        pk.col(Alias::new(*k));
    }
    t.primary_key(&mut pk);
    t.to_owned()
}

fn index(table: &str, name: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

/// A table: name, (column, kind) pairs, primary key columns.
type TableSpec = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

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

#[async_trait::async_trait]
impl MigrationTrait for CreateScoringTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns, key) in TABLES {
            manager.create_table(table(name, columns, key)).await?;
        }
        for (table_name, name, columns) in [
            (
                "interaction_history",
                "history_by_contact",
                &["tenant_id", "contact_id", "occurred_at"][..],
            ),
            (
                "score_ledger",
                "ledger_by_contact",
                &["tenant_id", "model_id", "contact_id", "occurred_at"][..],
            ),
            (
                "band_events",
                "band_events_by_event",
                &["tenant_id", "model_id", "event_id"][..],
            ),
        ] {
            manager
                .create_index(index(table_name, name, columns))
                .await?;
        }
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
        for (name, _, _) in TABLES.iter().rev() {
            manager
                .drop_table(Table::drop().table(Alias::new(*name)).to_owned())
                .await?;
        }
        Ok(())
    }
}
