//! `clm score get|explain|history` and `clm models list|show|simulate`.

use clm_proto::scoring::v1 as pb;

use super::{connect_scoring, explain, show_time, table};
use crate::cli::{ModelsCommand, ScoreCommand};
use crate::run::BoxError;

pub(crate) async fn score(command: ScoreCommand) -> Result<(), BoxError> {
    match command {
        ScoreCommand::Get {
            client,
            contact,
            model,
        } => {
            let mut api = connect_scoring(&client).await?;
            let score = api
                .get_score(pb::GetScoreRequest {
                    contact_id: contact,
                    model_id: model,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .score
                .unwrap_or_default();
            print_scores(&[score]);
        }
        ScoreCommand::Explain {
            client,
            contact,
            model,
        } => {
            let mut api = connect_scoring(&client).await?;
            let reply = api
                .explain_score(pb::ExplainScoreRequest {
                    contact_id: contact,
                    model_id: model,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            print_scores(&[reply.score.unwrap_or_default()]);
            let mut rows = table::new(&["rule", "kind", "awards", "raw points", "points now"]);
            for c in reply.contributions {
                rows.add_row(vec![
                    c.rule_id,
                    c.rule_kind,
                    c.awards.to_string(),
                    format!("{:.2}", c.raw_points),
                    format!("{:.2}", c.points),
                ]);
            }
            println!("{rows}");
        }
        ScoreCommand::History {
            client,
            contact,
            model,
            page_size,
        } => {
            let mut api = connect_scoring(&client).await?;
            let reply = api
                .list_score_history(pb::ListScoreHistoryRequest {
                    contact_id: contact,
                    model_id: model,
                    page_size,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&["occurred_at", "rule", "points", "band reached", "event"]);
            for e in reply.entries {
                rows.add_row(vec![
                    show_time(e.occurred_at.as_ref()),
                    e.rule_id,
                    format!("{:+.2}", e.points),
                    e.band_after,
                    e.event_id,
                ]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}

fn print_scores(scores: &[pb::Score]) {
    let mut rows = table::new(&[
        "contact",
        "model",
        "total",
        "fit",
        "engagement",
        "band",
        "version",
    ]);
    for s in scores {
        rows.add_row(vec![
            s.contact_id.clone(),
            s.model_id.clone(),
            format!("{:.2}", s.total),
            format!("{:.2}", s.fit),
            format!("{:.2}", s.engagement),
            s.band.clone(),
            s.model_version.to_string(),
        ]);
    }
    println!("{rows}");
}

pub(crate) async fn models(command: ModelsCommand) -> Result<(), BoxError> {
    match command {
        ModelsCommand::List { client } => {
            let mut api = connect_scoring(&client).await?;
            let reply = api
                .list_scoring_models(pb::ListScoringModelsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&[
                "id",
                "name",
                "default",
                "version",
                "rules",
                "thresholds",
                "updated",
            ]);
            for m in reply.models {
                let thresholds: Vec<String> = m
                    .thresholds
                    .iter()
                    .map(|t| format!("{} {}", t.name, t.points))
                    .collect();
                rows.add_row(vec![
                    m.id,
                    m.display_name,
                    m.default.to_string(),
                    m.version.to_string(),
                    (m.event_rules.len() + m.fit_rules.len()).to_string(),
                    thresholds.join(", "),
                    show_time(m.updated_at.as_ref()),
                ]);
            }
            println!("{rows}");
        }
        ModelsCommand::Show {
            client,
            id,
            model_version,
        } => {
            let mut api = connect_scoring(&client).await?;
            let model = api
                .get_scoring_model(pb::GetScoringModelRequest {
                    id,
                    version: model_version,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .model
                .unwrap_or_default();
            println!(
                "{} ({}), version {}",
                model.display_name, model.id, model.version
            );
            let mut rules =
                table::new(&["rule", "type", "condition", "points", "cap", "half-life"]);
            for r in &model.event_rules {
                let cap = match (&r.cap_window, r.cap_count) {
                    (Some(w), n) if n > 0 => format!("{n} per {}", days(w.seconds)),
                    _ => String::new(),
                };
                let half_life = r
                    .half_life
                    .as_ref()
                    .map(|h| days(h.seconds))
                    .unwrap_or_default();
                rules.add_row(vec![
                    r.id.clone(),
                    r.interaction_type.clone(),
                    r.property_condition.clone(),
                    format!("{:+}", r.points),
                    cap,
                    half_life,
                ]);
            }
            for r in &model.fit_rules {
                let condition = if r.condition.is_empty() {
                    format!("{} is set", r.attribute)
                } else {
                    r.condition.clone()
                };
                rules.add_row(vec![
                    r.id.clone(),
                    "(fit)".into(),
                    condition,
                    format!("{:+}", r.points),
                    String::new(),
                    String::new(),
                ]);
            }
            println!("{rules}");
            let mut thresholds = table::new(&["band", "points"]);
            for t in &model.thresholds {
                thresholds.add_row(vec![t.name.clone(), t.points.to_string()]);
            }
            println!("{thresholds}");
        }
        ModelsCommand::Simulate {
            client,
            from,
            thresholds,
            points,
        } => {
            let mut api = connect_scoring(&client).await?;
            let mut model = api
                .get_scoring_model(pb::GetScoringModelRequest {
                    id: from.clone(),
                    version: 0,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .model
                .unwrap_or_default();
            for (name, value) in thresholds {
                match model.thresholds.iter_mut().find(|t| t.name == name) {
                    Some(t) => t.points = value,
                    None => model.thresholds.push(pb::Threshold {
                        name,
                        points: value,
                    }),
                }
            }
            for (rule, value) in points {
                if let Some(r) = model.event_rules.iter_mut().find(|r| r.id == rule) {
                    r.points = value;
                } else if let Some(r) = model.fit_rules.iter_mut().find(|r| r.id == rule) {
                    r.points = value;
                } else {
                    return Err(format!("the model has no rule {rule:?}").into());
                }
            }
            let reply = api
                .simulate_scoring_model(pb::SimulateScoringModelRequest {
                    model: Some(model),
                    baseline_model_id: from,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&["from band", "to band", "contacts"]);
            for s in reply.shifts {
                rows.add_row(vec![
                    band(&s.from_band),
                    band(&s.to_band),
                    s.contacts.to_string(),
                ]);
            }
            println!("{rows}");
            println!(
                "{} contacts scored, {} would change band",
                reply.contacts_scored, reply.contacts_changed
            );
        }
    }
    Ok(())
}

fn band(name: &str) -> String {
    if name.is_empty() {
        "(none)".into()
    } else {
        name.to_owned()
    }
}

fn days(seconds: i64) -> String {
    let days = seconds as f64 / 86_400.0;
    if days.fract() == 0.0 {
        format!("{days} d")
    } else {
        format!("{days:.2} d")
    }
}
