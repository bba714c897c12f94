//! The rows reports read. Money reports read the customers rollup (one row per customer
//! and currency), never the raw interactions; NPS and stage metrics read their own facts.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::customer_rollup::OrderDay;
use super::entities::{contact, customer_order, fact, spend, transition};
use super::{Store, day_of};

/// A customer's orders up to `as_of`, from the rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The contact.
    pub contact_id: String,
    /// Its first touch: the source (channel) it came through.
    pub source: String,
    /// Its first touch: the campaign.
    pub campaign: String,
    /// Order days (with at least one purchase), ascending.
    pub order_days: Vec<i64>,
    /// Net revenue in micros (purchases less refunds).
    pub revenue_micros: i64,
    /// Revenue per order day, ascending by day.
    pub daily_micros: Vec<(i64, i64)>,
}

/// One stay in a stage, from consecutive transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stay {
    /// The contact.
    pub contact_id: String,
    /// The stage.
    pub stage: String,
    /// The stage before.
    pub from_stage: String,
    /// Entered.
    pub entered_at: i64,
    /// Left (the next transition), if before `as_of`.
    pub exited_at: Option<i64>,
    /// The transition that began the stay.
    pub event_id: String,
}

/// A transition as stays are made of: (contact, when, event id, from stage, to stage).
pub(crate) type TransitionRow = (String, i64, String, String, String);

/// The transitions of a tenant's model, as stays are made of.
pub(crate) fn transition_rows(tenant: &str, model: &str) -> sea_orm::Select<transition::Entity> {
    transition::Entity::find()
        .select_only()
        .columns([
            transition::Column::ContactId,
            transition::Column::OccurredAt,
            transition::Column::EventId,
            transition::Column::FromStage,
            transition::Column::ToStage,
        ])
        .filter(transition::Column::TenantId.eq(tenant))
        .filter(transition::Column::ModelId.eq(model))
}

/// The stays of transitions sorted by contact, time and event id: each lasts until the
/// contact's next transition.
pub(crate) fn stays_of(rows: impl IntoIterator<Item = TransitionRow>) -> Vec<Stay> {
    let mut stays: Vec<Stay> = Vec::new();
    for (contact_id, entered_at, event_id, from_stage, stage) in rows {
        if let Some(previous) = stays.last_mut()
            && previous.contact_id == contact_id
        {
            previous.exited_at = Some(entered_at);
        }
        stays.push(Stay {
            contact_id,
            stage,
            from_stage,
            entered_at,
            exited_at: None,
            event_id,
        });
    }
    stays
}

impl Store {
    /// Every customer with orders in `currency` up to the day of `as_of`, by contact id.
    pub async fn customers(
        &self,
        tenant: &str,
        currency: &str,
        as_of: i64,
    ) -> Result<Vec<Customer>, DbErr> {
        let rows: Vec<(String, String, String, String)> = customer_order::Entity::find()
            .select_only()
            .columns([
                customer_order::Column::ContactId,
                customer_order::Column::Source,
                customer_order::Column::Campaign,
                customer_order::Column::Days,
            ])
            .filter(customer_order::Column::TenantId.eq(tenant))
            .filter(customer_order::Column::Currency.eq(currency))
            .into_tuple()
            .all(&self.db)
            .await?;
        let last_day = day_of(as_of);
        let mut customers = Vec::with_capacity(rows.len());
        for (contact_id, source, campaign, days) in rows {
            let days: Vec<OrderDay> = serde_json::from_str(&days)
                .map_err(|e| DbErr::Custom(format!("customer_orders.days: {e}")))?;
            let days = days.into_iter().filter(|d| d.0 <= last_day);
            let mut customer = Customer {
                contact_id,
                source,
                campaign,
                order_days: Vec::new(),
                revenue_micros: 0,
                daily_micros: Vec::new(),
            };
            for (day, micros, purchases) in days {
                customer.revenue_micros += micros;
                customer.daily_micros.push((day, micros));
                if purchases > 0 {
                    customer.order_days.push(day);
                }
            }
            if !customer.order_days.is_empty() {
                customers.push(customer);
            }
        }
        // By id in Rust: PostgreSQL's collation may order text otherwise.
        customers.sort_unstable_by(|a, b| a.contact_id.cmp(&b.contact_id));
        Ok(customers)
    }

    /// NPS answers in [start, end): (contact, when, score).
    pub async fn nps_answers(
        &self,
        tenant: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, i64, i32)>, DbErr> {
        // Sorted here, not in SQL: with ORDER BY occurred_at SQLite's planner (without
        // statistics) walks the by-time index over every fact instead of the by-kind one.
        let rows: Vec<(String, i64, Option<i32>)> = fact::Entity::find()
            .select_only()
            .columns([
                fact::Column::ContactId,
                fact::Column::OccurredAt,
                fact::Column::NpsScore,
            ])
            .filter(fact::Column::TenantId.eq(tenant))
            .filter(fact::Column::Kind.eq("nps_response"))
            .filter(fact::Column::OccurredAt.gte(start))
            .filter(fact::Column::OccurredAt.lt(end))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut answers: Vec<_> = rows
            .into_iter()
            .filter_map(|(contact, at, score)| Some((contact, at, score?)))
            .collect();
        answers.sort_by_key(|a| a.1);
        Ok(answers)
    }

    /// Every stay in the stages of `model` that began before `as_of`.
    pub async fn stays(&self, tenant: &str, model: &str, as_of: i64) -> Result<Vec<Stay>, DbErr> {
        let rows: Vec<TransitionRow> = transition_rows(tenant, model)
            .filter(transition::Column::OccurredAt.lte(as_of))
            .order_by_asc(transition::Column::ContactId)
            .order_by_asc(transition::Column::OccurredAt)
            .order_by_asc(transition::Column::EventId)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(stays_of(rows))
    }

    /// Spend records in `currency` overlapping [start, end): (channel, campaign, start, end, micros).
    pub async fn spend(
        &self,
        tenant: &str,
        currency: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, String, i64, i64, i64)>, DbErr> {
        Ok(spend::Entity::find()
            .filter(spend::Column::TenantId.eq(tenant))
            .filter(spend::Column::Currency.eq(currency))
            .filter(spend::Column::StartAt.lt(end))
            .filter(spend::Column::EndAt.gt(start))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| (s.channel, s.campaign, s.start_at, s.end_at, s.amount_micros))
            .collect())
    }

    /// Events of each contact in [start, end): interactions of `kinds` (all when `None`),
    /// in no particular order (funnels order them by time and step; see
    /// `domain::funnel`). Funnels must scan facts: their steps are arbitrary types.
    pub async fn events(
        &self,
        tenant: &str,
        kinds: Option<&[String]>,
        start: i64,
        end: i64,
    ) -> Result<HashMap<String, Vec<(i64, String)>>, DbErr> {
        let mut query = fact::Entity::find()
            .filter(fact::Column::TenantId.eq(tenant))
            .filter(fact::Column::OccurredAt.gte(start))
            .filter(fact::Column::OccurredAt.lt(end));
        if let Some(kinds) = kinds {
            query = query.filter(fact::Column::Kind.is_in(kinds.iter().cloned()));
        }
        let mut out: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        let rows: Vec<(String, i64, String)> = query
            .select_only()
            .columns([
                fact::Column::ContactId,
                fact::Column::OccurredAt,
                fact::Column::Kind,
            ])
            .into_tuple()
            .all(&self.db)
            .await?;
        for (contact, at, kind) in rows {
            out.entry(contact).or_default().push((at, kind));
        }
        Ok(out)
    }

    /// Each contact's first event of `kind` in [start, end), read from the index alone: a
    /// funnel enters a contact at its first step-1 event, so the later ones (the bulk, when
    /// step 1 is a page view) need not be read.
    pub async fn first_events(
        &self,
        tenant: &str,
        kind: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<(String, i64)>, DbErr> {
        fact::Entity::find()
            .select_only()
            .column(fact::Column::ContactId)
            .column_as(fact::Column::OccurredAt.min(), "first")
            .filter(fact::Column::TenantId.eq(tenant))
            .filter(fact::Column::Kind.eq(kind))
            .filter(fact::Column::OccurredAt.gte(start))
            .filter(fact::Column::OccurredAt.lt(end))
            .group_by(fact::Column::ContactId)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Stage entries of `model` in [start, end) as events named after the stage, in no
    /// particular order (as [`Store::events`]).
    pub async fn stage_entries(
        &self,
        tenant: &str,
        model: &str,
        start: i64,
        end: i64,
    ) -> Result<HashMap<String, Vec<(i64, String)>>, DbErr> {
        let mut out: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for t in transition::Entity::find()
            .filter(transition::Column::TenantId.eq(tenant))
            .filter(transition::Column::ModelId.eq(model))
            .filter(transition::Column::OccurredAt.gte(start))
            .filter(transition::Column::OccurredAt.lt(end))
            .all(&self.db)
            .await?
        {
            out.entry(t.contact_id)
                .or_default()
                .push((t.occurred_at, t.to_stage));
        }
        Ok(out)
    }

    /// Each contact's value of attribute `key` (absent when the contact has none).
    pub async fn attribute(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<HashMap<String, String>, DbErr> {
        Ok(contact::Entity::find()
            .filter(contact::Column::TenantId.eq(tenant))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|c| {
                let attributes: HashMap<String, String> =
                    serde_json::from_value(c.attributes).ok()?;
                Some((c.contact_id, attributes.get(key)?.clone()))
            })
            .collect())
    }

    /// Each contact's creation instant.
    pub async fn created(&self, tenant: &str) -> Result<HashMap<String, i64>, DbErr> {
        let rows: Vec<(String, i64)> = contact::Entity::find()
            .select_only()
            .columns([contact::Column::ContactId, contact::Column::CreatedAt])
            .filter(contact::Column::TenantId.eq(tenant))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records spend once per id; true when it was new.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_spend(
        &self,
        tenant: &str,
        spend_id: &str,
        channel: &str,
        campaign: &str,
        period: (i64, i64),
        amount_micros: i64,
        currency: &str,
    ) -> Result<bool, DbErr> {
        use sea_orm::ActiveValue::Set;
        let inserted = spend::Entity::insert(spend::ActiveModel {
            tenant_id: Set(tenant.to_owned()),
            spend_id: Set(spend_id.to_owned()),
            channel: Set(channel.to_owned()),
            campaign: Set(campaign.to_owned()),
            start_at: Set(period.0),
            end_at: Set(period.1),
            amount_micros: Set(amount_micros),
            currency: Set(currency.to_owned()),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&self.db)
        .await?;
        Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0))
    }
}
