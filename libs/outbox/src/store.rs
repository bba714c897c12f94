//! Writing, claiming, acknowledging and counting outbox rows.

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Statement,
};

use crate::entity::{self, Column, Entity};

/// A message to write in the caller's transaction.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The receiving service, e.g. `scoring`.
    pub target: &'static str,
    /// The tenant the message belongs to.
    pub tenant_id: String,
    /// The receiver's dedupe key.
    pub event_id: String,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// A claimed message on its way to the receiver.
#[derive(Debug, Clone)]
pub struct Message {
    /// Row id (delivery order).
    pub id: i64,
    /// The tenant.
    pub tenant_id: String,
    /// The receiver's dedupe key.
    pub event_id: String,
    /// The encoded message.
    pub payload: Vec<u8>,
    /// The W3C traceparent of the request that wrote it.
    pub traceparent: String,
    /// Failed deliveries so far.
    pub attempts: i32,
}

/// Writes `messages` with `db`, which should be the transaction of the change that caused
/// them. Each row keeps the current trace context, so delivery continues the trace.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    now: i64,
    messages: Vec<NewMessage>,
) -> Result<(), DbErr> {
    if messages.is_empty() {
        return Ok(());
    }
    let traceparent = clm_telemetry::current_traceparent();
    let rows: Vec<_> = messages
        .into_iter()
        .map(|m| entity::ActiveModel {
            id: NotSet,
            target: Set(m.target.to_owned()),
            tenant_id: Set(m.tenant_id),
            event_id: Set(m.event_id),
            payload: Set(m.payload),
            traceparent: Set(traceparent.clone()),
            created_at: Set(now),
            attempts: Set(0),
            available_at: Set(now),
            lease_until: Set(0),
            last_error: Set(String::new()),
        })
        .collect();
    // SQLite binds at most 32,766 parameters per statement: 11 columns x 1,000 rows fits.
    for chunk in rows.chunks(1000) {
        Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Leases up to `limit` due messages of `target` until `lease_until`, oldest first. On
/// PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so relays of several replicas
/// share the work and never lease the same row twice.
pub(crate) async fn claim<C: ConnectionTrait>(
    db: &C,
    target: &str,
    now: i64,
    lease_until: i64,
    limit: u64,
) -> Result<Vec<Message>, DbErr> {
    let backend = db.get_database_backend();
    // Plain SQL: sea-query has no portable UPDATE ... WHERE id IN (SELECT ... SKIP LOCKED)
    // RETURNING, and this runs on every relay turn. On PostgreSQL the ids are picked by an
    // `ARRAY(...)` sub-select, which runs once per statement: as `id IN (SELECT ...)` it is
    // a join the executor may run again (a re-check of a row changed meanwhile), and with
    // SKIP LOCKED each run picks rows the previous one did not, past the limit: a relay
    // once claimed more than the receiver's 5,000 per call and was refused.
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE outbox SET lease_until = $1 WHERE id = ANY(ARRAY(
                SELECT id FROM outbox WHERE target = $2 AND available_at <= $3 AND lease_until <= $3
                ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED))
             RETURNING id, tenant_id, event_id, payload, traceparent, attempts"
        }
        _ => {
            "UPDATE outbox SET lease_until = ?1 WHERE id IN (
                SELECT id FROM outbox WHERE target = ?2 AND available_at <= ?3 AND lease_until <= ?3
                ORDER BY id LIMIT ?4)
             RETURNING id, tenant_id, event_id, payload, traceparent, attempts"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                lease_until.into(),
                target.into(),
                now.into(),
                (limit as i64).into(),
            ],
        ))
        .await?;
    let mut messages = rows
        .into_iter()
        .map(|row| {
            Ok(Message {
                id: row.try_get("", "id")?,
                tenant_id: row.try_get("", "tenant_id")?,
                event_id: row.try_get("", "event_id")?,
                payload: row.try_get("", "payload")?,
                traceparent: row.try_get("", "traceparent")?,
                attempts: row.try_get("", "attempts")?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    // RETURNING gives no order guarantee.
    messages.sort_by_key(|m| m.id);
    Ok(messages)
}

/// Removes delivered messages.
pub(crate) async fn acknowledge<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives back leased messages that were not sent, due again at once.
pub(crate) async fn unlease<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    Entity::update_many()
        .col_expr(Column::LeaseUntil, Expr::value(0i64))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// Releases messages whose delivery failed, to be retried at `retry_at`.
pub(crate) async fn release<C: ConnectionTrait>(
    db: &C,
    ids: &[i64],
    retry_at: i64,
    error: &str,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait};
    let error: String = error.chars().take(1000).collect();
    Entity::update_many()
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::AvailableAt, Expr::value(retry_at))
        .col_expr(Column::LeaseUntil, Expr::value(0i64))
        .col_expr(Column::LastError, Expr::value(error))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(db)
        .await?;
    Ok(())
}

/// How far behind a target's delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Messages not yet delivered.
    pub depth: u64,
    /// When the oldest undelivered message was written (micros), if any.
    pub oldest_created_at: Option<i64>,
}

/// Whether any message for `target` is undelivered: one index probe, however deep the
/// backlog (cheap enough to poll while the relays work).
pub async fn any_pending<C: ConnectionTrait>(db: &C, target: &str) -> Result<bool, DbErr> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Target.eq(target))
        .into_tuple::<i64>()
        .one(db)
        .await?
        .is_some())
}

/// The depth and the age of the oldest undelivered message of `target`.
pub async fn stats<C: ConnectionTrait>(db: &C, target: &str) -> Result<OutboxStats, DbErr> {
    let (depth, oldest): (i64, Option<i64>) = Entity::find()
        .select_only()
        .column_as(Column::Id.count(), "depth")
        .column_as(Column::CreatedAt.min(), "oldest")
        .filter(Column::Target.eq(target))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, None));
    Ok(OutboxStats {
        depth: depth.max(0) as u64,
        oldest_created_at: oldest,
    })
}
