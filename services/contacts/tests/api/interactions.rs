//! RecordInteraction, RecordInteractions and ListInteractions.

use tonic::Code;

use clm_proto::common::v1::Money;
use clm_proto::contacts::v1 as pb;

use crate::helpers::*;

backend_tests!(record_is_idempotent_by_event_id, |db| async move {
    let app = TestApp::spawn(db).await;
    let ada = app.create("ada@example.com").await;
    let first = app
        .record(purchase("order-1", &ada.id, 49_900_000, 1))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let stored = first.interaction.unwrap();
    assert_eq!(stored.value.as_ref().unwrap().amount_micros, 49_900_000);
    assert!(stored.recorded_at.is_some());

    let mut repeat = purchase("order-1", &ada.id, 1, 0);
    repeat.channel = "changed".into();
    let second = app.record(repeat).await.unwrap();
    assert!(second.duplicate);
    let kept = second.interaction.unwrap();
    assert_eq!(
        kept.value.unwrap().amount_micros,
        49_900_000,
        "the first recording wins"
    );
    assert_eq!(kept.channel, "web");
    assert_eq!(app.snapshot().await.interactions.len(), 1);
});

backend_tests!(
    hostile_interactions_are_refused_and_change_nothing,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let ada = app.create("ada@example.com").await;
        app.record(purchase("ok", &ada.id, 1_000_000, 1))
            .await
            .unwrap();
        let before = app.snapshot().await;
        let base = purchase("bad", &ada.id, 1_000_000, 1);
        let cases: Vec<(&str, pb::Interaction)> = vec![
            (
                "interaction.value.amount_micros",
                pb::Interaction {
                    value: Some(Money {
                        amount_micros: -5,
                        currency: "EUR".into(),
                    }),
                    ..base.clone()
                },
            ),
            (
                "interaction.value.amount_micros",
                pb::Interaction {
                    value: Some(Money {
                        amount_micros: i64::MAX,
                        currency: "EUR".into(),
                    }),
                    ..base.clone()
                },
            ),
            (
                "interaction.value.currency",
                pb::Interaction {
                    value: Some(Money {
                        amount_micros: 5,
                        currency: "euro".into(),
                    }),
                    ..base.clone()
                },
            ),
            (
                "interaction.occurred_at",
                pb::Interaction {
                    occurred_at: Some(ago(-30)),
                    ..base.clone()
                },
            ),
            (
                "interaction.occurred_at",
                pb::Interaction {
                    occurred_at: Some(prost_types::Timestamp {
                        seconds: i64::MAX,
                        nanos: 0,
                    }),
                    ..base.clone()
                },
            ),
            (
                "interaction.occurred_at",
                pb::Interaction {
                    occurred_at: None,
                    ..base.clone()
                },
            ),
            (
                "interaction.type",
                pb::Interaction {
                    r#type: String::new(),
                    ..base.clone()
                },
            ),
            (
                "interaction.type",
                pb::Interaction {
                    r#type: "Purchase; DROP".into(),
                    ..base.clone()
                },
            ),
            (
                "interaction.event_id",
                pb::Interaction {
                    event_id: String::new(),
                    ..base.clone()
                },
            ),
            (
                "interaction.event_id",
                pb::Interaction {
                    event_id: "e".repeat(129),
                    ..base.clone()
                },
            ),
            (
                "interaction.contact_id",
                pb::Interaction {
                    contact_id: String::new(),
                    ..base.clone()
                },
            ),
            (
                "interaction.properties.score",
                pb::Interaction {
                    r#type: "nps_response".into(),
                    value: None,
                    ..base.clone()
                },
            ),
        ];
        for (field, interaction) in cases {
            expect_invalid(app.record(interaction).await, field);
        }
        expect_invalid(
            app.client
                .clone()
                .record_interaction(pb::RecordInteractionRequest { interaction: None })
                .await,
            "interaction",
        );
        expect_code(
            app.record(purchase("ghost", "no-such-contact", 1, 1)).await,
            Code::NotFound,
        );
        assert_eq!(app.snapshot().await, before);
    }
);

backend_tests!(
    streamed_batches_count_accepted_duplicates_and_rejections,
    |db| async move {
        let app = TestApp::spawn(db).await;
        let ada = app.create("ada@example.com").await;
        let grace = app.create("grace@example.com").await;
        app.record(purchase("already", &ada.id, 1, 5))
            .await
            .unwrap();
        let batches = vec![
            pb::RecordInteractionsRequest {
                interactions: vec![
                    purchase("a", &ada.id, 1, 3),       // 0 accepted
                    purchase("already", &ada.id, 1, 3), // 1 duplicate of a stored one
                    purchase("b", &grace.id, -1, 3),    // 2 rejected: negative
                    purchase("a", &ada.id, 1, 3),       // 3 duplicate within the call
                ],
            },
            pb::RecordInteractionsRequest {
                interactions: vec![
                    purchase("c", "nobody", 1, 2),  // 4 rejected: unknown contact
                    purchase("b", &grace.id, 2, 2), // 5 accepted (id of a rejected one)
                    purchase("a", &ada.id, 1, 2),   // 6 duplicate across messages
                ],
            },
            pb::RecordInteractionsRequest {
                interactions: vec![],
            },
        ];
        let reply = app
            .client
            .clone()
            .record_interactions(tokio_stream::iter(batches))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.accepted, 2);
        assert_eq!(reply.duplicates, 3);
        assert_eq!(reply.rejected_count, 2);
        let rejected: Vec<(u64, String)> = reply
            .rejected
            .into_iter()
            .map(|r| (r.index, r.field))
            .collect();
        assert_eq!(
            rejected,
            [
                (2, "interactions[2].value.amount_micros".to_owned()),
                (4, "interactions[4].contact_id".to_owned())
            ]
        );
        assert_eq!(app.snapshot().await.interactions.len(), 3);
    }
);

backend_tests!(a_message_over_the_batch_limit_is_refused, |db| async move {
    let app = TestApp::spawn(db).await;
    let ada = app.create("ada@example.com").await;
    let before = app.snapshot().await;
    let big = pb::RecordInteractionsRequest {
        interactions: (0..=clm_contacts::MAX_BATCH)
            .map(|i| purchase(&format!("e{i}"), &ada.id, 1, 1))
            .collect(),
    };
    let result = app
        .client
        .clone()
        .record_interactions(tokio_stream::iter(vec![big]))
        .await;
    expect_invalid(result, "interactions");
    assert_eq!(app.snapshot().await, before);
});

backend_tests!(
    a_stream_over_the_call_limit_stops_with_resource_exhausted,
    |db| async move {
        let app = TestApp::spawn_with(db, |c| c.max_stream_items = 15).await;
        let ada = app.create("ada@example.com").await;
        let message = |from: usize| pb::RecordInteractionsRequest {
            interactions: (from..from + 10)
                .map(|i| purchase(&format!("e{i}"), &ada.id, 1, 1))
                .collect(),
        };
        let result = app
            .client
            .clone()
            .record_interactions(tokio_stream::iter(vec![message(0), message(10)]))
            .await;
        let status = result.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("the first 10 were stored"),
            "{}",
            status.message()
        );
        // What came before the limit is kept; the caller resumes in a new call.
        assert_eq!(app.snapshot().await.interactions.len(), 10);
    }
);

backend_tests!(timeline_is_newest_first_and_pages, |db| async move {
    let app = TestApp::spawn(db).await;
    let ada = app.create("ada@example.com").await;
    let grace = app.create("grace@example.com").await;
    let mut batch = Vec::new();
    for day in 0..12 {
        batch.push(purchase(&format!("p{day:02}"), &ada.id, 1_000_000, day));
        let mut open = purchase(&format!("o{day:02}"), &ada.id, 0, day);
        open.r#type = "email_open".into();
        open.value = None;
        batch.push(open);
    }
    batch.push(purchase("grace-1", &grace.id, 1, 0));
    app.client
        .clone()
        .record_interactions(tokio_stream::iter(vec![pb::RecordInteractionsRequest {
            interactions: batch,
        }]))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_interactions(pb::ListInteractionsRequest {
                contact_id: ada.id.clone(),
                types: vec!["purchase".into()],
                page_size: 5,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.interactions
                .into_iter()
                .map(|i| (i.event_id, i.occurred_at.unwrap().seconds)),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<String> = (0..12).map(|d| format!("p{d:02}")).collect();
    assert_eq!(ids, expected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(seen.windows(2).all(|w| w[0].1 >= w[1].1), "newest first");

    let all = app
        .client
        .clone()
        .list_interactions(pb::ListInteractionsRequest {
            contact_id: ada.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.interactions.len(), 24);
    // A token of one contact's timeline does not page another's.
    let first = app
        .client
        .clone()
        .list_interactions(pb::ListInteractionsRequest {
            contact_id: ada.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let foreign = app
        .client
        .clone()
        .list_interactions(pb::ListInteractionsRequest {
            contact_id: grace.id.clone(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    expect_invalid(foreign, "page_token");
});

backend_tests!(concurrent_streams_all_land, |db| async move {
    let app = TestApp::spawn(db).await;
    let ada = app.create("ada@example.com").await;
    let mut streams = Vec::new();
    for s in 0..4 {
        let mut client = app.client.clone();
        let id = ada.id.clone();
        streams.push(tokio::spawn(async move {
            let messages: Vec<pb::RecordInteractionsRequest> = (0..5)
                .map(|b| pb::RecordInteractionsRequest {
                    interactions: (0..200)
                        .map(|i| purchase(&format!("s{s}-b{b}-{i}"), &id, 1, 1))
                        .collect(),
                })
                .collect();
            client
                .record_interactions(tokio_stream::iter(messages))
                .await
        }));
    }
    for stream in streams {
        let reply = stream
            .await
            .unwrap()
            .expect("no stream fails under concurrent writers")
            .into_inner();
        assert_eq!(
            (reply.accepted, reply.duplicates, reply.rejected_count),
            (1000, 0, 0)
        );
    }
    assert_eq!(app.snapshot().await.interactions.len(), 4000);
});
