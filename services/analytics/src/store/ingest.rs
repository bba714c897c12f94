//! Ingestion: contact events and transitions, each applied once, keeping the orders
//! rollup current.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, DatabaseTransaction, DbErr, EntityName, EntityTrait, QueryFilter};

use super::entities::{applied_event, contact, fact, order, transition};
use super::{Store, customer_rollup, day_of, entry_rollup, stage_rollup};

/// A contact event as analytics keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactFact {
    /// The contact was created or changed.
    Upserted {
        /// When it was created.
        created_at: i64,
        /// Its attributes (source and campaign among them).
        attributes: BTreeMap<String, String>,
    },
    /// An interaction.
    Interaction {
        /// Its type.
        kind: String,
        /// Its value: (micros, currency).
        value: Option<(i64, String)>,
        /// Campaign.
        campaign: String,
        /// Channel.
        channel: String,
        /// An NPS score, for nps_response.
        nps_score: Option<i32>,
    },
    /// A duplicate was merged into the contact.
    Merged(String),
    /// The contact was erased.
    Erased,
}

/// One event to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested<T> {
    /// The dedupe key.
    pub event_id: String,
    /// The contact.
    pub contact_id: String,
    /// When it happened.
    pub occurred_at: i64,
    /// What happened.
    pub fact: T,
}

/// A stage transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionFact {
    /// The stage model.
    pub model_id: String,
    /// The stage left.
    pub from_stage: String,
    /// The stage entered.
    pub to_stage: String,
}

impl Store {
    /// Records which of `ids` are new, in `txn`; returns the new ones.
    async fn fresh(
        txn: &DatabaseTransaction,
        tenant: &str,
        ids: &[String],
        now: i64,
    ) -> Result<HashSet<String>, DbErr> {
        let rows = ids.iter().map(|id| applied_event::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            event_id: Set(id.clone()),
            applied_at: Set(now),
        });
        clm_store::insert_new(txn, rows.collect()).await
    }

    /// Ingests contact events; returns (applied, duplicates).
    ///
    /// An interaction is recorded by its fact, keyed by its event id as `applied_events`
    /// is: one row per interaction instead of two. Every other event is recorded by its id
    /// alone, and an erasure keeps its contact's interaction ids there (see `erase`), so a
    /// repeated delivery is a duplicate either way.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "ingest_contacts", db.system.name))]
    pub async fn ingest_contacts(
        &self,
        tenant: &str,
        events: Vec<Ingested<ContactFact>>,
        now: i64,
    ) -> Result<(u64, u64), DbErr> {
        let total = events.len() as u64;
        let mut unique = HashSet::new();
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| unique.insert(e.event_id.clone()))
            .collect();
        let txn = clm_store::begin_write(&self.db).await?;
        let (mut interactions, mut others) = (Vec::new(), Vec::new());
        for event in &events {
            match event.fact {
                ContactFact::Interaction { .. } => interactions.push(event.event_id.clone()),
                _ => others.push(event.event_id.clone()),
            }
        }
        let new_others = Self::fresh(&txn, tenant, &others, now).await?;
        // Ids of interactions recorded in `applied_events`: those of contacts erased since,
        // or applied by a build that recorded every id there.
        let recorded = clm_store::find_event_ids(
            &*txn,
            applied_event::Entity.table_name(),
            tenant,
            &interactions,
        )
        .await?;
        // Facts and order amounts are gathered and written together; a merge or erasure
        // reads and rewrites them, so what is gathered is written before it.
        let mut pending = Pending::default();
        // Contacts whose orders changed, and contacts whose first touch may have: their
        // rows of the customers rollup are rewritten at the end.
        let (mut changed, mut touched) = (BTreeSet::new(), BTreeSet::new());
        let mut applied = new_others.len() as u64;
        for event in events.into_iter().filter(|e| match e.fact {
            ContactFact::Interaction { .. } => !recorded.contains(&e.event_id),
            _ => new_others.contains(&e.event_id),
        }) {
            match event.fact {
                ContactFact::Upserted {
                    created_at,
                    attributes,
                } => {
                    touched.insert(event.contact_id.clone());
                    pending.upsert(event.contact_id, created_at, attributes);
                }
                ContactFact::Interaction {
                    kind,
                    value,
                    campaign,
                    channel,
                    nps_score,
                } => {
                    let (amount, currency) = value.clone().unwrap_or_default();
                    let signed = match kind.as_str() {
                        "purchase" => Some((amount, 1)),
                        "refund" => Some((-amount, 0)),
                        _ => None,
                    };
                    let order = match (signed, value) {
                        (Some(delta), Some(_)) => Some((
                            (
                                event.contact_id.clone(),
                                day_of(event.occurred_at),
                                currency.clone(),
                            ),
                            delta,
                        )),
                        _ => None,
                    };
                    pending.effects.push(Effect {
                        event_id: event.event_id.clone(),
                        first: (kind.clone(), event.contact_id.clone(), event.occurred_at),
                        order,
                    });
                    pending.facts.push(fact::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        event_id: Set(event.event_id),
                        contact_id: Set(event.contact_id),
                        kind: Set(kind),
                        occurred_at: Set(event.occurred_at),
                        amount_micros: Set(amount),
                        currency: Set(currency),
                        campaign: Set(campaign),
                        channel: Set(channel),
                        nps_score: Set(nps_score),
                    });
                }
                ContactFact::Merged(duplicate) => {
                    applied += pending.flush(&txn, tenant, &mut changed).await?;
                    changed.extend([duplicate.clone(), event.contact_id.clone()]);
                    merge(&txn, tenant, &duplicate, &event.contact_id).await?;
                }
                ContactFact::Erased => {
                    applied += pending.flush(&txn, tenant, &mut changed).await?;
                    changed.insert(event.contact_id.clone());
                    erase(&txn, tenant, &event.contact_id, now).await?;
                }
            }
        }
        applied += pending.flush(&txn, tenant, &mut changed).await?;
        customer_rollup::refresh(&*txn, tenant, &changed, &touched).await?;
        txn.commit().await?;
        Ok((applied, total - applied))
    }

    /// Ingests transitions; returns (applied, duplicates). A transition is recorded by its
    /// row, keyed by its event id; an erasure keeps its contact's transition ids in
    /// `applied_events`, so a repeated delivery is a duplicate either way.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "ingest_transitions", db.system.name))]
    pub async fn ingest_transitions(
        &self,
        tenant: &str,
        events: Vec<Ingested<TransitionFact>>,
    ) -> Result<(u64, u64), DbErr> {
        let total = events.len() as u64;
        let mut unique = HashSet::new();
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| unique.insert(e.event_id.clone()))
            .collect();
        let txn = clm_store::begin_write(&self.db).await?;
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        // Ids of transitions recorded in `applied_events`: those of contacts erased since.
        let recorded =
            clm_store::find_event_ids(&*txn, applied_event::Entity.table_name(), tenant, &ids)
                .await?;
        let candidates: Vec<_> = events
            .into_iter()
            .filter(|e| !recorded.contains(&e.event_id))
            .collect();
        let rows: Vec<transition::ActiveModel> = candidates
            .iter()
            .cloned()
            .map(|e| transition::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                event_id: Set(e.event_id),
                contact_id: Set(e.contact_id),
                model_id: Set(e.fact.model_id),
                from_stage: Set(e.fact.from_stage),
                to_stage: Set(e.fact.to_stage),
                occurred_at: Set(e.occurred_at),
            })
            .collect();
        let contacts: Vec<String> = candidates
            .iter()
            .map(|e| e.contact_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let models = stage_rollup::lock_models(
            &*txn,
            tenant,
            candidates.iter().map(|e| e.fact.model_id.clone()),
        )
        .await?;
        let mut transitions =
            stage_rollup::transitions_of(&*txn, tenant, &models, &contacts).await?;
        let before = stage_rollup::contributions(&transitions);
        let new = clm_store::insert_new(&*txn, rows).await?;
        for e in candidates.into_iter().filter(|e| new.contains(&e.event_id)) {
            transitions.entry(e.fact.model_id).or_default().push((
                e.contact_id,
                e.occurred_at,
                e.event_id,
                e.fact.from_stage,
                e.fact.to_stage,
            ));
        }
        let after = stage_rollup::contributions(&transitions);
        stage_rollup::apply(&*txn, tenant, &before, &after).await?;
        txn.commit().await?;
        Ok((new.len() as u64, total - new.len() as u64))
    }
}

/// An order of the rollup: (contact, day, currency).
type OrderKey = (String, i64, String);
/// What to add to an order: (amount in micros, purchases).
type OrderDelta = (i64, i64);

/// Interactions not written yet (their facts, and what each adds to the rollups), and
/// contacts not written yet.
#[derive(Default)]
struct Pending {
    facts: Vec<fact::ActiveModel>,
    effects: Vec<Effect>,
    /// By contact: when it was created, as the first of its events since the last flush
    /// says (a stored row keeps its own), and its latest attributes. One row per contact,
    /// as PostgreSQL's upsert cannot change a row twice in one statement.
    contacts: BTreeMap<String, ContactRow>,
}

/// A contact as analytics keeps it: (created_at, attributes).
type ContactRow = (i64, BTreeMap<String, String>);

/// What a new interaction adds to the rollups.
struct Effect {
    event_id: String,
    /// (type, contact, when): a first event of its type, unless the contact has an earlier one.
    first: (String, String, i64),
    /// What it adds to an order, for purchases and refunds with a value.
    order: Option<(OrderKey, OrderDelta)>,
}

impl Pending {
    fn upsert(&mut self, contact: String, created_at: i64, attributes: BTreeMap<String, String>) {
        self.contacts
            .entry(contact)
            .and_modify(|(_, latest)| latest.clone_from(&attributes))
            .or_insert((created_at, attributes));
    }

    /// Writes the contacts and the facts; facts whose ids were new add to the orders and
    /// first events, and their contacts join `changed` where an order moved. Returns how
    /// many facts were new.
    async fn flush(
        &mut self,
        txn: &DatabaseTransaction,
        tenant: &str,
        changed: &mut BTreeSet<String>,
    ) -> Result<u64, DbErr> {
        let contacts: Vec<_> = std::mem::take(&mut self.contacts).into_iter().collect();
        // SQLite binds at most 32,766 parameters per statement; 6 columns x 1,000 rows fits.
        for chunk in contacts.chunks(1000) {
            upsert_contacts(txn, tenant, chunk).await?;
        }
        let new = clm_store::insert_new(txn, std::mem::take(&mut self.facts)).await?;
        let mut orders: BTreeMap<OrderKey, OrderDelta> = BTreeMap::new();
        let mut firsts = entry_rollup::Firsts::default();
        for effect in std::mem::take(&mut self.effects) {
            if !new.contains(&effect.event_id) {
                continue;
            }
            if let Some((key, (amount, purchases))) = effect.order {
                changed.insert(key.0.clone());
                let order = orders.entry(key).or_default();
                order.0 += amount;
                order.1 += purchases;
            }
            let (kind, contact, at) = effect.first;
            let first = firsts.entry((kind, contact)).or_insert(at);
            *first = Ord::min(*first, at);
        }
        let orders: Vec<_> = orders.into_iter().collect();
        for chunk in orders.chunks(1000) {
            add_orders(txn, tenant, chunk).await?;
        }
        entry_rollup::lower(txn, tenant, &firsts).await?;
        Ok(new.len() as u64)
    }
}

/// Inserts contacts, or for those stored already, replaces their attributes (a stored
/// contact keeps its creation time): each row is (contact, (created_at, attributes)).
async fn upsert_contacts(
    txn: &DatabaseTransaction,
    tenant: &str,
    rows: &[(String, ContactRow)],
) -> Result<(), DbErr> {
    let models = rows.iter().map(|(contact_id, (created_at, attributes))| {
        let text = |key: &str| attributes.get(key).cloned().unwrap_or_default();
        contact::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            contact_id: Set(contact_id.clone()),
            created_at: Set(*created_at),
            source: Set(text("source")),
            campaign: Set(text("campaign")),
            attributes: Set(serde_json::to_value(attributes).expect("a string map serialises")),
        }
    });
    clm_store::insert_many(txn, models)
        .on_conflict(
            OnConflict::columns([contact::Column::TenantId, contact::Column::ContactId])
                .update_columns([
                    contact::Column::Source,
                    contact::Column::Campaign,
                    contact::Column::Attributes,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Adds to contacts' orders of a day in a currency (the rollup every money report reads):
/// each row is ((contact, day, currency), (amount in micros, purchases)), keys unique.
async fn add_orders(
    txn: &DatabaseTransaction,
    tenant: &str,
    rows: &[(OrderKey, OrderDelta)],
) -> Result<(), DbErr> {
    clm_store::insert_many(
        txn,
        rows.iter().map(
            |((contact, day, currency), (amount, n))| order::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                contact_id: Set(contact.clone()),
                day: Set(*day),
                currency: Set(currency.clone()),
                amount_micros: Set(*amount),
                purchases: Set(*n),
            },
        ),
    )
    .on_conflict(
        OnConflict::columns([
            order::Column::TenantId,
            order::Column::ContactId,
            order::Column::Day,
            order::Column::Currency,
        ])
        .value(
            order::Column::AmountMicros,
            Expr::col((order::Entity, order::Column::AmountMicros))
                .add(Expr::cust("excluded.amount_micros")),
        )
        .value(
            order::Column::Purchases,
            Expr::col((order::Entity, order::Column::Purchases))
                .add(Expr::cust("excluded.purchases")),
        )
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

async fn merge(
    txn: &DatabaseTransaction,
    tenant: &str,
    duplicate: &str,
    survivor: &str,
) -> Result<(), DbErr> {
    let both = [duplicate.to_owned(), survivor.to_owned()];
    let models = stage_rollup::lock_models(txn, tenant, []).await?;
    let mut transitions = stage_rollup::transitions_of(txn, tenant, &models, &both).await?;
    let before = stage_rollup::contributions(&transitions);
    fact::Entity::update_many()
        .col_expr(fact::Column::ContactId, Expr::value(survivor))
        .filter(fact::Column::TenantId.eq(tenant))
        .filter(fact::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    transition::Entity::update_many()
        .col_expr(transition::Column::ContactId, Expr::value(survivor))
        .filter(transition::Column::TenantId.eq(tenant))
        .filter(transition::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    for row in transitions.values_mut().flatten() {
        if row.0 == duplicate {
            survivor.clone_into(&mut row.0);
        }
    }
    let after = stage_rollup::contributions(&transitions);
    stage_rollup::apply(txn, tenant, &before, &after).await?;
    entry_rollup::merge(txn, tenant, duplicate, survivor).await?;
    let orders = order::Entity::find()
        .filter(order::Column::TenantId.eq(tenant))
        .filter(order::Column::ContactId.eq(duplicate))
        .all(txn)
        .await?;
    let moved: Vec<_> = orders
        .into_iter()
        .map(|o| {
            (
                (survivor.to_owned(), o.day, o.currency),
                (o.amount_micros, o.purchases),
            )
        })
        .collect();
    for chunk in moved.chunks(1000) {
        add_orders(txn, tenant, chunk).await?;
    }
    order::Entity::delete_many()
        .filter(order::Column::TenantId.eq(tenant))
        .filter(order::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    contact::Entity::delete_many()
        .filter(contact::Column::TenantId.eq(tenant))
        .filter(contact::Column::ContactId.eq(duplicate))
        .exec(txn)
        .await?;
    Ok(())
}

/// Removes every fact of an erased contact. The ids of its interactions and transitions,
/// recorded by their rows until now, stay recorded, so a repeated delivery of one still
/// counts as a duplicate.
async fn erase(
    txn: &DatabaseTransaction,
    tenant: &str,
    contact_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    let models = stage_rollup::lock_models(txn, tenant, []).await?;
    let before = stage_rollup::contributions(
        &stage_rollup::transitions_of(txn, tenant, &models, &[contact_id.to_owned()]).await?,
    );
    stage_rollup::apply(txn, tenant, &before, &Default::default()).await?;
    entry_rollup::erase(txn, tenant, contact_id).await?;
    for records in [fact::Entity.table_name(), transition::Entity.table_name()] {
        clm_store::keep_event_ids(
            txn,
            (applied_event::Entity.table_name(), records),
            tenant,
            contact_id,
            now,
        )
        .await?;
    }
    fact::Entity::delete_many()
        .filter(fact::Column::TenantId.eq(tenant))
        .filter(fact::Column::ContactId.eq(contact_id))
        .exec(txn)
        .await?;
    order::Entity::delete_many()
        .filter(order::Column::TenantId.eq(tenant))
        .filter(order::Column::ContactId.eq(contact_id))
        .exec(txn)
        .await?;
    transition::Entity::delete_many()
        .filter(transition::Column::TenantId.eq(tenant))
        .filter(transition::Column::ContactId.eq(contact_id))
        .exec(txn)
        .await?;
    contact::Entity::delete_many()
        .filter(contact::Column::TenantId.eq(tenant))
        .filter(contact::Column::ContactId.eq(contact_id))
        .exec(txn)
        .await?;
    Ok(())
}
