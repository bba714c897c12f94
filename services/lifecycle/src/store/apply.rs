//! ApplySignals: facts updated, stages advanced and segments refreshed, exactly once per
//! signal id, in one transaction per call.

use std::collections::{BTreeMap, HashSet};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TryInsertResult};

use super::Store;
use super::engine::{self, load_facts, save_facts};
use super::entities::{
    activity, applied_signal, contact_fact, contact_stage, fired_trigger, lifecycle_event,
    segment_member, stage_history, tombstone,
};
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
        engine::lock_log(&txn).await?;
        let inserted = applied_signal::Entity::insert_many(fresh.iter().map(|s| {
            applied_signal::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                event_id: Set(s.event_id.clone()),
                applied_at: Set(now),
            }
        }))
        .on_conflict_do_nothing_on([
            applied_signal::Column::TenantId,
            applied_signal::Column::EventId,
        ])
        .exec_with_returning_keys(&txn)
        .await?;
        let new_ids: HashSet<String> = match inserted {
            TryInsertResult::Inserted(keys) => keys.into_iter().map(|(_, id)| id).collect(),
            _ => HashSet::new(),
        };
        duplicates += (fresh.len() - new_ids.len()) as u64;
        let default_model = models.first().map(|m| m.id.clone()).unwrap_or_default();
        let mut applied = 0u64;
        for signal in fresh.into_iter().filter(|s| new_ids.contains(&s.event_id)) {
            applied += 1;
            let contact = signal.contact_id.clone();
            if tombstone::Entity::find_by_id((
                tenant.to_owned(),
                clm_store::pseudonym(tenant, &contact),
            ))
            .one(&txn)
            .await?
            .is_some()
            {
                continue; // erased or merged away: acknowledged, no effect
            }
            let mut facts = load_facts(&txn, tenant, &contact).await?;
            match signal.kind {
                SignalKind::Interaction {
                    kind,
                    amount_micros,
                } => {
                    activity::Entity::insert(activity::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        event_id: Set(signal.event_id.clone()),
                        contact_id: Set(contact.clone()),
                        kind: Set(kind.clone()),
                        occurred_at: Set(signal.occurred_at),
                        amount_micros: Set(amount_micros),
                    })
                    .on_conflict_do_nothing()
                    .exec_without_returning(&txn)
                    .await?;
                    facts.activities.push(crate::domain::facts::Activity {
                        kind: kind.clone(),
                        occurred_at: signal.occurred_at,
                        amount_micros,
                    });
                    facts.event = Some(kind);
                }
                SignalKind::Score { total, band } => {
                    facts.score = total;
                    facts.band = band;
                    save_facts(
                        &txn,
                        tenant,
                        &contact,
                        &facts.attributes,
                        facts.score,
                        &facts.band,
                        now,
                    )
                    .await?;
                }
                SignalKind::Attributes(attributes) => {
                    facts.attributes = attributes;
                    save_facts(
                        &txn,
                        tenant,
                        &contact,
                        &facts.attributes,
                        facts.score,
                        &facts.band,
                        now,
                    )
                    .await?;
                }
                SignalKind::Merged(duplicate) => {
                    merge(&txn, tenant, &duplicate, &contact, now).await?;
                    facts = load_facts(&txn, tenant, &contact).await?;
                }
                SignalKind::Erased => {
                    erase(&txn, tenant, &contact, now).await?;
                    continue;
                }
            }
            for model in models {
                engine::advance(
                    &txn,
                    tenant,
                    model,
                    &contact,
                    &mut facts,
                    &signal.event_id,
                    now,
                )
                .await?;
            }
            engine::refresh_segments(&txn, tenant, &default_model, &contact, &mut facts, now)
                .await?;
        }
        txn.commit().await?;
        self.wake_watchers();
        Ok((applied, duplicates))
    }
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
