//! ApplyInteractions: contact events turned into ledger entries and scores, exactly once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityName, EntityTrait,
    QueryFilter, QuerySelect, Statement,
};

use super::entities::{applied_event, band_event, history, ledger, profile, score, tombstone};
use super::scores::read_states;
use super::{Store, json_map, map_json, signals};
use crate::domain::fold::{LedgerEntry, ScoreState, extend, fold};
use crate::domain::model::CompiledModel;
use crate::domain::{Micros, ScoringError};

/// What a contact event says.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// An interaction happened.
    Interaction {
        /// Its type.
        kind: String,
        /// Its properties.
        properties: BTreeMap<String, String>,
        /// The money involved: (amount in micros, currency).
        value: Option<(i64, String)>,
    },
    /// The contact's attributes are now these.
    Upserted {
        /// Flattened attributes.
        attributes: BTreeMap<String, String>,
    },
    /// A duplicate was merged into the contact.
    Merged {
        /// The erased duplicate.
        duplicate_id: String,
    },
    /// The contact was erased.
    Erased,
}

/// One contact event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The dedupe key.
    pub event_id: String,
    /// The contact.
    pub contact_id: String,
    /// When it happened.
    pub occurred_at: Micros,
    /// What happened.
    pub kind: EventKind,
}

/// A score that changed, for the cache and for band signals.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The model.
    pub model_id: String,
    /// The contact.
    pub contact_id: String,
    /// The new state.
    pub state: ScoreState,
    /// A band crossed upwards by this change: (from, to).
    pub crossed: Option<(String, String)>,
    /// The band before the change, at the time of the change.
    pub band_before: String,
    /// The band after the change.
    pub band_after: String,
    /// The event that caused the change.
    pub cause: String,
}

/// The outcome of one ApplyInteractions call.
#[derive(Debug, Default)]
pub struct Applied {
    /// Events applied now.
    pub applied: u64,
    /// Events applied before (or repeated in the call).
    pub duplicates: u64,
    /// Scores that changed.
    pub changed: Vec<Change>,
    /// (model, contact) scores that no longer exist.
    pub removed: Vec<(String, String)>,
}

impl Store {
    /// Applies `events` in one transaction: each new event id is recorded together with its
    /// effects, so a repeated delivery changes nothing. Scores of touched contacts are
    /// recomputed under every model.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "apply", db.system.name))]
    pub async fn apply(
        &self,
        tenant: &str,
        events: Vec<Event>,
        models: &[CompiledModel],
        now: Micros,
    ) -> Result<Applied, ScoringError> {
        let mut outcome = Applied::default();
        let mut seen = HashSet::new();
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            if seen.insert(event.event_id.clone()) {
                fresh.push(event);
            } else {
                outcome.duplicates += 1;
            }
        }
        if fresh.is_empty() {
            return Ok(outcome);
        }
        let txn = clm_store::begin_write(&self.db).await?;
        let mut redirects = load_tombstones(&txn, tenant, &fresh).await?;
        let new_ids = record_event_ids(&txn, tenant, &fresh, &redirects, now).await?;
        outcome.duplicates += (fresh.len() - new_ids.len()) as u64;
        outcome.applied = new_ids.len() as u64;
        let events: Vec<Event> = fresh
            .into_iter()
            .filter(|e| new_ids.contains(&e.event_id))
            .collect();

        let mut touched: BTreeMap<String, String> = BTreeMap::new();
        let mut fresh = Fresh::default();
        let mut pending = Pending::default();
        let mut signals = Vec::new();
        for event in events {
            let Some(contact) = resolve(&redirects, &event.contact_id) else {
                continue; // erased: the event is acknowledged and has no effect
            };
            match event.kind {
                EventKind::Interaction {
                    kind,
                    properties,
                    value,
                } => {
                    signals.push(signals::interaction(
                        &event.event_id,
                        &contact,
                        event.occurred_at,
                        &kind,
                        &properties,
                        value.as_ref(),
                    ));
                    for model in models {
                        for rule in model
                            .event_rules
                            .iter()
                            .filter(|r| r.matches(&kind, &properties))
                        {
                            let entry =
                                LedgerEntry::award(&event.event_id, &rule.rule, event.occurred_at);
                            pending
                                .ledger
                                .push(ledger_row(tenant, &model.id, &contact, &entry, now));
                            fresh.add(&model.id, &contact, entry);
                        }
                    }
                    touched.insert(contact, event.event_id);
                }
                EventKind::Upserted { attributes } => {
                    signals.push(signals::attributes(
                        &event.event_id,
                        &contact,
                        event.occurred_at,
                        &attributes,
                    ));
                    pending
                        .profiles
                        .insert(contact.clone(), json_map(&attributes));
                    fresh.reprofiled.insert(contact.clone());
                    touched.insert(contact, event.event_id);
                }
                EventKind::Merged { duplicate_id } => {
                    pending.flush(&txn, tenant, now).await?;
                    let Some(duplicate) = resolve(&redirects, &duplicate_id) else {
                        continue;
                    };
                    if duplicate == contact {
                        continue;
                    }
                    signals.push(signals::merged(
                        &event.event_id,
                        &contact,
                        &duplicate,
                        event.occurred_at,
                    ));
                    merge(&txn, tenant, &duplicate, &contact).await?;
                    // The survivor's ledger gained the duplicate's entries, of any age.
                    fresh.refold.insert(contact.clone());
                    redirects.insert(duplicate.clone(), Some(contact.clone()));
                    touched.remove(&duplicate);
                    for model in models {
                        outcome.removed.push((model.id.clone(), duplicate.clone()));
                    }
                    touched.insert(contact, event.event_id);
                }
                EventKind::Erased => {
                    pending.flush(&txn, tenant, now).await?;
                    signals.push(signals::erased(
                        &event.event_id,
                        &contact,
                        event.occurred_at,
                    ));
                    erase(&txn, tenant, &contact, now).await?;
                    redirects.insert(contact.clone(), None);
                    touched.remove(&contact);
                    for model in models {
                        outcome.removed.push((model.id.clone(), contact.clone()));
                    }
                }
            }
        }
        pending.flush(&txn, tenant, now).await?;
        outcome.changed = rescore(&txn, tenant, models, &touched, Some(&fresh), now).await?;
        signals::add_scores(
            &mut signals,
            &default_changes(models, &outcome.changed),
            now,
        );
        clm_outbox::enqueue(&txn, now, signals::messages(tenant, signals)).await?;
        txn.commit().await?;
        self.wake.notify();
        Ok(outcome)
    }
}

/// The changes lifecycle hears of: the default model's only.
pub(crate) fn default_changes<'a>(
    models: &[CompiledModel],
    changes: &'a [Change],
) -> Vec<&'a Change> {
    let Some(default) = models.iter().find(|m| m.is_default) else {
        return Vec::new();
    };
    changes
        .iter()
        .filter(|c| c.model_id == default.id)
        .collect()
}

/// The row recording `entry`, one of `contact`'s awards under `model`.
pub(crate) fn ledger_row(
    tenant: &str,
    model: &str,
    contact: &str,
    entry: &LedgerEntry,
    now: Micros,
) -> ledger::ActiveModel {
    ledger::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        model_id: Set(model.to_owned()),
        event_id: Set(entry.event_id.clone()),
        rule_id: Set(entry.rule_id.clone()),
        contact_id: Set(contact.to_owned()),
        points: Set(entry.points),
        occurred_at: Set(entry.occurred_at),
        recorded_at: Set(now),
    }
}

/// The ledger entries one call added, for folding onto the stored scores.
#[derive(Default)]
pub(crate) struct Fresh {
    /// By (model, contact).
    entries: HashMap<(String, String), Vec<LedgerEntry>>,
    /// Contacts whose ledgers changed in other ways (merges): folded from the ledger.
    refold: HashSet<String>,
    /// Contacts whose attributes changed: their fit is computed afresh from the profile.
    reprofiled: HashSet<String>,
}

impl Fresh {
    fn add(&mut self, model: &str, contact: &str, entry: LedgerEntry) {
        self.entries
            .entry((model.to_owned(), contact.to_owned()))
            .or_default()
            .push(entry);
    }

    /// The score of `contact` under `model` with this call's entries folded onto its
    /// stored state, where that is exact. `attributes` are needed only where this call
    /// changed them ([`Fresh::reprofiled`]); without them such a contact is not extended.
    fn extend(
        &self,
        model: &CompiledModel,
        contact: &str,
        previous: Option<&ScoreState>,
        attributes: Option<&BTreeMap<String, String>>,
        now: Micros,
    ) -> Option<ScoreState> {
        if self.refold.contains(contact)
            || (attributes.is_none() && self.reprofiled.contains(contact))
        {
            return None;
        }
        let entries = self
            .entries
            .get(&(model.id.clone(), contact.to_owned()))
            .map_or(&[][..], Vec::as_slice);
        extend(model, previous?, entries, attributes, now)
    }
}

/// Records the call's events and returns the ids of those not applied before.
///
/// An interaction of a contact that is not erased is recorded by its history row, keyed
/// by its event id like `applied_events`: one row per interaction instead of two. Every
/// other event (and an interaction of an erased contact, which keeps no history) is
/// recorded by its id alone. Interactions applied by a build that recorded every id in
/// `applied_events` also have their history row (or, when their contact has been erased
/// since, their id), so they stay duplicates.
async fn record_event_ids(
    txn: &DatabaseTransaction,
    tenant: &str,
    events: &[Event],
    redirects: &Redirects,
    now: Micros,
) -> Result<HashSet<String>, ScoringError> {
    let mut histories = Vec::new();
    let mut others = Vec::new();
    for event in events {
        // Contacts merged or erased later in this call take their rows with them there.
        match (&event.kind, resolve(redirects, &event.contact_id)) {
            (
                EventKind::Interaction {
                    kind, properties, ..
                },
                Some(contact),
            ) => histories.push(history::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                event_id: Set(event.event_id.clone()),
                contact_id: Set(contact),
                kind: Set(kind.clone()),
                occurred_at: Set(event.occurred_at),
                properties: Set(json_map(properties)),
            }),
            _ => others.push(applied_event::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                event_id: Set(event.event_id.clone()),
                applied_at: Set(now),
            }),
        }
    }
    let mut new_ids = clm_store::insert_new(txn, histories).await?;
    new_ids.extend(clm_store::insert_new(txn, others).await?);
    Ok(new_ids)
}

/// Ledger rows and profiles gathered between events that must see them (a merge or an
/// erasure reads and rewrites both, and rescoring reads them at the end of the call).
#[derive(Default)]
struct Pending {
    ledger: Vec<ledger::ActiveModel>,
    /// The latest attributes of each contact upserted since the last flush: one row per
    /// contact, as PostgreSQL's upsert cannot change a row twice in one statement.
    profiles: BTreeMap<String, serde_json::Value>,
}

impl Pending {
    async fn flush(
        &mut self,
        txn: &DatabaseTransaction,
        tenant: &str,
        now: Micros,
    ) -> Result<(), ScoringError> {
        // SQLite binds at most 32,766 parameters per statement; 8 columns x 1,000 rows fits.
        for chunk in std::mem::take(&mut self.ledger).chunks(1000) {
            clm_store::insert_many(txn, chunk.to_vec())
                .on_conflict_do_nothing()
                .exec_without_returning(txn)
                .await?;
        }
        let profiles: Vec<_> = std::mem::take(&mut self.profiles)
            .into_iter()
            .map(|(contact, attributes)| profile::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                contact_id: Set(contact),
                attributes: Set(attributes),
                updated_at: Set(now),
            })
            .collect();
        for chunk in profiles.chunks(1000) {
            clm_store::insert_many(txn, chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([profile::Column::TenantId, profile::Column::ContactId])
                        .update_columns([profile::Column::Attributes, profile::Column::UpdatedAt])
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        Ok(())
    }
}

/// Where events for each known-dead contact go: `Some(survivor)` after a merge, `None`
/// after an erasure.
type Redirects = HashMap<String, Option<String>>;

async fn load_tombstones(
    txn: &DatabaseTransaction,
    tenant: &str,
    events: &[Event],
) -> Result<Redirects, ScoringError> {
    let mut ids: BTreeSet<&str> = events.iter().map(|e| e.contact_id.as_str()).collect();
    for e in events {
        if let EventKind::Merged { duplicate_id } = &e.kind {
            ids.insert(duplicate_id);
        }
    }
    let mut redirects = Redirects::new();
    let mut frontier: Vec<String> = ids.into_iter().map(str::to_owned).collect();
    // Follow merge chains (a merged into b, b into c) a few hops.
    for _ in 0..8 {
        if frontier.is_empty() {
            break;
        }
        // Tombstones hold pseudonyms: look the ids up by theirs.
        let by_pseudonym: HashMap<String, String> = frontier
            .drain(..)
            .map(|id| (clm_store::pseudonym(tenant, &id), id))
            .collect();
        let stones = tombstone::Entity::find()
            .filter(tombstone::Column::TenantId.eq(tenant))
            .filter(tombstone::Column::ContactId.is_in(by_pseudonym.keys().cloned()))
            .all(txn)
            .await?;
        for stone in stones {
            if let Some(id) = by_pseudonym.get(&stone.contact_id) {
                frontier.extend(stone.merged_into.clone());
                redirects.insert(id.clone(), stone.merged_into);
            }
        }
    }
    Ok(redirects)
}

fn resolve(redirects: &Redirects, contact: &str) -> Option<String> {
    let mut current = contact.to_owned();
    for _ in 0..16 {
        match redirects.get(&current) {
            None => return Some(current),
            Some(None) => return None,
            Some(Some(next)) => current.clone_from(next),
        }
    }
    Some(current)
}

async fn tombstone(
    txn: &DatabaseTransaction,
    tenant: &str,
    contact: &str,
    merged_into: Option<&str>,
) -> Result<(), ScoringError> {
    tombstone::Entity::insert(tombstone::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        contact_id: Set(clm_store::pseudonym(tenant, contact)),
        merged_into: Set(merged_into.map(str::to_owned)),
    })
    .on_conflict(
        OnConflict::columns([tombstone::Column::TenantId, tombstone::Column::ContactId])
            .update_column(tombstone::Column::MergedInto)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Moves the duplicate's history and ledger to the survivor; the survivor's own profile
/// wins (contacts sends the merged profile as its own event).
async fn merge(
    txn: &DatabaseTransaction,
    tenant: &str,
    duplicate: &str,
    survivor: &str,
) -> Result<(), ScoringError> {
    history::Entity::update_many()
        .col_expr(history::Column::ContactId, Expr::value(survivor))
        .filter(history::Column::TenantId.eq(tenant))
        .filter(history::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    ledger::Entity::update_many()
        .col_expr(ledger::Column::ContactId, Expr::value(survivor))
        .filter(ledger::Column::TenantId.eq(tenant))
        .filter(ledger::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    remove_contact_rows(txn, tenant, duplicate, false).await?;
    tombstone(txn, tenant, duplicate, Some(survivor)).await
}

/// Removes every trace of an erased contact. The ids of its interactions, recorded by
/// their history rows until now, stay recorded (an id says nothing about the person), so
/// a repeated delivery of one still counts as a duplicate.
async fn erase(
    txn: &DatabaseTransaction,
    tenant: &str,
    contact: &str,
    now: Micros,
) -> Result<(), ScoringError> {
    clm_store::keep_event_ids(
        txn,
        (
            applied_event::Entity.table_name(),
            history::Entity.table_name(),
        ),
        tenant,
        contact,
        now,
    )
    .await?;
    remove_contact_rows(txn, tenant, contact, true).await?;
    tombstone(txn, tenant, contact, None).await
}

async fn remove_contact_rows(
    txn: &DatabaseTransaction,
    tenant: &str,
    contact: &str,
    with_history: bool,
) -> Result<(), ScoringError> {
    if with_history {
        history::Entity::delete_many()
            .filter(history::Column::TenantId.eq(tenant))
            .filter(history::Column::ContactId.eq(contact))
            .exec(txn)
            .await?;
        ledger::Entity::delete_many()
            .filter(ledger::Column::TenantId.eq(tenant))
            .filter(ledger::Column::ContactId.eq(contact))
            .exec(txn)
            .await?;
    }
    profile::Entity::delete_many()
        .filter(profile::Column::TenantId.eq(tenant))
        .filter(profile::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    score::Entity::delete_many()
        .filter(score::Column::TenantId.eq(tenant))
        .filter(score::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    band_event::Entity::delete_many()
        .filter(band_event::Column::TenantId.eq(tenant))
        .filter(band_event::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    Ok(())
}

/// Recomputes the scores of `touched` contacts (contact -> the last event that touched
/// it) under every model, records upward band crossings, and stores the new states.
/// `fresh`, the entries the caller added, are folded onto the stored states where that
/// is exact; the other contacts' ledgers are read and folded whole (all of them without
/// `fresh`).
pub(crate) async fn rescore<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    models: &[CompiledModel],
    touched: &BTreeMap<String, String>,
    fresh: Option<&Fresh>,
    now: Micros,
) -> Result<Vec<Change>, ScoringError> {
    if touched.is_empty() {
        return Ok(Vec::new());
    }
    let contacts: Vec<String> = touched.keys().cloned().collect();
    let mut changes = Vec::new();
    for chunk in contacts.chunks(500) {
        take_turns(db, tenant, chunk).await?;
        // Read only for the contacts whose fit is computed afresh: an extended state
        // keeps its fit unless this call changed the contact's attributes.
        let mut profiles = Profiles::default();
        for model in models {
            let previous = read_states(db, tenant, &model.id, chunk).await?;
            let mut states: HashMap<&String, ScoreState> = HashMap::with_capacity(chunk.len());
            let mut later = Vec::new();
            for contact in chunk {
                let extended =
                    fresh.and_then(|f| f.extend(model, contact, previous.get(contact), None, now));
                match extended {
                    Some(state) => {
                        states.insert(contact, state);
                    }
                    None => later.push(contact),
                }
            }
            profiles.load(db, tenant, &later).await?;
            let mut unfolded = Vec::new();
            for contact in later {
                // Only a contact whose attributes changed can extend once they are given.
                let extended = fresh
                    .filter(|f| f.reprofiled.contains(contact))
                    .and_then(|f| {
                        f.extend(
                            model,
                            contact,
                            previous.get(contact),
                            Some(profiles.of(contact)),
                            now,
                        )
                    });
                match extended {
                    Some(state) => {
                        states.insert(contact, state);
                    }
                    None => unfolded.push(contact),
                }
            }
            let mut ledgers = read_ledgers(
                db,
                tenant,
                &model.id,
                unfolded.iter().map(|c| (*c).clone()).collect(),
            )
            .await?;
            for contact in unfolded {
                let entries = ledgers.remove(contact).unwrap_or_default();
                let state = fold(model, &entries, profiles.of(contact), now, now);
                states.insert(contact, state);
            }
            let mut rows = Vec::with_capacity(chunk.len());
            let mut crossings = Vec::new();
            for contact in chunk {
                let state = states.remove(contact).expect("every contact was folded");
                let band_after = model.band(state.at(now).0);
                let band_before = previous
                    .get(contact)
                    .map(|p| model.band(p.at(now).0))
                    .unwrap_or_default();
                let crossed = (model.rank(&band_after) > model.rank(&band_before))
                    .then(|| (band_before.clone(), band_after.clone()));
                if let Some((from, to)) = &crossed {
                    crossings.push(band_event::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        model_id: Set(model.id.clone()),
                        contact_id: Set(contact.clone()),
                        event_id: Set(touched[contact].clone()),
                        from_band: Set(from.clone()),
                        to_band: Set(to.clone()),
                        total: Set(state.at(now).0),
                        occurred_at: Set(now),
                    });
                }
                rows.push(score::ActiveModel {
                    tenant_id: Set(tenant.to_owned()),
                    model_id: Set(model.id.clone()),
                    contact_id: Set(contact.clone()),
                    state: Set(crate::state_bytes::encode_stored(&state)),
                    band: Set(band_after.clone()),
                    updated_at: Set(now),
                });
                changes.push(Change {
                    model_id: model.id.clone(),
                    contact_id: contact.clone(),
                    state,
                    crossed,
                    band_before,
                    band_after,
                    cause: touched[contact].clone(),
                });
            }
            // Written together: an ingest call moves dozens of contacts up a band.
            if !crossings.is_empty() {
                clm_store::insert_many(db, crossings)
                    .on_conflict_do_nothing()
                    .exec_without_returning(db)
                    .await?;
            }
            clm_store::insert_many(db, rows)
                .on_conflict(
                    OnConflict::columns([
                        score::Column::TenantId,
                        score::Column::ModelId,
                        score::Column::ContactId,
                    ])
                    .update_columns([
                        score::Column::State,
                        score::Column::Band,
                        score::Column::UpdatedAt,
                    ])
                    .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
    }
    Ok(changes)
}

/// Contacts' attributes, read once each, for the contacts the fold needs them for.
#[derive(Default)]
struct Profiles {
    read: HashMap<String, BTreeMap<String, String>>,
    asked: HashSet<String>,
    none: BTreeMap<String, String>,
}

impl Profiles {
    /// Reads the profiles of `contacts` not asked for before.
    async fn load<C: ConnectionTrait>(
        &mut self,
        db: &C,
        tenant: &str,
        contacts: &[&String],
    ) -> Result<(), ScoringError> {
        let missing: Vec<String> = contacts
            .iter()
            .filter(|c| self.asked.insert((**c).clone()))
            .map(|c| (*c).clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let rows = profile::Entity::find()
            .filter(profile::Column::TenantId.eq(tenant))
            .filter(profile::Column::ContactId.is_in(missing))
            .all(db)
            .await?;
        self.read.extend(
            rows.into_iter()
                .map(|p| (p.contact_id, map_json(p.attributes))),
        );
        Ok(())
    }

    /// The attributes of a contact loaded before (none when it has no profile).
    fn of(&self, contact: &str) -> &BTreeMap<String, String> {
        self.read.get(contact).unwrap_or(&self.none)
    }
}

/// On PostgreSQL, waits until no other transaction is rescoring any of `contacts` (sorted)
/// and holds their turns until this one commits. Two replicas applying events of one
/// contact at once would otherwise each fold onto the same stored state, and the later
/// commit would store a score without the other's entries, which every later call would
/// extend. Locks are taken in the contacts' order, so two such calls cannot deadlock on
/// them. (SQLite's writers already take turns.)
async fn take_turns<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    contacts: &[String],
) -> Result<(), ScoringError> {
    if db.get_database_backend() != DbBackend::Postgres || contacts.is_empty() {
        return Ok(());
    }
    let rows = (2..contacts.len() + 2)
        .map(|n| format!("(${n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let values = std::iter::once(format!("clm.score:{tenant}:"))
        .chain(contacts.iter().cloned())
        .map(Into::into);
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || c, 0)) FROM (VALUES {rows}) AS v(c)"
        ),
        values,
    ))
    .await?;
    Ok(())
}

/// The ledgers of `contacts` under `model`, by contact: only the columns the fold uses
/// (all in the by-contact index), decoded as tuples.
pub(crate) async fn read_ledgers<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    model: &str,
    contacts: Vec<String>,
) -> Result<HashMap<String, Vec<LedgerEntry>>, ScoringError> {
    let mut ledgers: HashMap<String, Vec<LedgerEntry>> = HashMap::new();
    if contacts.is_empty() {
        return Ok(ledgers);
    }
    let rows: Vec<(String, String, String, f64, Micros)> = ledger::Entity::find()
        .select_only()
        .columns([
            ledger::Column::ContactId,
            ledger::Column::EventId,
            ledger::Column::RuleId,
            ledger::Column::Points,
            ledger::Column::OccurredAt,
        ])
        .filter(ledger::Column::TenantId.eq(tenant))
        .filter(ledger::Column::ModelId.eq(model))
        .filter(ledger::Column::ContactId.is_in(contacts))
        .into_tuple()
        .all(db)
        .await?;
    for (contact, event_id, rule_id, points, occurred_at) in rows {
        ledgers.entry(contact).or_default().push(LedgerEntry {
            event_id,
            rule_id,
            points,
            occurred_at,
        });
    }
    Ok(ledgers)
}
