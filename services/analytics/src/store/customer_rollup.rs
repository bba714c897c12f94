//! The customers rollup, kept current on ingest: one row per contact with orders in a
//! currency, holding its order days (from the orders rollup) and its first touch. Every
//! money report reads each customer; one row apiece instead of one per order day and a
//! second read for the first touch halves what they read.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement,
};

use super::entities::{contact, customer_order, order};

/// Contacts per query (one bound value each, beside the tenant).
const CONTACTS_PER_QUERY: usize = 500;

/// One order day: (day, micros, purchases).
pub(crate) type OrderDay = (i64, i64, i64);

/// Rewrites the rows of the `changed` contacts (their orders changed) and of the `touched`
/// ones that have orders (their first touch may have changed).
pub(crate) async fn refresh(
    conn: &impl ConnectionTrait,
    tenant: &str,
    changed: &BTreeSet<String>,
    touched: &BTreeSet<String>,
) -> Result<(), DbErr> {
    let all: Vec<String> = changed.union(touched).cloned().collect();
    if all.is_empty() {
        return Ok(());
    }
    serialize(conn, tenant).await?;
    // (contact, currency) -> order days.
    let mut days: BTreeMap<(String, String), Vec<OrderDay>> = BTreeMap::new();
    for chunk in all.chunks(CONTACTS_PER_QUERY) {
        let rows: Vec<(String, String, i64, i64, i64)> = order::Entity::find()
            .select_only()
            .columns([
                order::Column::ContactId,
                order::Column::Currency,
                order::Column::Day,
                order::Column::AmountMicros,
                order::Column::Purchases,
            ])
            .filter(order::Column::TenantId.eq(tenant))
            .filter(order::Column::ContactId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        for (contact, currency, day, micros, purchases) in rows {
            days.entry((contact, currency))
                .or_default()
                .push((day, micros, purchases));
        }
    }
    let with_orders: BTreeSet<&String> = days.keys().map(|(c, _)| c).collect();
    let rewrite: Vec<String> = all
        .iter()
        .filter(|c| changed.contains(*c) || with_orders.contains(c))
        .cloned()
        .collect();
    let mut touch: BTreeMap<String, (String, String)> = BTreeMap::new();
    for chunk in rewrite.chunks(CONTACTS_PER_QUERY) {
        customer_order::Entity::delete_many()
            .filter(customer_order::Column::TenantId.eq(tenant))
            .filter(customer_order::Column::ContactId.is_in(chunk.iter().cloned()))
            .exec(conn)
            .await?;
        let rows: Vec<(String, String, String)> = contact::Entity::find()
            .select_only()
            .columns([
                contact::Column::ContactId,
                contact::Column::Source,
                contact::Column::Campaign,
            ])
            .filter(contact::Column::TenantId.eq(tenant))
            .filter(contact::Column::ContactId.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        touch.extend(rows.into_iter().map(|(c, s, k)| (c, (s, k))));
    }
    let rows: Vec<customer_order::ActiveModel> = days
        .into_iter()
        .map(|((contact_id, currency), mut days)| {
            days.sort_unstable();
            let (source, campaign) = touch.get(&contact_id).cloned().unwrap_or_default();
            customer_order::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                currency: Set(currency),
                contact_id: Set(contact_id),
                source: Set(source),
                campaign: Set(campaign),
                days: Set(serde_json::to_string(&days).expect("numbers serialise")),
            }
        })
        .collect();
    for chunk in rows.chunks(1000) {
        clm_store::insert_many(conn, chunk.to_vec())
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// On PostgreSQL, waits until no other transaction of the tenant is between its rewrite
/// and its commit, and holds that turn until this one commits: a rewrite reads the
/// contacts' orders, and one that read them before another transaction's commit would
/// write the rows without that transaction's orders. (SQLite's writers already queue on
/// the write gate.)
async fn serialize(conn: &impl ConnectionTrait, tenant: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    conn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        [format!("clm.customer_orders:{tenant}").into()],
    ))
    .await?;
    Ok(())
}

/// Builds the rollup of every tenant from the orders (the migration that adds it runs
/// this once).
pub(crate) async fn build_all(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    let customers: Vec<(String, String)> = order::Entity::find()
        .select_only()
        .columns([order::Column::TenantId, order::Column::ContactId])
        .distinct()
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_tenant: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (tenant, contact) in customers {
        by_tenant.entry(tenant).or_default().insert(contact);
    }
    for (tenant, contacts) in by_tenant {
        refresh(conn, &tenant, &contacts, &BTreeSet::new()).await?;
    }
    Ok(())
}
