//! The tonic adapter of AnalyticsService.

use tonic::{Request, Response, Status};

use clm_proto::analytics::v1 as pb;
use clm_proto::analytics::v1::analytics_service_server::AnalyticsService;
use clm_proto::common::v1 as common;
use clm_runtime::{Error, FieldViolation, tenant};

use crate::domain::clv::{BgNbd, GammaGamma, Predictor, Summary};
use crate::domain::funnel::{ContactEvents, StepCodes, with_entry};
use crate::domain::periods::Period;
use crate::domain::rfm::SegmentMap;
use crate::domain::{Clock, DAY, acquisition, activity, cohorts, funnel, nps, rfm, stages};
use crate::store::{ContactFact, Ingested, Store, TransitionFact};

/// Most customers the predictive models are fitted over.
const FIT_SAMPLE: usize = 10_000;
/// Most events in one Ingest call.
pub const MAX_INGEST: usize = 5000;
/// The stage model whose transitions stage metrics report.
const STAGE_MODEL: &str = "default";

/// The AnalyticsService implementation.
#[derive(Clone)]
pub struct AnalyticsApi {
    store: Store,
    clock: Clock,
}

impl AnalyticsApi {
    /// The API over `store`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self { store, clock }
    }
}

fn internal(error: &sea_orm::DbErr) -> Status {
    Error::new(
        clm_runtime::ErrorCode::Internal,
        format!("database: {error}"),
    )
    .into()
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos / 1000))
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// A customer's days with revenue, marking which hold an order (a refund-only day has
/// revenue but is no order).
fn purchase_days(c: &crate::store::Customer) -> Vec<(i64, i64, bool)> {
    c.daily_micros
        .iter()
        .map(|(day, micros)| (*day, *micros, c.order_days.binary_search(day).is_ok()))
        .collect()
}

fn money(amount_micros: i64, currency: &str) -> common::Money {
    common::Money {
        amount_micros,
        currency: currency.to_owned(),
    }
}

/// The request's `as_of` (default now) and range (default: everything up to `as_of`);
/// an inverted or empty range is a field violation.
fn window(
    range: Option<&common::TimeRange>,
    as_of: Option<&prost_types::Timestamp>,
    now: i64,
) -> Result<(i64, i64, i64), Status> {
    let as_of = as_of.map_or(now, micros);
    let start = range
        .and_then(|r| r.start_time.as_ref())
        .map_or(i64::MIN / 2, micros);
    let end = range
        .and_then(|r| r.end_time.as_ref())
        .map_or(as_of.saturating_add(1), micros);
    if start >= end {
        return Err(Error::invalid_field("range", "start_time must be before end_time").into());
    }
    Ok((start, end, as_of))
}

fn currency_of(text: &str) -> Result<String, Status> {
    if text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(text.to_owned())
    } else {
        Err(Error::invalid_field("currency", "must be an ISO 4217 code such as \"EUR\"").into())
    }
}

fn period_of(value: i32) -> Result<Period, Status> {
    Ok(match common::Period::try_from(value) {
        Ok(common::Period::Unspecified | common::Period::Month) => Period::Month,
        Ok(common::Period::Day) => Period::Day,
        Ok(common::Period::Week) => Period::Week,
        Ok(common::Period::Quarter) => Period::Quarter,
        Ok(common::Period::Year) => Period::Year,
        Err(_) => return Err(Error::invalid_field("period", "is not a known period").into()),
    })
}

/// The period indexes a range covers, capped at `as_of`'s period; an unbounded start
/// begins at `earliest` (a day).
fn period_span(
    period: Period,
    start: i64,
    end: i64,
    as_of: i64,
    earliest: Option<i64>,
) -> (i64, i64) {
    let day = crate::store::day_of;
    let first = if start <= i64::MIN / 4 {
        earliest.map_or_else(|| period.index(day(as_of)), |d| period.index(d))
    } else {
        period.index(day(start))
    };
    let last = period.index(day(end - 1)).min(period.index(day(as_of)));
    (first, last)
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut violations = Vec::new();
        if !(2..=20).contains(&r.steps.len()) {
            violations.push(FieldViolation::new("steps", "a funnel has 2 to 20 steps"));
        }
        for (i, step) in r.steps.iter().enumerate() {
            if step.is_empty() || step.len() > 64 {
                violations.push(FieldViolation::new(
                    format!("steps[{i}]"),
                    "must be 1 to 64 characters",
                ));
            }
        }
        if r.exclusion_steps.len() > 20 {
            violations.push(FieldViolation::new("exclusion_steps", "at most 20"));
        }
        let window_micros = match &r.conversion_window {
            None => 30 * crate::domain::DAY,
            Some(d) => d.seconds.saturating_mul(1_000_000),
        };
        if window_micros <= 0 || window_micros > 3650 * crate::domain::DAY {
            violations.push(FieldViolation::new(
                "conversion_window",
                "must be longer than zero and at most 10 years",
            ));
        }
        if !violations.is_empty() {
            return Err(Error::invalid(violations).into());
        }
        let order = match pb::FunnelOrder::try_from(r.order) {
            Ok(pb::FunnelOrder::Strict) => funnel::Order::Strict,
            Ok(pb::FunnelOrder::Any) => funnel::Order::Any,
            _ => funnel::Order::Sequential,
        };
        let (start, end, as_of) = window(r.range.as_ref(), r.as_of.as_ref(), (self.clock)())?;
        let until = end
            .saturating_add(window_micros)
            .min(as_of.saturating_add(1));
        // Over all time and without a breakdown, contacts that only entered are counted
        // from the entry rollup rather than read.
        let count_entries = r.breakdown_by.is_empty()
            && r.range
                .as_ref()
                .and_then(|range| range.start_time.as_ref())
                .is_none();
        let codes = StepCodes::new(&r.steps, &r.exclusion_steps);
        let (events, entered_only) = if r.over_stages {
            self.store
                .stage_entries(&tenant, STAGE_MODEL, start, until)
                .await
                .map(|events| (codes.of_all(events), 0))
        } else {
            self.step_events(&tenant, &codes, order, (start, end), until, count_entries)
                .await
        }
        .map_err(|e| internal(&e))?;
        let breakdown = if r.breakdown_by.is_empty() {
            None
        } else {
            let values = self
                .store
                .attribute(&tenant, &r.breakdown_by)
                .await
                .map_err(|e| internal(&e))?;
            if values.is_empty() {
                return Err(Error::invalid_field(
                    "breakdown_by",
                    "no contact of the tenant has this attribute",
                )
                .into());
            }
            Some(values)
        };
        let as_steps = |rows: Vec<funnel::StepRow>| {
            rows.into_iter()
                .zip(&r.steps)
                .map(|(s, step)| pb::FunnelStep {
                    step: step.clone(),
                    contacts: s.contacts,
                    overall_conversion: s.overall,
                    step_conversion: s.from_previous,
                    median_time_from_previous: s.median_from_previous.map(|m| {
                        prost_types::Duration {
                            seconds: m / 1_000_000,
                            nanos: ((m % 1_000_000) * 1000) as i32,
                        }
                    }),
                })
                .collect()
        };
        let (contacts, timelines): (Vec<String>, Vec<Vec<(i64, u16)>>) = events.into_iter().unzip();
        let total = funnel::funnel(
            &timelines,
            entered_only,
            &codes.steps,
            &codes.exclusions,
            order,
            (start, end),
            window_micros,
        );
        let groups = if let Some(breakdown) = &breakdown {
            let keyed = contacts
                .iter()
                .zip(timelines)
                .map(|(contact, events)| {
                    (breakdown.get(contact).cloned().unwrap_or_default(), events)
                })
                .collect();
            funnel::by_value(keyed)
                .into_iter()
                .map(|(value, contacts)| {
                    let rows = funnel::funnel(
                        &contacts,
                        0,
                        &codes.steps,
                        &codes.exclusions,
                        order,
                        (start, end),
                        window_micros,
                    );
                    (value, rows)
                })
                // A value none of whose contacts entered the funnel is no row.
                .filter(|(_, rows)| rows[0].contacts > 0)
                .map(|(value, rows)| pb::Funnel {
                    breakdown_value: value,
                    steps: as_steps(rows),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::GetFunnelResponse {
            total: Some(pb::Funnel {
                breakdown_value: String::new(),
                steps: as_steps(total),
            }),
            breakdown: groups,
        }))
    }

    async fn get_stage_metrics(
        &self,
        request: Request<pb::GetStageMetricsRequest>,
    ) -> Result<Response<pb::GetStageMetricsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let everything = request
            .range
            .as_ref()
            .is_none_or(|r| r.start_time.is_none() && r.end_time.is_none());
        let rollup = if everything {
            self.store
                .stage_rollup(&tenant, STAGE_MODEL, as_of)
                .await
                .map_err(|e| internal(&e))?
        } else {
            None
        };
        let (rows, matrix) = match rollup {
            Some((totals, matrix)) => (
                totals
                    .into_iter()
                    .map(|t| stages::StageRow {
                        stage: t.stage,
                        contacts: t.current,
                        entries: t.entries,
                        exits: t.exits,
                        median_time: t.median,
                    })
                    .collect(),
                matrix,
            ),
            // A range, or transitions after as_of: read them.
            None => {
                let stays = self
                    .store
                    .stays(&tenant, STAGE_MODEL, as_of)
                    .await
                    .map_err(|e| internal(&e))?;
                stages::stage_metrics(&stays, (start, end), as_of)
            }
        };
        Ok(Response::new(pb::GetStageMetricsResponse {
            stages: rows
                .into_iter()
                .map(|r| pb::StageMetric {
                    stage: r.stage,
                    contacts: r.contacts,
                    entries: r.entries,
                    exits: r.exits,
                    median_time_in_stage: r.median_time.map(|m| prost_types::Duration {
                        seconds: m / 1_000_000,
                        nanos: ((m % 1_000_000) * 1000) as i32,
                    }),
                })
                .collect(),
            transitions: matrix
                .into_iter()
                .map(|((from_stage, to_stage), count)| pb::StageTransitionCount {
                    from_stage,
                    to_stage,
                    count,
                })
                .collect(),
        }))
    }

    async fn get_cohort_retention(
        &self,
        request: Request<pb::GetCohortRetentionRequest>,
    ) -> Result<Response<pb::GetCohortRetentionResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let currency = currency_of(&request.currency)?;
        let period = period_of(request.period)?;
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let customers = self
            .store
            .customers(&tenant, &currency, as_of)
            .await
            .map_err(|e| internal(&e))?;
        let by_creation = request.basis == pb::CohortBasis::Creation as i32;
        let day = crate::store::day_of;
        let mut members: Vec<cohorts::Member> = Vec::new();
        if by_creation {
            let created = self
                .store
                .created(&tenant)
                .await
                .map_err(|e| internal(&e))?;
            let orders: std::collections::HashMap<&str, &crate::store::Customer> = customers
                .iter()
                .map(|c| (c.contact_id.as_str(), c))
                .collect();
            for (contact, at) in created.into_iter().filter(|(_, at)| *at <= as_of) {
                let days = orders
                    .get(contact.as_str())
                    .map(|c| purchase_days(c))
                    .unwrap_or_default();
                members.push((period.index(day(at)), days));
            }
        } else {
            for c in &customers {
                members.push((period.index(c.order_days[0]), purchase_days(c)));
            }
        }
        let earliest = members.iter().map(|m| period.start(m.0)).min().map(day);
        let (first, last) = period_span(period, start, end, as_of, earliest);
        let (rows, mean) = cohorts::cohorts(
            &members,
            period,
            first,
            last,
            period.index(day(as_of)),
            request.mode == pb::RetentionMode::OnOrAfter as i32,
            request.base == pb::RetentionBase::PreviousPeriod as i32,
        );
        let row = |r: cohorts::CohortRow, start: Option<prost_types::Timestamp>| pb::CohortRow {
            cohort_start: start,
            size: r.size,
            retained: r.retained,
            shares: r.shares,
            revenue: r.revenue.into_iter().map(|m| money(m, &currency)).collect(),
        };
        Ok(Response::new(pb::GetCohortRetentionResponse {
            cohorts: rows
                .into_iter()
                .map(|r| {
                    let start = timestamp(period.start(r.cohort));
                    row(r, Some(start))
                })
                .collect(),
            weighted_mean: Some(row(mean, None)),
        }))
    }

    async fn get_activity_lifecycle(
        &self,
        request: Request<pb::GetActivityLifecycleRequest>,
    ) -> Result<Response<pb::GetActivityLifecycleResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let currency = currency_of(&request.currency)?;
        let period = period_of(request.period)?;
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let customers = self
            .store
            .customers(&tenant, &currency, as_of)
            .await
            .map_err(|e| internal(&e))?;
        let earliest = customers.iter().map(|c| c.order_days[0]).min();
        let (first, last) = period_span(period, start, end, as_of, earliest);
        let days: Vec<Vec<i64>> = customers.iter().map(|c| c.order_days.clone()).collect();
        let rows = activity::activity(&days, period, first, last);
        Ok(Response::new(pb::GetActivityLifecycleResponse {
            periods: rows
                .into_iter()
                .map(|r| pb::ActivityPeriod {
                    period_start: Some(timestamp(period.start(r.period))),
                    new: r.new,
                    returning: r.returning,
                    resurrecting: r.resurrecting,
                    dormant: r.dormant,
                })
                .collect(),
        }))
    }

    async fn get_customer_value(
        &self,
        request: Request<pb::GetCustomerValueRequest>,
    ) -> Result<Response<pb::GetCustomerValueResponse>, Status> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let currency = currency_of(&r.currency)?;
        let mut violations = Vec::new();
        if !r.segment.is_empty() {
            violations.push(FieldViolation::new(
                "segment",
                "segments live in lifecycle; ask for one contact or all customers",
            ));
        }
        let unit_days = match common::Period::try_from(r.time_unit) {
            Ok(common::Period::Unspecified | common::Period::Week) => 7.0,
            Ok(common::Period::Day) => 1.0,
            _ => {
                violations.push(FieldViolation::new("time_unit", "must be day or week"));
                7.0
            }
        };
        let horizon = if r.horizon_units == 0 {
            52
        } else {
            r.horizon_units
        };
        if !(1..=3650).contains(&horizon) {
            violations.push(FieldViolation::new("horizon_units", "must be 1 to 3650"));
        }
        let rate = if r.discount_rate == 0.0 {
            0.1
        } else {
            r.discount_rate
        };
        if !(0.0..=1.0).contains(&rate) {
            violations.push(FieldViolation::new(
                "discount_rate",
                "must be between 0 and 1",
            ));
        }
        if !violations.is_empty() {
            return Err(Error::invalid(violations).into());
        }
        let now = (self.clock)();
        let as_of = r.as_of.as_ref().map_or(now, micros);
        let calibration_end = r.calibration_end.as_ref().map_or(as_of, micros).min(as_of);
        let customers = self
            .store
            .customers(&tenant, &currency, as_of)
            .await
            .map_err(|e| internal(&e))?;
        let as_of_day = crate::store::day_of(as_of);

        // Simple CLV over the last two years before as_of: retention from the year before
        // into the last year, orders per active customer and order value in the last year.
        let (year_start, prev_start) = (as_of_day - 365, as_of_day - 730);
        let mut active_last = 0i64;
        let mut active_prev = 0i64;
        let mut retained = 0i64;
        let mut orders_last = 0i64;
        let mut revenue_last = 0i64;
        for c in &customers {
            let last: Vec<&i64> = c.order_days.iter().filter(|d| **d > year_start).collect();
            let prev = c
                .order_days
                .iter()
                .any(|d| *d > prev_start && *d <= year_start);
            active_last += i64::from(!last.is_empty());
            active_prev += i64::from(prev);
            retained += i64::from(prev && !last.is_empty());
            orders_last += last.len() as i64;
            revenue_last += c
                .daily_micros
                .iter()
                .filter(|(d, _)| *d > year_start)
                .map(|(_, m)| m)
                .sum::<i64>();
        }
        let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let retention = ratio(retained, active_prev);
        let yearly_purchases = ratio(orders_last, active_last);
        let order_value =
            crate::domain::money::divide(i128::from(revenue_last), i128::from(orders_last))
                .unwrap_or_default() as i64;
        let simple_clv = (retention * yearly_purchases * order_value as f64).round() as i64;

        // Predictive CLV: summaries over the calibration window.
        let calibration_day = calibration_end as f64 / DAY as f64;
        let summarise = |c: &crate::store::Customer| -> Option<(Summary, f64)> {
            let days: Vec<i64> = c
                .order_days
                .iter()
                .copied()
                .filter(|d| (*d as f64) <= calibration_day)
                .collect();
            let first = *days.first()?;
            let repeat_values: Vec<i64> = c
                .daily_micros
                .iter()
                .filter(|(d, _)| {
                    *d > first && (*d as f64) <= calibration_day && days.binary_search(d).is_ok()
                })
                .map(|(_, m)| *m)
                .collect();
            let mean = if repeat_values.is_empty() {
                0.0
            } else {
                repeat_values.iter().sum::<i64>() as f64 / repeat_values.len() as f64 / 1e6
            };
            Some((
                Summary {
                    x: (days.len() - 1) as u32,
                    t_x: (days[days.len() - 1] - first) as f64 / unit_days,
                    t: (calibration_day - first as f64) / unit_days,
                },
                mean,
            ))
        };
        let all: Vec<(Summary, f64)> = customers.iter().filter_map(summarise).collect();
        // The models are fitted, and the average customer predicted, over an even,
        // deterministic sample of at most FIT_SAMPLE customers: past that, more customers
        // barely move the estimates but cost seconds.
        let step = all.len().div_ceil(FIT_SAMPLE).max(1);
        let summaries: Vec<(Summary, f64)> = all.into_iter().step_by(step).collect();
        if summaries.len() < 10 {
            return Err(Error::new(
                clm_runtime::ErrorCode::FailedPrecondition,
                "at least 10 customers are needed to fit the predictive models",
            )
            .into());
        }
        let bgnbd = BgNbd::fit(&summaries.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        let repeaters: Vec<(u32, f64)> = summaries
            .iter()
            .filter(|(s, m)| s.x > 0 && *m > 0.0)
            .map(|(s, m)| (s.x, *m))
            .collect();
        let gg = (repeaters.len() >= 10).then(|| GammaGamma::fit(&repeaters));
        let population_value = gg.map_or(order_value as f64 / 1e6, |g| g.p * g.gamma / (g.q - 1.0));
        let mut predictor = Predictor::new(&bgnbd, horizon as u32, 365.25 / unit_days, rate);
        let mut value_of = |(s, m): &(Summary, f64)| {
            let value = match gg {
                Some(g) if s.x > 0 && *m > 0.0 => g.expected_value(s.x, *m),
                _ => population_value,
            };
            let p = predictor.predict(s);
            (p.orders, p.alive, p.discounted * value)
        };
        let (scope, historic) = if r.contact_id.is_empty() {
            (
                summaries,
                customers.iter().map(|c| c.revenue_micros).sum::<i64>(),
            )
        } else {
            let customer = customers
                .iter()
                .find(|c| c.contact_id == r.contact_id)
                .ok_or_else(|| {
                    Status::from(Error::new(
                        clm_runtime::ErrorCode::NotFound,
                        format!("contact {} has no orders in {currency}", r.contact_id),
                    ))
                })?;
            (
                summarise(customer).into_iter().collect(),
                customer.revenue_micros,
            )
        };
        let values: Vec<(f64, f64, f64)> = scope.iter().map(&mut value_of).collect();
        let n = values.len().max(1) as f64;
        let mean = |f: fn(&(f64, f64, f64)) -> f64| values.iter().map(f).sum::<f64>() / n;
        Ok(Response::new(pb::GetCustomerValueResponse {
            historic_revenue: Some(money(historic, &currency)),
            simple_clv: Some(money(simple_clv, &currency)),
            average_yearly_retention: retention,
            yearly_purchases,
            average_order_value: Some(money(order_value, &currency)),
            predictive_clv: Some(money((mean(|v| v.2) * 1e6).round() as i64, &currency)),
            expected_purchases: mean(|v| v.0),
            probability_alive: mean(|v| v.1),
            bgnbd_params: vec![bgnbd.r, bgnbd.alpha, bgnbd.a, bgnbd.b],
            gamma_gamma_params: gg.map_or_else(Vec::new, |g| vec![g.p, g.q, g.gamma]),
            customers: customers.len() as i64,
        }))
    }

    async fn record_spend(
        &self,
        request: Request<pb::RecordSpendRequest>,
    ) -> Result<Response<pb::RecordSpendResponse>, Status> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut violations = Vec::new();
        if r.spend_id.is_empty() || r.spend_id.len() > 128 {
            violations.push(FieldViolation::new(
                "spend_id",
                "must be 1 to 128 characters",
            ));
        }
        if r.channel.is_empty() && r.campaign.is_empty() {
            violations.push(FieldViolation::new(
                "channel",
                "a channel or a campaign is required",
            ));
        }
        let period = r
            .period
            .as_ref()
            .and_then(|p| Some((micros(p.start_time.as_ref()?), micros(p.end_time.as_ref()?))));
        match period {
            Some((start, end)) if start < end => {}
            _ => violations.push(FieldViolation::new(
                "period",
                "needs a start_time before its end_time",
            )),
        }
        let amount = r.amount.clone().unwrap_or_default();
        if amount.amount_micros <= 0 || amount.amount_micros > 1_000_000_000_000_000 {
            violations.push(FieldViolation::new(
                "amount.amount_micros",
                "must be positive and at most one billion units",
            ));
        }
        if currency_of(&amount.currency).is_err() {
            violations.push(FieldViolation::new(
                "amount.currency",
                "must be an ISO 4217 code such as \"EUR\"",
            ));
        }
        if !violations.is_empty() {
            return Err(Error::invalid(violations).into());
        }
        let period = period.expect("checked above");
        let new = self
            .store
            .record_spend(
                &tenant,
                &r.spend_id,
                &r.channel,
                &r.campaign,
                period,
                amount.amount_micros,
                &amount.currency,
            )
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::RecordSpendResponse { duplicate: !new }))
    }

    async fn get_acquisition_cost(
        &self,
        request: Request<pb::GetAcquisitionCostRequest>,
    ) -> Result<Response<pb::GetAcquisitionCostResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let currency = currency_of(&request.currency)?;
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let by_campaign = request.group_by == pb::AcquisitionGrouping::Campaign as i32;
        let spend: Vec<(String, i64, i64, i64)> = self
            .store
            .spend(&tenant, &currency, start, end)
            .await
            .map_err(|e| internal(&e))?
            .into_iter()
            .map(|(channel, campaign, s, e, m)| {
                (if by_campaign { campaign } else { channel }, s, e, m)
            })
            .collect();
        let customers = self
            .store
            .customers(&tenant, &currency, as_of)
            .await
            .map_err(|e| internal(&e))?;
        let keyed: Vec<_> = customers
            .iter()
            .map(|c| {
                let key = if by_campaign { &c.campaign } else { &c.source };
                (c, key.clone())
            })
            .collect();
        let (rows, total) = acquisition::acquisition(&spend, &keyed, (start, end));
        let row = |r: acquisition::AcquisitionRow| pb::AcquisitionCostRow {
            key: r.key,
            spend: Some(money(r.spend_micros, &currency)),
            customers_acquired: r.customers_acquired,
            cac: r.cac_micros.map(|m| money(m, &currency)),
            attributed_revenue: Some(money(r.revenue_micros, &currency)),
            romi: r.romi.unwrap_or_default(),
        };
        Ok(Response::new(pb::GetAcquisitionCostResponse {
            rows: rows.into_iter().map(row).collect(),
            total: Some(row(total)),
        }))
    }

    async fn get_rfm_segments(
        &self,
        request: Request<pb::GetRfmSegmentsRequest>,
    ) -> Result<Response<pb::GetRfmSegmentsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let currency = currency_of(&request.currency)?;
        let map = if request.segment_map.is_empty() {
            SegmentMap::standard()
        } else {
            let mut entries: Vec<(String, String)> =
                request.segment_map.clone().into_iter().collect();
            entries.sort();
            SegmentMap::custom(&entries).map_err(|v| Status::from(Error::invalid(v)))?
        };
        let as_of_day = crate::store::day_of(as_of);
        let (first_day, end_day) = (
            crate::store::day_of(start.max(0)),
            crate::store::day_of(end.saturating_add(crate::domain::DAY - 1)),
        );
        let customers = self
            .store
            .customers(&tenant, &currency, as_of)
            .await
            .map_err(|e| internal(&e))?;
        // Orders inside the range only; a customer with none there is not scored.
        let values: Vec<(String, i64, i64, i64)> = customers
            .iter()
            .filter_map(|c| {
                let days: Vec<i64> = c
                    .order_days
                    .iter()
                    .copied()
                    .filter(|d| *d >= first_day && *d < end_day)
                    .collect();
                let last = *days.last()?;
                let revenue: i64 = c
                    .daily_micros
                    .iter()
                    .filter(|(d, _)| *d >= first_day && *d < end_day)
                    .map(|(_, m)| m)
                    .sum();
                Some((
                    c.contact_id.clone(),
                    as_of_day - last,
                    days.len() as i64,
                    revenue,
                ))
            })
            .collect();
        let rows = rfm::rfm(&values, &map);
        let total = rows.len() as f64;
        let mut segments: std::collections::BTreeMap<String, (i64, i64)> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let s = segments.entry(r.segment.clone()).or_default();
            s.0 += 1;
            s.1 += r.monetary_micros;
        }
        Ok(Response::new(pb::GetRfmSegmentsResponse {
            segments: segments
                .into_iter()
                .map(|(name, (customers, revenue))| pb::RfmSegment {
                    name,
                    customers,
                    share: customers as f64 / total,
                    revenue: Some(money(revenue, &currency)),
                })
                .collect(),
            contacts: if request.include_contacts {
                rows.into_iter()
                    .map(|r| pb::RfmContact {
                        contact_id: r.contact_id,
                        recency: r.r,
                        frequency: r.f,
                        monetary: r.m,
                        segment: r.segment,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            next_page_token: String::new(),
        }))
    }

    async fn get_nps(
        &self,
        request: Request<pb::GetNpsRequest>,
    ) -> Result<Response<pb::GetNpsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let (start, end, as_of) = window(
            request.range.as_ref(),
            request.as_of.as_ref(),
            (self.clock)(),
        )?;
        let answers = self
            .store
            .nps_answers(&tenant, start, end.min(as_of.saturating_add(1)))
            .await
            .map_err(|e| internal(&e))?;
        let result = |n: nps::Nps, breakdown_value: String| pb::NpsResult {
            period_start: None,
            breakdown_value,
            responses: n.responses,
            promoters: n.promoters,
            passives: n.passives,
            detractors: n.detractors,
            nps: n.nps,
        };
        let groups = match request.breakdown_by.as_str() {
            "" => Vec::new(),
            "stage" => {
                let stays = self
                    .store
                    .stays(&tenant, STAGE_MODEL, as_of)
                    .await
                    .map_err(|e| internal(&e))?;
                let stage_of: std::collections::HashMap<String, String> = stays
                    .into_iter()
                    .filter(|s| s.exited_at.is_none_or(|e| e > as_of))
                    .map(|s| (s.contact_id, s.stage))
                    .collect();
                let mut by: std::collections::BTreeMap<String, Vec<(String, i64, i32)>> =
                    Default::default();
                for a in &answers {
                    let stage = stage_of.get(&a.0).cloned().unwrap_or_default();
                    by.entry(stage).or_default().push(a.clone());
                }
                by.into_iter()
                    .map(|(stage, group)| result(nps::nps(&group), stage))
                    .collect()
            }
            _ => {
                return Err(
                    Error::invalid_field("breakdown_by", "only \"stage\" is supported").into(),
                );
            }
        };
        Ok(Response::new(pb::GetNpsResponse {
            total: Some(result(nps::nps(&answers), String::new())),
            groups,
        }))
    }

    async fn ingest_interactions(
        &self,
        request: Request<pb::IngestInteractionsRequest>,
    ) -> Result<Response<pb::IngestInteractionsResponse>, Status> {
        use common::contact_event::Kind;
        let tenant = tenant(&request)?;
        let events = request.into_inner().events;
        if events.len() > MAX_INGEST {
            return Err(Error::invalid_field("events", "holds more than 5000 events").into());
        }
        let mut decoded = Vec::with_capacity(events.len());
        let mut malformed = 0u64;
        for e in events {
            let occurred_at = e.occurred_at.as_ref().map_or(0, micros);
            let fact = match e.kind {
                Some(Kind::Upserted(u)) => ContactFact::Upserted {
                    created_at: u.created_at.as_ref().map_or(occurred_at, micros),
                    attributes: u.attributes.into_iter().collect(),
                },
                Some(Kind::Interaction(i)) => ContactFact::Interaction {
                    nps_score: (i.r#type == "nps_response")
                        .then(|| i.properties.get("score").and_then(|s| s.parse().ok()))
                        .flatten(),
                    kind: i.r#type,
                    value: i.value.map(|v| (v.amount_micros, v.currency)),
                    campaign: i.campaign,
                    channel: i.channel,
                },
                Some(Kind::Merged(m)) => ContactFact::Merged(m.duplicate_id),
                Some(Kind::Erased(_)) => ContactFact::Erased,
                None => {
                    malformed += 1;
                    continue;
                }
            };
            decoded.push(Ingested {
                event_id: e.event_id,
                contact_id: e.contact_id,
                occurred_at,
                fact,
            });
        }
        let (applied, duplicates) = self
            .store
            .ingest_contacts(&tenant, decoded, (self.clock)())
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::IngestInteractionsResponse {
            applied,
            duplicates: duplicates + malformed,
        }))
    }

    async fn ingest_transitions(
        &self,
        request: Request<pb::IngestTransitionsRequest>,
    ) -> Result<Response<pb::IngestTransitionsResponse>, Status> {
        let tenant = tenant(&request)?;
        let transitions = request.into_inner().transitions;
        if transitions.len() > MAX_INGEST {
            return Err(
                Error::invalid_field("transitions", "holds more than 5000 transitions").into(),
            );
        }
        let decoded = transitions
            .into_iter()
            .map(|t| Ingested {
                event_id: t.event_id,
                contact_id: t.contact_id,
                occurred_at: t.occurred_at.as_ref().map_or(0, micros),
                fact: TransitionFact {
                    model_id: t.model_id,
                    from_stage: t.from_stage,
                    to_stage: t.to_stage,
                },
            })
            .collect();
        let (applied, duplicates) = self
            .store
            .ingest_transitions(&tenant, decoded)
            .await
            .map_err(|e| internal(&e))?;
        Ok(Response::new(pb::IngestTransitionsResponse {
            applied,
            duplicates,
        }))
    }
}

impl AnalyticsApi {
    /// The events a funnel over interaction types needs, per contact, in time order, and
    /// how many more contacts entered without doing anything after (counted, not read,
    /// when `count_entries`: the range has no start and there is no breakdown). Strict
    /// order needs every tracked event (to see what comes between steps). Otherwise only
    /// the step and exclusion types are read, and of step 1 only each contact's first event
    /// in the range (the entry) when step 1 is not also a later step or an exclusion.
    async fn step_events(
        &self,
        tenant: &str,
        codes: &StepCodes<'_>,
        order: funnel::Order,
        (start, end): (i64, i64),
        until: i64,
        count_entries: bool,
    ) -> Result<(Vec<ContactEvents>, i64), sea_orm::DbErr> {
        if order == funnel::Order::Strict {
            let events = self.store.events(tenant, None, start, until).await?;
            return Ok((codes.of_all(events), 0));
        }
        let kinds = &codes.kinds;
        let entry = kinds[0];
        let later: Vec<(&str, u16)> = kinds[1..].iter().map(|k| (*k, codes.of(k))).collect();
        if later.iter().any(|(k, _)| *k == entry) {
            let all: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
            let events = self.store.events(tenant, Some(&all), start, until).await?;
            return Ok((codes.of_all(events), 0));
        }
        let entry_code = codes.of(entry);
        if count_entries {
            // With no start, a contact's entry is its first step-1 event ever: the rollup
            // holds it. Only contacts with a later event can get past the entry.
            let (timelines, all) = tokio::try_join!(
                self.store
                    .entry_timelines(tenant, entry, end, &later, (start, until)),
                self.store.entries(tenant, entry, end),
            )?;
            let entered_only = all - timelines.len() as i64;
            let out = timelines
                .into_iter()
                .map(|t| (t.contact_id, with_entry(t.events, (t.entry_at, entry_code))))
                .collect();
            return Ok((out, entered_only));
        }
        let names: Vec<String> = later.iter().map(|(k, _)| (*k).to_owned()).collect();
        let mut events = self
            .store
            .events(tenant, Some(&names), start, until)
            .await?;
        let entries = self.store.first_events(tenant, entry, start, end).await?;
        let out = entries
            .into_iter()
            .map(|(contact, first)| {
                let list = codes.timeline(events.remove(&contact).unwrap_or_default());
                (contact, with_entry(list, (first, entry_code)))
            })
            .collect();
        Ok((out, 0))
    }
}
