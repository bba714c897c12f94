//! Scores: the fold over the ledger, exactly-once application, decay, caps, bands,
//! explanations, history, merges, erasure, rescoring and simulation.

use tonic::Code;

use clm_proto::common::v1 as common;
use clm_proto::scoring::v1 as pb;

use crate::helpers::*;

backend_tests!(
    the_last_profile_of_a_contact_in_one_call_is_the_one_scored,
    |db| async move {
        let app = TestApp::spawn(db).await;
        app.apply(vec![
            upserted("u1", "c1", &[("job_title", "CTO"), ("company", "Acme")]),
            upserted("u2", "c2", &[("job_title", "CTO"), ("company", "Acme")]),
            upserted("u3", "c1", &[("job_title", "Intern")]),
        ])
        .await;
        let (c1, c2) = (app.score("c1").await, app.score("c2").await);
        assert!(close(c1.fit, 0.0), "{c1:?}");
        assert!(close(c2.fit, 20.0), "{c2:?}");
    }
);

backend_tests!(interactions_become_explainable_scores, |db| async move {
    let app = TestApp::spawn(db).await;
    app.apply(vec![
        upserted("u1", "c1", &[("job_title", "CTO"), ("company", "Acme")]),
        interaction("e1", "c1", "demo_request", T0),
        interaction("e2", "c1", "webinar_attended", T0),
        interaction_with(
            "e3",
            "c1",
            "page_view",
            T0,
            &[("url", "https://acme.test/pricing")],
        ),
    ])
    .await;
    let score = app.score("c1").await;
    // fit 15 + 5, demo 30, webinar 15, page view 1 + pricing 10
    assert!(close(score.fit, 20.0), "{score:?}");
    assert!(close(score.engagement, 56.0), "{score:?}");
    assert!(close(score.total, 76.0));
    assert_eq!(score.band, "MQL");
    assert_eq!(score.model_id, "default");

    let explained = app
        .client
        .clone()
        .explain_score(pb::ExplainScoreRequest {
            contact_id: "c1".into(),
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sum: f64 = explained.contributions.iter().map(|c| c.points).sum();
    assert!(close(sum, explained.score.as_ref().unwrap().total));
    let rules: Vec<&str> = explained
        .contributions
        .iter()
        .map(|c| c.rule_id.as_str())
        .collect();
    for rule in [
        "demo_request",
        "webinar_attended",
        "page_view",
        "pricing_page_view",
        "senior_title",
        "known_company",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
    // A contact scoring never heard of has a zero score, not an error.
    let unknown = app.score("nobody").await;
    assert!(close(unknown.total, 0.0) && unknown.band.is_empty());
});

backend_tests!(a_repeated_delivery_changes_nothing, |db| async move {
    let app = TestApp::spawn(db).await;
    let batch = vec![
        interaction("e1", "c1", "demo_request", T0),
        interaction("e2", "c1", "form_submit", T0),
        interaction("e2", "c1", "form_submit", T0), // repeated inside the call
    ];
    let first = app.apply(batch.clone()).await;
    assert_eq!((first.applied, first.duplicates), (2, 1));
    let ledger = app.ledger_rows().await;
    let score = app.score("c1").await;
    let again = app.apply(batch).await;
    assert_eq!((again.applied, again.duplicates), (0, 3));
    assert_eq!(
        app.ledger_rows().await,
        ledger,
        "one ledger entry per event"
    );
    assert!(close(app.score("c1").await.total, score.total));
    assert_eq!(ledger, 2);
});

backend_tests!(decay_halves_points_every_half_life, |db| async move {
    let app = TestApp::spawn(db).await;
    app.apply(vec![interaction("d", "c1", "demo_request", T0)])
        .await;
    assert!(close(app.score("c1").await.total, 30.0));
    app.set_now(T0 + 90 * DAY);
    assert!(
        close(app.score("c1").await.total, 15.0),
        "cached scores decay exactly too"
    );
    app.set_now(T0 + 180 * DAY);
    let score = app.score("c1").await;
    assert!(close(score.total, 7.5));
    let batch = app
        .client
        .clone()
        .batch_get_scores(pb::BatchGetScoresRequest {
            contact_ids: vec!["c1".into()],
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(close(batch.scores[0].total, 7.5));
});

backend_tests!(caps_limit_awards_per_window, |db| async move {
    let app = TestApp::spawn(db).await;
    // email_open: at most 3 awards per 7 days.
    let opens: Vec<common::ContactEvent> = (0..5)
        .map(|i| interaction(&format!("o{i}"), "c1", "email_open", T0 + i * DAY))
        .collect();
    app.apply(opens).await;
    app.set_now(T0 + 5 * DAY);
    let explained = app.explain("c1").await;
    let opens = explained
        .contributions
        .iter()
        .find(|c| c.rule_id == "email_open")
        .unwrap();
    assert_eq!(opens.awards, 3);
    assert!(close(opens.raw_points, 3.0));
    // A week after the first three, opens count again.
    app.apply(vec![interaction("o9", "c1", "email_open", T0 + 8 * DAY)])
        .await;
    app.set_now(T0 + 8 * DAY);
    let explained = app.explain("c1").await;
    let opens = explained
        .contributions
        .iter()
        .find(|c| c.rule_id == "email_open")
        .unwrap();
    assert_eq!(opens.awards, 4);
});

backend_tests!(bands_fire_once_per_crossing, |db| async move {
    let app = TestApp::spawn(db).await;
    app.apply(vec![
        interaction("d1", "c1", "demo_request", T0),
        interaction("t1", "c1", "trial_started", T0),
    ])
    .await; // 55: MQL
    assert_eq!(app.score("c1").await.band, "MQL");
    app.apply(vec![interaction("f1", "c1", "form_submit", T0)])
        .await; // 65: still MQL
    assert_eq!(
        app.band_events().await.len(),
        1,
        "staying in a band does not fire again"
    );
    app.apply(vec![interaction("u1", "c1", "unsubscribe", T0)])
        .await; // 45: below MQL
    assert_eq!(app.score("c1").await.band, "");
    app.apply(vec![interaction("w1", "c1", "webinar_attended", T0)])
        .await; // 60: MQL again
    let events = app.band_events().await;
    assert_eq!(events.len(), 2, "a new crossing fires again");
    assert!(
        events
            .iter()
            .all(|e| e.to_band == "MQL" && e.from_band.is_empty())
    );
    app.apply(vec![
        interaction("d2", "c1", "demo_request", T0),
        interaction("t2", "c1", "trial_started", T0),
    ])
    .await; // 115: SQL
    let events = app.band_events().await;
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .any(|e| e.from_band == "MQL" && e.to_band == "SQL")
    );

    let history = app
        .client
        .clone()
        .list_score_history(pb::ListScoreHistoryRequest {
            contact_id: "c1".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(history.entries.iter().any(|e| e.band_after == "SQL"));
});

backend_tests!(history_pages_newest_first, |db| async move {
    let app = TestApp::spawn(db).await;
    let events: Vec<common::ContactEvent> = (0..7)
        .map(|i| interaction(&format!("f{i}"), "c1", "form_submit", T0 + i * DAY))
        .collect();
    app.apply(events).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_score_history(pb::ListScoreHistoryRequest {
                contact_id: "c1".into(),
                model_id: String::new(),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries.into_iter().map(|e| e.event_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["f6", "f5", "f4", "f3", "f2", "f1", "f0"]);
    let foreign = app
        .client
        .clone()
        .list_score_history(pb::ListScoreHistoryRequest {
            contact_id: "c2".into(),
            model_id: String::new(),
            page_size: 3,
            page_token: {
                let first = app
                    .client
                    .clone()
                    .list_score_history(pb::ListScoreHistoryRequest {
                        contact_id: "c1".into(),
                        model_id: String::new(),
                        page_size: 3,
                        page_token: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                first.next_page_token
            },
        })
        .await;
    assert!(
        violated_fields(&expect_code(foreign, Code::InvalidArgument))
            .contains(&"page_token".to_owned())
    );
});

backend_tests!(
    scores_folded_call_by_call_agree_with_the_whole_ledger,
    |db| async move {
        let app = TestApp::spawn(db).await;
        const HOUR: i64 = DAY / 24;
        // (when the call is applied, its interactions: kind and instant). Calls 3 and 4
        // bring backdated entries: a capped rule's (the ledger is folded again) and
        // uncapped rules' (folded onto the stored score).
        let calls: Vec<(i64, Vec<(&str, i64)>)> = vec![
            (
                T0 + 2 * DAY,
                vec![
                    ("email_open", T0),
                    ("email_open", T0 + DAY),
                    ("email_open", T0 + 2 * DAY),
                    ("page_view", T0 + DAY),
                    ("demo_request", T0 + DAY),
                ],
            ),
            (
                T0 + 4 * DAY,
                vec![
                    ("email_open", T0 + 3 * DAY),
                    ("email_open", T0 + 4 * DAY),
                    ("unsubscribe", T0 + 4 * DAY),
                    ("page_view", T0 + 4 * DAY),
                    ("page_view", T0 + 4 * DAY + HOUR),
                    ("page_view", T0 + 4 * DAY + 2 * HOUR),
                ],
            ),
            (
                T0 + 5 * DAY,
                vec![("email_open", T0 - 3 * DAY), ("demo_request", T0 - 5 * DAY)],
            ),
            (
                T0 + 9 * DAY,
                vec![
                    ("email_open", T0 + 8 * DAY),
                    ("email_open", T0 + 9 * DAY),
                    ("webinar_attended", T0 + 2 * DAY),
                ],
            ),
        ];
        let event = |contact: &str, n: usize, (kind, at): (&str, i64)| {
            interaction(&format!("{contact}-{n}"), contact, kind, at)
        };
        let mut n = 0;
        let mut whole = Vec::new();
        for (now, interactions) in &calls {
            app.set_now(*now);
            let mut call = Vec::new();
            for &i in interactions {
                call.push(event("steps", n, i));
                whole.push(event("whole", n, i));
                n += 1;
            }
            app.apply(call).await;
        }
        // An attributes-only change: the stored score is carried to now, fit added.
        app.set_now(T0 + 20 * DAY);
        let cto = [("job_title", "CTO")];
        app.apply(vec![upserted("steps-attrs", "steps", &cto)])
            .await;
        whole.push(upserted("whole-attrs", "whole", &cto));
        app.apply(whole).await;

        app.set_now(T0 + 30 * DAY);
        let (steps, whole) = (app.explain("steps").await, app.explain("whole").await);
        let parts = |e: &pb::ExplainScoreResponse| {
            let mut parts: Vec<(String, i64, f64, f64)> = e
                .contributions
                .iter()
                .map(|c| (c.rule_id.clone(), c.awards, c.raw_points, c.points))
                .collect();
            parts.sort_by(|a, b| a.0.cmp(&b.0));
            parts
        };
        let (steps_parts, whole_parts) = (parts(&steps), parts(&whole));
        assert_eq!(steps_parts.len(), whole_parts.len());
        for (s, w) in steps_parts.iter().zip(&whole_parts) {
            assert_eq!(
                (&s.0, s.1),
                (&w.0, w.1),
                "{steps_parts:?} vs {whole_parts:?}"
            );
            assert!(close(s.2, w.2) && close(s.3, w.3), "{s:?} vs {w:?}");
        }
        // Of the eight opens, the backdated one counts and takes the place of the one
        // at T0 + 2 days; the one at T0 + 3 days stays capped.
        let opens = whole_parts.iter().find(|p| p.0 == "email_open").unwrap();
        assert_eq!(opens.1, 6, "{whole_parts:?}");
        let (steps_score, whole_score) = (app.score("steps").await, app.score("whole").await);
        assert!(close(steps_score.total, whole_score.total));
        assert!(close(steps_score.fit, 15.0));
    }
);

backend_tests!(
    concurrent_calls_on_one_contact_keep_every_award,
    |db| async move {
        use sea_orm::EntityTrait;
        let app = TestApp::spawn(db).await;
        // Two deliveries at once touching the same contacts, as two relays or two replicas
        // make them: each stored score must keep both calls' awards, also once later calls
        // have folded onto it.
        let call = |side: &str, round: i64| -> Vec<common::ContactEvent> {
            (0..20)
                .flat_map(|i| {
                    let at = T0 + round * 100 + i;
                    ["c1", "c2"].map(|c| {
                        interaction(&format!("{side}-{round}-{i}-{c}"), c, "demo_request", at)
                    })
                })
                .collect()
        };
        for round in 0..10 {
            tokio::join!(app.apply(call("a", round)), app.apply(call("b", round)));
        }
        let stored = clm_scoring::store::entities::score::Entity::find()
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        for score in stored {
            let awards = clm_scoring::state_bytes::decode(&score.state)
                .unwrap()
                .rules
                .iter()
                .find(|r| r.rule_id == "demo_request")
                .map(|r| r.awards);
            assert_eq!(awards, Some(400), "{}", score.contact_id);
        }
        let explained = app.explain("c1").await;
        assert_eq!(explained.contributions[0].awards, 400);
    }
);

backend_tests!(merges_and_erasures_follow_the_contact, |db| async move {
    let app = TestApp::spawn(db).await;
    let first = vec![
        interaction("a1", "survivor", "demo_request", T0),
        interaction("b1", "duplicate", "trial_started", T0),
        interaction("x1", "erased", "demo_request", T0),
    ];
    app.apply(first.clone()).await;
    let second = vec![
        common::ContactEvent {
            event_id: "m1".into(),
            contact_id: "survivor".into(),
            occurred_at: Some(ts(T0)),
            kind: Some(common::contact_event::Kind::Merged(
                common::ContactsMerged {
                    duplicate_id: "duplicate".into(),
                },
            )),
        },
        common::ContactEvent {
            event_id: "z1".into(),
            contact_id: "erased".into(),
            occurred_at: Some(ts(T0)),
            kind: Some(common::contact_event::Kind::Erased(
                common::ContactErased {},
            )),
        },
    ];
    app.apply(second.clone()).await;
    assert!(
        close(app.score("survivor").await.total, 55.0),
        "the duplicate's points moved"
    );
    assert!(close(app.score("duplicate").await.total, 0.0));
    assert!(close(app.score("erased").await.total, 0.0));
    // Late events: for the duplicate they land on the survivor; for the erased contact
    // they are dropped.
    let third = vec![
        interaction("b2", "duplicate", "form_submit", T0),
        interaction("x2", "erased", "form_submit", T0),
    ];
    app.apply(third.clone()).await;
    assert!(close(app.score("survivor").await.total, 65.0));
    assert!(close(app.score("erased").await.total, 0.0));
    assert_eq!(app.ledger_rows().await, 3);

    // Every event delivered again, its contact merged or erased since: each is known.
    let all: Vec<common::ContactEvent> = [first, second, third].concat();
    let again = app.apply(all.clone()).await;
    assert_eq!((again.applied, again.duplicates), (0, all.len() as u64));
    assert!(close(app.score("survivor").await.total, 65.0));
    assert_eq!(app.ledger_rows().await, 3);
});

backend_tests!(
    an_interaction_of_a_contact_erased_in_the_same_call_stays_known,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let erased = common::ContactEvent {
            event_id: "z".into(),
            contact_id: "c1".into(),
            occurred_at: Some(ts(T0)),
            kind: Some(common::contact_event::Kind::Erased(
                common::ContactErased {},
            )),
        };
        let call = vec![
            interaction("before", "c1", "demo_request", T0),
            erased,
            interaction("after", "c1", "demo_request", T0),
            interaction("other", "c2", "demo_request", T0),
        ];
        let first = app.apply(call.clone()).await;
        assert_eq!((first.applied, first.duplicates), (4, 0));
        assert!(close(app.score("c1").await.total, 0.0));
        assert_eq!(app.ledger_rows().await, 1, "only c2's interaction counts");
        let again = app.apply(call).await;
        assert_eq!((again.applied, again.duplicates), (0, 4));
        assert_eq!(app.ledger_rows().await, 1);
    }
);

backend_tests!(batches_of_scores_keep_request_order, |db| async move {
    let app = TestApp::spawn(db).await;
    app.apply(vec![
        interaction("a", "c1", "demo_request", T0),
        interaction("b", "c2", "form_submit", T0),
    ])
    .await;
    let reply = app
        .client
        .clone()
        .batch_get_scores(pb::BatchGetScoresRequest {
            contact_ids: vec!["c2".into(), "none".into(), "c1".into()],
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let totals: Vec<(String, f64)> = reply
        .scores
        .into_iter()
        .map(|s| (s.contact_id, s.total))
        .collect();
    assert_eq!(
        totals,
        [
            ("c2".into(), 10.0),
            ("none".into(), 0.0),
            ("c1".into(), 30.0)
        ]
    );
    let too_many = app
        .client
        .clone()
        .batch_get_scores(pb::BatchGetScoresRequest {
            contact_ids: (0..=1000).map(|i| format!("c{i}")).collect(),
            model_id: String::new(),
        })
        .await;
    assert!(
        violated_fields(&expect_code(too_many, Code::InvalidArgument))
            .contains(&"contact_ids".to_owned())
    );
    let bad_ids = app
        .client
        .clone()
        .batch_get_scores(pb::BatchGetScoresRequest {
            contact_ids: vec!["c1".into(), "c2".into(), String::new(), "x".repeat(65)],
            model_id: String::new(),
        })
        .await;
    assert_eq!(
        violated_fields(&expect_code(bad_ids, Code::InvalidArgument)),
        ["contact_ids[2]"],
        "the first bad id is named by its position"
    );
    let unknown_model = app
        .client
        .clone()
        .get_score(pb::GetScoreRequest {
            contact_id: "c1".into(),
            model_id: "no-such-model".into(),
        })
        .await;
    expect_code(unknown_model, Code::NotFound);
    let foreign = app
        .client
        .clone()
        .get_score(as_tenant(
            "other",
            pb::GetScoreRequest {
                contact_id: "c1".into(),
                model_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .score
        .unwrap();
    assert!(close(foreign.total, 0.0), "another tenant sees nothing");
});

backend_tests!(
    rescore_and_simulate_replay_the_recorded_history,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let mut events = Vec::new();
        for c in 0..5 {
            events.push(interaction(
                &format!("d{c}"),
                &format!("c{c}"),
                "demo_request",
                T0,
            ));
            if c < 2 {
                events.push(interaction(
                    &format!("t{c}"),
                    &format!("c{c}"),
                    "trial_started",
                    T0,
                ));
            }
        }
        app.apply(events).await; // c0, c1: 55 (MQL); c2..c4: 30
        let mut model = app
            .client
            .clone()
            .get_scoring_model(pb::GetScoringModelRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        model.thresholds[0].points = 25.0;
        let simulated = app
            .client
            .clone()
            .simulate_scoring_model(pb::SimulateScoringModelRequest {
                model: Some(model.clone()),
                baseline_model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (simulated.contacts_scored, simulated.contacts_changed),
            (5, 3)
        );
        let moved = simulated
            .shifts
            .iter()
            .find(|s| s.from_band.is_empty() && s.to_band == "MQL")
            .unwrap();
        assert_eq!(moved.contacts, 3);
        assert!(
            close(app.score("c2").await.total, 30.0),
            "a simulation changes nothing"
        );

        // Double the demo request's points, then rescore: every ledger entry is re-derived.
        model
            .event_rules
            .iter_mut()
            .find(|r| r.id == "demo_request")
            .unwrap()
            .points = 60.0;
        let updated = app
            .client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(model),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["event_rules".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(updated.version, 2);
        let mut stream = app
            .client
            .clone()
            .rescore_all(pb::RescoreAllRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        while let Some(progress) = stream.message().await.unwrap() {
            last = Some(progress);
        }
        let last = last.unwrap();
        assert_eq!((last.done, last.total), (5, 5));
        let score = app.score("c2").await;
        assert!(close(score.total, 60.0));
        assert_eq!(score.model_version, 2);
        assert_eq!(score.band, "MQL");
    }
);
