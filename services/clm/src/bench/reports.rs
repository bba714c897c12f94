//! `clm bench reports`: every analytics report over the tenant's data (load it with the
//! demo or real traffic first), beside the health check of the analytics server.

use clm_proto::analytics::v1 as pb;

use super::{Report, measure};
use crate::cli::BenchArgs;
use crate::client::connect_analytics;
use crate::run::BoxError;

const CURRENCY: &str = "EUR";

/// Measures one report: `$call` is a method of the analytics client, `$request` its request.
macro_rules! report_row {
    ($args:expr, $client:expr, $name:expr, $call:ident, $request:expr) => {{
        let client = $client.clone();
        measure($name, $args.concurrency, $args.duration, move |_, _| {
            let mut client = client.clone();
            async move { client.$call($request).await.map(drop) }
        })
        .await
    }};
}

/// The demo's funnel: a visit, a demo request, a purchase.
pub(super) fn funnel() -> pb::GetFunnelRequest {
    pb::GetFunnelRequest {
        steps: vec!["page_view".into(), "demo_request".into(), "purchase".into()],
        ..Default::default()
    }
}

pub(super) async fn run(args: &BenchArgs) -> Result<Report, BoxError> {
    let analytics = connect_analytics(&args.client.once()).await?;
    let baseline = super::health_baseline(args, &args.client.analytics_addr, "analytics").await?;
    let rows = vec![
        baseline,
        report_row!(args, analytics, "GetFunnel", get_funnel, funnel()),
        report_row!(
            args,
            analytics,
            "GetStageMetrics",
            get_stage_metrics,
            pb::GetStageMetricsRequest::default()
        ),
        report_row!(
            args,
            analytics,
            "GetCohortRetention",
            get_cohort_retention,
            pb::GetCohortRetentionRequest {
                currency: CURRENCY.into(),
                ..Default::default()
            }
        ),
        report_row!(
            args,
            analytics,
            "GetActivityLifecycle",
            get_activity_lifecycle,
            pb::GetActivityLifecycleRequest {
                currency: CURRENCY.into(),
                ..Default::default()
            }
        ),
        report_row!(
            args,
            analytics,
            "GetCustomerValue",
            get_customer_value,
            pb::GetCustomerValueRequest {
                currency: CURRENCY.into(),
                ..Default::default()
            }
        ),
        report_row!(
            args,
            analytics,
            "GetAcquisitionCost",
            get_acquisition_cost,
            pb::GetAcquisitionCostRequest {
                currency: CURRENCY.into(),
                ..Default::default()
            }
        ),
        report_row!(
            args,
            analytics,
            "GetRfmSegments",
            get_rfm_segments,
            pb::GetRfmSegmentsRequest {
                currency: CURRENCY.into(),
                ..Default::default()
            }
        ),
        report_row!(
            args,
            analytics,
            "GetNps",
            get_nps,
            pb::GetNpsRequest::default()
        ),
    ];
    Ok(Report::new("reports", args, rows))
}
