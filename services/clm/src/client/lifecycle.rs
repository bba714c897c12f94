//! `clm stage get|history|move`, `clm segments create|list|members`, `clm watch`.

use clm_proto::lifecycle::v1 as pb;

use super::{connect_lifecycle, explain, show_time, table};
use crate::cli::{ClientArgs, SegmentsCommand, StageCommand};
use crate::run::BoxError;

pub(crate) async fn stage(command: StageCommand) -> Result<(), BoxError> {
    match command {
        StageCommand::Get {
            client,
            contact,
            model,
        } => {
            let mut api = connect_lifecycle(&client).await?;
            let stage = api
                .get_contact_stage(pb::GetContactStageRequest {
                    contact_id: contact,
                    model_id: model,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .stage
                .unwrap_or_default();
            let mut rows = table::new(&["contact", "model", "stage", "since"]);
            rows.add_row(vec![
                stage.contact_id,
                stage.model_id,
                stage.stage,
                show_time(stage.entered_at.as_ref()),
            ]);
            println!("{rows}");
        }
        StageCommand::History {
            client,
            contact,
            model,
        } => {
            let mut api = connect_lifecycle(&client).await?;
            let history = api
                .list_stage_history(pb::ListStageHistoryRequest {
                    contact_id: contact,
                    model_id: model,
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&[
                "stage", "entered", "exited", "days", "cause", "event", "by", "reason",
            ]);
            for e in history.entries.into_iter().rev() {
                let days = e.time_in_stage.map_or(0.0, |d| d.seconds as f64 / 86_400.0);
                rows.add_row(vec![
                    e.stage,
                    show_time(e.entered_at.as_ref()),
                    show_time(e.exited_at.as_ref()),
                    format!("{days:.1}"),
                    e.cause,
                    e.event_id,
                    e.actor,
                    e.reason,
                ]);
            }
            println!("{rows}");
        }
        StageCommand::Move {
            client,
            contact,
            to,
            force,
            reason,
            actor,
            model,
        } => {
            let mut api = connect_lifecycle(&client).await?;
            let stage = api
                .transition_contact(pb::TransitionContactRequest {
                    contact_id: contact,
                    model_id: model,
                    to_stage: to,
                    r#override: force,
                    reason,
                    actor,
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .stage
                .unwrap_or_default();
            println!("{} is now in {}", stage.contact_id, stage.stage);
        }
    }
    Ok(())
}

pub(crate) async fn segments(command: SegmentsCommand) -> Result<(), BoxError> {
    match command {
        SegmentsCommand::Create {
            client,
            name,
            filter,
        } => {
            let mut api = connect_lifecycle(&client).await?;
            let segment = api
                .create_segment(pb::CreateSegmentRequest {
                    segment: Some(pb::Segment {
                        display_name: name,
                        filter,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner()
                .segment
                .unwrap_or_default();
            println!(
                "segment {} created with {} members",
                segment.id, segment.member_count
            );
        }
        SegmentsCommand::List { client } => {
            let mut api = connect_lifecycle(&client).await?;
            let list = api
                .list_segments(pb::ListSegmentsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .map_err(|s| explain(&s))?
                .into_inner();
            let mut rows = table::new(&["id", "name", "members", "filter"]);
            for s in list.segments {
                rows.add_row(vec![
                    s.id,
                    s.display_name,
                    s.member_count.to_string(),
                    s.filter,
                ]);
            }
            println!("{rows}");
        }
        SegmentsCommand::Members { client, id } => {
            let mut api = connect_lifecycle(&client).await?;
            let mut rows = table::new(&["contact", "member since"]);
            let mut token = String::new();
            loop {
                let page = api
                    .list_segment_members(pb::ListSegmentMembersRequest {
                        segment_id: id.clone(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await
                    .map_err(|s| explain(&s))?
                    .into_inner();
                for m in page.members {
                    rows.add_row(vec![m.contact_id, show_time(m.entered_at.as_ref())]);
                }
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            println!("{rows}");
        }
    }
    Ok(())
}

fn kind_of(name: &str) -> Result<i32, BoxError> {
    Ok(match name {
        "transition" => pb::LifecycleEventKind::Transition as i32,
        "segment_entered" => pb::LifecycleEventKind::SegmentEntered as i32,
        "segment_exited" => pb::LifecycleEventKind::SegmentExited as i32,
        "action" => pb::LifecycleEventKind::Action as i32,
        other => return Err(format!("unknown event kind {other:?}").into()),
    })
}

/// Prints events as they arrive, one line each, with the cursor to resume from.
pub(crate) async fn watch(
    client: ClientArgs,
    cursor: String,
    kinds: Vec<String>,
) -> Result<(), BoxError> {
    let kinds = kinds
        .iter()
        .map(|k| kind_of(k))
        .collect::<Result<Vec<_>, _>>()?;
    let mut api = connect_lifecycle(&client).await?;
    let mut stream = api
        .watch_lifecycle_events(pb::WatchLifecycleEventsRequest { cursor, kinds })
        .await
        .map_err(|s| explain(&s))?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(|s| explain(&s))? {
        let what = match pb::LifecycleEventKind::try_from(event.kind) {
            Ok(pb::LifecycleEventKind::Transition) => {
                format!("{} -> {}", event.from_stage, event.to_stage)
            }
            Ok(pb::LifecycleEventKind::SegmentEntered) => {
                format!("entered segment {}", event.segment_id)
            }
            Ok(pb::LifecycleEventKind::SegmentExited) => {
                format!("left segment {}", event.segment_id)
            }
            Ok(pb::LifecycleEventKind::Action) => format!("action {}", event.action),
            _ => "unknown event".to_owned(),
        };
        println!(
            "{} cursor={} contact={} {what} ({})",
            show_time(event.occurred_at.as_ref()),
            event.cursor,
            event.contact_id,
            event.cause
        );
    }
    Ok(())
}
