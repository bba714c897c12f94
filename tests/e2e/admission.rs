//! Admission control on a real server: a call over its method's limit waits for the
//! admission wait, then is refused with RESOURCE_EXHAUSTED, while other methods go on.

use std::time::{Duration, Instant};

use clm_proto::contacts::v1 as pb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::{TestDatabase, backend_tests};

backend_tests!(
    a_call_over_its_methods_limit_is_refused_and_other_methods_are_served,
    |db: TestDatabase| async move {
        let shutdown = Shutdown::new();
        let serve = clm_runtime::ServeOptions {
            concurrency_limit: 1,
            admission_wait: Duration::from_millis(50),
            ..clm_runtime::ServeOptions::default()
        };
        // No scoring listens there: the relay's failures do not concern this test.
        let channel =
            clm_e2e::start_contacts_serving(&db, clm_e2e::free_addr(), serve, &shutdown).await;
        let mut client = ContactsServiceClient::new(channel);

        // An open RecordInteractions stream holds the method's one slot.
        let (sender, receiver) = tokio::sync::mpsc::channel::<pb::RecordInteractionsRequest>(1);
        let open = tokio::spawn({
            let mut client = client.clone();
            async move {
                client
                    .record_interactions(tokio_stream::wrappers::ReceiverStream::new(receiver))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;

        let started = Instant::now();
        let refused = client
            .record_interactions(tokio_stream::iter(
                Vec::<pb::RecordInteractionsRequest>::new(),
            ))
            .await
            .expect_err("a second stream is over the limit");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(50));

        // Another method has slots of its own.
        let contact = clm_e2e::create_contact(
            &mut client,
            pb::Contact {
                email: "admitted@example.com".into(),
                ..Default::default()
            },
        )
        .await;
        assert!(!contact.id.is_empty());

        // Once the first stream ends, its slot serves the next one.
        drop(sender);
        open.await.unwrap().expect("the first stream is served");
        client
            .record_interactions(tokio_stream::iter(
                Vec::<pb::RecordInteractionsRequest>::new(),
            ))
            .await
            .expect("the slot is free again");
        shutdown.trigger();
    }
);
