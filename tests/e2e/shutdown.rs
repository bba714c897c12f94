//! Graceful shutdown: once it begins, health reports NOT_SERVING at once, a call already in
//! flight still runs to its end within the grace period, and what it wrote is kept.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use clm_proto::contacts::v1 as pb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::{TestDatabase, backend_tests};

fn batch(contact: &str, from: usize) -> pb::RecordInteractionsRequest {
    let now = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp(),
        nanos: 0,
    };
    pb::RecordInteractionsRequest {
        interactions: (from..from + 50)
            .map(|n| pb::Interaction {
                event_id: format!("drain-{n}"),
                contact_id: contact.to_owned(),
                r#type: "page_view".into(),
                occurred_at: Some(now),
                ..Default::default()
            })
            .collect(),
    }
}

backend_tests!(
    a_call_in_flight_when_shutdown_begins_finishes_and_its_writes_are_kept,
    |db: TestDatabase| async move {
        let shutdown = Shutdown::new();
        // No scoring listens there: the relay's failures do not concern this test.
        let channel = clm_e2e::start_contacts(&db, clm_e2e::free_addr(), &shutdown).await;
        let mut client = ContactsServiceClient::new(channel.clone());
        let contact = clm_e2e::create_contact(
            &mut client,
            pb::Contact {
                email: "drain@example.com".into(),
                ..Default::default()
            },
        )
        .await
        .id;
        let mut watch = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest {
                service: clm_contacts::SERVICE_NAME.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let status = |m: Option<tonic_health::pb::HealthCheckResponse>| m.unwrap().status;
        assert_eq!(
            status(watch.message().await.unwrap()),
            ServingStatus::Serving as i32
        );

        // A RecordInteractions stream is open, its first batch sent, when shutdown begins.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        sender.send(batch(&contact, 0)).await.unwrap();
        let call = tokio::spawn(async move {
            client
                .record_interactions(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        shutdown.trigger();
        let now = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("health answers during the drain")
            .unwrap();
        assert_eq!(status(now), ServingStatus::NotServing as i32);
        drop(watch);

        // The call goes on: its second batch arrives after shutdown began.
        sender.send(batch(&contact, 50)).await.unwrap();
        drop(sender);
        let reply = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call in flight finishes within the grace period")
            .unwrap()
            .expect("the call in flight succeeds")
            .into_inner();
        assert_eq!((reply.accepted, reply.rejected_count), (100, 0));

        let db = clm_store::connect("contacts", db.location()).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM interactions",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.try_get_by_index::<i64>(0).unwrap(),
            100,
            "every acknowledged write kept"
        );
    }
);
