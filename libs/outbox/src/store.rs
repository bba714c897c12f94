//! Writing, claiming, acknowledging and counting outbox rows.
//!
//! A row holds up to [`PACK`] messages of one target and tenant, written by one
//! transaction: a row of one message stores it as it is, a row of several stores them
//! back to back, each as its event id and its payload, both after their length as a
//! varint (protobuf's length-delimited framing). One row per message cost every message
//! a row insert, a lease update and a delete in the sender's database, more row
//! operations than the change that caused it.
//!
//! Rows in this format are stored under the target's name with [`PACKED`] appended: a
//! relay built before packing claims rows by the plain name, and would read a packed row
//! as one message that does not decode, skip it and delete the row. Rows under the plain
//! name (written by such a build during a rolling upgrade) hold one message each; a relay
//! adopts them when no lease holds them, keeping their ids and so their place in line.

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

/// Appended to a target's name in the `target` column of rows written in the packed
/// format.
pub const PACKED: &str = "/packed";

/// The `target` column of `target`'s rows.
fn packed(target: &str) -> String {
    format!("{target}{PACKED}")
}

/// Most messages in one row. Rows are claimed whole, so a claim exceeds the relay's
/// batch size only when its first row alone does; keep batch sizes at this or above.
pub const PACK: usize = 100;

/// A claimed message on its way to the receiver.
#[derive(Debug, Clone)]
pub struct Message {
    /// Id of the row holding it (delivery order; the messages of a row share it).
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
/// them, packed [`PACK`] to a row per target and tenant, in their order. Each row keeps
/// the current trace context, so delivery continues the trace; its `event_id` is its
/// first message's.
pub async fn enqueue<C: ConnectionTrait>(
    db: &C,
    now: i64,
    messages: Vec<NewMessage>,
) -> Result<(), DbErr> {
    if messages.is_empty() {
        return Ok(());
    }
    let traceparent = clm_telemetry::current_traceparent();
    let rows: Vec<_> = packs(messages)
        .into_iter()
        .map(|pack| {
            let first = &pack[0];
            entity::ActiveModel {
                id: NotSet,
                target: Set(packed(first.target)),
                tenant_id: Set(first.tenant_id.clone()),
                event_id: Set(first.event_id.clone()),
                messages: Set(pack.len() as i32),
                payload: Set(pack_payloads(&pack)),
                traceparent: Set(traceparent.clone()),
                created_at: Set(now),
                attempts: Set(0),
                available_at: Set(now),
                lease_until: Set(0),
                last_error: Set(String::new()),
            }
        })
        .collect();
    // SQLite binds at most 32,766 parameters per statement: 12 columns x 1,000 rows fits.
    for chunk in rows.chunks(1000) {
        clm_store::insert_many(db, chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Groups messages by target and tenant, keeping their order, into packs of at most
/// [`PACK`].
fn packs(messages: Vec<NewMessage>) -> Vec<Vec<NewMessage>> {
    let mut groups: Vec<Vec<NewMessage>> = Vec::new();
    let mut open: std::collections::HashMap<(&'static str, String), usize> =
        std::collections::HashMap::new();
    for message in messages {
        let key = (message.target, message.tenant_id.clone());
        match open.get(&key) {
            Some(&at) if groups[at].len() < PACK => groups[at].push(message),
            _ => {
                open.insert(key, groups.len());
                groups.push(vec![message]);
            }
        }
    }
    groups
}

/// A row's payload: its one message as it is, or each message's event id and payload
/// after their lengths.
fn pack_payloads(pack: &[NewMessage]) -> Vec<u8> {
    if let [one] = pack {
        return one.payload.clone();
    }
    let size = pack
        .iter()
        .map(|m| m.event_id.len() + m.payload.len() + 10)
        .sum();
    let mut out = Vec::with_capacity(size);
    for message in pack {
        for part in [message.event_id.as_bytes(), &message.payload] {
            prost::encoding::encode_varint(part.len() as u64, &mut out);
            out.extend_from_slice(part);
        }
    }
    out
}

/// The (event id, payload) of each of a row's `messages`: a row of one holds it as it
/// is. A packed row that does not parse (possible only through corruption) gives its
/// payload back as the error.
pub(crate) fn row_messages(
    event_id: &str,
    payload: Vec<u8>,
    messages: i32,
) -> Result<Vec<(String, Vec<u8>)>, Vec<u8>> {
    if messages <= 1 {
        return Ok(vec![(event_id.to_owned(), payload)]);
    }
    unpack_payloads(&payload, messages as usize).ok_or(payload)
}

/// The (event id, payload) of each of a packed row's `messages`; `None` when it does not
/// parse.
fn unpack_payloads(payload: &[u8], messages: usize) -> Option<Vec<(String, Vec<u8>)>> {
    fn part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = usize::try_from(prost::encoding::decode_varint(rest).ok()?).ok()?;
        let (part, tail) = rest.split_at_checked(len)?;
        *rest = tail;
        Some(part)
    }
    let mut out = Vec::with_capacity(messages);
    let mut rest = payload;
    while !rest.is_empty() {
        let event_id = std::str::from_utf8(part(&mut rest)?).ok()?.to_owned();
        out.push((event_id, part(&mut rest)?.to_vec()));
    }
    (out.len() == messages).then_some(out)
}

/// How much one claim may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    /// Rows looked at (and on PostgreSQL locked while the claim runs).
    pub rows: u64,
    /// Messages taken, unless the first row alone holds more.
    pub messages: u64,
}

/// Leases the oldest due rows of `target` until `lease_until`: of the first `limit.rows`,
/// as many as hold at most `limit.messages` messages (at least one row), and returns their
/// messages in order. On PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so
/// relays of several replicas share the work and never lease the same row twice.
pub(crate) async fn claim<C: ConnectionTrait>(
    db: &C,
    target: &str,
    now: i64,
    lease_until: i64,
    limit: Limit,
) -> Result<Vec<Message>, DbErr> {
    adopt(db, target, now).await?;
    let backend = db.get_database_backend();
    // Plain SQL: sea-query has no portable UPDATE ... WHERE id IN (SELECT ... SKIP LOCKED)
    // RETURNING, and this runs on every relay turn. On PostgreSQL the ids are picked by an
    // `ARRAY(...)` sub-select, which runs once per statement: as `id IN (SELECT ...)` it is
    // a join the executor may run again (a re-check of a row changed meanwhile), and with
    // SKIP LOCKED each run picks rows the previous one did not, past the limit: a relay
    // once claimed more than the receiver's 5,000 per call and was refused.
    // Of the first `limit.rows` due rows, those whose messages up to and including their
    // own number at most `limit.messages`, and the first row whatever its size. Rows
    // picked and not taken are unlocked when the statement ends.
    let sql = match backend {
        DbBackend::Postgres => {
            "WITH picked AS MATERIALIZED (
                SELECT id, messages FROM outbox
                WHERE target = $2 AND available_at <= $3 AND lease_until <= $3
                ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE outbox SET lease_until = $1 WHERE id = ANY(ARRAY(
                SELECT id FROM (
                    SELECT id, messages, sum(messages) OVER (ORDER BY id) AS upto FROM picked
                ) p WHERE upto <= $5 OR upto = messages))
             RETURNING id, tenant_id, event_id, payload, traceparent, attempts, messages"
        }
        _ => {
            "UPDATE outbox SET lease_until = ?1 WHERE id IN (
                SELECT id FROM (
                    SELECT id, messages, sum(messages) OVER (ORDER BY id) AS upto FROM (
                        SELECT id, messages FROM outbox
                        WHERE target = ?2 AND available_at <= ?3 AND lease_until <= ?3
                        ORDER BY id LIMIT ?4)
                ) WHERE upto <= ?5 OR upto = messages)
             RETURNING id, tenant_id, event_id, payload, traceparent, attempts, messages"
        }
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                lease_until.into(),
                packed(target).into(),
                now.into(),
                (limit.rows as i64).into(),
                (limit.messages as i64).into(),
            ],
        ))
        .await?;
    let mut claimed = rows
        .into_iter()
        .map(|row| {
            let count: i32 = row.try_get("", "messages")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            let first = Message {
                id: row.try_get("", "id")?,
                tenant_id: row.try_get("", "tenant_id")?,
                event_id: row.try_get("", "event_id")?,
                payload: Vec::new(),
                traceparent: row.try_get("", "traceparent")?,
                attempts: row.try_get("", "attempts")?,
            };
            Ok((first, count, payload))
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    // RETURNING gives no order guarantee.
    claimed.sort_by_key(|(m, _, _)| m.id);
    let mut messages = Vec::new();
    for (row, count, payload) in claimed {
        let unpacked = match row_messages(&row.event_id, payload, count) {
            Ok(unpacked) => unpacked,
            Err(payload) => {
                // Passed on whole: the receiver's decoding logs it and skips it, and the
                // row is removed with its batch rather than claimed forever.
                tracing::error!(outbox_id = row.id, "outbox row whose messages do not parse");
                messages.push(Message { payload, ..row });
                continue;
            }
        };
        messages.extend(unpacked.into_iter().map(|(event_id, payload)| Message {
            event_id,
            payload,
            ..row.clone()
        }));
    }
    Ok(messages)
}

/// Moves `target`'s rows written by a build before packing (one message each, stored as
/// it is) under the packed name, unless a lease holds them: such a build's relay may be
/// delivering them. Costs one index probe when there are none.
async fn adopt<C: ConnectionTrait>(db: &C, target: &str, now: i64) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    let any = Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Target.eq(target))
        .into_tuple::<i64>()
        .one(db)
        .await?;
    if any.is_none() {
        return Ok(());
    }
    let adopted = Entity::update_many()
        .col_expr(Column::Target, Expr::value(packed(target)))
        .filter(Column::Target.eq(target))
        .filter(Column::LeaseUntil.lte(now))
        .exec(db)
        .await?;
    tracing::info!(
        target_service = target,
        rows = adopted.rows_affected,
        "outbox rows of an earlier build adopted"
    );
    Ok(())
}

/// Each row id once, for the statements that change rows.
fn rows(ids: &[i64]) -> Vec<i64> {
    let mut rows = ids.to_vec();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Removes the rows of delivered messages.
pub(crate) async fn acknowledge<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<(), DbErr> {
    Entity::delete_many()
        .filter(Column::Id.is_in(rows(ids)))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives back leased messages that were not sent, due again at once.
pub(crate) async fn unlease<C: ConnectionTrait>(db: &C, ids: &[i64]) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    Entity::update_many()
        .col_expr(Column::LeaseUntil, Expr::value(0i64))
        .filter(Column::Id.is_in(rows(ids)))
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
        .filter(Column::Id.is_in(rows(ids)))
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

/// Whether any message for `target` is undelivered: an index probe per format, however
/// deep the backlog (cheap enough to poll while the relays work).
pub async fn any_pending<C: ConnectionTrait>(db: &C, target: &str) -> Result<bool, DbErr> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Target.is_in([target.to_owned(), packed(target)]))
        .into_tuple::<i64>()
        .one(db)
        .await?
        .is_some())
}

/// The depth and the age of the oldest undelivered message of `target`.
pub async fn stats<C: ConnectionTrait>(db: &C, target: &str) -> Result<OutboxStats, DbErr> {
    // SUM over no rows is NULL.
    let (depth, oldest): (Option<i64>, Option<i64>) = Entity::find()
        .select_only()
        .column_as(Column::Messages.sum(), "depth")
        .column_as(Column::CreatedAt.min(), "oldest")
        .filter(Column::Target.is_in([target.to_owned(), packed(target)]))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((None, None));
    Ok(OutboxStats {
        depth: depth.unwrap_or(0).max(0) as u64,
        oldest_created_at: oldest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(target: &'static str, tenant: &str, payload: &[u8]) -> NewMessage {
        NewMessage {
            target,
            tenant_id: tenant.into(),
            event_id: String::from_utf8_lossy(payload).into_owned(),
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn packs_keep_each_target_and_tenant_apart_and_in_order() {
        let messages: Vec<NewMessage> = (0..4 * PACK + 10)
            .map(|i| {
                let tenant = if i % 2 == 0 { "t1" } else { "t2" };
                let target = if i % 5 == 0 { "b" } else { "a" };
                message(target, tenant, format!("{i}").as_bytes())
            })
            .collect();
        let packs = packs(messages.clone());
        assert!(packs.iter().all(|p| (1..=PACK).contains(&p.len())));
        for pack in &packs {
            assert!(
                pack.iter()
                    .all(|m| m.target == pack[0].target && m.tenant_id == pack[0].tenant_id)
            );
        }
        for (target, tenant) in [("a", "t1"), ("a", "t2"), ("b", "t1"), ("b", "t2")] {
            let written: Vec<&[u8]> = messages
                .iter()
                .filter(|m| m.target == target && m.tenant_id == tenant)
                .map(|m| m.payload.as_slice())
                .collect();
            let packed: Vec<&[u8]> = packs
                .iter()
                .flatten()
                .filter(|m| m.target == target && m.tenant_id == tenant)
                .map(|m| m.payload.as_slice())
                .collect();
            assert_eq!(written, packed, "{target}/{tenant} keeps its order");
        }
        let a_t1 = packs
            .iter()
            .filter(|p| p[0].target == "a" && p[0].tenant_id == "t1")
            .count();
        assert_eq!(a_t1, 2, "164 messages of a/t1 take two rows");
    }

    #[test]
    fn a_row_gives_back_the_messages_packed_into_it() {
        let pack: Vec<NewMessage> = [&b""[..], b"x", &[7u8; 300], b"last"]
            .iter()
            .map(|p| message("a", "t", p))
            .collect();
        let payload = pack_payloads(&pack);
        let back = unpack_payloads(&payload, 4).unwrap();
        let sent: Vec<(String, Vec<u8>)> = pack
            .iter()
            .map(|m| (m.event_id.clone(), m.payload.clone()))
            .collect();
        assert_eq!(back, sent);
        // One message is stored as it is, as rows written before packing were.
        assert_eq!(pack_payloads(&pack[2..3]), vec![7u8; 300]);
    }

    #[test]
    fn a_packed_row_that_does_not_parse_is_refused() {
        let pack: Vec<NewMessage> = [b"one", b"two"]
            .iter()
            .map(|p| message("a", "t", &p[..]))
            .collect();
        let payload = pack_payloads(&pack);
        assert_eq!(unpack_payloads(&payload[..payload.len() - 1], 2), None);
        assert_eq!(unpack_payloads(&payload, 3), None, "fewer than counted");
        assert_eq!(unpack_payloads(&[0xff; 12], 2), None, "no valid length");
    }
}
