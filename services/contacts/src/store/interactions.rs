//! The interaction timeline: idempotent batch inserts and newest-first pages.

use std::collections::HashSet;

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TryInsertResult};

use super::Store;
use super::convert::{interaction_from_row, interaction_row};
use super::entities::{contact, interaction, tombstone};
use crate::domain::page_token::{Cursor, CursorKey};
use crate::domain::{ContactsError, Interaction};

/// The outcome of storing one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Newly stored event ids.
    pub accepted: Vec<String>,
    /// Interactions already stored (or repeated in the batch).
    pub duplicates: u64,
    /// Interactions refused, by index, with the reason.
    pub rejected: Vec<(u64, String)>,
}

impl Store {
    /// Stores a batch of validated interactions in one transaction. An interaction whose
    /// contact does not exist (or was erased) is rejected alone; one whose event id is
    /// stored already counts as a duplicate and changes nothing.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "record_interactions", db.system.name))]
    pub async fn record_interactions(
        &self,
        tenant: &str,
        batch: Vec<(u64, Interaction)>,
    ) -> Result<RecordOutcome, ContactsError> {
        let mut outcome = RecordOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let txn = clm_store::begin_write(&self.db).await?;
        let wanted: HashSet<&str> = batch.iter().map(|(_, i)| i.contact_id.as_str()).collect();
        let known: HashSet<String> = contact::Entity::find()
            .select_only()
            .column(contact::Column::Id)
            .filter(contact::Column::TenantId.eq(tenant))
            .filter(contact::Column::Id.is_in(wanted.iter().copied()))
            .into_tuple::<String>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let erased: HashSet<String> = if known.len() < wanted.len() {
            // Tombstones hold pseudonyms: look the unknown ids up by theirs.
            let by_pseudonym: std::collections::HashMap<String, &str> = wanted
                .iter()
                .filter(|id| !known.contains(**id))
                .map(|id| (clm_store::pseudonym(tenant, id), *id))
                .collect();
            tombstone::Entity::find()
                .select_only()
                .column(tombstone::Column::ContactId)
                .filter(tombstone::Column::TenantId.eq(tenant))
                .filter(tombstone::Column::ContactId.is_in(by_pseudonym.keys().cloned()))
                .into_tuple::<String>()
                .all(&txn)
                .await?
                .into_iter()
                .filter_map(|pseudonym| by_pseudonym.get(&pseudonym).map(|id| (*id).to_owned()))
                .collect()
        } else {
            HashSet::new()
        };
        let mut seen = HashSet::new();
        let mut rows = Vec::with_capacity(batch.len());
        for (index, item) in &batch {
            if erased.contains(&item.contact_id) {
                outcome
                    .rejected
                    .push((*index, format!("contact {} was erased", item.contact_id)));
            } else if !known.contains(&item.contact_id) {
                outcome
                    .rejected
                    .push((*index, format!("contact {} not found", item.contact_id)));
            } else if !seen.insert(item.event_id.as_str()) {
                outcome.duplicates += 1;
            } else {
                rows.push(interaction_row(tenant, item));
            }
        }
        let attempted = rows.len() as u64;
        let inserted = clm_store::insert_many(&txn, rows)
            .on_conflict_do_nothing_on([
                interaction::Column::TenantId,
                interaction::Column::EventId,
            ])
            .exec_with_returning_keys(&txn)
            .await?;
        if let TryInsertResult::Inserted(keys) = inserted {
            outcome.accepted = keys.into_iter().map(|(_, event_id)| event_id).collect();
        }
        // Only what this call stored goes downstream; a duplicate was sent when first stored.
        let accepted: HashSet<&str> = outcome.accepted.iter().map(String::as_str).collect();
        let messages = batch
            .iter()
            .filter(|(_, i)| accepted.contains(i.event_id.as_str()))
            .flat_map(|(_, i)| super::events::interaction(tenant, i))
            .collect();
        let now = batch.first().map_or(0, |(_, i)| i.recorded_at);
        clm_outbox::enqueue(&txn, now, messages).await?;
        self.commit(txn).await?;
        outcome.duplicates += attempted - outcome.accepted.len() as u64;
        Ok(outcome)
    }

    /// The stored interaction with `event_id`.
    pub async fn get_interaction(
        &self,
        tenant: &str,
        event_id: &str,
    ) -> Result<Option<Interaction>, ContactsError> {
        Ok(
            interaction::Entity::find_by_id((tenant.to_owned(), event_id.to_owned()))
                .one(&self.db)
                .await?
                .map(interaction_from_row),
        )
    }

    /// One page of a contact's timeline, newest first, after `after`.
    pub async fn list_interactions(
        &self,
        tenant: &str,
        contact_id: &str,
        types: &[String],
        after: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<Interaction>, ContactsError> {
        let mut condition = Condition::all()
            .add(interaction::Column::TenantId.eq(tenant))
            .add(interaction::Column::ContactId.eq(contact_id));
        if !types.is_empty() {
            condition = condition.add(interaction::Column::Kind.is_in(types.iter().cloned()));
        }
        if let Some(Cursor {
            key: CursorKey::Int(occurred_at),
            id,
        }) = after
        {
            let occurred = Expr::col(interaction::Column::OccurredAt);
            condition = condition.add(
                occurred.clone().lt(*occurred_at).or(occurred
                    .eq(*occurred_at)
                    .and(interaction::Column::EventId.lt(id.clone()))),
            );
        }
        let rows = interaction::Entity::find()
            .filter(condition)
            .order_by_desc(interaction::Column::OccurredAt)
            .order_by_desc(interaction::Column::EventId)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(interaction_from_row).collect())
    }
}
