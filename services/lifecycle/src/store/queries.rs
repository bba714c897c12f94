//! Reads, manual moves and segments.

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::Store;
use super::engine::{self, Cause, current_stage};
use super::entities::{
    contact_fact, contact_stage, lifecycle_event, segment, segment_member, stage_history,
};
use crate::domain::facts;
use crate::domain::model::CompiledModel;
use crate::domain::{LifecycleError, Micros};

/// One stay in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Row id (newest first order).
    pub id: i64,
    /// The stage.
    pub stage: String,
    /// The stage before.
    pub from_stage: String,
    /// Entered.
    pub entered_at: Micros,
    /// Left, if it did.
    pub exited_at: Option<Micros>,
    /// Why.
    pub cause: String,
    /// The event behind a rule move.
    pub event_id: String,
    /// Who moved it by hand.
    pub actor: String,
    /// Why, by hand.
    pub reason: String,
    /// A forced backward move.
    pub forced: bool,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The cursor.
    pub id: i64,
    /// LifecycleEventKind.
    pub kind: i32,
    /// The contact.
    pub contact_id: String,
    /// When.
    pub occurred_at: Micros,
    /// Stage left.
    pub from_stage: String,
    /// Stage entered.
    pub to_stage: String,
    /// Segment.
    pub segment_id: String,
    /// Action.
    pub action: String,
    /// Cause.
    pub cause: String,
}

impl Store {
    /// The contact's stage in `model_id`.
    pub async fn contact_stage(
        &self,
        tenant: &str,
        model_id: &str,
        contact: &str,
    ) -> Result<(String, Micros), LifecycleError> {
        current_stage(&self.db, tenant, model_id, contact)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "clm.lifecycle.v1.ContactStage",
                id: contact.to_owned(),
            })
    }

    /// One page of a contact's stays, newest first, before row `before`.
    pub async fn history(
        &self,
        tenant: &str,
        model_id: &str,
        contact: &str,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, LifecycleError> {
        let mut query = stage_history::Entity::find()
            .filter(stage_history::Column::TenantId.eq(tenant))
            .filter(stage_history::Column::ModelId.eq(model_id))
            .filter(stage_history::Column::ContactId.eq(contact));
        if let Some(before) = before {
            query = query.filter(stage_history::Column::Id.lt(before));
        }
        Ok(query
            .order_by_desc(stage_history::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|h| HistoryEntry {
                id: h.id,
                stage: h.to_stage,
                from_stage: h.from_stage,
                entered_at: h.entered_at,
                exited_at: h.exited_at,
                cause: h.cause,
                event_id: h.event_id,
                actor: h.actor,
                reason: h.reason,
                forced: h.forced,
            })
            .collect())
    }

    /// Moves a contact by hand. A backward move needs `forced` and a reason.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "move_contact", db.system.name))]
    pub async fn move_contact(
        &self,
        tenant: &str,
        model: &CompiledModel,
        contact: &str,
        to: &str,
        forced: bool,
        actor: &str,
        reason: &str,
        now: Micros,
    ) -> Result<(String, Micros), LifecycleError> {
        if !model.has_stage(to) {
            return Err(LifecycleError::invalid(
                "to_stage",
                format!("{to:?} is not a stage of the model"),
            ));
        }
        let txn = clm_store::begin_write(&self.db).await?;
        engine::lock_log(&txn).await?;
        let current = current_stage(&txn, tenant, &model.id, contact)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "clm.lifecycle.v1.ContactStage",
                id: contact.to_owned(),
            })?;
        if current.0 == to {
            return Ok(current);
        }
        let backward =
            matches!((model.rank(&current.0), model.rank(to)), (Some(c), Some(t)) if t < c);
        if backward {
            let mut violations = Vec::new();
            if !forced {
                violations.push(clm_runtime::FieldViolation::new(
                    "override",
                    "a backward move needs override",
                ));
            }
            if reason.trim().is_empty() {
                violations.push(clm_runtime::FieldViolation::new(
                    "reason",
                    "a backward move needs a reason",
                ));
            }
            if !violations.is_empty() {
                return Err(LifecycleError::Invalid(violations));
            }
        }
        let cause = Cause {
            cause: "manual".into(),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            forced: backward && forced,
            ..Cause::default()
        };
        if !engine::transition(
            &txn,
            tenant,
            &model.id,
            contact,
            Some((&current.0, current.1)),
            to,
            now,
            &cause,
        )
        .await?
        {
            return Err(LifecycleError::StaleEtag);
        }
        txn.commit().await?;
        self.wake_watchers();
        Ok((to.to_owned(), now))
    }

    /// Creates a segment and computes its members from what is known now.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "create_segment", db.system.name))]
    pub async fn create_segment(
        &self,
        tenant: &str,
        name: &str,
        filter: &str,
        default_model: &str,
        now: Micros,
    ) -> Result<segment::Model, LifecycleError> {
        let taken = segment::Entity::find()
            .filter(segment::Column::TenantId.eq(tenant))
            .filter(segment::Column::DisplayName.eq(name))
            .one(&self.db)
            .await?;
        if taken.is_some() {
            return Err(LifecycleError::NameTaken {
                kind: "clm.lifecycle.v1.Segment",
                name: name.to_owned(),
            });
        }
        let condition = facts::compile(filter, false)
            .map_err(|e| LifecycleError::invalid("segment.filter", e.to_string()))?;
        let txn = clm_store::begin_write(&self.db).await?;
        engine::lock_log(&txn).await?;
        let row = segment::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            id: Set(uuid::Uuid::now_v7().to_string()),
            display_name: Set(name.to_owned()),
            filter: Set(filter.to_owned()),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let history = facts::History::of([&condition]);
        let models = [default_model.to_owned()];
        // 500 contacts per load (four queries), not one by one, as the segment slide does.
        for chunk in known_contacts(&txn, tenant).await?.chunks(500) {
            let mut states =
                engine::ContactState::load_many(&txn, tenant, chunk, &models, &[], &history, now)
                    .await?;
            for contact in chunk {
                let state = states
                    .get_mut(contact)
                    .expect("every asked contact has a state");
                state.facts.stage = state.stage(default_model);
                if facts::holds(&condition, &state.facts, now) {
                    engine::set_membership(&txn, tenant, &row.id, contact, true, now).await?;
                }
            }
        }
        txn.commit().await?;
        self.wake_watchers();
        Ok(row)
    }

    /// The tenant's segments with their member counts, after `after_id`.
    pub async fn segments(
        &self,
        tenant: &str,
        after_id: &str,
        limit: u64,
    ) -> Result<Vec<(segment::Model, u64)>, LifecycleError> {
        let rows = segment::Entity::find()
            .filter(segment::Column::TenantId.eq(tenant))
            .filter(segment::Column::Id.gt(after_id))
            .order_by_asc(segment::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let count = self.member_count(tenant, &row.id).await?;
            out.push((row, count));
        }
        Ok(out)
    }

    /// How many members a segment has.
    pub async fn member_count(
        &self,
        tenant: &str,
        segment_id: &str,
    ) -> Result<u64, LifecycleError> {
        Ok(segment_member::Entity::find()
            .filter(segment_member::Column::TenantId.eq(tenant))
            .filter(segment_member::Column::SegmentId.eq(segment_id))
            .count(&self.db)
            .await?)
    }

    /// One page of a segment's members, by contact id after `after`.
    pub async fn members(
        &self,
        tenant: &str,
        segment_id: &str,
        after: &str,
        limit: u64,
    ) -> Result<Vec<(String, Micros)>, LifecycleError> {
        segment::Entity::find_by_id((tenant.to_owned(), segment_id.to_owned()))
            .one(&self.db)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                kind: "clm.lifecycle.v1.Segment",
                id: segment_id.to_owned(),
            })?;
        Ok(segment_member::Entity::find()
            .filter(segment_member::Column::TenantId.eq(tenant))
            .filter(segment_member::Column::SegmentId.eq(segment_id))
            .filter(segment_member::Column::ContactId.gt(after))
            .order_by_asc(segment_member::Column::ContactId)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.contact_id, m.entered_at))
            .collect())
    }

    /// Events of the log after `after`, oldest first.
    pub async fn events_after(
        &self,
        tenant: &str,
        after: i64,
        kinds: &[i32],
        limit: u64,
    ) -> Result<Vec<LogEvent>, LifecycleError> {
        let mut query = lifecycle_event::Entity::find()
            .filter(lifecycle_event::Column::TenantId.eq(tenant))
            .filter(lifecycle_event::Column::Id.gt(after));
        if !kinds.is_empty() {
            query = query.filter(lifecycle_event::Column::Kind.is_in(kinds.iter().copied()));
        }
        Ok(query
            .order_by_asc(lifecycle_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| LogEvent {
                id: e.id,
                kind: e.kind,
                contact_id: e.contact_id,
                occurred_at: e.occurred_at,
                from_stage: e.from_stage,
                to_stage: e.to_stage,
                segment_id: e.segment_id,
                action: e.action,
                cause: e.cause,
            })
            .collect())
    }

    /// The newest event id of the tenant (0 with none).
    pub async fn last_event_id(&self, tenant: &str) -> Result<i64, LifecycleError> {
        let last: Option<Option<i64>> = lifecycle_event::Entity::find()
            .select_only()
            .column_as(lifecycle_event::Column::Id.max(), "last")
            .filter(lifecycle_event::Column::TenantId.eq(tenant))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(last.flatten().unwrap_or(0))
    }
}

/// Contacts lifecycle knows in a tenant (with a stage or facts).
pub(crate) async fn known_contacts<C: sea_orm::ConnectionTrait>(
    db: &C,
    tenant: &str,
) -> Result<Vec<String>, LifecycleError> {
    let mut ids: std::collections::BTreeSet<String> = contact_stage::Entity::find()
        .select_only()
        .column(contact_stage::Column::ContactId)
        .distinct()
        .filter(contact_stage::Column::TenantId.eq(tenant))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let facts: Vec<String> = contact_fact::Entity::find()
        .select_only()
        .column(contact_fact::Column::ContactId)
        .filter(contact_fact::Column::TenantId.eq(tenant))
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(facts);
    Ok(ids.into_iter().collect())
}
