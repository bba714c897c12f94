//! Timed work: churn after inactivity, date-based triggers, and segments whose windows
//! slide. Safe with several replicas on one PostgreSQL: a churn move only happens while the
//! contact is still where the scheduler saw it, and a trigger fires only when its due item
//! is inserted for the first time.

use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TryInsertResult};

use super::Store;
use super::engine::{self, ACTION, Cause, ContactState, LogEntry};
use super::entities::{contact_fact, contact_stage, fired_trigger, stage_model};
use super::queries::known_contacts;
use crate::domain::facts::History;
use crate::domain::model::{CompiledModel, TimedTrigger};
use crate::domain::{DAY, LifecycleError, Micros};

/// What one scheduler run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Contacts moved by inactivity.
    pub churned: u64,
    /// Actions put on the stream.
    pub actions: u64,
}

/// A date attribute: `YYYY-MM-DD` (midnight UTC) or RFC 3339.
fn parse_date(text: &str) -> Option<Micros> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
}

impl Store {
    /// Runs everything due at `now` for every tenant.
    pub async fn run_due(&self, now: Micros) -> Result<Fired, LifecycleError> {
        let tenants: Vec<String> = stage_model::Entity::find()
            .select_only()
            .column(stage_model::Column::TenantId)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut fired = Fired::default();
        for tenant in tenants {
            let models: Vec<CompiledModel> = self
                .models(&tenant)
                .await?
                .iter()
                .map(|m| CompiledModel::new(&m.id, &m.spec))
                .collect();
            for model in &models {
                for trigger in &model.spec.triggers {
                    if trigger.attribute.is_empty() {
                        fired.churned += self.churn(&tenant, model, trigger, now).await?;
                    } else {
                        fired.actions += self.date_trigger(&tenant, model, trigger, now).await?;
                    }
                }
            }
            self.slide_segments(&tenant, models.first().map_or("", |m| m.id.as_str()), now)
                .await?;
        }
        self.wake_watchers();
        Ok(fired)
    }

    /// Inactivity looks only at the contact's latest interaction.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "churn", db.system.name))]
    async fn churn(
        &self,
        tenant: &str,
        model: &CompiledModel,
        trigger: &TimedTrigger,
        now: Micros,
    ) -> Result<u64, LifecycleError> {
        let Some(churn_stage) = model.churn_stage() else {
            return Ok(0);
        };
        let mut query = contact_stage::Entity::find()
            .filter(contact_stage::Column::TenantId.eq(tenant))
            .filter(contact_stage::Column::ModelId.eq(&model.id))
            .filter(contact_stage::Column::Stage.ne(churn_stage));
        if !trigger.stages.is_empty() {
            query = query.filter(contact_stage::Column::Stage.is_in(trigger.stages.clone()));
        }
        let mut churned = 0;
        // The candidates' latest interactions are read 500 at a time, not one by one.
        for chunk in query.all(&self.db).await?.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(|r| r.contact_id.clone()).collect();
            let states =
                ContactState::load_many(&self.db, tenant, &ids, &[], &[], &History::LATEST, now)
                    .await?;
            for row in chunk {
                let last = states[&row.contact_id]
                    .facts
                    .last_activity()
                    .unwrap_or(row.entered_at)
                    .max(row.entered_at);
                if last <= now - trigger.offset {
                    churned += self
                        .churn_one(tenant, (&model.id, churn_stage), trigger, row, now)
                        .await?;
                }
            }
        }
        Ok(churned)
    }

    /// Moves one contact found inactive to the model's churn stage, if it is still where
    /// it was seen; 1 when it moved.
    async fn churn_one(
        &self,
        tenant: &str,
        (model, churn_stage): (&str, &str),
        trigger: &TimedTrigger,
        row: &contact_stage::Model,
        now: Micros,
    ) -> Result<u64, LifecycleError> {
        let txn = clm_store::begin_write(&self.db).await?;
        engine::lock_log(&txn).await?;
        let cause = Cause {
            cause: format!("trigger:{}", trigger.id),
            ..Cause::default()
        };
        let moved = engine::transition(
            &txn,
            tenant,
            model,
            &row.contact_id,
            Some((&row.stage, row.entered_at)),
            churn_stage,
            now,
            &cause,
        )
        .await?;
        if moved {
            engine::append(
                &txn,
                tenant,
                now,
                LogEntry {
                    kind: ACTION,
                    contact_id: row.contact_id.clone(),
                    action: trigger.action.clone(),
                    cause: cause.cause.clone(),
                    ..LogEntry::default()
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(u64::from(moved))
    }

    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "date_trigger", db.system.name))]
    async fn date_trigger(
        &self,
        tenant: &str,
        model: &CompiledModel,
        trigger: &TimedTrigger,
        now: Micros,
    ) -> Result<u64, LifecycleError> {
        let mut actions = 0;
        for fact in contact_fact::Entity::find()
            .filter(contact_fact::Column::TenantId.eq(tenant))
            .all(&self.db)
            .await?
        {
            let attributes: std::collections::BTreeMap<String, String> =
                serde_json::from_value(fact.attributes).unwrap_or_default();
            let Some(date) = attributes
                .get(&trigger.attribute)
                .and_then(|v| parse_date(v))
            else {
                continue;
            };
            let due = date - trigger.offset;
            // Due, and not long past: a date years ago does not fire today.
            if now < due || now > date.max(due) + DAY {
                continue;
            }
            if !trigger.stages.is_empty() {
                let stage =
                    engine::current_stage(&self.db, tenant, &model.id, &fact.contact_id).await?;
                if !stage.is_some_and(|(s, _)| trigger.stages.contains(&s)) {
                    continue;
                }
            }
            let txn = clm_store::begin_write(&self.db).await?;
            engine::lock_log(&txn).await?;
            let first = fired_trigger::Entity::insert(fired_trigger::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                model_id: Set(model.id.clone()),
                trigger_id: Set(trigger.id.clone()),
                contact_id: Set(fact.contact_id.clone()),
                due_at: Set(due),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(&txn)
            .await?;
            if matches!(first, TryInsertResult::Inserted(n) if n > 0) {
                engine::append(
                    &txn,
                    tenant,
                    now,
                    LogEntry {
                        kind: ACTION,
                        contact_id: fact.contact_id.clone(),
                        action: trigger.action.clone(),
                        cause: format!("trigger:{}", trigger.id),
                        ..LogEntry::default()
                    },
                )
                .await?;
                actions += 1;
            }
            txn.commit().await?;
        }
        Ok(actions)
    }

    /// Windows slide with time: re-evaluates every known contact against every segment.
    #[tracing::instrument(name = "db.transaction", skip_all, fields(db.operation.name = "slide_segments", db.system.name))]
    async fn slide_segments(
        &self,
        tenant: &str,
        default_model: &str,
        now: Micros,
    ) -> Result<(), LifecycleError> {
        let txn = clm_store::begin_write(&self.db).await?;
        engine::lock_log(&txn).await?;
        let segments = engine::load_segments(&txn, tenant).await?;
        if segments.is_empty() {
            return Ok(());
        }
        let models = [default_model.to_owned()];
        // Only the segments are evaluated here.
        let history = History::of(segments.iter().map(|(_, condition)| condition));
        let mut writes = engine::Deferred::new(tenant, now);
        // Loaded 500 at a time (four queries each time), not one by one: this holds the
        // writer while it walks every known contact.
        for chunk in known_contacts(&txn, tenant).await?.chunks(500) {
            let mut states = engine::ContactState::load_many(
                &txn, tenant, chunk, &models, &segments, &history, now,
            )
            .await?;
            for contact in chunk {
                let state = states
                    .get_mut(contact)
                    .expect("every asked contact has a state");
                engine::refresh_segments(
                    &txn,
                    &mut writes,
                    &segments,
                    default_model,
                    contact,
                    state,
                )
                .await?;
            }
        }
        writes.flush(&txn).await?;
        txn.commit().await?;
        Ok(())
    }
}
