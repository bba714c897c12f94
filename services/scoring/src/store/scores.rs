//! Reading scores, ledgers and histories; rebuilding a model's ledger from history.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::apply::{ledger_row, read_ledgers, rescore};
use super::entities::{band_event, history, ledger, profile, score};
use super::{Store, map_json};
use crate::domain::fold::{LedgerEntry, ScoreState, fold};
use crate::domain::model::CompiledModel;
use crate::domain::{Micros, ScoringError};

/// One ledger entry as ListScoreHistory shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The event.
    pub event_id: String,
    /// The rule.
    pub rule_id: String,
    /// Points before decay.
    pub points: f64,
    /// When the event happened.
    pub occurred_at: Micros,
    /// The band the event's application reached, when it crossed one.
    pub band_after: String,
}

/// A recorded interaction, replayed by rescoring and simulation.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) event_id: String,
    pub(crate) kind: String,
    pub(crate) occurred_at: Micros,
    pub(crate) properties: BTreeMap<String, String>,
}

impl Store {
    /// The stored score states of `contacts` under `model_id`.
    pub async fn states(
        &self,
        tenant: &str,
        model_id: &str,
        contacts: &[String],
    ) -> Result<HashMap<String, ScoreState>, ScoringError> {
        read_states(&self.db, tenant, model_id, contacts).await
    }

    /// The contact's score folded afresh from its ledger and profile.
    pub async fn fresh_state(
        &self,
        tenant: &str,
        model: &CompiledModel,
        contact: &str,
        now: Micros,
    ) -> Result<ScoreState, ScoringError> {
        let entries = read_ledgers(&self.db, tenant, &model.id, vec![contact.to_owned()])
            .await?
            .remove(contact)
            .unwrap_or_default();
        let attributes = profile::Entity::find_by_id((tenant.to_owned(), contact.to_owned()))
            .one(&self.db)
            .await?
            .map(|p| map_json(p.attributes))
            .unwrap_or_default();
        let updated_at =
            score::Entity::find_by_id((tenant.to_owned(), model.id.clone(), contact.to_owned()))
                .one(&self.db)
                .await?
                .map_or(now, |s| s.updated_at);
        Ok(fold(model, &entries, &attributes, now, updated_at))
    }

    /// One page of a contact's ledger, newest first, after `(occurred_at, event_id, rule_id)`.
    pub async fn ledger_page(
        &self,
        tenant: &str,
        model_id: &str,
        contact: &str,
        after: Option<(Micros, String, String)>,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, ScoringError> {
        let mut condition = Condition::all()
            .add(ledger::Column::TenantId.eq(tenant))
            .add(ledger::Column::ModelId.eq(model_id))
            .add(ledger::Column::ContactId.eq(contact));
        if let Some((at, event, rule)) = after {
            let occurred = Expr::col(ledger::Column::OccurredAt);
            let event_col = Expr::col(ledger::Column::EventId);
            condition = condition.add(
                occurred.clone().lt(at).or(occurred.eq(at).and(
                    event_col
                        .clone()
                        .lt(event.clone())
                        .or(event_col.eq(event).and(ledger::Column::RuleId.lt(rule))),
                )),
            );
        }
        let rows = ledger::Entity::find()
            .filter(condition)
            .order_by_desc(ledger::Column::OccurredAt)
            .order_by_desc(ledger::Column::EventId)
            .order_by_desc(ledger::Column::RuleId)
            .limit(limit)
            .all(&self.db)
            .await?;
        let events: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let bands: HashMap<String, String> = band_event::Entity::find()
            .filter(band_event::Column::TenantId.eq(tenant))
            .filter(band_event::Column::ModelId.eq(model_id))
            .filter(band_event::Column::ContactId.eq(contact))
            .filter(band_event::Column::EventId.is_in(events))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|b| (b.event_id, b.to_band))
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| HistoryEntry {
                band_after: bands.get(&r.event_id).cloned().unwrap_or_default(),
                event_id: r.event_id,
                rule_id: r.rule_id,
                points: r.points,
                occurred_at: r.occurred_at,
            })
            .collect())
    }

    /// Contacts scoring knows (with history or a profile), in id order after `after`.
    pub async fn contacts_page(
        &self,
        tenant: &str,
        after: &str,
        limit: u64,
    ) -> Result<Vec<String>, ScoringError> {
        let from_history: Vec<String> = history::Entity::find()
            .select_only()
            .column(history::Column::ContactId)
            .distinct()
            .filter(history::Column::TenantId.eq(tenant))
            .filter(history::Column::ContactId.gt(after))
            .order_by_asc(history::Column::ContactId)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let from_profiles: Vec<String> = profile::Entity::find()
            .select_only()
            .column(profile::Column::ContactId)
            .filter(profile::Column::TenantId.eq(tenant))
            .filter(profile::Column::ContactId.gt(after))
            .order_by_asc(profile::Column::ContactId)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let merged: BTreeSet<String> = from_history.into_iter().chain(from_profiles).collect();
        Ok(merged.into_iter().take(limit as usize).collect())
    }

    /// How many contacts scoring knows.
    pub async fn count_contacts(&self, tenant: &str) -> Result<u64, ScoringError> {
        let mut after = String::new();
        let mut count = 0u64;
        loop {
            let page = self.contacts_page(tenant, &after, 5000).await?;
            let Some(last) = page.last() else {
                return Ok(count);
            };
            count += page.len() as u64;
            after.clone_from(last);
        }
    }

    /// The recorded interactions and profiles of `contacts`.
    pub(crate) async fn recorded(
        &self,
        tenant: &str,
        contacts: &[String],
    ) -> Result<
        (
            HashMap<String, Vec<Recorded>>,
            HashMap<String, BTreeMap<String, String>>,
        ),
        ScoringError,
    > {
        let mut histories: HashMap<String, Vec<Recorded>> = HashMap::new();
        for row in history::Entity::find()
            .filter(history::Column::TenantId.eq(tenant))
            .filter(history::Column::ContactId.is_in(contacts.iter().cloned()))
            .all(&self.db)
            .await?
        {
            histories.entry(row.contact_id).or_default().push(Recorded {
                event_id: row.event_id,
                kind: row.kind,
                occurred_at: row.occurred_at,
                properties: map_json(row.properties),
            });
        }
        let profiles = profile::Entity::find()
            .filter(profile::Column::TenantId.eq(tenant))
            .filter(profile::Column::ContactId.is_in(contacts.iter().cloned()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.contact_id, map_json(p.attributes)))
            .collect();
        Ok((histories, profiles))
    }

    /// Rebuilds `model`'s ledger for `contacts` from their recorded history and
    /// recomputes their scores.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "rebuild", db.system.name))]
    pub async fn rebuild(
        &self,
        tenant: &str,
        model: &CompiledModel,
        contacts: &[String],
        now: Micros,
    ) -> Result<Vec<super::Change>, ScoringError> {
        let (histories, _) = self.recorded(tenant, contacts).await?;
        let txn = clm_store::begin_write(&self.db).await?;
        ledger::Entity::delete_many()
            .filter(ledger::Column::TenantId.eq(tenant))
            .filter(ledger::Column::ModelId.eq(&model.id))
            .filter(ledger::Column::ContactId.is_in(contacts.iter().cloned()))
            .exec(&txn)
            .await?;
        let mut rows = Vec::new();
        for (contact, events) in &histories {
            for event in events {
                for rule in model
                    .event_rules
                    .iter()
                    .filter(|r| r.matches(&event.kind, &event.properties))
                {
                    let entry = LedgerEntry::award(&event.event_id, &rule.rule, event.occurred_at);
                    rows.push(ledger_row(tenant, &model.id, contact, &entry, now));
                }
            }
        }
        for chunk in rows.chunks(1000) {
            clm_store::insert_many(&txn, chunk.to_vec())
                .exec_without_returning(&txn)
                .await?;
        }
        let cause = format!("rescore:{}:{}", model.id, model.version);
        let touched: BTreeMap<String, String> = contacts
            .iter()
            .map(|c| (c.clone(), cause.clone()))
            .collect();
        let changes = rescore(
            &txn,
            tenant,
            std::slice::from_ref(model),
            &touched,
            None,
            now,
        )
        .await?;
        let mut signals = Vec::new();
        super::signals::add_scores(
            &mut signals,
            &super::apply::default_changes(std::slice::from_ref(model), &changes),
            now,
        );
        clm_outbox::enqueue(&txn, now, super::signals::messages(tenant, signals)).await?;
        txn.commit().await?;
        self.wake.notify();
        Ok(changes)
    }
}

/// The stored score states of `contacts` under `model_id`; a state that does not decode
/// is left out, so it is folded again from the ledger.
pub(crate) async fn read_states<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    model_id: &str,
    contacts: &[String],
) -> Result<HashMap<String, ScoreState>, ScoringError> {
    let rows: Vec<(String, Vec<u8>)> = score::Entity::find()
        .select_only()
        .columns([score::Column::ContactId, score::Column::State])
        .filter(score::Column::TenantId.eq(tenant))
        .filter(score::Column::ModelId.eq(model_id))
        .filter(score::Column::ContactId.is_in(contacts.iter().cloned()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(contact, state)| Some((contact, crate::state_bytes::decode(&state)?)))
        .collect())
}
