//! Event ids a service keeps after the rows that recorded them are gone.

use std::collections::HashSet;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, PrimaryKeyTrait,
    TryInsertResult,
};

/// Copies the event ids of `contact`'s rows in `records` (a table keyed by `tenant_id`
/// and `event_id`, with a `contact_id`) into `applied` (`tenant_id`, `event_id`,
/// `applied_at`), before an erasure removes those rows: the rows were the record that
/// each event had been applied, and a repeated delivery of one must stay a duplicate. An
/// id says nothing about the person.
pub async fn keep_event_ids<C: ConnectionTrait>(
    conn: &C,
    (applied, records): (&str, &str),
    tenant: &str,
    contact: &str,
    now: i64,
) -> Result<(), DbErr> {
    let (tenant_id, event_id) = (Alias::new("tenant_id"), Alias::new("event_id"));
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new(applied))
        .columns([
            tenant_id.clone(),
            event_id.clone(),
            Alias::new("applied_at"),
        ])
        .select_from(
            Query::select()
                .columns([tenant_id.clone(), event_id.clone()])
                .expr(Expr::value(now))
                .from(Alias::new(records))
                .and_where(Expr::col(tenant_id.clone()).eq(tenant))
                .and_where(Expr::col(Alias::new("contact_id")).eq(contact))
                .to_owned(),
        )
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::columns([tenant_id, event_id])
                .do_nothing()
                .to_owned(),
        );
    conn.execute(&insert).await?;
    Ok(())
}

/// Removes from `applied` the event ids that rows of `records` (keyed the same way) also
/// keep: for a migration after `records` became the record of those events, where builds
/// before kept each id in both tables. Ids without a row in `records` (those of erased
/// contacts, and every other kind of event) stay.
pub async fn forget_ids_kept_by<C: ConnectionTrait>(
    conn: &C,
    (applied, records): (&str, &str),
) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!(
        "DELETE FROM {applied} WHERE EXISTS (SELECT 1 FROM {records} r \
         WHERE r.tenant_id = {applied}.tenant_id AND r.event_id = {applied}.event_id)"
    ))
    .await?;
    Ok(())
}

/// Which of `ids` `table` (keyed by `tenant_id` and `event_id`) holds for `tenant`: a read
/// of its key alone, 1,000 ids a query.
pub async fn find_event_ids<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    tenant: &str,
    ids: &[String],
) -> Result<HashSet<String>, DbErr> {
    let (tenant_id, event_id) = (Alias::new("tenant_id"), Alias::new("event_id"));
    let mut found = HashSet::new();
    for chunk in ids.chunks(1000) {
        let select = Query::select()
            .column(event_id.clone())
            .from(Alias::new(table))
            .and_where(Expr::col(tenant_id.clone()).eq(tenant))
            .and_where(Expr::col(event_id.clone()).is_in(chunk.iter().cloned()))
            .to_owned();
        for row in conn.query_all(&select).await? {
            found.insert(row.try_get_by_index(0)?);
        }
    }
    Ok(found)
}

/// Inserts `rows` of a table keyed by (`tenant_id`, `event_id`), skipping those whose key
/// is stored already, and returns the event ids of the rows it took: the insert is the
/// record that an event was applied, so what it took is what is new.
pub async fn insert_new<A, C>(conn: &C, rows: Vec<A>) -> Result<HashSet<String>, DbErr>
where
    A: ActiveModelTrait,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    <A::Entity as EntityTrait>::PrimaryKey: PrimaryKeyTrait<ValueType = (String, String)>,
    C: ConnectionTrait,
{
    let mut new = HashSet::with_capacity(rows.len());
    // SQLite binds at most 32,766 parameters per statement: 1,000 rows of up to 32 columns.
    for chunk in rows.chunks(1000) {
        let inserted = crate::insert_many(conn, chunk.to_vec())
            .on_conflict_do_nothing()
            .exec_with_returning_keys(conn)
            .await?;
        if let TryInsertResult::Inserted(keys) = inserted {
            new.extend(keys.into_iter().map(|(_, id)| id));
        }
    }
    Ok(new)
}
