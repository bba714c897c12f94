//! A contact's whole journey, driven only through contacts' RecordInteraction: from
//! awareness to loyalty, with every transition's cause.

use std::time::Duration;

use clm_e2e::{eventually, start_chain};
use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::lifecycle::v1 as lpb;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::backend_tests;
use tonic::transport::Channel;

async fn record(
    contacts: &mut ContactsServiceClient<Channel>,
    contact: &str,
    event: &str,
    kind: &str,
    days_ago: i64,
) {
    let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
    contacts
        .record_interaction(cpb::RecordInteractionRequest {
            interaction: Some(cpb::Interaction {
                event_id: event.into(),
                contact_id: contact.into(),
                r#type: kind.into(),
                occurred_at: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
                value: (kind == "purchase").then(|| clm_proto::common::v1::Money {
                    amount_micros: 99_000_000,
                    currency: "EUR".into(),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

async fn stage_becomes(lifecycle: &LifecycleServiceClient<Channel>, contact: &str, stage: &str) {
    eventually(Duration::from_secs(30), || {
        let mut lifecycle = lifecycle.clone();
        let contact = contact.to_owned();
        let stage = stage.to_owned();
        async move {
            let current = lifecycle
                .get_contact_stage(lpb::GetContactStageRequest {
                    contact_id: contact,
                    model_id: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .stage?;
            (current.stage == stage).then_some(())
        }
    })
    .await;
}

backend_tests!(a_journey_from_awareness_to_loyalty, |db| async move {
    let shutdown = Shutdown::new();
    let (contacts, _scoring, lifecycle) = start_chain(&db, &shutdown).await;
    let mut contacts = ContactsServiceClient::new(contacts);
    let lifecycle = LifecycleServiceClient::new(lifecycle);
    let ada = clm_e2e::create_contact(
        &mut contacts,
        cpb::Contact {
            email: "ada@example.com".into(),
            ..Default::default()
        },
    )
    .await
    .id;
    stage_becomes(&lifecycle, &ada, "awareness").await;
    record(&mut contacts, &ada, "w1", "webinar_attended", 60).await;
    stage_becomes(&lifecycle, &ada, "consideration").await;
    record(&mut contacts, &ada, "d1", "demo_request", 50).await;
    record(&mut contacts, &ada, "t1", "trial_started", 50).await; // MQL by now
    record(&mut contacts, &ada, "p1", "purchase", 40).await;
    stage_becomes(&lifecycle, &ada, "conversion").await;
    record(&mut contacts, &ada, "p2", "purchase", 10).await;
    stage_becomes(&lifecycle, &ada, "retention").await;
    record(&mut contacts, &ada, "r1", "referral", 1).await;
    stage_becomes(&lifecycle, &ada, "loyalty").await;

    let history = lifecycle
        .clone()
        .list_stage_history(lpb::ListStageHistoryRequest {
            contact_id: ada.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<(String, String)> = history
        .entries
        .iter()
        .rev()
        .map(|e| (e.stage.clone(), e.cause.clone()))
        .collect();
    assert_eq!(
        path,
        [
            ("awareness".into(), "new_contact".into()),
            ("consideration".into(), "rule:engaged".into()),
            ("conversion".into(), "rule:first_purchase".into()),
            ("retention".into(), "rule:repeat_purchase".into()),
            ("loyalty".into(), "rule:advocate".into()),
        ]
    );
    let last = &history.entries[0];
    assert_eq!(last.event_id, "r1");
    assert!(last.exited_at.is_none());
    assert!(history.entries[1].exited_at.is_some());
    assert!(history.entries[1].time_in_stage.is_some());
    shutdown.trigger();
});
