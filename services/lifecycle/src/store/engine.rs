//! The moves inside one transaction: load a contact's facts, enter stages, keep segment
//! membership current, and append every change to the event log.

use std::collections::{HashMap, HashSet};

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
};

pub(crate) use super::deferred::Deferred;
use super::entities::{
    activity, contact_fact, contact_stage, lifecycle_event, segment, segment_member, stage_history,
};
use crate::domain::facts::{self, Activity, Facts, History};
use crate::domain::model::CompiledModel;
use crate::domain::{LifecycleError, Micros};

/// The outbox target of transitions.
pub const ANALYTICS: &str = "analytics";

/// The kinds of the event log, as in `LifecycleEventKind`.
pub(crate) const TRANSITION: i32 = 1;
pub(crate) const SEGMENT_ENTERED: i32 = 2;
pub(crate) const SEGMENT_EXITED: i32 = 3;
pub(crate) const ACTION: i32 = 4;

/// Serialises appends to the event log on PostgreSQL, so ids become visible in order and a
/// reader resuming after id N never misses a smaller id committed later. SQLite writers
/// are serialised already.
pub(crate) async fn lock_log(txn: &DatabaseTransaction) -> Result<(), LifecycleError> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(727274)")
            .await?;
    }
    Ok(())
}

/// One entry of the event log.
#[derive(Debug, Default, Clone)]
pub(crate) struct LogEntry {
    pub(crate) kind: i32,
    pub(crate) contact_id: String,
    pub(crate) from_stage: String,
    pub(crate) to_stage: String,
    pub(crate) segment_id: String,
    pub(crate) action: String,
    pub(crate) cause: String,
}

pub(crate) async fn append(
    txn: &DatabaseTransaction,
    tenant: &str,
    now: Micros,
    entry: LogEntry,
) -> Result<(), LifecycleError> {
    lifecycle_event::Entity::insert(log_row(tenant, now, entry))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The event-log row of `entry`.
pub(crate) fn log_row(tenant: &str, now: Micros, entry: LogEntry) -> lifecycle_event::ActiveModel {
    lifecycle_event::ActiveModel {
        id: NotSet,
        tenant_id: Set(tenant.to_owned()),
        kind: Set(entry.kind),
        contact_id: Set(entry.contact_id),
        occurred_at: Set(now),
        from_stage: Set(entry.from_stage),
        to_stage: Set(entry.to_stage),
        segment_id: Set(entry.segment_id),
        action: Set(entry.action),
        cause: Set(entry.cause),
    }
}

/// Reads into `states` the part of the histories of `contacts` that `history` names, as of
/// `now`: the contacts' histories are the largest read of an applied call, and most of a
/// history (page views, opens) is nothing a condition counts. Only the columns the facts
/// use are read, decoded as tuples rather than whole models.
async fn load_history<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    contacts: &[String],
    history: &History,
    now: Micros,
    states: &mut HashMap<String, ContactState>,
) -> Result<(), LifecycleError> {
    let History { kinds, span, last } = history;
    if *last {
        let latest: Vec<(String, Option<Micros>)> = activity::Entity::find()
            .select_only()
            .column(activity::Column::ContactId)
            .column_as(activity::Column::OccurredAt.max(), "latest")
            .filter(activity::Column::TenantId.eq(tenant))
            .filter(activity::Column::ContactId.is_in(contacts.to_vec()))
            .group_by(activity::Column::ContactId)
            .into_tuple()
            .all(db)
            .await?;
        for (contact, at) in latest {
            states
                .get_mut(&contact)
                .expect("asked for")
                .facts
                .last_activity_at = at;
        }
    }
    if kinds.is_empty() {
        return Ok(());
    }
    let query = activity::Entity::find()
        .select_only()
        .columns([
            activity::Column::ContactId,
            activity::Column::Kind,
            activity::Column::OccurredAt,
            activity::Column::AmountMicros,
        ])
        .filter(activity::Column::TenantId.eq(tenant))
        .filter(activity::Column::ContactId.is_in(contacts.to_vec()))
        .filter(activity::Column::Kind.is_in(kinds.iter().cloned()))
        .filter(activity::Column::OccurredAt.gt(now.saturating_sub(*span)));
    let activities: Vec<(String, String, Micros, i64)> = query.into_tuple().all(db).await?;
    for (contact, kind, occurred_at, amount_micros) in activities {
        let state = states.get_mut(&contact).expect("asked for");
        state.facts.activities.push(Activity {
            kind,
            occurred_at,
            amount_micros,
        });
    }
    Ok(())
}

/// Upserts the non-activity facts of `contacts` in multi-row statements (a call changes
/// the facts of most contacts it touches: one statement per contact was a third of it).
pub(crate) async fn save_facts(
    txn: &DatabaseTransaction,
    tenant: &str,
    contacts: &[(&String, &Facts)],
    now: Micros,
) -> Result<(), LifecycleError> {
    // 6 columns x 1,000 rows stays under SQLite's bound-parameter limit.
    for chunk in contacts.chunks(1000) {
        clm_store::insert_many(
            txn,
            chunk
                .iter()
                .map(|(contact, facts)| contact_fact::ActiveModel {
                    tenant_id: Set(tenant.to_owned()),
                    contact_id: Set((*contact).clone()),
                    attributes: Set(
                        serde_json::to_value(&facts.attributes).expect("a string map serialises")
                    ),
                    score: Set(facts.score),
                    band: Set(facts.band.clone()),
                    updated_at: Set(now),
                }),
        )
        .on_conflict(
            OnConflict::columns([
                contact_fact::Column::TenantId,
                contact_fact::Column::ContactId,
            ])
            .update_columns([
                contact_fact::Column::Attributes,
                contact_fact::Column::Score,
                contact_fact::Column::Band,
                contact_fact::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// What caused a move.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cause {
    pub(crate) cause: String,
    pub(crate) event_id: String,
    pub(crate) actor: String,
    pub(crate) reason: String,
    pub(crate) forced: bool,
}

/// The contact's current stage in `model` with when it was entered.
pub(crate) async fn current_stage<C: ConnectionTrait>(
    db: &C,
    tenant: &str,
    model: &str,
    contact: &str,
) -> Result<Option<(String, Micros)>, LifecycleError> {
    Ok(
        contact_stage::Entity::find_by_id((
            tenant.to_owned(),
            model.to_owned(),
            contact.to_owned(),
        ))
        .one(db)
        .await?
        .map(|s| (s.stage, s.entered_at)),
    )
}

/// Moves the contact from `from` (entered at `entered_at`; `None` for a new contact) to
/// `to`, closes the previous stay, opens the next, and logs the transition. Returns false
/// when the contact was no longer where the caller saw it (another writer moved it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn transition(
    txn: &DatabaseTransaction,
    tenant: &str,
    model: &str,
    contact: &str,
    from: Option<(&str, Micros)>,
    to: &str,
    now: Micros,
    cause: &Cause,
) -> Result<bool, LifecycleError> {
    match from {
        None => {
            contact_stage::Entity::insert(contact_stage::ActiveModel {
                tenant_id: Set(tenant.to_owned()),
                model_id: Set(model.to_owned()),
                contact_id: Set(contact.to_owned()),
                stage: Set(to.to_owned()),
                entered_at: Set(now),
            })
            .exec_without_returning(txn)
            .await?;
        }
        Some((stage, entered_at)) => {
            let moved = contact_stage::Entity::update_many()
                .col_expr(contact_stage::Column::Stage, Expr::value(to))
                .col_expr(contact_stage::Column::EnteredAt, Expr::value(now))
                .filter(contact_stage::Column::TenantId.eq(tenant))
                .filter(contact_stage::Column::ModelId.eq(model))
                .filter(contact_stage::Column::ContactId.eq(contact))
                .filter(contact_stage::Column::Stage.eq(stage))
                .filter(contact_stage::Column::EnteredAt.eq(entered_at))
                .exec(txn)
                .await?;
            if moved.rows_affected == 0 {
                return Ok(false);
            }
            stage_history::Entity::update_many()
                .col_expr(stage_history::Column::ExitedAt, Expr::value(now))
                .filter(stage_history::Column::TenantId.eq(tenant))
                .filter(stage_history::Column::ModelId.eq(model))
                .filter(stage_history::Column::ContactId.eq(contact))
                .filter(stage_history::Column::ExitedAt.is_null())
                .exec(txn)
                .await?;
        }
    }
    let from_stage = from.map(|(s, _)| s.to_owned()).unwrap_or_default();
    let rows = TransitionRows::new(tenant, model, contact, &from_stage, to, now, cause);
    stage_history::Entity::insert(rows.stay)
        .exec_without_returning(txn)
        .await?;
    clm_outbox::enqueue(txn, now, vec![rows.event]).await?;
    append(txn, tenant, now, rows.log).await?;
    Ok(true)
}

/// What a move writes besides the contact's stage: the new stay (open), the event for
/// analytics and the log entry.
pub(crate) struct TransitionRows {
    pub(crate) stay: stage_history::ActiveModel,
    pub(crate) event: clm_outbox::NewMessage,
    pub(crate) log: LogEntry,
}

impl TransitionRows {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tenant: &str,
        model: &str,
        contact: &str,
        from_stage: &str,
        to: &str,
        now: Micros,
        cause: &Cause,
    ) -> Self {
        let stay = stage_history::ActiveModel {
            id: NotSet,
            tenant_id: Set(tenant.to_owned()),
            model_id: Set(model.to_owned()),
            contact_id: Set(contact.to_owned()),
            from_stage: Set(from_stage.to_owned()),
            to_stage: Set(to.to_owned()),
            entered_at: Set(now),
            exited_at: Set(None),
            cause: Set(cause.cause.clone()),
            event_id: Set(cause.event_id.clone()),
            actor: Set(cause.actor.clone()),
            reason: Set(cause.reason.clone()),
            forced: Set(cause.forced),
        };
        let event = clm_proto::analytics::v1::TransitionEvent {
            event_id: format!("clm:transition:{}", uuid::Uuid::now_v7()),
            contact_id: contact.to_owned(),
            model_id: model.to_owned(),
            from_stage: from_stage.to_owned(),
            to_stage: to.to_owned(),
            occurred_at: Some(crate::convert::timestamp(now)),
            cause: cause.cause.clone(),
        };
        let event = clm_outbox::NewMessage {
            target: ANALYTICS,
            tenant_id: tenant.to_owned(),
            event_id: event.event_id.clone(),
            payload: prost::Message::encode_to_vec(&event),
        };
        let log = LogEntry {
            kind: TRANSITION,
            contact_id: contact.to_owned(),
            from_stage: from_stage.to_owned(),
            to_stage: to.to_owned(),
            cause: cause.cause.clone(),
            ..LogEntry::default()
        };
        Self { stay, event, log }
    }
}

/// What one transaction knows of a contact, loaded once and kept current as its signals
/// are applied: facts, the stage per model, segment memberships.
pub(crate) struct ContactState {
    pub(crate) facts: Facts,
    /// Model id to (stage, entered at); a model without an entry has no stage yet.
    stages: HashMap<String, (String, Micros)>,
    members: HashSet<String>,
    /// Whether the non-activity facts changed since they were loaded.
    pub(crate) facts_changed: bool,
}

impl ContactState {
    pub(crate) async fn load(
        txn: &DatabaseTransaction,
        tenant: &str,
        contact: &str,
        models: &[String],
        segments: &[(String, facts::Condition)],
        (history, now): (&History, Micros),
    ) -> Result<Self, LifecycleError> {
        let mut states = Self::load_many(
            txn,
            tenant,
            &[contact.to_owned()],
            models,
            segments,
            history,
            now,
        )
        .await?;
        Ok(states
            .remove(contact)
            .expect("every asked contact has a state"))
    }

    /// The states of `contacts` (distinct) with their stages in `models` and memberships of
    /// `segments`, in four queries per 500 contacts rather than four per contact. Stages
    /// and memberships are asked for by their full keys (model or segment first), so the
    /// primary keys serve the lookups. Of each history only `history` is read, as of `now`.
    pub(crate) async fn load_many<C: ConnectionTrait>(
        db: &C,
        tenant: &str,
        contacts: &[String],
        models: &[String],
        segments: &[(String, facts::Condition)],
        history: &History,
        now: Micros,
    ) -> Result<HashMap<String, Self>, LifecycleError> {
        let mut states: HashMap<String, Self> = contacts
            .iter()
            .map(|c| {
                let state = Self {
                    facts: Facts::default(),
                    stages: HashMap::new(),
                    members: HashSet::new(),
                    facts_changed: false,
                };
                (c.clone(), state)
            })
            .collect();
        for chunk in contacts.chunks(500) {
            let facts = contact_fact::Entity::find()
                .filter(contact_fact::Column::TenantId.eq(tenant))
                .filter(contact_fact::Column::ContactId.is_in(chunk.to_vec()))
                .all(db)
                .await?;
            for f in facts {
                let state = states.get_mut(&f.contact_id).expect("asked for");
                state.facts.attributes = serde_json::from_value(f.attributes).unwrap_or_default();
                state.facts.score = f.score;
                state.facts.band = f.band;
            }
            load_history(db, tenant, chunk, history, now, &mut states).await?;
            let stages = if models.is_empty() {
                Vec::new()
            } else {
                contact_stage::Entity::find()
                    .filter(contact_stage::Column::TenantId.eq(tenant))
                    .filter(contact_stage::Column::ModelId.is_in(models.to_vec()))
                    .filter(contact_stage::Column::ContactId.is_in(chunk.to_vec()))
                    .all(db)
                    .await?
            };
            for s in stages {
                let state = states.get_mut(&s.contact_id).expect("asked for");
                state.stages.insert(s.model_id, (s.stage, s.entered_at));
            }
            if segments.is_empty() {
                continue;
            }
            let members = segment_member::Entity::find()
                .filter(segment_member::Column::TenantId.eq(tenant))
                .filter(
                    segment_member::Column::SegmentId
                        .is_in(segments.iter().map(|(id, _)| id.clone())),
                )
                .filter(segment_member::Column::ContactId.is_in(chunk.to_vec()))
                .all(db)
                .await?;
            for m in members {
                let state = states.get_mut(&m.contact_id).expect("asked for");
                state.members.insert(m.segment_id);
            }
        }
        Ok(states)
    }

    /// The contact's stage in `model` ("" without one).
    pub(crate) fn stage(&self, model: &str) -> String {
        self.stages
            .get(model)
            .map(|(stage, _)| stage.clone())
            .unwrap_or_default()
    }
}

/// Applies the model's rules to the contact: a new contact enters the first stage, then
/// the furthest forward stage its facts allow. The moves are written with `writes`.
pub(crate) fn advance(
    writes: &mut Deferred,
    model: &CompiledModel,
    contact: &str,
    state: &mut ContactState,
    event_id: &str,
) {
    let now = writes.now;
    if !state.stages.contains_key(&model.id) {
        let first = model.first_stage().to_owned();
        let cause = Cause {
            cause: "new_contact".into(),
            event_id: event_id.to_owned(),
            ..Cause::default()
        };
        writes.transition(&model.id, contact, None, &first, &cause);
        state.stages.insert(model.id.clone(), (first, now));
    }
    // Each move can enable the next (bounded by the number of stages).
    for _ in 0..model.spec.stages.len() {
        let Some((stage, _)) = state.stages.get(&model.id).cloned() else {
            break;
        };
        state.facts.stage.clone_from(&stage);
        let Some((to, rule)) = model.next_stage(&stage, &state.facts, now) else {
            break;
        };
        let to = to.to_owned();
        let cause = Cause {
            cause: format!("rule:{}", rule.rule.id),
            event_id: event_id.to_owned(),
            ..Cause::default()
        };
        writes.transition(&model.id, contact, Some(&stage), &to, &cause);
        state.stages.insert(model.id.clone(), (to, now));
    }
}

/// A tenant's segments: (id, compiled condition).
pub(crate) type Segments = Vec<(String, facts::Condition)>;

/// The tenant's segments, read once per transaction.
pub(crate) async fn load_segments(
    txn: &DatabaseTransaction,
    tenant: &str,
) -> Result<Segments, LifecycleError> {
    Ok(segment::Entity::find()
        .filter(segment::Column::TenantId.eq(tenant))
        .all(txn)
        .await?
        .into_iter()
        .map(|s| {
            let condition = facts::compile(&s.filter, false).unwrap_or_default();
            (s.id, condition)
        })
        .collect())
}

/// Re-evaluates `segments` for the contact; entries and exits are logged with `writes`.
pub(crate) async fn refresh_segments(
    txn: &DatabaseTransaction,
    writes: &mut Deferred,
    segments: &Segments,
    default_model: &str,
    contact: &str,
    state: &mut ContactState,
) -> Result<(), LifecycleError> {
    if segments.is_empty() {
        return Ok(());
    }
    state.facts.stage = state.stage(default_model);
    state.facts.event = None;
    for (id, condition) in segments {
        let member = facts::holds(condition, &state.facts, writes.now);
        if member != state.members.contains(id) {
            let (tenant, now) = (writes.tenant.clone(), writes.now);
            if change_membership(txn, &tenant, id, contact, member, now).await? {
                writes.log(membership_entry(id, contact, member));
            }
            if member {
                state.members.insert(id.clone());
            } else {
                state.members.remove(id);
            }
        }
    }
    Ok(())
}

/// Makes `contact` a member of `segment` or not, logging a change.
pub(crate) async fn set_membership(
    txn: &DatabaseTransaction,
    tenant: &str,
    segment: &str,
    contact: &str,
    member: bool,
    now: Micros,
) -> Result<(), LifecycleError> {
    if change_membership(txn, tenant, segment, contact, member, now).await? {
        append(txn, tenant, now, membership_entry(segment, contact, member)).await?;
    }
    Ok(())
}

/// The log entry of a segment entry or exit.
fn membership_entry(segment: &str, contact: &str, member: bool) -> LogEntry {
    LogEntry {
        kind: if member {
            SEGMENT_ENTERED
        } else {
            SEGMENT_EXITED
        },
        contact_id: contact.to_owned(),
        segment_id: segment.to_owned(),
        cause: "segment".into(),
        ..LogEntry::default()
    }
}

/// Makes `contact` a member of `segment` or not; returns whether that changed anything.
async fn change_membership(
    txn: &DatabaseTransaction,
    tenant: &str,
    segment: &str,
    contact: &str,
    member: bool,
    now: Micros,
) -> Result<bool, LifecycleError> {
    Ok(if member {
        let inserted = segment_member::Entity::insert(segment_member::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            segment_id: Set(segment.to_owned()),
            contact_id: Set(contact.to_owned()),
            entered_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await?;
        matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0)
    } else {
        segment_member::Entity::delete_many()
            .filter(segment_member::Column::TenantId.eq(tenant))
            .filter(segment_member::Column::SegmentId.eq(segment))
            .filter(segment_member::Column::ContactId.eq(contact))
            .exec(txn)
            .await?
            .rows_affected
            > 0
    })
}
