//! The entry rollup, kept current on ingest: each contact's first interaction of each
//! type. A funnel over all time enters a contact at its first step-1 event; read from the
//! facts that was an aggregate over every such event (600,000 page views for the
//! 100,000-contact demo: ~0.4 s in SQLite alone). Now the entries are counted from the
//! rollup, and read only for contacts that have a later step's event.

use std::collections::BTreeMap;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};

use super::Store;
use super::entities::first_event;

/// (type, contact) -> the earliest instant seen.
pub(crate) type Firsts = BTreeMap<(String, String), i64>;

/// Lowers each (type, contact)'s first instant to the one given where that is earlier.
pub(crate) async fn lower(
    conn: &impl ConnectionTrait,
    tenant: &str,
    firsts: &Firsts,
) -> Result<(), DbErr> {
    let rows: Vec<_> = firsts.iter().collect();
    for chunk in rows.chunks(1000) {
        first_event::Entity::insert_many(chunk.iter().map(|((kind, contact), at)| {
            first_event::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                kind: Set(kind.clone()),
                contact_id: Set(contact.clone()),
                first_at: Set(**at),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                first_event::Column::TenantId,
                first_event::Column::Kind,
                first_event::Column::ContactId,
            ])
            .value(
                first_event::Column::FirstAt,
                Expr::cust(
                    "CASE WHEN excluded.first_at < first_events.first_at \
                     THEN excluded.first_at ELSE first_events.first_at END",
                ),
            )
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    }
    Ok(())
}

/// Folds `duplicate`'s first events into `survivor`'s.
pub(crate) async fn merge(
    conn: &impl ConnectionTrait,
    tenant: &str,
    duplicate: &str,
    survivor: &str,
) -> Result<(), DbErr> {
    let rows: Vec<(String, i64)> = first_event::Entity::find()
        .select_only()
        .columns([first_event::Column::Kind, first_event::Column::FirstAt])
        .filter(first_event::Column::TenantId.eq(tenant))
        .filter(first_event::Column::ContactId.eq(duplicate))
        .into_tuple()
        .all(conn)
        .await?;
    let firsts: Firsts = rows
        .into_iter()
        .map(|(kind, at)| ((kind, survivor.to_owned()), at))
        .collect();
    lower(conn, tenant, &firsts).await?;
    erase(conn, tenant, duplicate).await
}

/// Removes a contact's first events.
pub(crate) async fn erase(
    conn: &impl ConnectionTrait,
    tenant: &str,
    contact: &str,
) -> Result<(), DbErr> {
    first_event::Entity::delete_many()
        .filter(first_event::Column::TenantId.eq(tenant))
        .filter(first_event::Column::ContactId.eq(contact))
        .exec(conn)
        .await?;
    Ok(())
}

/// Builds the rollup from the facts already stored (the migration that adds it runs this
/// once).
pub(crate) async fn build_all(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared(
        "INSERT INTO first_events (tenant_id, kind, contact_id, first_at) \
         SELECT tenant_id, kind, contact_id, MIN(occurred_at) FROM interaction_facts \
         GROUP BY tenant_id, kind, contact_id",
    )
    .await?;
    Ok(())
}

impl Store {
    /// How many contacts had their first event of `kind` before `end`.
    pub async fn entries(&self, tenant: &str, kind: &str, end: i64) -> Result<i64, DbErr> {
        let count = first_event::Entity::find()
            .filter(first_event::Column::TenantId.eq(tenant))
            .filter(first_event::Column::Kind.eq(kind))
            .filter(first_event::Column::FirstAt.lt(end))
            .count(&self.db)
            .await?;
        Ok(count as i64)
    }
}
