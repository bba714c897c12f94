//! Scoring models: the default, creation, strict validation, versioned updates.

use tonic::Code;

use clm_proto::scoring::v1 as pb;

use crate::helpers::*;

/// A way to break a valid model.
pub type Breakage = Box<dyn Fn(&mut pb::ScoringModel)>;

fn rule(id: &str, kind: &str, points: f64) -> pb::EventRule {
    pb::EventRule {
        id: id.into(),
        interaction_type: kind.into(),
        points,
        ..Default::default()
    }
}

fn valid_model(name: &str) -> pb::ScoringModel {
    pb::ScoringModel {
        display_name: name.into(),
        event_rules: vec![
            rule("demo", "demo_request", 40.0),
            pb::EventRule {
                cap_count: 2,
                cap_window: Some(prost_types::Duration {
                    seconds: 7 * 86_400,
                    nanos: 0,
                }),
                half_life: Some(prost_types::Duration {
                    seconds: 30 * 86_400,
                    nanos: 0,
                }),
                property_condition: r#"url ~ "/docs""#.into(),
                ..rule("docs", "page_view", 2.0)
            },
        ],
        fit_rules: vec![pb::FitRule {
            id: "germany".into(),
            attribute: "country".into(),
            condition: r#"country = "DE""#.into(),
            points: 5.0,
        }],
        thresholds: vec![
            pb::Threshold {
                name: "MQL".into(),
                points: 40.0,
            },
            pb::Threshold {
                name: "SQL".into(),
                points: 80.0,
            },
        ],
        ..Default::default()
    }
}

backend_tests!(
    every_tenant_starts_with_the_default_model,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let list = app
            .client
            .clone()
            .list_scoring_models(pb::ListScoringModelsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.models.len(), 1);
        let default = &list.models[0];
        assert!(default.default);
        assert_eq!(default.id, "default");
        let bands: Vec<(String, f64)> = default
            .thresholds
            .iter()
            .map(|t| (t.name.clone(), t.points))
            .collect();
        assert_eq!(bands, [("MQL".into(), 50.0), ("SQL".into(), 100.0)]);
        let opens = default
            .event_rules
            .iter()
            .find(|r| r.id == "email_open")
            .unwrap();
        assert_eq!(opens.cap_count, 3);
        assert_eq!(opens.cap_window.unwrap().seconds, 7 * 86_400);
    }
);

backend_tests!(
    models_are_created_versioned_and_guarded_by_etags,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let created = app
            .client
            .clone()
            .create_scoring_model(pb::CreateScoringModelRequest {
                model: Some(valid_model("Enterprise")),
            })
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(created.version, 1);
        assert!(!created.default);
        let taken = app
            .client
            .clone()
            .create_scoring_model(pb::CreateScoringModelRequest {
                model: Some(valid_model("Enterprise")),
            })
            .await;
        expect_code(taken, Code::AlreadyExists);

        let mut change = created.clone();
        change.display_name = "Enterprise v2".into();
        change.thresholds[0].points = 30.0;
        let updated = app
            .client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(change.clone()),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.display_name, "Enterprise v2");
        assert!(
            close(updated.thresholds[0].points, 40.0),
            "only masked fields change"
        );

        let before = app.models_snapshot().await;
        let stale = app
            .client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(change.clone()), // carries version 1's etag
                update_mask: None,
            })
            .await;
        expect_code(stale, Code::Aborted);
        let unknown_path = app
            .client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(updated.clone()),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["version".into()],
                }),
            })
            .await;
        assert_eq!(
            violated_fields(&expect_code(unknown_path, Code::InvalidArgument)),
            ["update_mask"]
        );
        assert_eq!(app.models_snapshot().await, before);

        let v1 = app
            .client
            .clone()
            .get_scoring_model(pb::GetScoringModelRequest {
                id: created.id.clone(),
                version: 1,
            })
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!((v1.version, v1.display_name.as_str()), (1, "Enterprise"));

        // Making it the default moves the default.
        let mut make_default = updated.clone();
        make_default.default = true;
        app.client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(make_default),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["default".into()],
                }),
            })
            .await
            .unwrap();
        let default = app
            .client
            .clone()
            .get_scoring_model(pb::GetScoringModelRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(default.id, created.id);
    }
);

backend_tests!(
    invalid_models_name_every_offending_path_and_change_nothing,
    |db| async move {
        let app = TestApp::spawn(db).await;
        app.score("warm-up").await; // the default model exists now
        let before = app.models_snapshot().await;
        let cases: Vec<(Vec<&str>, Breakage)> = vec![
            (
                vec!["model.display_name"],
                Box::new(|m| m.display_name = " ".into()),
            ),
            (
                vec!["model.thresholds[1].points"],
                Box::new(|m| m.thresholds[1].points = 10.0),
            ),
            (vec!["model.thresholds"], Box::new(|m| m.thresholds.clear())),
            (
                vec!["model.event_rules[1].half_life"],
                Box::new(|m| {
                    m.event_rules[1].half_life = Some(prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    });
                }),
            ),
            (
                vec!["model.event_rules[1].cap_window"],
                Box::new(|m| m.event_rules[1].cap_window = None),
            ),
            (
                vec!["model.event_rules[0].cap_count"],
                Box::new(|m| m.event_rules[0].cap_window = m.event_rules[1].cap_window),
            ),
            (
                vec!["model.event_rules[1].property_condition"],
                Box::new(|m| m.event_rules[1].property_condition = r#"url ~ "/docs" AND"#.into()),
            ),
            (
                vec!["model.event_rules[1].id"],
                Box::new(|m| m.event_rules[1].id = "demo".into()),
            ),
            (
                vec!["model.event_rules[0].points"],
                Box::new(|m| m.event_rules[0].points = f64::INFINITY),
            ),
            (
                vec!["model.event_rules[0].interaction_type"],
                Box::new(|m| m.event_rules[0].interaction_type = "Demo Request".into()),
            ),
            (
                vec!["model.fit_rules[0].condition"],
                Box::new(|m| m.fit_rules[0].condition = r#"Country = "DE""#.into()),
            ),
            (
                vec!["model.thresholds[1].name", "model.event_rules[0].points"],
                Box::new(|m| {
                    m.thresholds[1].name = "MQL".into();
                    m.event_rules[0].points = 0.0;
                }),
            ),
        ];
        for (expected, break_it) in cases {
            let mut model = valid_model("Broken");
            break_it(&mut model);
            let created = app
                .client
                .clone()
                .create_scoring_model(pb::CreateScoringModelRequest {
                    model: Some(model.clone()),
                })
                .await;
            let mut fields = violated_fields(&expect_code(created, Code::InvalidArgument));
            fields.sort();
            let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            expected.sort();
            assert_eq!(fields, expected);
            // The same model is refused as a draft for simulation too.
            let simulated = app
                .client
                .clone()
                .simulate_scoring_model(pb::SimulateScoringModelRequest {
                    model: Some(model),
                    baseline_model_id: String::new(),
                })
                .await;
            expect_code(simulated, Code::InvalidArgument);
        }
        // An invalid update of the default model is refused the same way.
        let mut default = app
            .client
            .clone()
            .get_scoring_model(pb::GetScoringModelRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        default.thresholds[0].points = 500.0;
        let updated = app
            .client
            .clone()
            .update_scoring_model(pb::UpdateScoringModelRequest {
                model: Some(default),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["thresholds".into()],
                }),
            })
            .await;
        assert_eq!(
            violated_fields(&expect_code(updated, Code::InvalidArgument)),
            ["model.thresholds[1].points"]
        );
        assert_eq!(app.models_snapshot().await, before);
    }
);
