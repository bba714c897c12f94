//! Each report over a small data set whose answer is worked out by hand here.

use tonic::Code;

use clm_proto::analytics::v1 as pb;

use crate::helpers::*;

async fn rfm(app: &TestApp) -> pb::GetRfmSegmentsResponse {
    app.client
        .clone()
        .get_rfm_segments(pb::GetRfmSegmentsRequest {
            currency: "EUR".into(),
            include_contacts: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

backend_tests!(
    rfm_scores_orders_with_ties_refunds_and_an_erasure,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.ingest(vec![
            // a: two purchases on day 99 are one order of 15.00; one on day 90: F 2, M 35.00, R 1.
            app.interaction("a", "purchase", 99, 1000),
            app.interaction("a", "purchase", 99, 500),
            app.interaction("a", "purchase", 90, 2000),
            // b: F 1, M 100.00, R 50.
            app.interaction("b", "purchase", 50, 10000),
            // c: F 3, M 3.00, R 3.
            app.interaction("c", "purchase", 95, 100),
            app.interaction("c", "purchase", 96, 100),
            app.interaction("c", "purchase", 97, 100),
            // d: 50.00 less a 10.00 refund: F 1, M 40.00, R 90.
            app.interaction("d", "purchase", 10, 5000),
            app.interaction("d", "refund", 20, 1000),
            // e: erased mid-period, so gone from every report.
            app.interaction("e", "purchase", 98, 50000),
        ])
        .await;
        app.ingest(vec![app.erased("e")]).await;
        let reply = rfm(&app).await;
        // Cut points (linear interpolation over 4 customers):
        //   recency [1, 3, 50, 90] -> 2.2, 12.4, 40.6, 66 ; frequency [1, 1, 2, 3] -> 1, 1.2, 1.8, 2.4
        //   monetary [3, 35, 40, 100] -> 22.2, 36, 39, 64
        let scores: Vec<(String, i32, i32, i32, String)> = reply
            .contacts
            .iter()
            .map(|c| {
                (
                    c.contact_id.clone(),
                    c.recency,
                    c.frequency,
                    c.monetary,
                    c.segment.clone(),
                )
            })
            .collect();
        assert_eq!(
            scores,
            [
                ("a".into(), 5, 4, 2, "champions".into()),
                ("b".into(), 2, 1, 5, "hibernating".into()),
                ("c".into(), 4, 5, 1, "loyal".into()),
                ("d".into(), 1, 1, 4, "lost".into()),
            ]
        );
        let segments: Vec<(String, i64, i64)> = reply
            .segments
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.customers,
                    s.revenue.as_ref().unwrap().amount_micros,
                )
            })
            .collect();
        assert_eq!(
            segments,
            [
                ("champions".into(), 1, 35_000_000),
                ("hibernating".into(), 1, 100_000_000),
                ("lost".into(), 1, 40_000_000),
                ("loyal".into(), 1, 3_000_000),
            ]
        );
        // A tenant's own map replaces the default.
        let custom = app
            .client
            .clone()
            .get_rfm_segments(pb::GetRfmSegmentsRequest {
                currency: "EUR".into(),
                segment_map: [
                    ("[4-5][1-5]".to_owned(), "recent".to_owned()),
                    ("[1-3][1-5]".to_owned(), "older".to_owned()),
                ]
                .into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let names: Vec<(String, i64)> = custom
            .segments
            .iter()
            .map(|s| (s.name.clone(), s.customers))
            .collect();
        assert_eq!(names, [("older".into(), 2), ("recent".into(), 2)]);
    }
);

backend_tests!(
    nps_counts_each_contacts_latest_answer_overall_and_by_stage,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.transitions(&[
            ("a", "", "awareness", 1),
            ("b", "", "awareness", 1),
            ("b", "awareness", "conversion", 5),
            ("c", "", "awareness", 1),
            ("c", "awareness", "conversion", 6),
            ("d", "", "awareness", 1),
        ])
        .await;
        app.ingest(vec![
            app.nps("a", 10, 3),  // replaced by a's later answer
            app.nps("a", 20, 10), // promoter, awareness
            app.nps("b", 20, 9),  // promoter, conversion
            app.nps("c", 20, 6),  // detractor, conversion
            app.nps("d", 20, 8),  // passive, awareness
            app.nps("e", 20, 0),  // erased below
            app.nps("f", 200, 0), // after now: not counted
        ])
        .await;
        app.ingest(vec![app.erased("e")]).await;
        let reply = app
            .client
            .clone()
            .get_nps(pb::GetNpsRequest {
                breakdown_by: "stage".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let total = reply.total.unwrap();
        assert_eq!(
            (
                total.responses,
                total.promoters,
                total.passives,
                total.detractors
            ),
            (4, 2, 1, 1)
        );
        assert!((total.nps - 25.0).abs() < 1e-9);
        let groups: Vec<(String, i64, f64)> = reply
            .groups
            .iter()
            .map(|g| (g.breakdown_value.clone(), g.responses, g.nps))
            .collect();
        assert_eq!(
            groups,
            [("awareness".into(), 2, 50.0), ("conversion".into(), 2, 0.0)]
        );
        // A range that holds only a's first answer.
        let early = app
            .client
            .clone()
            .get_nps(pb::GetNpsRequest {
                range: days(0, 15),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .total
            .unwrap();
        assert_eq!((early.responses, early.detractors), (1, 1));
        assert!((early.nps + 100.0).abs() < 1e-9);
    }
);

backend_tests!(
    acquisition_cost_and_romi_per_channel_to_the_cent,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.ingest(vec![
            app.contact("a", "ads", "spring"),
            app.contact("b", "ads", "spring"),
            app.contact("c", "email", "newsletter"),
            app.contact("d", "ads", "spring"),
            app.interaction("a", "purchase", 12, 10000),
            app.interaction("a", "purchase", 15, 5000),
            app.interaction("b", "purchase", 5, 2000), // acquired before the range
            app.interaction("b", "purchase", 14, 3000),
            app.interaction("c", "purchase", 19, 8000),
            app.interaction("d", "purchase", 25, 1000), // after the range
        ])
        .await;
        let spend =
            |id: &str, channel: &str, from: i64, to: i64, cents: i64| pb::RecordSpendRequest {
                spend_id: id.into(),
                channel: channel.into(),
                campaign: String::new(),
                period: days(from, to),
                amount: Some(clm_proto::common::v1::Money {
                    amount_micros: cents * 10_000,
                    currency: "EUR".into(),
                }),
            };
        let mut client = app.client.clone();
        assert!(
            !client
                .record_spend(spend("s1", "ads", 10, 20, 30000))
                .await
                .unwrap()
                .into_inner()
                .duplicate
        );
        assert!(
            client
                .record_spend(spend("s1", "ads", 10, 20, 30000))
                .await
                .unwrap()
                .into_inner()
                .duplicate
        );
        client
            .record_spend(spend("s2", "email", 15, 25, 5000))
            .await
            .unwrap();
        client
            .record_spend(spend("s3", "email", 0, 3, 10000))
            .await
            .unwrap(); // outside the range

        let reply = client
            .get_acquisition_cost(pb::GetAcquisitionCostRequest {
                range: days(10, 20),
                currency: "EUR".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(String, i64, i64, Option<i64>, i64)> = reply
            .rows
            .iter()
            .map(|r| {
                (
                    r.key.clone(),
                    r.spend.as_ref().unwrap().amount_micros,
                    r.customers_acquired,
                    r.cac.as_ref().map(|c| c.amount_micros),
                    r.attributed_revenue.as_ref().unwrap().amount_micros,
                )
            })
            .collect();
        // ads: 300.00 spent, a acquired, revenue 100 + 50 (a) + 30 (b) = 180.00, ROMI -0.4.
        // email: half of 50.00 inside the range, c acquired with 80.00, ROMI 2.2.
        assert_eq!(
            rows,
            [
                ("ads".into(), 300_000_000, 1, Some(300_000_000), 180_000_000),
                ("email".into(), 25_000_000, 1, Some(25_000_000), 80_000_000),
            ]
        );
        assert!((reply.rows[0].romi + 0.4).abs() < 1e-12);
        assert!((reply.rows[1].romi - 2.2).abs() < 1e-12);
        let total = reply.total.unwrap();
        assert_eq!(total.cac.unwrap().amount_micros, 162_500_000);
        let by_campaign = client
            .get_acquisition_cost(pb::GetAcquisitionCostRequest {
                range: days(10, 20),
                currency: "EUR".into(),
                group_by: pb::AcquisitionGrouping::Campaign as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let keys: Vec<String> = by_campaign.rows.iter().map(|r| r.key.clone()).collect();
        assert_eq!(
            keys,
            ["", "newsletter", "spring"],
            "channel spend has no campaign"
        );
    }
);

backend_tests!(
    stage_metrics_count_stays_medians_and_moves,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.transitions(&[
            ("a", "", "awareness", 0),
            ("a", "awareness", "consideration", 4),
            ("b", "", "awareness", 1),
            ("b", "awareness", "consideration", 3),
            ("b", "consideration", "conversion", 9),
            ("c", "", "awareness", 2),
        ])
        .await;
        let (rows, moves) = stage_report(&app, days(0, 10), 10 * DAY).await;
        let day = 86_400;
        assert_eq!(
            rows,
            [
                ("awareness".into(), 1, 3, 2, Some(3 * day)),
                ("consideration".into(), 1, 2, 1, Some(6 * day)),
                ("conversion".into(), 1, 1, 0, None),
            ]
        );
        assert_eq!(
            moves,
            [
                ("awareness".into(), "consideration".into(), 2),
                ("consideration".into(), "conversion".into(), 1)
            ]
        );
    }
);

/// A stage report as comparable rows: (stage, contacts, entries, exits, median seconds)
/// and the moves.
type StageReport = (
    Vec<(String, i64, i64, i64, Option<i64>)>,
    Vec<(String, String, i64)>,
);

async fn stage_report(
    app: &TestApp,
    range: Option<clm_proto::common::v1::TimeRange>,
    as_of: i64,
) -> StageReport {
    let reply = app
        .client
        .clone()
        .get_stage_metrics(pb::GetStageMetricsRequest {
            range,
            as_of: Some(ts(as_of)),
        })
        .await
        .unwrap()
        .into_inner();
    (
        reply
            .stages
            .iter()
            .map(|s| {
                (
                    s.stage.clone(),
                    s.contacts,
                    s.entries,
                    s.exits,
                    s.median_time_in_stage.map(|d| d.seconds),
                )
            })
            .collect(),
        reply
            .transitions
            .iter()
            .map(|t| (t.from_stage.clone(), t.to_stage.clone(), t.count))
            .collect(),
    )
}

/// Without a range the report comes from the rollups; with one, from the transitions.
async fn rollup_and_scan(app: &TestApp) -> StageReport {
    let rollup = stage_report(app, None, NOW).await;
    let scan = stage_report(app, days(-1000, 1000), NOW).await;
    assert_eq!(rollup, scan, "the rollups and the transitions disagree");
    rollup
}

backend_tests!(
    stage_rollups_follow_late_transitions_merges_and_erasures,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.transitions(&[
            ("a", "", "awareness", 0),
            ("a", "awareness", "consideration", 4),
            ("b", "", "awareness", 1),
            ("b", "consideration", "conversion", 9),
            ("c", "", "awareness", 2),
            ("d", "", "awareness", 3),
            ("d", "awareness", "conversion", 6),
        ])
        .await;
        // b's move into consideration arrives after its later move out of it.
        app.transitions(&[("b", "awareness", "consideration", 3)])
            .await;
        let (rows, moves) = rollup_and_scan(&app).await;
        let day = 86_400;
        assert_eq!(
            rows,
            [
                ("awareness".into(), 1, 4, 3, Some(3 * day)),
                ("consideration".into(), 1, 2, 1, Some(6 * day)),
                ("conversion".into(), 2, 2, 0, None),
            ]
        );
        assert_eq!(moves.len(), 3);

        app.ingest(vec![app.merged("c", "d")]).await;
        let merged = rollup_and_scan(&app).await;
        assert_eq!(
            merged.0[0].1, 0,
            "c's stay in awareness ended when d's history joined"
        );

        app.ingest(vec![app.erased("b")]).await;
        let (rows, _) = rollup_and_scan(&app).await;
        assert_eq!(
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            [3, 1, 1],
            "b's stays are gone"
        );

        app.ingest(vec![app.erased("a"), app.erased("c")]).await;
        assert_eq!(rollup_and_scan(&app).await, (vec![], vec![]));

        // A transition after as_of: the report reads the transitions, up to as_of.
        app.transitions(&[
            ("e", "", "awareness", 1),
            ("e", "awareness", "conversion", 5),
        ])
        .await;
        assert_eq!(
            stage_report(&app, None, 2 * DAY).await,
            stage_report(&app, days(-1000, 1000), 2 * DAY).await
        );
        assert_eq!(stage_report(&app, None, 2 * DAY).await.0.len(), 1);
    }
);

backend_tests!(
    transitions_stay_duplicates_also_after_an_erasure,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let batch = app.transition_events(&[("a", "", "awareness", 1), ("b", "", "awareness", 1)]);
        let first = app.ingest_transitions(batch.clone()).await;
        let again = app.ingest_transitions(batch.clone()).await;
        app.ingest(vec![app.erased("b")]).await;
        // A relay delivering the old batch again after b's erasure, with a new move of a's.
        let moved = app.transition_events(&[("a", "awareness", "conversion", 3)]);
        let after = app.ingest_transitions([batch, moved].concat()).await;
        assert_eq!(
            [first, again, after].map(|r| (r.applied, r.duplicates)),
            [(2, 0), (0, 2), (1, 2)]
        );
        let entries: Vec<(String, i64)> = rollup_and_scan(&app)
            .await
            .0
            .into_iter()
            .map(|stage| (stage.0, stage.2))
            .collect();
        assert_eq!(
            entries,
            [("awareness".into(), 1), ("conversion".into(), 1)],
            "b stays erased"
        );
    }
);

backend_tests!(ingest_is_idempotent, |db| async move {
    let app = TestApp::spawn(&db).await;
    let batch = vec![
        app.contact("a", "ads", "spring"),
        app.interaction("a", "purchase", 99, 1000),
        app.interaction("a", "purchase", 98, 1000),
    ];
    let first = app.ingest(batch.clone()).await;
    let again = app.ingest(batch.clone()).await;
    // A batch of repeats and one new interaction applies only the new one.
    let mixed = app
        .ingest([batch, vec![app.interaction("a", "purchase", 97, 500)]].concat())
        .await;
    assert_eq!(
        [first, again, mixed].map(|r| (r.applied, r.duplicates)),
        [(3, 0), (0, 3), (1, 3)]
    );
    let reply = rfm(&app).await;
    assert_eq!(
        reply.segments[0].revenue.as_ref().unwrap().amount_micros,
        25_000_000,
        "each purchase counted once"
    );
});

backend_tests!(
    an_erased_contacts_interactions_stay_duplicates,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let erased = app.interaction("e", "purchase", 98, 50000);
        let kept = app.interaction("a", "purchase", 99, 1000);
        app.ingest(vec![erased.clone(), kept.clone()]).await;
        app.ingest(vec![app.erased("e")]).await;
        // A relay delivering the old batch again (and a new purchase of a's) must not
        // bring the erased contact's purchase back.
        let again = app
            .ingest(vec![
                erased,
                kept,
                app.interaction("a", "purchase", 97, 1000),
            ])
            .await;
        assert_eq!((again.applied, again.duplicates), (1, 2));
        let reply = rfm(&app).await;
        let customers: Vec<(&str, i32)> = reply
            .contacts
            .iter()
            .map(|c| (c.contact_id.as_str(), c.frequency))
            .collect();
        assert_eq!(customers, [("a", 1)]);
        assert_eq!(
            reply.segments[0].revenue.as_ref().unwrap().amount_micros,
            20_000_000
        );
    }
);

backend_tests!(invalid_report_requests_name_their_fields, |db| async move {
    let app = TestApp::spawn(&db).await;
    let mut client = app.client.clone();
    expect_invalid(
        client
            .get_nps(pb::GetNpsRequest {
                range: days(10, 5),
                ..Default::default()
            })
            .await,
        "range",
    );
    expect_invalid(
        client
            .get_nps(pb::GetNpsRequest {
                breakdown_by: "shoe_size".into(),
                ..Default::default()
            })
            .await,
        "breakdown_by",
    );
    expect_invalid(
        client
            .get_rfm_segments(pb::GetRfmSegmentsRequest::default())
            .await,
        "currency",
    );
    expect_invalid(
        client
            .get_rfm_segments(pb::GetRfmSegmentsRequest {
                currency: "EUR".into(),
                segment_map: [("6x".to_owned(), "bad".to_owned())].into(),
                ..Default::default()
            })
            .await,
        "segment_map",
    );
    expect_invalid(
        client
            .get_acquisition_cost(pb::GetAcquisitionCostRequest {
                range: days(3, 3),
                currency: "EUR".into(),
                ..Default::default()
            })
            .await,
        "range",
    );
    expect_invalid(
        client
            .record_spend(pb::RecordSpendRequest {
                spend_id: "s".into(),
                channel: "ads".into(),
                period: days(5, 1),
                amount: None,
                ..Default::default()
            })
            .await,
        "period",
    );
    expect_invalid(
        client
            .get_customer_value(pb::GetCustomerValueRequest::default())
            .await,
        "currency",
    );
    expect_invalid(
        client
            .get_customer_value(pb::GetCustomerValueRequest {
                currency: "EUR".into(),
                time_unit: clm_proto::common::v1::Period::Month as i32,
                ..Default::default()
            })
            .await,
        "time_unit",
    );
    let too_few = client
        .get_customer_value(pb::GetCustomerValueRequest {
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_few.code(), Code::FailedPrecondition);
    let steps = |n: usize| (0..n).map(|i| format!("s{i}")).collect::<Vec<_>>();
    expect_invalid(
        client
            .get_funnel(pb::GetFunnelRequest {
                steps: steps(21),
                ..Default::default()
            })
            .await,
        "steps",
    );
    expect_invalid(
        client
            .get_funnel(pb::GetFunnelRequest {
                steps: steps(2),
                conversion_window: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await,
        "conversion_window",
    );
    expect_invalid(
        client
            .get_funnel(pb::GetFunnelRequest {
                steps: steps(2),
                breakdown_by: "shoe_size".into(),
                ..Default::default()
            })
            .await,
        "breakdown_by",
    );
});

async fn seed_customers(app: &TestApp) {
    // Months of 1970: Jan = days 0-30, Feb 31-58, Mar 59-89, Apr 90-119 (now is day 100).
    app.ingest(vec![
        app.contact("a", "ads", ""),
        app.contact("b", "ads", ""),
        app.contact("c", "email", ""),
        app.contact("z", "email", ""), // never buys
        app.interaction("a", "purchase", 5, 1000),
        app.interaction("a", "purchase", 40, 2000),
        app.interaction("a", "purchase", 95, 3000),
        app.interaction("b", "purchase", 35, 500),
        app.interaction("b", "purchase", 60, 600),
        app.interaction("c", "purchase", 70, 700),
        app.interaction("e", "purchase", 10, 9900),
    ])
    .await;
    app.ingest(vec![app.erased("e")]).await;
}

backend_tests!(activity_lifecycle_per_month, |db| async move {
    let app = TestApp::spawn(&db).await;
    seed_customers(&app).await;
    let reply = app
        .client
        .clone()
        .get_activity_lifecycle(pb::GetActivityLifecycleRequest {
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(i64, i64, i64, i64, i64)> = reply
        .periods
        .iter()
        .map(|p| {
            (
                p.period_start.unwrap().seconds / 86_400,
                p.new,
                p.returning,
                p.resurrecting,
                p.dormant,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (0, 1, 0, 0, 0),  // Jan: a new
            (31, 1, 1, 0, 0), // Feb: b new, a returning
            (59, 1, 1, 0, 1), // Mar: c new, b returning, a dormant
            (90, 0, 0, 1, 2), // Apr: a resurrecting, b and c dormant
        ]
    );
});

backend_tests!(
    cohort_retention_by_first_purchase_and_by_creation,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        seed_customers(&app).await;
        let ask = |basis: pb::CohortBasis, mode: pb::RetentionMode| pb::GetCohortRetentionRequest {
            currency: "EUR".into(),
            period: clm_proto::common::v1::Period::Month as i32,
            basis: basis as i32,
            mode: mode as i32,
            ..Default::default()
        };
        let reply = app
            .client
            .clone()
            .get_cohort_retention(ask(pb::CohortBasis::FirstPurchase, pb::RetentionMode::On))
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(i64, i64, Vec<i64>, Vec<i64>)> = reply
            .cohorts
            .iter()
            .map(|c| {
                (
                    c.cohort_start.unwrap().seconds / 86_400,
                    c.size,
                    c.retained.clone(),
                    c.revenue.iter().map(|m| m.amount_micros / 10_000).collect(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0, 1, vec![1, 1, 0, 1], vec![1000, 2000, 0, 3000]),
                (31, 1, vec![1, 1, 0], vec![500, 600, 0]),
                (59, 1, vec![1, 0], vec![700, 0]),
            ]
        );
        let mean = reply.weighted_mean.unwrap();
        assert_eq!(mean.retained, [3, 2, 0, 1]);
        let expected = [1.0, 2.0 / 3.0, 0.0, 1.0];
        for (got, want) in mean.shares.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{:?}", mean.shares);
        }

        let created = app
            .client
            .clone()
            .get_cohort_retention(ask(pb::CohortBasis::Creation, pb::RetentionMode::On))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.cohorts.len(), 1, "everyone was created in January");
        assert_eq!(
            (created.cohorts[0].size, created.cohorts[0].retained.clone()),
            (4, vec![1, 2, 2, 1])
        );
        let later = app
            .client
            .clone()
            .get_cohort_retention(ask(pb::CohortBasis::Creation, pb::RetentionMode::OnOrAfter))
            .await
            .unwrap()
            .into_inner();
        // On or after: Jan+ a, b, c; Feb+ a, b, c; Mar+ a (Apr), b, c; Apr a.
        assert_eq!(later.cohorts[0].retained, [3, 3, 3, 1]);
        expect_invalid(
            app.client
                .clone()
                .get_cohort_retention(pb::GetCohortRetentionRequest::default())
                .await,
            "currency",
        );
    }
);

backend_tests!(funnels_over_interactions_and_stages, |db| async move {
    let app = TestApp::spawn(&db).await;
    let mut de = app.contact("a", "ads", "");
    if let Some(clm_proto::common::v1::contact_event::Kind::Upserted(u)) = &mut de.kind {
        u.attributes.insert("country".into(), "DE".into());
    }
    let mut fr = app.contact("b", "ads", "");
    if let Some(clm_proto::common::v1::contact_event::Kind::Upserted(u)) = &mut fr.kind {
        u.attributes.insert("country".into(), "FR".into());
    }
    app.ingest(vec![
        de,
        fr,
        // a: visit day 10, demo day 12, purchase day 15: all three steps.
        app.interaction("a", "page_view", 10, 0),
        app.interaction("a", "demo_request", 12, 0),
        app.interaction("a", "purchase", 15, 1000),
        // b: visit day 11, demo day 20, purchase day 50 (outside a 30-day window).
        app.interaction("b", "page_view", 11, 0),
        app.interaction("b", "demo_request", 20, 0),
        app.interaction("b", "purchase", 50, 1000),
        // c: a demo but no visit: never enters.
        app.interaction("c", "demo_request", 12, 0),
    ])
    .await;
    let reply = app
        .client
        .clone()
        .get_funnel(pb::GetFunnelRequest {
            steps: vec!["page_view".into(), "demo_request".into(), "purchase".into()],
            range: days(0, 30),
            breakdown_by: "country".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let total = reply.total.unwrap();
    let counts: Vec<i64> = total.steps.iter().map(|s| s.contacts).collect();
    assert_eq!(counts, [2, 2, 1]);
    assert!((total.steps[2].overall_conversion - 0.5).abs() < 1e-12);
    assert!((total.steps[2].step_conversion - 0.5).abs() < 1e-12);
    // Days from visit to demo: 2 (a) and 9 (b): median 5.5 days.
    assert_eq!(
        total.steps[1].median_time_from_previous.unwrap().seconds,
        5 * 86_400 + 43_200
    );
    let by_country: Vec<(String, Vec<i64>)> = reply
        .breakdown
        .iter()
        .map(|f| {
            (
                f.breakdown_value.clone(),
                f.steps.iter().map(|s| s.contacts).collect(),
            )
        })
        .collect();
    assert_eq!(
        by_country,
        [("DE".into(), vec![1, 1, 1]), ("FR".into(), vec![1, 1, 0])]
    );

    app.transitions(&[
        ("a", "", "awareness", 1),
        ("a", "awareness", "consideration", 3),
        ("b", "", "awareness", 2),
    ])
    .await;
    let stages = app
        .client
        .clone()
        .get_funnel(pb::GetFunnelRequest {
            steps: vec!["awareness".into(), "consideration".into()],
            over_stages: true,
            range: days(0, 30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts: Vec<i64> = stages
        .total
        .unwrap()
        .steps
        .iter()
        .map(|s| s.contacts)
        .collect();
    assert_eq!(counts, [2, 1]);
});

backend_tests!(customer_value_simple_and_predictive, |db| async move {
    let app = TestApp::spawn(&db).await;
    let mut events = vec![
        // As of day 800: the year before is days 71-435, the last year days 436-800.
        app.interaction("a", "purchase", 300, 1000), // a: active both years: retained
        app.interaction("a", "purchase", 500, 2000),
        app.interaction("b", "purchase", 200, 3000), // b: only the year before
        app.interaction("c", "purchase", 700, 4000), // c: only the last year, twice
        app.interaction("c", "purchase", 750, 6000),
    ];
    // Ten early customers outside both years, so the models have enough to fit.
    for i in 0..10 {
        events.push(app.interaction(&format!("early{i}"), "purchase", 50, 100));
        events.push(app.interaction(&format!("early{i}"), "purchase", 60 + i, 100));
    }
    app.ingest(events).await;
    let reply = app
        .client
        .clone()
        .get_customer_value(pb::GetCustomerValueRequest {
            currency: "EUR".into(),
            as_of: Some(ts(800 * DAY)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Retention 1 of 2, orders per active customer 3 / 2, order value 120.00 / 3.
    assert!((reply.average_yearly_retention - 0.5).abs() < 1e-12);
    assert!((reply.yearly_purchases - 1.5).abs() < 1e-12);
    assert_eq!(reply.average_order_value.unwrap().amount_micros, 40_000_000);
    assert_eq!(reply.simple_clv.unwrap().amount_micros, 30_000_000);
    assert_eq!(reply.historic_revenue.unwrap().amount_micros, 180_000_000);
    assert_eq!(reply.customers, 13);
    assert_eq!(reply.bgnbd_params.len(), 4);
    assert!(reply.bgnbd_params.iter().all(|p| p.is_finite() && *p > 0.0));
    assert!((0.0..=1.0).contains(&reply.probability_alive));
    assert!(reply.expected_purchases >= 0.0);
    let one = app
        .client
        .clone()
        .get_customer_value(pb::GetCustomerValueRequest {
            contact_id: "c".into(),
            currency: "EUR".into(),
            as_of: Some(ts(800 * DAY)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.historic_revenue.unwrap().amount_micros, 100_000_000);
    let nobody = app
        .client
        .clone()
        .get_customer_value(pb::GetCustomerValueRequest {
            contact_id: "nobody".into(),
            currency: "EUR".into(),
            as_of: Some(ts(800 * DAY)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::NotFound);
});

backend_tests!(
    the_stage_rollups_are_built_from_transitions_stored_before_them,
    |db: clm_testkit::TestDatabase| async move {
        use clm_analytics::store::{Store, entities::transition, migration::Migrator};
        use sea_orm::{ActiveValue::Set, EntityTrait};
        use sea_orm_migration::MigratorTrait;

        let conn = clm_store::connect("analytics", db.location())
            .await
            .unwrap();
        // The schema as it was before the rollups, holding transitions.
        Migrator::up(&conn, Some(2)).await.unwrap();
        let moves = [
            ("a", "", "awareness", 0),
            ("a", "awareness", "consideration", 4),
            ("b", "", "awareness", 1),
            ("b", "awareness", "conversion", 3),
        ];
        transition::Entity::insert_many(moves.iter().enumerate().map(
            |(i, (contact, from, to, day))| transition::ActiveModel {
                tenant_id: Set("default".into()),
                event_id: Set(format!("t{i}")),
                contact_id: Set((*contact).into()),
                model_id: Set("default".into()),
                from_stage: Set((*from).into()),
                to_stage: Set((*to).into()),
                occurred_at: Set(day * DAY),
            },
        ))
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let (stages, moves) = Store::new(conn)
            .stage_rollup("default", "default", NOW)
            .await
            .unwrap()
            .expect("nothing after now");
        let rows: Vec<(&str, i64, i64, i64, Option<i64>)> = stages
            .iter()
            .map(|s| (s.stage.as_str(), s.current, s.entries, s.exits, s.median))
            .collect();
        assert_eq!(
            rows,
            [
                ("awareness", 0, 2, 2, Some(3 * DAY)),
                ("consideration", 1, 1, 0, None),
                ("conversion", 1, 1, 0, None),
            ]
        );
        assert_eq!(moves.len(), 2);
    }
);

async fn cac_by_channel(app: &TestApp) -> Vec<(String, i64, i64)> {
    app.client
        .clone()
        .get_acquisition_cost(pb::GetAcquisitionCostRequest {
            currency: "EUR".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows
        .into_iter()
        .map(|r| {
            let revenue = r.attributed_revenue.map_or(0, |m| m.amount_micros);
            (r.key, r.customers_acquired, revenue)
        })
        .collect()
}

backend_tests!(
    the_customers_rollup_follows_merges_first_touches_and_erasures,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.ingest(vec![
            app.contact("a", "ads", "spring"),
            app.contact("b", "social", ""),
            app.contact("c", "ads", ""),
            app.interaction("a", "purchase", 10, 1000),
            app.interaction("b", "purchase", 11, 2000),
        ])
        .await;
        assert_eq!(
            cac_by_channel(&app).await,
            [
                ("ads".into(), 1, 10_000_000),
                ("social".into(), 1, 20_000_000)
            ]
        );

        // b's orders move to a: one customer, both orders.
        app.ingest(vec![app.merged("a", "b")]).await;
        assert_eq!(cac_by_channel(&app).await, [("ads".into(), 1, 30_000_000)]);
        let reply = rfm(&app).await;
        assert_eq!(
            (reply.contacts.len(), reply.contacts[0].contact_id.as_str()),
            (1, "a")
        );

        // A's first touch is corrected; c, never a customer, is not one now.
        app.ingest(vec![
            app.contact("a", "email", "autumn"),
            app.contact("c", "tv", ""),
        ])
        .await;
        assert_eq!(
            cac_by_channel(&app).await,
            [("email".into(), 1, 30_000_000)]
        );

        app.ingest(vec![app.erased("a")]).await;
        assert_eq!(cac_by_channel(&app).await, []);
        assert!(rfm(&app).await.contacts.is_empty());
    }
);

backend_tests!(
    the_customers_rollup_is_built_from_orders_stored_before_it,
    |db: clm_testkit::TestDatabase| async move {
        use clm_analytics::store::{
            Store,
            entities::{contact, order},
            migration::Migrator,
        };
        use sea_orm::{ActiveValue::Set, EntityTrait};
        use sea_orm_migration::MigratorTrait;

        let conn = clm_store::connect("analytics", db.location())
            .await
            .unwrap();
        // The schema as it was before the rollup, holding a customer.
        Migrator::up(&conn, Some(3)).await.unwrap();
        contact::Entity::insert(contact::ActiveModel {
            tenant_id: Set("default".into()),
            contact_id: Set("a".into()),
            created_at: Set(0),
            source: Set("ads".into()),
            campaign: Set("spring".into()),
            attributes: Set(serde_json::json!({})),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        order::Entity::insert_many(
            [(3, 5_000_000, 1), (7, -1_000_000, 0), (9, 2_000_000, 1)].map(
                |(day, amount, purchases)| order::ActiveModel {
                    tenant_id: Set("default".into()),
                    contact_id: Set("a".into()),
                    day: Set(day),
                    currency: Set("EUR".into()),
                    amount_micros: Set(amount),
                    purchases: Set(purchases),
                },
            ),
        )
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let customers = Store::new(conn)
            .customers("default", "EUR", NOW)
            .await
            .unwrap();
        assert_eq!(customers.len(), 1);
        let a = &customers[0];
        assert_eq!(
            (
                a.source.as_str(),
                a.campaign.as_str(),
                a.order_days.clone(),
                a.revenue_micros
            ),
            ("ads", "spring", vec![3, 9], 6_000_000)
        );
    }
);

/// The funnel's counts and median gaps (seconds), all time: from the entry rollup without
/// a range, from the facts with one; both must agree.
async fn funnel_both_ways(app: &TestApp, order: pb::FunnelOrder) -> Vec<(i64, Option<i64>)> {
    let ask = |range| pb::GetFunnelRequest {
        steps: vec!["page_view".into(), "demo_request".into(), "purchase".into()],
        exclusion_steps: vec!["unsubscribe".into()],
        order: order as i32,
        range,
        ..Default::default()
    };
    let mut answers = Vec::new();
    for range in [None, days(-1000, 1000)] {
        let reply = app
            .client
            .clone()
            .get_funnel(ask(range))
            .await
            .unwrap()
            .into_inner();
        answers.push(
            reply
                .total
                .unwrap()
                .steps
                .iter()
                .map(|s| (s.contacts, s.median_time_from_previous.map(|d| d.seconds)))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0], answers[1], "the rollup and the facts disagree");
    answers.remove(0)
}

backend_tests!(
    funnels_over_all_time_count_entries_from_the_rollup,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let day = 86_400;
        app.ingest(vec![
            // a: all three steps; b: visits twice, asks for a demo; c, d: only visit.
            app.interaction("a", "page_view", 5, 0),
            app.interaction("a", "demo_request", 6, 0),
            app.interaction("a", "purchase", 8, 1000),
            app.interaction("b", "page_view", 9, 0),
            app.interaction("b", "page_view", 2, 0),
            app.interaction("b", "demo_request", 4, 0),
            app.interaction("c", "page_view", 1, 0),
            app.interaction("d", "page_view", 3, 0),
            // e never visits; f unsubscribes before its demo request.
            app.interaction("e", "demo_request", 3, 0),
            app.interaction("f", "page_view", 1, 0),
            app.interaction("f", "unsubscribe", 2, 0),
            app.interaction("f", "demo_request", 3, 0),
        ])
        .await;
        assert_eq!(
            funnel_both_ways(&app, pb::FunnelOrder::Sequential).await,
            [(5, None), (2, Some(day * 3 / 2)), (1, Some(2 * day))]
        );
        funnel_both_ways(&app, pb::FunnelOrder::Any).await;

        // With only an end, entries after it are not counted (the stored count covers
        // entries up to day 9): b, c and f visited before day 3.
        let until_day_3 = pb::GetFunnelRequest {
            steps: vec!["page_view".into(), "demo_request".into()],
            range: Some(clm_proto::common::v1::TimeRange {
                start_time: None,
                end_time: Some(ts(3 * DAY)),
            }),
            ..Default::default()
        };
        let entered = |reply: pb::GetFunnelResponse| reply.total.unwrap().steps[0].contacts;
        let reply = app.client.clone().get_funnel(until_day_3.clone()).await;
        assert_eq!(entered(reply.unwrap().into_inner()), 3);

        // d joins a (its earlier visit becomes a's entry); c is erased.
        app.ingest(vec![app.merged("a", "d"), app.erased("c")])
            .await;
        assert_eq!(
            funnel_both_ways(&app, pb::FunnelOrder::Sequential).await,
            [(3, None), (2, Some(day * 5 / 2)), (1, Some(2 * day))]
        );
        let reply = app.client.clone().get_funnel(until_day_3).await;
        assert_eq!(entered(reply.unwrap().into_inner()), 2, "b and f");

        // An earlier visit of a contact already counted moves its entry, a new one adds.
        app.ingest(vec![
            app.interaction("a", "page_view", 0, 0),
            app.interaction("g", "page_view", 4, 0),
        ])
        .await;
        assert_eq!(
            funnel_both_ways(&app, pb::FunnelOrder::Sequential).await[0],
            (4, None)
        );
    }
);

backend_tests!(
    entry_counts_stay_exact_when_batches_for_the_same_new_contacts_arrive_at_once,
    |db| async move {
        let app = std::sync::Arc::new(TestApp::spawn(&db).await);
        // Sixteen deliveries at once, each the first visits of the same 40 contacts on
        // days of its own (so entries are taken and lowered concurrently), and one
        // contact's demo request.
        let calls = (0..16i64).map(|call| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut events: Vec<_> = (0..40i64)
                    .map(|c| app.interaction(&format!("c{c}"), "page_view", 1 + (call + c) % 7, 0))
                    .collect();
                events.push(app.interaction(&format!("c{call}"), "demo_request", 9, 0));
                app.ingest(events).await;
            })
        });
        for call in calls {
            call.await.unwrap();
        }
        let counts = funnel_both_ways(&app, pb::FunnelOrder::Sequential).await;
        assert_eq!((counts[0].0, counts[1].0), (40, 16));
    }
);

backend_tests!(
    a_funnel_split_at_the_last_ones_median_loses_and_repeats_no_contact,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        // Ids of every shape the split compares: short, numbered, multibyte, one the prefix
        // of another. Each visits, asks for a demo and buys.
        let ids = ["a", "a1", "b", "c9", "m", "z", "é", "éa", "日本"];
        let mut events = Vec::new();
        for id in ids {
            events.push(app.interaction(id, "page_view", 1, 0));
            events.push(app.interaction(id, "demo_request", 2, 0));
            events.push(app.interaction(id, "purchase", 3, 1000));
        }
        app.ingest(events).await;
        let everyone = ids.len() as i64;
        // The first call reads all contacts in one half and learns a pivot; later calls
        // split at it, and must still see each contact once.
        for call in 0..3 {
            let counts: Vec<i64> = funnel_both_ways(&app, pb::FunnelOrder::Sequential)
                .await
                .iter()
                .map(|(contacts, _)| *contacts)
                .collect();
            assert_eq!(counts, [everyone; 3], "call {call}");
        }
    }
);

backend_tests!(
    funnels_over_all_time_carry_any_contact_id_and_both_halves_of_the_contacts,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let day = 86_400;
        // Ids with the characters the timelines are written with, and many bytes; numbered
        // ids end in every digit, so both halves the contacts are read in hold some.
        let mut ids: Vec<String> = ["a b", "x;y,z", "é/1 2", "c:7 ", "ünï"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        ids.extend((0..10).map(|i| format!("n{i}")));
        let mut events = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            events.push(app.interaction(id, "page_view", 1, 0));
            if i % 3 != 2 {
                events.push(app.interaction(id, "demo_request", 2, 0));
            }
            if i % 3 == 0 {
                events.push(app.interaction(id, "purchase", 4, 1000));
            }
        }
        app.ingest(events).await;
        assert_eq!(
            funnel_both_ways(&app, pb::FunnelOrder::Sequential).await,
            [(15, None), (10, Some(day)), (5, Some(2 * day))]
        );
    }
);

backend_tests!(
    events_at_the_same_instant_count_in_the_order_of_the_steps,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let day = 86_400;
        // The purchase is recorded first (its id sorts first) at the demo request's instant.
        app.ingest(vec![
            app.interaction("g", "page_view", 1, 0),
            app.interaction("g", "purchase", 2, 1000),
            app.interaction("g", "demo_request", 2, 0),
        ])
        .await;
        for order in [pb::FunnelOrder::Sequential, pb::FunnelOrder::Strict] {
            assert_eq!(
                funnel_both_ways(&app, order).await,
                [(1, None), (1, Some(day)), (1, Some(0))],
                "{order:?}"
            );
        }
    }
);

backend_tests!(
    the_entry_rollup_is_built_from_facts_stored_before_it,
    |db: clm_testkit::TestDatabase| async move {
        use clm_analytics::store::{Store, entities::fact, migration::Migrator};
        use sea_orm::{ActiveValue::Set, EntityTrait};
        use sea_orm_migration::MigratorTrait;

        let conn = clm_store::connect("analytics", db.location())
            .await
            .unwrap();
        Migrator::up(&conn, Some(4)).await.unwrap();
        let facts = [("a", 5), ("a", 2), ("b", 9)];
        fact::Entity::insert_many(facts.iter().enumerate().map(|(i, (contact, day))| {
            fact::ActiveModel {
                tenant_id: Set("default".into()),
                event_id: Set(format!("f{i}")),
                contact_id: Set((*contact).into()),
                kind: Set("page_view".into()),
                occurred_at: Set(day * DAY),
                amount_micros: Set(0),
                currency: Set(String::new()),
                campaign: Set(String::new()),
                channel: Set(String::new()),
                nps_score: Set(None),
            }
        }))
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        let store = Store::new(conn);
        assert_eq!(store.entries("default", "page_view", NOW).await.unwrap(), 2);
        // b entered after the end; a's events come in time order, not as stored.
        let timelines = store
            .entry_timelines(
                "default",
                "page_view",
                5 * DAY,
                &[("page_view", 7)],
                (0, NOW),
            )
            .await
            .unwrap();
        assert_eq!(
            timelines,
            [clm_analytics::store::Timeline {
                contact_id: "a".into(),
                entry_at: 2 * DAY,
                events: vec![(2 * DAY, 7), (5 * DAY, 7)],
            }]
        );
    }
);

backend_tests!(
    stage_rollups_stay_exact_when_batches_for_the_same_contacts_arrive_at_once,
    |db| async move {
        let app = std::sync::Arc::new(TestApp::spawn(&db).await);
        let stages = ["awareness", "consideration", "conversion", "retention"];
        let first: Vec<String> = (0..50).map(|c| format!("c{c}")).collect();
        let first: Vec<(&str, &str, &str, i64)> = first
            .iter()
            .map(|c| (c.as_str(), "", "awareness", 0))
            .collect();
        app.transitions(&first).await;
        // Sixteen deliveries at once, each moving the same 50 contacts at its own instants.
        let calls = (0..16i64).map(|call| {
            let app = app.clone();
            tokio::spawn(async move {
                let moves: Vec<(String, &str, &str, i64)> = (0..50)
                    .map(|c| {
                        let stage = stages[((call + c) % 4) as usize];
                        (format!("c{c}"), "", stage, 1 + call * 3 + c % 3)
                    })
                    .collect();
                let borrowed: Vec<(&str, &str, &str, i64)> = moves
                    .iter()
                    .map(|(c, from, to, day)| (c.as_str(), *from, *to, *day))
                    .collect();
                app.transitions(&borrowed).await;
            })
        });
        for call in calls {
            call.await.unwrap();
        }
        let (rows, _) = rollup_and_scan(&app).await;
        assert_eq!(
            rows.iter().map(|r| r.2).sum::<i64>(),
            850,
            "every move entered once"
        );
        assert_eq!(
            rows.iter().map(|r| r.1).sum::<i64>(),
            50,
            "each contact in one stage"
        );
    }
);

backend_tests!(
    ids_kept_twice_before_are_kept_once_and_stay_duplicates,
    |db: clm_testkit::TestDatabase| async move {
        use clm_analytics::store::{
            ContactFact, Ingested, Store,
            entities::{fact, transition},
            migration::Migrator,
        };
        use sea_orm::{ActiveValue::Set, EntityTrait};
        use sea_orm_migration::MigratorTrait;

        let conn = clm_store::connect("analytics", db.location())
            .await
            .unwrap();
        // As a build before left it: "f" applied with its fact, "t" with its transition,
        // "gone" applied by a contact erased since, "upsert" a contact event.
        let before =
            clm_testkit::migrations_before::<Migrator>("m20261203_000008_forget_ids_kept_by_rows");
        Migrator::up(&conn, Some(before)).await.unwrap();
        clm_testkit::record_event_ids(
            &conn,
            "applied_events",
            "default",
            &["f", "t", "gone", "upsert"],
        )
        .await;
        transition::Entity::insert(transition::ActiveModel {
            tenant_id: Set("default".into()),
            event_id: Set("t".into()),
            contact_id: Set("a".into()),
            model_id: Set("default".into()),
            from_stage: Set(String::new()),
            to_stage: Set("awareness".into()),
            occurred_at: Set(DAY),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        fact::Entity::insert(fact::ActiveModel {
            tenant_id: Set("default".into()),
            event_id: Set("f".into()),
            contact_id: Set("a".into()),
            kind: Set("purchase".into()),
            occurred_at: Set(DAY),
            amount_micros: Set(1_000_000),
            currency: Set("EUR".into()),
            campaign: Set(String::new()),
            channel: Set(String::new()),
            nps_score: Set(None),
        })
        .exec_without_returning(&conn)
        .await
        .unwrap();
        Migrator::up(&conn, None).await.unwrap();
        assert_eq!(
            clm_testkit::recorded_event_ids(&conn, "applied_events").await,
            ["gone", "upsert"]
        );
        let interaction = |id: &str| Ingested {
            event_id: id.into(),
            contact_id: "a".into(),
            occurred_at: DAY,
            fact: ContactFact::Interaction {
                kind: "purchase".into(),
                value: Some((1_000_000, "EUR".into())),
                campaign: String::new(),
                channel: String::new(),
                nps_score: None,
            },
        };
        let store = Store::new(conn);
        let again = store
            .ingest_contacts(
                "default",
                vec![interaction("f"), interaction("gone"), interaction("new")],
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(again, (1, 2));
    }
);

/// `contact` as an upsert created at `day` with `country` among its attributes.
fn contact_in(
    app: &TestApp,
    contact: &str,
    day: i64,
    country: &str,
) -> clm_proto::common::v1::ContactEvent {
    let mut event = app.contact(contact, "ads", "");
    if let Some(clm_proto::common::v1::contact_event::Kind::Upserted(u)) = &mut event.kind {
        u.attributes.insert("country".into(), country.into());
        u.created_at = Some(ts(day * DAY));
    }
    event
}

backend_tests!(
    a_contact_keeps_its_first_creation_and_its_last_attributes,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        // Months of 1970: Jan = days 0-30, Feb 31-58, Mar 59-89.
        app.ingest(vec![
            contact_in(&app, "a", 0, "DE"),
            contact_in(&app, "a", 40, "FR"),
            // A duplicate created and merged into a within the same call leaves no row.
            contact_in(&app, "d", 0, "IT"),
            app.merged("a", "d"),
            contact_in(&app, "b", 35, "DE"),
            app.interaction("a", "page_view", 4, 0),
            app.interaction("a", "purchase", 5, 1000),
            app.interaction("b", "page_view", 36, 0),
            app.interaction("b", "purchase", 36, 1000),
        ])
        .await;
        app.ingest(vec![contact_in(&app, "a", 70, "GB")]).await;
        let cohorts = app
            .client
            .clone()
            .get_cohort_retention(pb::GetCohortRetentionRequest {
                currency: "EUR".into(),
                period: clm_proto::common::v1::Period::Month as i32,
                basis: pb::CohortBasis::Creation as i32,
                mode: pb::RetentionMode::On as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let sizes: Vec<(i64, i64)> = cohorts
            .cohorts
            .iter()
            .map(|c| (c.cohort_start.unwrap().seconds / 86_400, c.size))
            .collect();
        assert_eq!(sizes, [(0, 1), (31, 1)]);
        let funnel = app
            .client
            .clone()
            .get_funnel(pb::GetFunnelRequest {
                steps: vec!["page_view".into(), "purchase".into()],
                range: days(0, 100),
                breakdown_by: "country".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut by_country: Vec<(String, i64)> = funnel
            .breakdown
            .iter()
            .map(|f| (f.breakdown_value.clone(), f.steps[1].contacts))
            .collect();
        by_country.sort();
        assert_eq!(by_country, [("DE".into(), 1), ("GB".into(), 1)]);
    }
);
