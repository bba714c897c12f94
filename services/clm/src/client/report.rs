//! `clm report stages|rfm|cac|nps`: tables for people, `--json` for scripts.

use clm_proto::analytics::v1 as pb;
use clm_proto::common::v1::{Money, TimeRange};
use serde_json::json;

use super::{connect_analytics, explain, table};
use crate::cli::{ReportCommand, ReportWindow};
use crate::run::BoxError;

fn day(text: &str) -> Result<prost_types::Timestamp, BoxError> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not YYYY-MM-DD"))?;
    let t = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    Ok(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn range(window: &ReportWindow) -> Result<Option<TimeRange>, BoxError> {
    if window.from.is_none() && window.to.is_none() {
        return Ok(None);
    }
    Ok(Some(TimeRange {
        start_time: window.from.as_deref().map(day).transpose()?,
        end_time: window.to.as_deref().map(day).transpose()?,
    }))
}

/// Money as "12.34 EUR", rounded half-up to cents.
fn show(m: Option<&Money>) -> String {
    m.map_or_else(String::new, |m| {
        let cents = clm_analytics::domain::money::to_cents(m.amount_micros);
        let sign = if cents < 0 { "-" } else { "" };
        format!(
            "{sign}{}.{:02} {}",
            cents.abs() / 100,
            cents.abs() % 100,
            m.currency
        )
    })
}

fn micros(m: Option<&Money>) -> i64 {
    m.map_or(0, |m| m.amount_micros)
}

pub(crate) async fn report(command: ReportCommand) -> Result<(), BoxError> {
    match command {
        ReportCommand::Stages(window) => {
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_stage_metrics(pb::GetStageMetricsRequest {
                    range: range(&window)?,
                    as_of: None,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            if window.json {
                let stages: Vec<_> = reply
                    .stages
                    .iter()
                    .map(|s| json!({"stage": s.stage, "contacts": s.contacts, "entries": s.entries, "exits": s.exits,
                        "median_seconds_in_stage": s.median_time_in_stage.as_ref().map(|d| d.seconds)}))
                    .collect();
                let transitions: Vec<_> = reply
                    .transitions
                    .iter()
                    .map(|t| json!({"from": t.from_stage, "to": t.to_stage, "count": t.count}))
                    .collect();
                println!("{}", json!({"stages": stages, "transitions": transitions}));
                return Ok(());
            }
            let mut rows = table::new(&[
                "stage",
                "contacts",
                "entries",
                "exits",
                "median days in stage",
            ]);
            for s in reply.stages {
                let days = s
                    .median_time_in_stage
                    .map(|d| format!("{:.1}", d.seconds as f64 / 86_400.0))
                    .unwrap_or_default();
                rows.add_row(vec![
                    s.stage,
                    s.contacts.to_string(),
                    s.entries.to_string(),
                    s.exits.to_string(),
                    days,
                ]);
            }
            println!("{rows}");
            let mut matrix = table::new(&["from", "to", "transitions"]);
            for t in reply.transitions {
                matrix.add_row(vec![t.from_stage, t.to_stage, t.count.to_string()]);
            }
            println!("{matrix}");
        }
        ReportCommand::Rfm { window, currency } => {
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_rfm_segments(pb::GetRfmSegmentsRequest {
                    range: range(&window)?,
                    currency,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            if window.json {
                let segments: Vec<_> = reply
                    .segments
                    .iter()
                    .map(|s| {
                        json!({"segment": s.name, "customers": s.customers, "share": s.share,
                        "revenue_micros": micros(s.revenue.as_ref())})
                    })
                    .collect();
                println!("{}", json!({"segments": segments}));
                return Ok(());
            }
            let mut rows = table::new(&["segment", "customers", "share", "revenue"]);
            for s in reply.segments {
                rows.add_row(vec![
                    s.name,
                    s.customers.to_string(),
                    format!("{:.1} %", s.share * 100.0),
                    show(s.revenue.as_ref()),
                ]);
            }
            println!("{rows}");
        }
        ReportCommand::Cac {
            window,
            currency,
            by_campaign,
        } => {
            let mut api = connect_analytics(&window.client).await?;
            let group_by = if by_campaign {
                pb::AcquisitionGrouping::Campaign
            } else {
                pb::AcquisitionGrouping::Channel
            };
            let reply = api
                .get_acquisition_cost(pb::GetAcquisitionCostRequest {
                    range: range(&window)?,
                    group_by: group_by as i32,
                    currency,
                    as_of: None,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let all: Vec<pb::AcquisitionCostRow> = reply
                .rows
                .into_iter()
                .chain(reply.total.map(|t| pb::AcquisitionCostRow {
                    key: "(total)".into(),
                    ..t
                }))
                .collect();
            if window.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|r| json!({"key": r.key, "spend_micros": micros(r.spend.as_ref()), "customers_acquired": r.customers_acquired,
                        "cac_micros": r.cac.as_ref().map(|m| m.amount_micros), "attributed_revenue_micros": micros(r.attributed_revenue.as_ref()),
                        "romi": r.romi}))
                    .collect();
                println!("{}", json!({"rows": rows}));
                return Ok(());
            }
            let mut rows = table::new(&[
                "channel or campaign",
                "spend",
                "customers",
                "CAC",
                "revenue",
                "ROMI",
            ]);
            for r in all {
                rows.add_row(vec![
                    if r.key.is_empty() {
                        "(none)".into()
                    } else {
                        r.key
                    },
                    show(r.spend.as_ref()),
                    r.customers_acquired.to_string(),
                    show(r.cac.as_ref()),
                    show(r.attributed_revenue.as_ref()),
                    format!("{:.2}", r.romi),
                ]);
            }
            println!("{rows}");
        }
        ReportCommand::Nps(window) => {
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_nps(pb::GetNpsRequest {
                    range: range(&window)?,
                    breakdown_by: "stage".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let all: Vec<pb::NpsResult> = reply
                .total
                .map(|t| pb::NpsResult {
                    breakdown_value: "(all)".into(),
                    ..t
                })
                .into_iter()
                .chain(reply.groups)
                .collect();
            if window.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|n| json!({"group": n.breakdown_value, "responses": n.responses, "promoters": n.promoters,
                        "passives": n.passives, "detractors": n.detractors, "nps": n.nps}))
                    .collect();
                println!("{}", json!({"nps": rows}));
                return Ok(());
            }
            let mut rows = table::new(&[
                "stage",
                "responses",
                "promoters",
                "passives",
                "detractors",
                "NPS",
            ]);
            for n in all {
                rows.add_row(vec![
                    n.breakdown_value,
                    n.responses.to_string(),
                    n.promoters.to_string(),
                    n.passives.to_string(),
                    n.detractors.to_string(),
                    format!("{:.1}", n.nps),
                ]);
            }
            println!("{rows}");
        }
        ReportCommand::Funnel {
            window,
            steps,
            stages,
            window_days,
            order,
            by,
        } => {
            let order = match order.as_str() {
                "sequential" => pb::FunnelOrder::Sequential,
                "strict" => pb::FunnelOrder::Strict,
                "any" => pb::FunnelOrder::Any,
                other => {
                    return Err(format!("--order {other:?}: use sequential, strict or any").into());
                }
            };
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_funnel(pb::GetFunnelRequest {
                    steps,
                    over_stages: stages,
                    range: range(&window)?,
                    conversion_window: Some(prost_types::Duration {
                        seconds: window_days * 86_400,
                        nanos: 0,
                    }),
                    order: order as i32,
                    breakdown_by: by,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let funnels: Vec<pb::Funnel> = reply.total.into_iter().chain(reply.breakdown).collect();
            if window.json {
                let out: Vec<_> = funnels
                    .iter()
                    .map(|f| json!({"breakdown": f.breakdown_value, "steps": f.steps.iter().map(|s| json!({"step": s.step, "contacts": s.contacts,
                        "overall": s.overall_conversion, "from_previous": s.step_conversion,
                        "median_seconds_from_previous": s.median_time_from_previous.as_ref().map(|d| d.seconds)})).collect::<Vec<_>>()}))
                    .collect();
                println!("{}", json!({"funnels": out}));
                return Ok(());
            }
            for f in funnels {
                if !f.breakdown_value.is_empty() {
                    println!("{}", f.breakdown_value);
                }
                let mut rows = table::new(&[
                    "step",
                    "contacts",
                    "of first",
                    "of previous",
                    "median days from previous",
                ]);
                for s in f.steps {
                    let days = s
                        .median_time_from_previous
                        .map(|d| format!("{:.1}", d.seconds as f64 / 86_400.0))
                        .unwrap_or_default();
                    rows.add_row(vec![
                        s.step,
                        s.contacts.to_string(),
                        format!("{:.1} %", s.overall_conversion * 100.0),
                        format!("{:.1} %", s.step_conversion * 100.0),
                        days,
                    ]);
                }
                println!("{rows}");
            }
        }
        ReportCommand::Cohorts {
            window,
            currency,
            on_or_after,
            by_creation,
        } => {
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_cohort_retention(pb::GetCohortRetentionRequest {
                    range: range(&window)?,
                    currency,
                    basis: if by_creation {
                        pb::CohortBasis::Creation
                    } else {
                        pb::CohortBasis::FirstPurchase
                    } as i32,
                    mode: if on_or_after {
                        pb::RetentionMode::OnOrAfter
                    } else {
                        pb::RetentionMode::On
                    } as i32,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            if window.json {
                let rows: Vec<_> = reply
                    .cohorts
                    .iter()
                    .chain(reply.weighted_mean.as_ref())
                    .map(|c| json!({"cohort_start": c.cohort_start.as_ref().map(|t| t.seconds), "size": c.size,
                        "retained": c.retained, "shares": c.shares}))
                    .collect();
                println!("{}", json!({"cohorts": rows}));
                return Ok(());
            }
            let width = reply
                .cohorts
                .iter()
                .map(|c| c.shares.len())
                .max()
                .unwrap_or(0);
            let mut header = vec!["cohort".to_owned(), "size".to_owned()];
            header.extend((0..width).map(|k| format!("+{k}")));
            let header: Vec<&str> = header.iter().map(String::as_str).collect();
            let mut rows = table::new(&header);
            for c in reply.cohorts.iter().chain(reply.weighted_mean.as_ref()) {
                let mut row = vec![
                    c.cohort_start.as_ref().map_or_else(
                        || "(weighted mean)".into(),
                        |t| super::show_time(Some(t))[..7].to_owned(),
                    ),
                    c.size.to_string(),
                ];
                row.extend(c.shares.iter().map(|s| format!("{:.0} %", s * 100.0)));
                rows.add_row(row);
            }
            println!("{rows}");
        }
        ReportCommand::Activity { window, currency } => {
            let mut api = connect_analytics(&window.client).await?;
            let reply = api
                .get_activity_lifecycle(pb::GetActivityLifecycleRequest {
                    range: range(&window)?,
                    currency,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            if window.json {
                let rows: Vec<_> = reply
                    .periods
                    .iter()
                    .map(|p| json!({"period_start": p.period_start.as_ref().map(|t| t.seconds), "new": p.new,
                        "returning": p.returning, "resurrecting": p.resurrecting, "dormant": p.dormant}))
                    .collect();
                println!("{}", json!({"periods": rows}));
                return Ok(());
            }
            let mut rows = table::new(&["month", "new", "returning", "resurrecting", "dormant"]);
            for p in reply.periods {
                rows.add_row(vec![
                    super::show_time(p.period_start.as_ref())[..7].to_owned(),
                    p.new.to_string(),
                    p.returning.to_string(),
                    p.resurrecting.to_string(),
                    p.dormant.to_string(),
                ]);
            }
            println!("{rows}");
        }
        ReportCommand::Clv {
            window,
            contact,
            currency,
            weeks,
        } => {
            let mut api = connect_analytics(&window.client).await?;
            let v = api
                .get_customer_value(pb::GetCustomerValueRequest {
                    contact_id: contact,
                    currency,
                    horizon_units: weeks,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            if window.json {
                println!(
                    "{}",
                    json!({"historic_revenue_micros": micros(v.historic_revenue.as_ref()), "simple_clv_micros": micros(v.simple_clv.as_ref()),
                        "average_yearly_retention": v.average_yearly_retention, "yearly_purchases": v.yearly_purchases,
                        "average_order_value_micros": micros(v.average_order_value.as_ref()),
                        "predictive_clv_micros": micros(v.predictive_clv.as_ref()), "expected_purchases": v.expected_purchases,
                        "probability_alive": v.probability_alive, "bgnbd": v.bgnbd_params, "gamma_gamma": v.gamma_gamma_params,
                        "customers": v.customers})
                );
                return Ok(());
            }
            let mut rows = table::new(&["measure", "value"]);
            for (name, value) in [
                ("customers", v.customers.to_string()),
                ("historic revenue", show(v.historic_revenue.as_ref())),
                (
                    "average yearly retention",
                    format!("{:.1} %", v.average_yearly_retention * 100.0),
                ),
                ("yearly purchases", format!("{:.2}", v.yearly_purchases)),
                ("average order value", show(v.average_order_value.as_ref())),
                ("simple CLV", show(v.simple_clv.as_ref())),
                ("expected purchases", format!("{:.2}", v.expected_purchases)),
                ("P(alive)", format!("{:.2}", v.probability_alive)),
                ("predictive CLV", show(v.predictive_clv.as_ref())),
                ("BG/NBD r, alpha, a, b", format!("{:.3?}", v.bgnbd_params)),
                (
                    "Gamma-Gamma p, q, gamma",
                    format!("{:.3?}", v.gamma_gamma_params),
                ),
            ] {
                rows.add_row(vec![name.to_owned(), value]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}
