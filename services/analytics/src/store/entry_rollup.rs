//! The entry rollup, kept current on ingest: each contact's first interaction of each
//! type. A funnel over all time enters a contact at its first step-1 event; read from the
//! facts that was an aggregate over every such event (600,000 page views for the
//! 100,000-contact demo: ~0.4 s in SQLite alone). Now the entries are read only for
//! contacts that have a later step's event, and the others are counted: beside the rollup
//! a count per type is kept in the same transactions (stepping through the 100,000 entries
//! of the demo's funnel took 12-16 ms on PostgreSQL, 4-10 ms on SQLite, per funnel).

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    TryInsertResult,
};

use super::Store;
use super::entities::{entry_count, first_event};

/// (type, contact) -> the earliest instant seen.
pub(crate) type Firsts = BTreeMap<(String, String), i64>;

/// Lowers each (type, contact)'s first instant to the one given where that is earlier,
/// and counts the pairs seen for the first time.
pub(crate) async fn lower(
    conn: &impl ConnectionTrait,
    tenant: &str,
    firsts: &Firsts,
) -> Result<(), DbErr> {
    let rows: Vec<_> = firsts.iter().collect();
    let mut added = Counts::new();
    for chunk in rows.chunks(1000) {
        // What the rollup holds for these contacts, read first: in a steady stream nearly
        // every pair is held already with an earlier instant, and writing it anyway cost
        // an insert that found it and an upsert that changed nothing (which on PostgreSQL
        // still locks the row).
        let contacts: HashSet<&str> = chunk.iter().map(|((_, c), _)| c.as_str()).collect();
        let held: HashMap<(String, String), i64> = first_event::Entity::find()
            .select_only()
            .columns([
                first_event::Column::Kind,
                first_event::Column::ContactId,
                first_event::Column::FirstAt,
            ])
            .filter(first_event::Column::TenantId.eq(tenant))
            .filter(first_event::Column::ContactId.is_in(contacts))
            .into_tuple::<(String, String, i64)>()
            .all(conn)
            .await?
            .into_iter()
            .map(|(kind, contact, at)| ((kind, contact), at))
            .collect();
        let model = |((kind, contact), at): (&(String, String), &i64)| first_event::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            kind: Set(kind.clone()),
            contact_id: Set(contact.clone()),
            first_at: Set(*at),
        };
        let key = [
            first_event::Column::TenantId,
            first_event::Column::Kind,
            first_event::Column::ContactId,
        ];
        let (unheld, held_pairs): (Vec<_>, Vec<_>) = chunk
            .iter()
            .copied()
            .partition(|(pair, _)| !held.contains_key(*pair));
        let mut earlier: Vec<_> = held_pairs
            .into_iter()
            .filter(|(pair, at)| held.get(*pair).is_some_and(|held_at| **at < *held_at))
            .collect();
        if !unheld.is_empty() {
            // New pairs: the insert reports which rows it took; one a concurrent writer
            // took meanwhile is lowered below like a held one.
            let inserted = clm_store::insert_many(conn, unheld.iter().copied().map(model))
                .on_conflict_do_nothing_on(key)
                .exec_with_returning_keys(conn)
                .await?;
            let new: HashSet<(String, String)> = match inserted {
                TryInsertResult::Inserted(keys) => keys
                    .into_iter()
                    .map(|(_, kind, contact)| (kind, contact))
                    .collect(),
                _ => HashSet::new(),
            };
            for (pair, at) in unheld {
                if new.contains(pair) {
                    added.add(&pair.0, 1, *at);
                } else {
                    earlier.push((pair, at));
                }
            }
        }
        if earlier.is_empty() {
            continue;
        }
        // Pairs held with a later instant: written only where the instant given is earlier
        // than the one held now.
        clm_store::insert_many(conn, earlier.into_iter().map(model))
            .on_conflict(
                OnConflict::columns(key)
                    .update_column(first_event::Column::FirstAt)
                    .action_and_where(Expr::cust("excluded.first_at < first_events.first_at"))
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    added.apply(conn, tenant).await
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

/// Removes a contact's first events, and each from its type's count.
pub(crate) async fn erase(
    conn: &impl ConnectionTrait,
    tenant: &str,
    contact: &str,
) -> Result<(), DbErr> {
    let removed = first_event::Entity::delete_many()
        .filter(first_event::Column::TenantId.eq(tenant))
        .filter(first_event::Column::ContactId.eq(contact))
        .exec_with_returning(conn)
        .await?;
    let mut counts = Counts::new();
    for row in &removed {
        // The latest instant stays a bound: it is never lowered.
        counts.add(&row.kind, -1, i64::MIN);
    }
    counts.apply(conn, tenant).await
}

/// Changes to the entry counts of one tenant, by type.
struct Counts(BTreeMap<String, (i64, i64)>);

impl Counts {
    fn new() -> Self {
        Self(BTreeMap::new())
    }

    /// Adds `delta` entries of `kind`, the latest of them at `at`.
    fn add(&mut self, kind: &str, delta: i64, at: i64) {
        let (entries, latest) = self.0.entry(kind.to_owned()).or_insert((0, i64::MIN));
        *entries += delta;
        *latest = (*latest).max(at);
    }

    /// Adds the changes to the stored counts, in the order of the types (on PostgreSQL
    /// concurrent writers take the rows' locks in the same order).
    async fn apply(self, conn: &impl ConnectionTrait, tenant: &str) -> Result<(), DbErr> {
        let rows: Vec<_> = self
            .0
            .into_iter()
            .filter(|(_, (delta, _))| *delta != 0)
            .map(|(kind, (delta, latest))| entry_count::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                kind: Set(kind),
                entries: Set(delta),
                latest_at: Set(latest),
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        clm_store::insert_many(conn, rows)
            .on_conflict(
                OnConflict::columns([entry_count::Column::TenantId, entry_count::Column::Kind])
                    .values([
                        (
                            entry_count::Column::Entries,
                            Expr::cust("entry_counts.entries + excluded.entries"),
                        ),
                        (
                            entry_count::Column::LatestAt,
                            clm_store::schema::greater_of("entry_counts", "latest_at"),
                        ),
                    ])
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
        Ok(())
    }
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

/// Counts the entries already stored (the migration that adds the counts runs this once).
pub(crate) async fn count_all(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    conn.execute_unprepared(
        "INSERT INTO entry_counts (tenant_id, kind, entries, latest_at) \
         SELECT tenant_id, kind, COUNT(*), MAX(first_at) FROM first_events \
         GROUP BY tenant_id, kind",
    )
    .await?;
    Ok(())
}

impl Store {
    /// How many contacts had their first event of `kind` before `end`: the stored count
    /// when no entry can be as late as `end`, else counted.
    pub async fn entries(&self, tenant: &str, kind: &str, end: i64) -> Result<i64, DbErr> {
        let counted = entry_count::Entity::find_by_id((tenant.to_owned(), kind.to_owned()))
            .one(&self.db)
            .await?;
        if let Some(counted) = counted
            && counted.latest_at < end
        {
            return Ok(counted.entries);
        }
        let count = first_event::Entity::find()
            .filter(first_event::Column::TenantId.eq(tenant))
            .filter(first_event::Column::Kind.eq(kind))
            .filter(first_event::Column::FirstAt.lt(end))
            .count(&self.db)
            .await?;
        Ok(count as i64)
    }
}
