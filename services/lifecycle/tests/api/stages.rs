//! Stages: rules, churn and reactivation, the warranty trigger, manual moves.

use tonic::Code;

use clm_proto::lifecycle::v1 as pb;

use crate::helpers::*;

fn date(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

backend_tests!(
    any_later_interaction_keeps_a_customer_from_churning,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.apply(vec![
            app.interaction("c1", "purchase"),
            app.interaction("c2", "purchase"),
        ])
        .await;
        app.set_now(T0 + 100 * DAY);
        app.apply(vec![app.interaction("c1", "page_view")]).await;
        // 181 days after both purchases, but 81 after c1's page view.
        app.set_now(T0 + 181 * DAY);
        assert_eq!(app.scheduler.run_due().await.unwrap().churned, 1);
        assert_eq!(app.stage("c1").await, "conversion");
        assert_eq!(app.stage("c2").await, "churned");
        app.set_now(T0 + 281 * DAY);
        assert_eq!(app.scheduler.run_due().await.unwrap().churned, 1);
        assert_eq!(app.stage("c1").await, "churned");
    }
);

backend_tests!(
    silence_churns_a_customer_and_a_purchase_reactivates_it,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        app.apply(vec![
            app.interaction("c1", "purchase"),
            app.interaction("c2", "email_open"),
        ])
        .await;
        assert_eq!(app.stage("c1").await, "conversion");
        assert_eq!(app.stage("c2").await, "awareness");

        app.set_now(T0 + 179 * DAY);
        assert_eq!(app.scheduler.run_due().await.unwrap().churned, 0);
        assert_eq!(app.stage("c1").await, "conversion");
        app.set_now(T0 + 181 * DAY);
        assert_eq!(
            app.scheduler.run_due().await.unwrap().churned,
            1,
            "only customers churn"
        );
        assert_eq!(app.stage("c1").await, "churned");
        assert_eq!(app.stage("c2").await, "awareness");
        assert_eq!(app.scheduler.run_due().await.unwrap().churned, 0, "once");

        app.set_now(T0 + 200 * DAY);
        app.apply(vec![app.interaction("c1", "purchase")]).await;
        assert_eq!(app.stage("c1").await, "retention");
        let causes: Vec<String> = app
            .history("c1")
            .await
            .into_iter()
            .map(|h| h.cause)
            .collect();
        assert_eq!(
            causes,
            [
                "new_contact",
                "rule:first_purchase",
                "trigger:churn",
                "rule:reactivation"
            ]
        );
        let actions: Vec<String> = app
            .all_events()
            .await
            .into_iter()
            .filter(|e| e.kind == pb::LifecycleEventKind::Action as i32)
            .map(|e| format!("{}:{}", e.contact_id, e.action))
            .collect();
        assert_eq!(actions, ["c1:win_back"]);
    }
);

backend_tests!(
    the_warranty_trigger_fires_once_across_two_instances,
    |db| async move {
        let one = TestApp::spawn(&db).await;
        let two = TestApp::spawn_sharing(&db, one.clock()).await;
        let expires = T0 + 40 * DAY;
        one.apply(vec![
            one.attributes("c1", &[("warranty_expires_at", &date(expires))]),
        ])
        .await;
        one.set_now(T0 + 5 * DAY);
        assert_eq!(
            one.scheduler.run_due().await.unwrap().actions,
            0,
            "not due yet"
        );
        one.set_now(T0 + 11 * DAY);
        let (a, b) = tokio::join!(one.scheduler.run_due(), two.scheduler.run_due());
        assert_eq!(
            a.unwrap().actions + b.unwrap().actions,
            1,
            "fired by exactly one instance"
        );
        assert_eq!(two.scheduler.run_due().await.unwrap().actions, 0);
        let offers = one
            .all_events()
            .await
            .into_iter()
            .filter(|e| e.action == "offer_warranty_extension")
            .count();
        assert_eq!(offers, 1);
    }
);

backend_tests!(reaching_a_band_enters_consideration, |db| async move {
    let app = TestApp::spawn(&db).await;
    app.apply(vec![app.interaction("c1", "email_open")]).await;
    app.apply(vec![app.band("c1", "MQL", 55.0)]).await;
    assert_eq!(app.stage("c1").await, "consideration");
});

backend_tests!(
    an_interaction_carrying_its_score_applies_both_in_order,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let mut signal = app.interaction("c1", "email_open");
        if let Some(pb::signal::Kind::Interaction(i)) = signal.kind.as_mut() {
            i.score = Some(pb::BandChanged {
                model_id: "default".into(),
                from_band: String::new(),
                to_band: "MQL".into(),
                total: 55.0,
            });
        }
        let applied = app.apply(vec![signal]).await;
        assert_eq!((applied.applied, applied.duplicates), (1, 0));
        // The interaction makes c1 a contact (awareness), then its score moves it on.
        assert_eq!(app.stage("c1").await, "consideration");
        let high = app
            .create_segment("Scored", r#"score >= "50" AND count.email_open.30d = "1""#)
            .await;
        assert_eq!(
            high.member_count, 1,
            "the score and the activity are both kept"
        );
    }
);

backend_tests!(backward_moves_need_override_and_a_reason, |db| async move {
    let app = TestApp::spawn(&db).await;
    app.apply(vec![app.interaction("c1", "purchase")]).await;
    let before = app.history("c1").await;
    let move_to = |to: &str, force: bool, reason: &str| pb::TransitionContactRequest {
        contact_id: "c1".into(),
        model_id: String::new(),
        to_stage: to.into(),
        r#override: force,
        reason: reason.into(),
        actor: "ops@example.com".into(),
    };
    let refused = app
        .client
        .clone()
        .transition_contact(move_to("awareness", false, ""))
        .await;
    let mut fields = violated_fields(&expect_code(refused, Code::InvalidArgument));
    fields.sort();
    assert_eq!(fields, ["override", "reason"]);
    let unknown = app
        .client
        .clone()
        .transition_contact(move_to("limbo", true, "x"))
        .await;
    assert_eq!(
        violated_fields(&expect_code(unknown, Code::InvalidArgument)),
        ["to_stage"]
    );
    let nobody = app
        .client
        .clone()
        .transition_contact(pb::TransitionContactRequest {
            contact_id: "nobody".into(),
            ..move_to("retention", false, "")
        })
        .await;
    expect_code(nobody, Code::NotFound);
    assert_eq!(
        app.history("c1").await,
        before,
        "refused moves change nothing"
    );

    app.client
        .clone()
        .transition_contact(move_to("awareness", true, "bought by mistake"))
        .await
        .unwrap();
    assert_eq!(app.stage("c1").await, "awareness");
    let last = app.history("c1").await.pop().unwrap();
    assert!(last.r#override);
    assert_eq!(
        (
            last.cause.as_str(),
            last.reason.as_str(),
            last.actor.as_str()
        ),
        ("manual", "bought by mistake", "ops@example.com")
    );
    // Forward by hand needs neither.
    app.client
        .clone()
        .transition_contact(move_to("retention", false, ""))
        .await
        .unwrap();
    assert_eq!(app.stage("c1").await, "retention");
});

backend_tests!(
    repeated_signals_are_duplicates_also_after_an_erasure,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let batch = vec![
            app.interaction("c1", "email_open"),
            app.attributes("c1", &[("title", "CTO")]),
            app.interaction("c2", "purchase"),
        ];
        let first = app.apply(batch.clone()).await;
        let history = app.history("c2").await;
        let again = app.apply(batch.clone()).await;
        assert_eq!(app.history("c2").await, history, "nothing moves twice");
        let erasure = pb::Signal {
            event_id: "erase-c1".into(),
            contact_id: "c1".into(),
            occurred_at: Some(ts(app.now())),
            kind: Some(pb::signal::Kind::Erased(true)),
        };
        app.apply(vec![erasure]).await;
        // A relay delivering the old batch again after c1's erasure, with a new signal.
        let after = app
            .apply([batch, vec![app.interaction("c2", "email_open")]].concat())
            .await;
        assert_eq!(
            [first, again, after].map(|r| (r.applied, r.duplicates)),
            [(3, 0), (0, 3), (1, 3)]
        );
    }
);
