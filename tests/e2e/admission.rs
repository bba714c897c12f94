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
        let mut config = clm_contacts::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            db.data_dir().to_path_buf(),
        );
        config.database_url = db.database_url();
        // No scoring listens there: the relay's failures do not concern this test.
        config.scoring_addr = Some(clm_e2e::free_addr().to_string());
        config.serve.concurrency_limit = 1;
        config.serve.admission_wait = Duration::from_millis(50);
        let app = clm_contacts::Application::build(config).await.unwrap();
        let addr = app.local_addr();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let channel = clm_e2e::serving(addr, clm_contacts::SERVICE_NAME).await;
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
