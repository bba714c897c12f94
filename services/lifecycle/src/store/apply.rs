//! ApplySignals: facts updated, stages advanced and segments refreshed, exactly once per
//! signal id, in one transaction per call.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityName, EntityTrait, QueryFilter};

use super::Store;
use super::engine::{self, ContactState, save_facts};
use super::entities::{
    activity, applied_signal, contact_fact, contact_stage, fired_trigger, lifecycle_event,
    segment_member, stage_history, tombstone,
};
use crate::domain::facts::History;
use crate::domain::model::CompiledModel;
use crate::domain::{LifecycleError, Micros};

/// What a signal says.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalKind {
    /// An interaction happened.
    Interaction {
        /// Its type.
        kind: String,
        /// Its value in micros (0 without one).
        amount_micros: i64,
        /// The default model's score after it, applied right after it, when it changed
        /// the score: (total, band).
        score: Option<(f64, String)>,
    },
    /// The default model's score after a change.
    Score {
        /// The total.
        total: f64,
        /// The band.
        band: String,
    },
    /// The contact's attributes are now these.
    Attributes(BTreeMap<String, String>),
    /// A duplicate was merged into the contact.
    Merged(String),
    /// The contact was erased.
    Erased,
}

/// One signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// The dedupe key.
    pub event_id: String,
    /// The contact.
    pub contact_id: String,
    /// When it happened.
    pub occurred_at: Micros,
    /// What happened.
    pub kind: SignalKind,
}

impl Signal {
    /// What applying the signal does, in order: an interaction that carries a score is the
    /// interaction, then the score (as if sent as two signals).
    fn steps(self) -> Vec<Signal> {
        let Signal {
            event_id,
            contact_id,
            occurred_at,
            kind,
        } = self;
        match kind {
            SignalKind::Interaction {
                kind,
                amount_micros,
                score: Some((total, band)),
            } => vec![
                Signal {
                    event_id: event_id.clone(),
                    contact_id: contact_id.clone(),
                    occurred_at,
                    kind: SignalKind::Interaction {
                        kind,
                        amount_micros,
                        score: None,
                    },
                },
                Signal {
                    event_id,
                    contact_id,
                    occurred_at,
                    kind: SignalKind::Score { total, band },
                },
            ],
            kind => vec![Signal {
                event_id,
                contact_id,
                occurred_at,
                kind,
            }],
        }
    }
}

impl Store {
    /// Applies `signals` in order; returns (applied, duplicates).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "apply", db.system.name))]
    pub async fn apply(
        &self,
        tenant: &str,
        signals: Vec<Signal>,
        models: &[CompiledModel],
        now: Micros,
    ) -> Result<(u64, u64), LifecycleError> {
        let mut seen = HashSet::new();
        let mut duplicates = 0u64;
        let fresh: Vec<Signal> = signals
            .into_iter()
            .filter(|s| {
                let new = seen.insert(s.event_id.clone());
                if !new {
                    duplicates += 1;
                }
                new
            })
            .collect();
        if fresh.is_empty() {
            return Ok((0, duplicates));
        }
        let txn = clm_store::begin_write(&self.db).await?;
        // Also keeps replicas on PostgreSQL from applying the same signal at once: `new_ids`
        // reads what is recorded before the activities that record interactions are written.
        engine::lock_log(&txn).await?;
        let mut erased = load_tombstones(&txn, tenant, &fresh).await?;
        let new_ids = new_ids(&txn, tenant, &fresh, &erased, now).await?;
        duplicates += (fresh.len() - new_ids.len()) as u64;
        let default_model = models.first().map(|m| m.id.clone()).unwrap_or_default();
        let signals: Vec<Signal> = fresh
            .into_iter()
            .filter(|s| new_ids.contains(&s.event_id))
            .collect();
        let applied = signals.len() as u64;
        let segments = engine::load_segments(&txn, tenant).await?;
        let mut batch = Batch::new(tenant, now);
        let model_ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
        let history = History::of(
            models
                .iter()
                .flat_map(CompiledModel::conditions)
                .chain(segments.iter().map(|(_, condition)| condition)),
        );
        batch
            .preload(
                &txn,
                tenant,
                &signals,
                &erased,
                (&model_ids, &segments),
                &history,
            )
            .await?;
        // Each contact is loaded once per call and kept in memory while its signals apply
        // (a batch holds many signals of few contacts); writes of activities and facts are
        // gathered and flushed together.
        for signal in signals.into_iter().flat_map(Signal::steps) {
            let contact = signal.contact_id.clone();
            if erased.contains(&contact) {
                continue; // erased or merged away: acknowledged, no effect
            }
            match &signal.kind {
                SignalKind::Merged(duplicate) => {
                    batch.flush(&txn, tenant, now).await?;
                    merge(&txn, tenant, duplicate, &contact, now).await?;
                    erased.insert(duplicate.clone());
                }
                SignalKind::Erased => {
                    batch.flush(&txn, tenant, now).await?;
                    erase(&txn, tenant, &contact, now).await?;
                    erased.insert(contact);
                    continue;
                }
                _ => {}
            }
            let state = match batch.contacts.entry(contact.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    ContactState::load(
                        &txn,
                        tenant,
                        &contact,
                        &model_ids,
                        &segments,
                        (&history, now),
                    )
                    .await?,
                ),
            };
            match signal.kind {
                SignalKind::Interaction {
                    kind,
                    amount_micros,
                    ..
                } => {
                    batch.activities.push(activity::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        event_id: Set(signal.event_id.clone()),
                        contact_id: Set(contact.clone()),
                        kind: Set(kind.clone()),
                        occurred_at: Set(signal.occurred_at),
                        amount_micros: Set(amount_micros),
                    });
                    state.facts.activities.push(crate::domain::facts::Activity {
                        kind: kind.clone(),
                        occurred_at: signal.occurred_at,
                        amount_micros,
                    });
                    state.facts.event = Some(kind);
                }
                SignalKind::Score { total, band } => {
                    state.facts.score = total;
                    state.facts.band = band;
                    state.facts_changed = true;
                }
                SignalKind::Attributes(attributes) => {
                    state.facts.attributes = attributes;
                    state.facts_changed = true;
                }
                SignalKind::Merged(_) | SignalKind::Erased => {}
            }
            for model in models {
                engine::advance(&mut batch.writes, model, &contact, state, &signal.event_id);
            }
            engine::refresh_segments(
                &txn,
                &mut batch.writes,
                &segments,
                &default_model,
                &contact,
                state,
            )
            .await?;
        }
        batch.flush(&txn, tenant, now).await?;
        txn.commit().await?;
        self.wake_watchers();
        Ok((applied, duplicates))
    }
}

/// The contacts a call has loaded, and the writes it has not made yet.
struct Batch {
    contacts: HashMap<String, ContactState>,
    activities: Vec<activity::ActiveModel>,
    writes: engine::Deferred,
}

impl Batch {
    fn new(tenant: &str, now: Micros) -> Self {
        Self {
            contacts: HashMap::new(),
            activities: Vec::new(),
            writes: engine::Deferred::new(tenant, now),
        }
    }

    /// Loads every contact the signals name (but the erased) at once.
    async fn preload(
        &mut self,
        txn: &sea_orm::DatabaseTransaction,
        tenant: &str,
        signals: &[Signal],
        erased: &HashSet<String>,
        (models, segments): (&[String], &engine::Segments),
        history: &History,
    ) -> Result<(), LifecycleError> {
        let contacts: HashSet<&String> = signals
            .iter()
            .map(|s| &s.contact_id)
            .filter(|c| !erased.contains(*c))
            .collect();
        let contacts: Vec<String> = contacts.into_iter().cloned().collect();
        self.contacts = ContactState::load_many(
            txn,
            tenant,
            &contacts,
            models,
            segments,
            history,
            self.writes.now,
        )
        .await?;
        Ok(())
    }

    /// Writes the gathered activities and changed facts, and forgets the loaded contacts
    /// (a merge or an erasure is about to change them behind the cache).
    async fn flush(
        &mut self,
        txn: &sea_orm::DatabaseTransaction,
        tenant: &str,
        now: Micros,
    ) -> Result<(), LifecycleError> {
        for chunk in std::mem::take(&mut self.activities).chunks(1000) {
            clm_store::insert_many(txn, chunk.to_vec())
                .on_conflict_do_nothing()
                .exec_without_returning(txn)
                .await?;
        }
        let mut changed: Vec<_> = self
            .contacts
            .iter()
            .filter(|(_, state)| state.facts_changed)
            .map(|(contact, state)| (contact, &state.facts))
            .collect();
        changed.sort_unstable_by_key(|(contact, _)| *contact);
        save_facts(txn, tenant, &changed, now).await?;
        self.contacts.clear();
        self.writes.flush(txn).await
    }
}

/// Records the signals' ids and returns those not applied before.
///
/// An interaction of a contact that is not erased is recorded by its activity row (written
/// when the call's activities are), keyed by its event id like `applied_signals`: one row
/// per interaction instead of two. Every other signal (and an interaction of an erased or
/// merged contact, which keeps no activity) is recorded by its id alone; an erasure keeps
/// its contact's interaction ids there. Only activities need looking up for a live
/// contact's interaction: tombstones are forever, so an id in `applied_signals` without an
/// activity belongs to a tombstoned contact (builds before kept every id there too; a
/// migration forgot those the activities keep).
async fn new_ids(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    signals: &[Signal],
    erased: &HashSet<String>,
    now: Micros,
) -> Result<HashSet<String>, LifecycleError> {
    let (by_activity, by_id): (Vec<&Signal>, Vec<&Signal>) = signals.iter().partition(|s| {
        matches!(s.kind, SignalKind::Interaction { .. }) && !erased.contains(&s.contact_id)
    });
    let rows = by_id.iter().map(|s| applied_signal::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        event_id: Set(s.event_id.clone()),
        applied_at: Set(now),
    });
    let mut new = clm_store::insert_new(txn, rows.collect()).await?;
    let ids: Vec<String> = by_activity.iter().map(|s| s.event_id.clone()).collect();
    let recorded =
        clm_store::find_event_ids(txn, activity::Entity.table_name(), tenant, &ids).await?;
    new.extend(ids.into_iter().filter(|id| !recorded.contains(id)));
    Ok(new)
}

/// The contacts of `signals` that were erased or merged away, in one query.
async fn load_tombstones(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    signals: &[Signal],
) -> Result<HashSet<String>, LifecycleError> {
    let by_pseudonym: HashMap<String, &str> = signals
        .iter()
        .map(|s| {
            (
                clm_store::pseudonym(tenant, &s.contact_id),
                s.contact_id.as_str(),
            )
        })
        .collect();
    let mut erased = HashSet::new();
    for chunk in by_pseudonym.keys().cloned().collect::<Vec<_>>().chunks(500) {
        let found = tombstone::Entity::find()
            .filter(tombstone::Column::TenantId.eq(tenant))
            .filter(tombstone::Column::ContactId.is_in(chunk.to_vec()))
            .all(txn)
            .await?;
        erased.extend(
            found
                .into_iter()
                .map(|t| by_pseudonym[&t.contact_id].to_owned()),
        );
    }
    Ok(erased)
}

/// The duplicate's activities become the survivor's; its stages, facts and memberships go,
/// with segment exits logged.
async fn merge(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    duplicate: &str,
    survivor: &str,
    now: Micros,
) -> Result<(), LifecycleError> {
    activity::Entity::update_many()
        .col_expr(activity::Column::ContactId, Expr::value(survivor))
        .filter(activity::Column::TenantId.eq(tenant))
        .filter(activity::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    forget(txn, tenant, duplicate, now, Some(survivor)).await
}

async fn erase(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    contact: &str,
    now: Micros,
) -> Result<(), LifecycleError> {
    // Its interactions' ids stay recorded (an id says nothing about the person).
    clm_store::keep_event_ids(
        txn,
        (
            applied_signal::Entity.table_name(),
            activity::Entity.table_name(),
        ),
        tenant,
        contact,
        now,
    )
    .await?;
    activity::Entity::delete_many()
        .filter(activity::Column::TenantId.eq(tenant))
        .filter(activity::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    stage_history::Entity::delete_many()
        .filter(stage_history::Column::TenantId.eq(tenant))
        .filter(stage_history::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    forget(txn, tenant, contact, now, None).await?;
    // Last, as forgetting the contact's segments writes exit events: the event stream,
    // fired triggers and the dedupe rows of its signals (their ids name the contact) go too.
    // The tombstone keeps late signals out.
    lifecycle_event::Entity::delete_many()
        .filter(lifecycle_event::Column::TenantId.eq(tenant))
        .filter(lifecycle_event::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    fired_trigger::Entity::delete_many()
        .filter(fired_trigger::Column::TenantId.eq(tenant))
        .filter(fired_trigger::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    applied_signal::Entity::delete_many()
        .filter(applied_signal::Column::TenantId.eq(tenant))
        .filter(applied_signal::Column::EventId.starts_with(format!("clm:score:{contact}:")))
        .exec(txn)
        .await?;
    Ok(())
}

async fn forget(
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    contact: &str,
    now: Micros,
    merged_into: Option<&str>,
) -> Result<(), LifecycleError> {
    let memberships = segment_member::Entity::find()
        .filter(segment_member::Column::TenantId.eq(tenant))
        .filter(segment_member::Column::ContactId.eq(contact))
        .all(txn)
        .await?;
    for m in memberships {
        engine::set_membership(txn, tenant, &m.segment_id, contact, false, now).await?;
    }
    contact_stage::Entity::delete_many()
        .filter(contact_stage::Column::TenantId.eq(tenant))
        .filter(contact_stage::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    contact_fact::Entity::delete_many()
        .filter(contact_fact::Column::TenantId.eq(tenant))
        .filter(contact_fact::Column::ContactId.eq(contact))
        .exec(txn)
        .await?;
    tombstone::Entity::insert(tombstone::ActiveModel {
        tenant_id: Set(tenant.to_owned()),
        contact_id: Set(clm_store::pseudonym(tenant, contact)),
        merged_into: Set(merged_into.map(str::to_owned)),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
