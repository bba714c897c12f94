//! The outbox table, for every service's migrator.

use sea_orm_migration::prelude::*;

/// The outbox's migrations in order; append them to a service's migrator.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateOutboxTable),
        Box::new(IndexOutboxById),
        Box::new(CountOutboxMessages),
    ]
}

/// Creates the `outbox` table; add it to a service's migrator.
pub struct CreateOutboxTable;

impl MigrationName for CreateOutboxTable {
    fn name(&self) -> &str {
        "m20261122_000100_create_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutboxTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let col = |name: &str| ColumnDef::new(Alias::new(name));
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("outbox"))
                    .col(
                        col("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(col("target").string().not_null())
                    .col(col("tenant_id").string().not_null())
                    .col(col("event_id").string().not_null())
                    .col(col("payload").binary().not_null())
                    .col(col("traceparent").string().not_null().default(""))
                    .col(col("created_at").big_integer().not_null())
                    .col(col("attempts").integer().not_null().default(0))
                    .col(col("available_at").big_integer().not_null())
                    .col(col("lease_until").big_integer().not_null().default(0))
                    .col(col("last_error").string().not_null().default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_due")
                    .table(Alias::new("outbox"))
                    .col(Alias::new("target"))
                    .col(Alias::new("available_at"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("outbox")).to_owned())
            .await
    }
}

/// Relays claim the oldest rows (`ORDER BY id LIMIT n`). The first index led with
/// `available_at`, so every claim sorted the whole due backlog: the bigger the backlog,
/// the slower the relay drained it. Walking `(target, id)` finds the first due rows at once.
pub struct IndexOutboxById;

impl MigrationName for IndexOutboxById {
    fn name(&self) -> &str {
        "m20261123_000100_index_outbox_by_id"
    }
}

/// The index relays claimed by first, and the one they claim by now.
const OUTBOX_DUE: clm_store::schema::IndexSpec =
    ("outbox", "outbox_due", &["target", "available_at", "id"]);
const OUTBOX_BY_ID: clm_store::schema::IndexSpec = ("outbox", "outbox_by_id", &["target", "id"]);

#[async_trait::async_trait]
impl MigrationTrait for IndexOutboxById {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        clm_store::schema::drop_indexes(manager, &[OUTBOX_DUE]).await?;
        clm_store::schema::create_indexes(manager, &[OUTBOX_BY_ID]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        clm_store::schema::drop_indexes(manager, &[OUTBOX_BY_ID]).await?;
        clm_store::schema::create_indexes(manager, &[OUTBOX_DUE]).await
    }
}

/// A row holds several messages (`enqueue`): `messages` counts them. Rows written before
/// hold one each, as the default says.
pub struct CountOutboxMessages;

impl MigrationName for CountOutboxMessages {
    fn name(&self) -> &str {
        "m20261130_000100_count_outbox_messages"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CountOutboxMessages {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("outbox"))
                    .add_column(
                        ColumnDef::new(Alias::new("messages"))
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("outbox"))
                    .drop_column(Alias::new("messages"))
                    .to_owned(),
            )
            .await
    }
}
