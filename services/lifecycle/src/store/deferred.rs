//! The stage writes of one transaction, gathered and made together: a call that moves
//! hundreds of contacts writes their stays, stages, events and log entries in a handful of
//! multi-row statements instead of five statements per move.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter};

use super::engine::{Cause, LogEntry, TransitionRows, log_row};
use super::entities::{contact_stage, lifecycle_event, stage_history};
use crate::domain::{LifecycleError, Micros};

/// Rows per multi-row statement (13 columns x 500 stays stays under SQLite's parameter limit).
const CHUNK: usize = 500;

/// Moves and log entries of one transaction, in the order they happened, not yet written.
/// Only the transaction that holds the event-log lock may gather them: it alone moves the
/// contacts, so it knows where each stands without reading back.
pub(crate) struct Deferred {
    pub(crate) tenant: String,
    pub(crate) now: Micros,
    /// (model, contact) to the stage it ends in.
    stages: BTreeMap<(String, String), String>,
    /// (model, contact) whose stay, open before this transaction, ends now.
    close: BTreeSet<(String, String)>,
    stays: Vec<stage_history::ActiveModel>,
    /// (model, contact) to the index in `stays` of its open stay.
    open: HashMap<(String, String), usize>,
    events: Vec<clm_outbox::NewMessage>,
    log: Vec<lifecycle_event::ActiveModel>,
}

impl Deferred {
    pub(crate) fn new(tenant: &str, now: Micros) -> Self {
        Self {
            tenant: tenant.to_owned(),
            now,
            stages: BTreeMap::new(),
            close: BTreeSet::new(),
            stays: Vec::new(),
            open: HashMap::new(),
            events: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Moves `contact` in `model` from `from` (`None`: it had no stage) to `to`.
    pub(crate) fn transition(
        &mut self,
        model: &str,
        contact: &str,
        from: Option<&str>,
        to: &str,
        cause: &Cause,
    ) {
        let key = (model.to_owned(), contact.to_owned());
        if from.is_some() {
            match self.open.get(&key) {
                Some(&index) => self.stays[index].exited_at = Set(Some(self.now)),
                None => {
                    self.close.insert(key.clone());
                }
            }
        }
        let rows = TransitionRows::new(
            &self.tenant,
            model,
            contact,
            from.unwrap_or_default(),
            to,
            self.now,
            cause,
        );
        self.open.insert(key.clone(), self.stays.len());
        self.stays.push(rows.stay);
        self.stages.insert(key, to.to_owned());
        self.events.push(rows.event);
        self.log(rows.log);
    }

    /// Appends `entry` to the event log (in order with the moves).
    pub(crate) fn log(&mut self, entry: LogEntry) {
        self.log.push(log_row(&self.tenant, self.now, entry));
    }

    /// Writes everything gathered so far.
    pub(crate) async fn flush(&mut self, txn: &DatabaseTransaction) -> Result<(), LifecycleError> {
        let (tenant, now) = (self.tenant.as_str(), self.now);
        // Close the stays that were open before; this transaction's own are closed in memory.
        let mut closing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (model, contact) in &self.close {
            closing.entry(model).or_default().push(contact.clone());
        }
        for (model, contacts) in closing {
            for chunk in contacts.chunks(CHUNK) {
                stage_history::Entity::update_many()
                    .col_expr(stage_history::Column::ExitedAt, Expr::value(now))
                    .filter(stage_history::Column::TenantId.eq(tenant))
                    .filter(stage_history::Column::ModelId.eq(model))
                    .filter(stage_history::Column::ContactId.is_in(chunk.to_vec()))
                    .filter(stage_history::Column::ExitedAt.is_null())
                    .exec(txn)
                    .await?;
            }
        }
        for chunk in std::mem::take(&mut self.stays).chunks(CHUNK) {
            clm_store::insert_many(txn, chunk.to_vec())
                .exec_without_returning(txn)
                .await?;
        }
        let stages: Vec<_> = std::mem::take(&mut self.stages).into_iter().collect();
        for chunk in stages.chunks(CHUNK) {
            clm_store::insert_many(
                txn,
                chunk
                    .iter()
                    .map(|((model, contact), stage)| contact_stage::ActiveModel {
                        tenant_id: Set(tenant.to_owned()),
                        model_id: Set(model.clone()),
                        contact_id: Set(contact.clone()),
                        stage: Set(stage.clone()),
                        entered_at: Set(now),
                    }),
            )
            .on_conflict(
                OnConflict::columns([
                    contact_stage::Column::TenantId,
                    contact_stage::Column::ModelId,
                    contact_stage::Column::ContactId,
                ])
                .update_columns([
                    contact_stage::Column::Stage,
                    contact_stage::Column::EnteredAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }
        for chunk in std::mem::take(&mut self.events).chunks(CHUNK) {
            clm_outbox::enqueue(txn, now, chunk.to_vec()).await?;
        }
        for chunk in std::mem::take(&mut self.log).chunks(CHUNK) {
            clm_store::insert_many(txn, chunk.to_vec())
                .exec_without_returning(txn)
                .await?;
        }
        self.close.clear();
        self.open.clear();
        Ok(())
    }
}
