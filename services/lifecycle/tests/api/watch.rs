//! WatchLifecycleEvents: a consumer that reconnects misses nothing and sees nothing twice.

use std::time::Duration;

use clm_proto::lifecycle::v1 as pb;

use crate::helpers::*;

backend_tests!(
    a_watcher_resuming_from_its_cursor_gets_exactly_the_rest,
    |db| async move {
        let app = std::sync::Arc::new(TestApp::spawn(&db).await);
        let writer = {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    let contact = format!("c{i}");
                    app.apply(vec![
                        app.interaction(&contact, "email_open"),
                        app.interaction(&contact, "purchase"),
                    ])
                    .await;
                }
            })
        };
        let mut first = app
            .client
            .clone()
            .watch_lifecycle_events(pb::WatchLifecycleEventsRequest {
                cursor: "0".into(),
                kinds: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = Vec::new();
        while seen.len() < 15 {
            let event = first.message().await.unwrap().unwrap();
            seen.push(event.cursor);
        }
        drop(first); // disconnect while the writer keeps writing
        let resume_from = seen.last().unwrap().clone();
        writer.await.unwrap();
        let mut second = app
            .client
            .clone()
            .watch_lifecycle_events(pb::WatchLifecycleEventsRequest {
                cursor: resume_from,
                kinds: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        while let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_millis(500), second.message()).await
        {
            seen.push(event.cursor);
        }
        let all: Vec<String> = app
            .all_events()
            .await
            .into_iter()
            .map(|e| e.cursor)
            .collect();
        assert_eq!(all.len(), 60, "two transitions per contact");
        assert_eq!(seen, all, "none missing, none repeated, in order");

        // Filtering by kind, and refusing a cursor that was never given out.
        let mut actions_only = app
            .client
            .clone()
            .watch_lifecycle_events(pb::WatchLifecycleEventsRequest {
                cursor: "0".into(),
                kinds: vec![pb::LifecycleEventKind::Action as i32],
            })
            .await
            .unwrap()
            .into_inner();
        let none = tokio::time::timeout(Duration::from_millis(300), actions_only.message()).await;
        assert!(none.is_err(), "no actions were fired");
        let bad = app
            .client
            .clone()
            .watch_lifecycle_events(pb::WatchLifecycleEventsRequest {
                cursor: "not-a-cursor".into(),
                kinds: vec![],
            })
            .await;
        assert_eq!(
            violated_fields(&expect_code(bad, tonic::Code::InvalidArgument)),
            ["cursor"]
        );
    }
);
