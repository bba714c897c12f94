//! The contacts schema. Every index leads with `tenant_id`.

use sea_orm_migration::prelude::*;

/// The contacts service's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![Box::new(CreateContactTables)];
        migrations.extend(clm_outbox::migrations());
        migrations
    }
}

struct CreateContactTables;

impl MigrationName for CreateContactTables {
    fn name(&self) -> &str {
        "m20261122_000001_create_contact_tables"
    }
}

fn text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .string()
        .not_null()
        .default("")
        .to_owned()
}

fn big(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .not_null()
        .to_owned()
}

fn index(table: &str, name: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    if unique {
        index.unique();
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for CreateContactTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let contacts = Alias::new("contacts");
        manager
            .create_table(
                Table::create()
                    .table(contacts.clone())
                    .col(ColumnDef::new(Alias::new("tenant_id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("email")).string().not_null())
                    .col(text("first_name"))
                    .col(text("last_name"))
                    .col(text("phone"))
                    .col(text("company"))
                    .col(text("job_title"))
                    .col(text("country"))
                    .col(text("city"))
                    .col(text("source"))
                    .col(text("campaign"))
                    .col(ColumnDef::new(Alias::new("attributes")).json().not_null())
                    .col(
                        ColumnDef::new(Alias::new("email_opt_in"))
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("email_consent_at"))
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("sms_opt_in"))
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("sms_consent_at"))
                            .big_integer()
                            .null(),
                    )
                    .col(big("created_at"))
                    .col(big("updated_at"))
                    .col(big("version"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("tenant_id"))
                            .col(Alias::new("id")),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            ("contacts_email", &["tenant_id", "email"][..], true),
            (
                "contacts_created",
                &["tenant_id", "created_at", "id"][..],
                false,
            ),
            (
                "contacts_updated",
                &["tenant_id", "updated_at", "id"][..],
                false,
            ),
            (
                "contacts_last_name",
                &["tenant_id", "last_name", "id"][..],
                false,
            ),
            (
                "contacts_company",
                &["tenant_id", "company", "id"][..],
                false,
            ),
            (
                "contacts_country",
                &["tenant_id", "country", "id"][..],
                false,
            ),
        ] {
            manager
                .create_index(index("contacts", name, columns, unique))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("interactions"))
                    .col(ColumnDef::new(Alias::new("tenant_id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("event_id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("contact_id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("kind")).string().not_null())
                    .col(big("occurred_at"))
                    .col(
                        ColumnDef::new(Alias::new("amount_micros"))
                            .big_integer()
                            .null(),
                    )
                    .col(text("currency"))
                    .col(text("campaign"))
                    .col(text("channel"))
                    .col(ColumnDef::new(Alias::new("properties")).json().not_null())
                    .col(big("recorded_at"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("tenant_id"))
                            .col(Alias::new("event_id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "interactions",
                "interactions_timeline",
                &["tenant_id", "contact_id", "occurred_at", "event_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("contact_tombstones"))
                    .col(ColumnDef::new(Alias::new("tenant_id")).string().not_null())
                    .col(ColumnDef::new(Alias::new("contact_id")).string().not_null())
                    .col(big("erased_at"))
                    .col(ColumnDef::new(Alias::new("merged_into")).string().null())
                    .primary_key(
                        Index::create()
                            .col(Alias::new("tenant_id"))
                            .col(Alias::new("contact_id")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["contact_tombstones", "interactions", "contacts"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
