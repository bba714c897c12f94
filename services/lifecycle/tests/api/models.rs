//! Stage models: custom stages and strict validation.

use tonic::Code;

use clm_proto::lifecycle::v1 as pb;

use crate::helpers::*;

fn stage(name: &str) -> pb::Stage {
    pb::Stage {
        name: name.into(),
        ..Default::default()
    }
}

fn rule(id: &str, to: &str, condition: &str) -> pb::EntryRule {
    pb::EntryRule {
        id: id.into(),
        to_stage: to.into(),
        from_stages: vec![],
        condition: condition.into(),
    }
}

fn custom() -> pb::StageModel {
    pb::StageModel {
        display_name: "Bank journey".into(),
        stages: vec![
            stage("approach"),
            stage("acquisition"),
            stage("development"),
            stage("retention"),
            stage("loyalty"),
        ],
        entry_rules: vec![
            rule("applied", "acquisition", r#"event = "form_submit""#),
            rule("first_product", "development", r#"event = "purchase""#),
            rule(
                "second_product",
                "retention",
                r#"count.purchase.365d >= "2""#,
            ),
            rule("promoter", "loyalty", r#"event = "referral""#),
        ],
        default: true,
        ..Default::default()
    }
}

backend_tests!(a_custom_model_gives_its_own_stages, |db| async move {
    let app = TestApp::spawn(&db).await;
    let created = app
        .client
        .clone()
        .create_stage_model(pb::CreateStageModelRequest {
            model: Some(custom()),
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert!(created.default);
    app.apply(vec![app.interaction("c1", "form_submit")]).await;
    assert_eq!(app.stage("c1").await, "acquisition");
    app.apply(vec![
        app.interaction("c1", "purchase"),
        app.interaction("c1", "purchase"),
    ])
    .await;
    assert_eq!(app.stage("c1").await, "retention");
    app.apply(vec![app.interaction("c1", "referral")]).await;
    let stages: Vec<String> = app
        .history("c1")
        .await
        .into_iter()
        .map(|h| h.stage)
        .collect();
    assert_eq!(
        stages,
        [
            "approach",
            "acquisition",
            "development",
            "retention",
            "loyalty"
        ]
    );
    // The built-in model still runs beside it.
    let builtin = app
        .client
        .clone()
        .get_contact_stage(pb::GetContactStageRequest {
            contact_id: "c1".into(),
            model_id: "default".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stage
        .unwrap();
    assert_eq!(builtin.stage, "loyalty");
});

/// A way to break a valid model.
pub type Breakage = Box<dyn Fn(&mut pb::StageModel)>;

backend_tests!(
    invalid_models_are_refused_and_change_nothing,
    |db| async move {
        let app = TestApp::spawn(&db).await;
        let before = app
            .client
            .clone()
            .get_stage_model(pb::GetStageModelRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        let cases: Vec<(&str, Breakage)> = vec![
            (
                "model.stages[1].name",
                Box::new(|m| m.stages[1].name = "approach".into()),
            ),
            (
                "model.entry_rules[0].to_stage",
                Box::new(|m| m.entry_rules[0].to_stage = "nowhere".into()),
            ),
            (
                "model.entry_rules[2].condition",
                Box::new(|m| m.entry_rules[2].condition = r#"count.purchase >= "2""#.into()),
            ),
            (
                "model.stages[4]",
                Box::new(|m| {
                    m.entry_rules.pop();
                }),
            ),
            (
                "model.stages[0].name",
                Box::new(|m| m.stages[0].name = "Approach Stage".into()),
            ),
            (
                "model.display_name",
                Box::new(|m| m.display_name = String::new()),
            ),
        ];
        for (field, break_it) in cases {
            let mut model = custom();
            break_it(&mut model);
            let refused = app
                .client
                .clone()
                .create_stage_model(pb::CreateStageModelRequest { model: Some(model) })
                .await;
            let fields = violated_fields(&expect_code(refused, Code::InvalidArgument));
            assert!(
                fields.contains(&field.to_owned()),
                "{field} not in {fields:?}"
            );
        }
        let after = app
            .client
            .clone()
            .get_stage_model(pb::GetStageModelRequest::default())
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!(after, before, "the default model is still the built-in one");
    }
);
