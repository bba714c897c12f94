//! The analytics schema. Every index leads with `tenant_id`.

use sea_orm_migration::prelude::*;

/// The analytics service's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateAnalyticsTables)]
    }
}

struct CreateAnalyticsTables;

impl MigrationName for CreateAnalyticsTables {
    fn name(&self) -> &str {
        "m20261122_000001_create_analytics_tables"
    }
}

fn column(name: &str, kind: &str) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match kind {
        "String" => c.string().not_null(),
        "Option<String>" => c.string().null(),
        "i64" => c.big_integer().not_null(),
        "Option<i64>" => c.big_integer().null(),
        "Option<i32>" => c.integer().null(),
        "i32" => c.integer().not_null(),
        "f64" => c.double().not_null(),
        "bool" => c.boolean().not_null(),
        "auto" => c.big_integer().not_null().auto_increment().primary_key(),
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
    if !key.is_empty() {
        let mut pk = Index::create();
        for k in key {
            pk.col(Alias::new(*k));
        }
        t.primary_key(&mut pk);
    }
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
        "applied_events",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("applied_at", "i64"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "contacts",
        &[
            ("tenant_id", "String"),
            ("contact_id", "String"),
            ("created_at", "i64"),
            ("source", "String"),
            ("campaign", "String"),
            ("attributes", "Json"),
        ],
        &["tenant_id", "contact_id"],
    ),
    (
        "interaction_facts",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("contact_id", "String"),
            ("kind", "String"),
            ("occurred_at", "i64"),
            ("amount_micros", "i64"),
            ("currency", "String"),
            ("campaign", "String"),
            ("channel", "String"),
            ("nps_score", "Option<i32>"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "orders",
        &[
            ("tenant_id", "String"),
            ("contact_id", "String"),
            ("day", "i64"),
            ("currency", "String"),
            ("amount_micros", "i64"),
            ("purchases", "i64"),
        ],
        &["tenant_id", "contact_id", "day", "currency"],
    ),
    (
        "transitions",
        &[
            ("tenant_id", "String"),
            ("event_id", "String"),
            ("contact_id", "String"),
            ("model_id", "String"),
            ("from_stage", "String"),
            ("to_stage", "String"),
            ("occurred_at", "i64"),
        ],
        &["tenant_id", "event_id"],
    ),
    (
        "spend",
        &[
            ("tenant_id", "String"),
            ("spend_id", "String"),
            ("channel", "String"),
            ("campaign", "String"),
            ("start_at", "i64"),
            ("end_at", "i64"),
            ("amount_micros", "i64"),
            ("currency", "String"),
        ],
        &["tenant_id", "spend_id"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for CreateAnalyticsTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, columns, key) in TABLES {
            manager.create_table(table(name, columns, key)).await?;
        }
        for (table_name, name, columns) in [
            (
                "interaction_facts",
                "facts_by_time",
                &["tenant_id", "occurred_at"][..],
            ),
            (
                "interaction_facts",
                "facts_by_contact",
                &["tenant_id", "contact_id", "occurred_at"][..],
            ),
            ("orders", "orders_by_day", &["tenant_id", "day"][..]),
            (
                "transitions",
                "transitions_by_contact",
                &["tenant_id", "model_id", "contact_id", "occurred_at"][..],
            ),
        ] {
            manager
                .create_index(index(table_name, name, columns))
                .await?;
        }
        Ok(())
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
