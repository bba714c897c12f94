//! Declarative tables for migrations: a service lists its tables as (name, columns,
//! primary key) and its indexes, and these helpers create or drop them on either backend.
//!
//! Column kinds are the Rust types of the entity fields: `String`, `Option<String>`, `i64`,
//! `Option<i64>`, `i32`, `Option<i32>`, `f64`, `bool`, `Json`, and `auto` for an
//! auto-incrementing BIGINT primary key.

use sea_orm_migration::prelude::*;

/// A table: name, (column, kind) pairs, primary key columns (empty with an `auto` column).
pub type TableSpec = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// An index: table, index name, columns.
pub type IndexSpec = (&'static str, &'static str, &'static [&'static str]);

fn column(name: &str, kind: &str) -> ColumnDef {
    let mut c = ColumnDef::new(Alias::new(name));
    match kind {
        "String" => c.string().not_null(),
        "Option<String>" => c.string().null(),
        "i64" => c.big_integer().not_null(),
        "Option<i64>" => c.big_integer().null(),
        "i32" => c.integer().not_null(),
        "Option<i32>" => c.integer().null(),
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
    // IF NOT EXISTS is for SQLite's pools: a connection whose cached schema still holds an
    // index dropped through another connection refuses a plain CREATE INDEX ("already
    // exists") without looking again, while IF NOT EXISTS makes it check the schema when
    // the statement runs, reload it, and create the index.
    index.name(name).table(Alias::new(table)).if_not_exists();
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

/// Creates `tables`, then `indexes`.
pub async fn create(
    manager: &SchemaManager<'_>,
    tables: &[TableSpec],
    indexes: &[IndexSpec],
) -> Result<(), DbErr> {
    for (name, columns, key) in tables {
        manager.create_table(table(name, columns, key)).await?;
    }
    create_indexes(manager, indexes).await
}

/// Creates `indexes` (of existing tables).
pub async fn create_indexes(
    manager: &SchemaManager<'_>,
    indexes: &[IndexSpec],
) -> Result<(), DbErr> {
    for (table_name, name, columns) in indexes {
        manager
            .create_index(index(table_name, name, columns))
            .await?;
    }
    Ok(())
}

/// Drops `indexes`.
pub async fn drop_indexes(manager: &SchemaManager<'_>, indexes: &[IndexSpec]) -> Result<(), DbErr> {
    for (table_name, name, _) in indexes {
        manager
            .drop_index(
                Index::drop()
                    .name(*name)
                    .table(Alias::new(*table_name))
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

/// Drops `tables`, last first.
pub async fn drop(manager: &SchemaManager<'_>, tables: &[TableSpec]) -> Result<(), DbErr> {
    for (name, _, _) in tables.iter().rev() {
        manager
            .drop_table(Table::drop().table(Alias::new(*name)).to_owned())
            .await?;
    }
    Ok(())
}

/// A migration that puts the index `new` in place of `old` (built first, so queries keep
/// an index meanwhile; the names differ because SQLite would not recreate a name it had
/// just dropped in the same migration). Rolling back restores `old`.
pub struct ReplaceIndex {
    /// The migration's name.
    pub name: &'static str,
    /// The index that goes.
    pub old: IndexSpec,
    /// The index that takes its place.
    pub new: IndexSpec,
}

impl MigrationName for ReplaceIndex {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ReplaceIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_indexes(manager, &[self.new]).await?;
        drop_indexes(manager, &[self.old]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_indexes(manager, &[self.old]).await?;
        drop_indexes(manager, &[self.new]).await
    }
}

/// In an upsert's update of `table`: the greater of the stored `column` and the one the
/// insert brought (`excluded`), written the same on SQLite and PostgreSQL.
pub fn greater_of(table: &str, column: &str) -> sea_orm::sea_query::Expr {
    sea_orm::sea_query::Expr::cust(format!(
        "CASE WHEN excluded.{column} > {table}.{column} \
         THEN excluded.{column} ELSE {table}.{column} END"
    ))
}
