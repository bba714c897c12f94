//! Real-time segments: members right after each signal, and after windows slide.

use tonic::Code;

use clm_proto::lifecycle::v1 as pb;

use crate::helpers::*;

async fn members(app: &TestApp, segment: &str) -> Vec<String> {
    app.client
        .clone()
        .list_segment_members(pb::ListSegmentMembersRequest {
            segment_id: segment.into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.contact_id)
        .collect()
}

backend_tests!(
    members_follow_signals_and_sliding_windows,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.apply(vec![app.interaction_at("a", "purchase", T0 - 10 * DAY)])
            .await;
        let segment = app
            .create_segment("Repeat buyers", r#"count.purchase.90d >= "2""#)
            .await;
        assert_eq!(segment.member_count, 0);
        app.apply(vec![
            app.interaction("a", "purchase"),
            app.interaction("b", "purchase"),
        ])
        .await;
        assert_eq!(
            members(&app, &segment.id).await,
            ["a"],
            "right after the signal"
        );

        // 81 days on, a's first purchase is 91 days old: the window slid past it.
        app.set_now(T0 + 81 * DAY);
        app.scheduler.run_due().await.unwrap();
        assert!(members(&app, &segment.id).await.is_empty());
        let kinds: Vec<i32> = app
            .all_events()
            .await
            .into_iter()
            .filter(|e| e.segment_id == segment.id)
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                pb::LifecycleEventKind::SegmentEntered as i32,
                pb::LifecycleEventKind::SegmentExited as i32
            ]
        );
    }
);

// A call reads only the part of each history its conditions look at (the types they
// count within their longest window, and the latest interaction for `inactive_days`):
// what earlier calls stored must count exactly as before.
backend_tests!(
    conditions_see_the_history_stored_by_earlier_calls,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let recent = app
            .create_segment("Recent", r#"count.purchase.30d = "2""#)
            .await
            .id;
        let idle = app
            .create_segment("Idle", r#"inactive_days = "3""#)
            .await
            .id;
        let spenders = app
            .create_segment("Spenders", r#"spend.365d = "200""#)
            .await
            .id;
        app.apply(vec![
            app.interaction_at("a", "purchase", T0 - 360 * DAY),
            app.interaction_at("a", "purchase", T0 - 40 * DAY),
            app.interaction_at("a", "purchase", T0 - 10 * DAY),
            app.interaction_at("a", "page_view", T0 - DAY),
            app.interaction_at("b", "page_view", T0 - 3 * DAY),
            app.interaction_at("b", "purchase", T0 - 400 * DAY),
        ])
        .await;
        // A later call: a's fourth purchase (two within 30 days, those 40 and 360 days old
        // are not), and a band change for b, whose latest interaction is a page view.
        app.apply(vec![
            app.interaction("a", "purchase"),
            app.band("b", "MQL", 30.0),
        ])
        .await;
        assert_eq!(members(&app, &recent).await, ["a"]);
        assert_eq!(members(&app, &idle).await, ["b"]);
        // a's four purchases of 50 are within the year; b's only one is 400 days old.
        assert_eq!(members(&app, &spenders).await, ["a"]);
        // A segment created now starts with the members the stored histories give it.
        let late = app
            .create_segment("Late", r#"count.purchase.30d = "2" OR inactive_days = "3""#)
            .await;
        assert_eq!(late.member_count, 2);
        assert_eq!(members(&app, &late.id).await, ["a", "b"]);
    }
);

backend_tests!(
    segments_over_stage_and_attributes_start_with_current_members,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.apply(vec![
            app.attributes("de", &[("country", "DE")]),
            app.attributes("fr", &[("country", "FR")]),
            app.interaction("de", "purchase"),
        ])
        .await;
        let segment = app
            .create_segment(
                "German customers",
                r#"attributes.country = "DE" AND stage = "conversion""#,
            )
            .await;
        assert_eq!(segment.member_count, 1);
        assert_eq!(members(&app, &segment.id).await, ["de"]);
        let listed = app
            .client
            .clone()
            .list_segments(pb::ListSegmentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.segments.len(), 1);
    }
);

backend_tests!(
    invalid_segments_are_refused_and_change_nothing,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        for (filter, field) in [
            (r#"count.purchase >= "2""#, "segment.filter"),
            (r#"event = "purchase""#, "segment.filter"),
            (r#"score > "high""#, "segment.filter"),
            ("", "segment.filter"),
            (r#"stage = "x" AND"#, "segment.filter"),
        ] {
            let refused = app
                .client
                .clone()
                .create_segment(pb::CreateSegmentRequest {
                    segment: Some(pb::Segment {
                        display_name: "Broken".into(),
                        filter: filter.into(),
                        ..Default::default()
                    }),
                })
                .await;
            assert_eq!(
                violated_fields(&expect_code(refused, Code::InvalidArgument)),
                [field],
                "{filter}"
            );
        }
        let listed = app
            .client
            .clone()
            .list_segments(pb::ListSegmentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.segments.is_empty());
    }
);
