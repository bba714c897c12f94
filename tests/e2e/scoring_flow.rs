//! Interactions recorded at contacts become scores at scoring: exactly once, and nothing
//! lost while scoring is down.

use std::time::{Duration, Instant};

use sea_orm::{EntityTrait, PaginatorTrait};

use clm_contacts::store::entities::contact;
use clm_e2e::{eventually, free_addr, start_contacts, start_scoring};
use clm_proto::contacts::v1 as cpb;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::scoring::v1 as spb;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::{TestDatabase, backend_tests};

fn now_minus(days: i64) -> prost_types::Timestamp {
    let t = chrono::Utc::now() - chrono::Duration::days(days);
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn interaction(event: &str, contact: &str, kind: &str) -> cpb::Interaction {
    cpb::Interaction {
        event_id: event.into(),
        contact_id: contact.into(),
        r#type: kind.into(),
        occurred_at: Some(now_minus(0)),
        ..Default::default()
    }
}

async fn create(
    contacts: &mut ContactsServiceClient<tonic::transport::Channel>,
    email: &str,
    title: &str,
) -> String {
    clm_e2e::create_contact(
        contacts,
        cpb::Contact {
            email: email.into(),
            job_title: title.into(),
            company: "Acme".into(),
            ..Default::default()
        },
    )
    .await
    .id
}

backend_tests!(
    recorded_interactions_become_explainable_scores,
    |db| async move {
        let shutdown = Shutdown::new();
        let scoring_addr = free_addr();
        let scoring = start_scoring(&db, scoring_addr, &shutdown).await;
        let mut contacts =
            ContactsServiceClient::new(start_contacts(&db, scoring_addr, &shutdown).await);
        let mut scores = ScoringServiceClient::new(scoring);

        let ada = create(&mut contacts, "ada@example.com", "CTO").await;
        let acknowledged = Instant::now();
        contacts
            .record_interactions(tokio_stream::iter(vec![cpb::RecordInteractionsRequest {
                interactions: vec![
                    interaction("e1", &ada, "demo_request"),
                    interaction("e2", &ada, "webinar_attended"),
                    interaction("e1", &ada, "demo_request"), // the same event twice
                ],
            }]))
            .await
            .unwrap();
        // Fit 15 (CTO) + 5 (company) + demo 30 + webinar 15 = 65.
        let score = eventually(Duration::from_secs(20), || {
            let mut scores = scores.clone();
            let ada = ada.clone();
            async move {
                let score = scores
                    .get_score(spb::GetScoreRequest {
                        contact_id: ada,
                        model_id: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .score?;
                // Decay runs on the wall clock: allow for the milliseconds since occurrence.
                ((score.total - 65.0).abs() < 0.01).then_some(score)
            }
        })
        .await;
        eprintln!(
            "score visible {} ms after RecordInteractions returned",
            acknowledged.elapsed().as_millis()
        );
        assert_eq!(score.band, "MQL");
        let explained = scores
            .explain_score(spb::ExplainScoreRequest {
                contact_id: ada.clone(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let sum: f64 = explained.contributions.iter().map(|c| c.points).sum();
        assert!((sum - explained.score.unwrap().total).abs() < 1e-6);
        let history = scores
            .list_score_history(spb::ListScoreHistoryRequest {
                contact_id: ada.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(history.entries.len(), 2, "one ledger entry per event");

        // Erasure at contacts reaches scoring too.
        contacts
            .delete_contact(cpb::DeleteContactRequest {
                id: ada.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        eventually(Duration::from_secs(20), || {
            let mut scores = scores.clone();
            let ada = ada.clone();
            async move {
                let score = scores
                    .get_score(spb::GetScoreRequest {
                        contact_id: ada,
                        model_id: String::new(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .score?;
                (score.total == 0.0).then_some(())
            }
        })
        .await;
        shutdown.trigger();
    }
);

/// Records `interactions` in one stream, 250 to a message; returns how many were accepted.
async fn record(
    contacts: &mut ContactsServiceClient<tonic::transport::Channel>,
    interactions: Vec<cpb::Interaction>,
) -> u64 {
    let batches: Vec<cpb::RecordInteractionsRequest> = interactions
        .chunks(250)
        .map(|chunk| cpb::RecordInteractionsRequest {
            interactions: chunk.to_vec(),
        })
        .collect();
    contacts
        .record_interactions(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner()
        .accepted
}

/// Scoring's database, once contacts' outbox to scoring is empty.
async fn scoring_db_once_drained(db: &TestDatabase) -> sea_orm::DatabaseConnection {
    let contacts_db = clm_store::connect("contacts", db.location()).await.unwrap();
    eventually(Duration::from_secs(60), || {
        let db = contacts_db.clone();
        async move { (clm_outbox::stats(&db, "scoring").await.ok()?.depth == 0).then_some(()) }
    })
    .await;
    clm_store::connect("scoring", db.location()).await.unwrap()
}

backend_tests!(nothing_is_lost_while_scoring_is_down, |db| async move {
    let shutdown = Shutdown::new();
    let scoring_addr = free_addr(); // nothing listens here yet
    let mut contacts =
        ContactsServiceClient::new(start_contacts(&db, scoring_addr, &shutdown).await);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(create(&mut contacts, &format!("p{i}@example.com"), "").await);
    }
    let interactions = (0..1000)
        .map(|n| interaction(&format!("i{n}"), &ids[n % 10], "form_submit"))
        .collect();
    assert_eq!(
        record(&mut contacts, interactions).await,
        1000,
        "contacts accepts writes while scoring is down"
    );

    let contacts_db = clm_store::connect("contacts", db.location()).await.unwrap();
    let waiting = clm_outbox::stats(&contacts_db, "scoring").await.unwrap();
    assert_eq!(waiting.depth, 1010, "every event waits in the outbox");
    assert_eq!(
        contact::Entity::find().count(&contacts_db).await.unwrap(),
        10
    );

    let mut scores = ScoringServiceClient::new(start_scoring(&db, scoring_addr, &shutdown).await);
    let scoring_db = scoring_db_once_drained(&db).await;
    use clm_scoring::store::entities::{applied_event, history, ledger};
    assert_eq!(
        history::Entity::find().count(&scoring_db).await.unwrap(),
        1000,
        "each interaction recorded by its history row"
    );
    assert_eq!(
        applied_event::Entity::find()
            .count(&scoring_db)
            .await
            .unwrap(),
        10,
        "each creation recorded by its id"
    );
    assert_eq!(
        ledger::Entity::find().count(&scoring_db).await.unwrap(),
        1000,
        "each interaction applied once"
    );
    let all = scores
        .batch_get_scores(spb::BatchGetScoresRequest {
            contact_ids: ids.clone(),
            model_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for score in all.scores {
        // 100 form submissions of 10 points each (no cap), just recorded: hardly any decay.
        // Plus 5 fit points for the company.
        assert!((score.total - 1005.0).abs() < 0.5, "{score:?}");
    }
    shutdown.trigger();
});

backend_tests!(
    a_backlog_heavier_than_one_request_reaches_scoring,
    |db| async move {
        let shutdown = Shutdown::new();
        let scoring_addr = free_addr(); // nothing listens here yet
        let mut contacts =
            ContactsServiceClient::new(start_contacts(&db, scoring_addr, &shutdown).await);
        let id = create(&mut contacts, "heavy@example.com", "").await;
        // 2,000 interactions of ~4 KB wait in the outbox: 8 MB, one claim's worth, twice
        // the largest request scoring takes.
        let interactions = (0..2000)
            .map(|n| cpb::Interaction {
                properties: (0..4)
                    .map(|k| (format!("note_{k}"), "x".repeat(1000)))
                    .collect(),
                ..interaction(&format!("h{n}"), &id, "page_view")
            })
            .collect();
        assert_eq!(record(&mut contacts, interactions).await, 2000);

        start_scoring(&db, scoring_addr, &shutdown).await;
        let scoring_db = scoring_db_once_drained(&db).await;
        use clm_scoring::store::entities::history;
        assert_eq!(
            history::Entity::find().count(&scoring_db).await.unwrap(),
            2000,
            "every interaction applied"
        );
        shutdown.trigger();
    }
);

/// Delivers to the real scoring service but reports failure after the first `lose`
/// successful calls' replies, as if the acknowledgement was lost on the way back.
struct LosingAcks {
    client: ScoringServiceClient<tonic::transport::Channel>,
    lose: std::sync::atomic::AtomicU32,
}

#[tonic::async_trait]
impl clm_outbox::Deliver for LosingAcks {
    async fn deliver(
        &self,
        tenant: &str,
        batch: &[clm_outbox::Message],
    ) -> Result<(), clm_outbox::DeliveryError> {
        use prost::Message;
        let events = batch
            .iter()
            .map(|m| clm_proto::common::v1::ContactEvent::decode(m.payload.as_slice()).unwrap())
            .collect();
        let mut request = tonic::Request::new(spb::ApplyInteractionsRequest { events });
        request
            .metadata_mut()
            .insert("x-tenant-id", tenant.parse().unwrap());
        self.client
            .clone()
            .apply_interactions(request)
            .await
            .map_err(|s| clm_outbox::DeliveryError(s.to_string()))?;
        let lose = &self.lose;
        if lose.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            lose.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            return Err(clm_outbox::DeliveryError(
                "applied, acknowledgement lost".into(),
            ));
        }
        Ok(())
    }
}

backend_tests!(
    a_relay_retrying_after_a_lost_acknowledgement_applies_once,
    |db| async move {
        let shutdown = Shutdown::new();
        let scoring_addr = free_addr();
        let scoring = start_scoring(&db, scoring_addr, &shutdown).await;
        // Contacts with no scoring address runs no relay of its own: the test drives one.
        let mut config = clm_contacts::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            db.data_dir().to_path_buf(),
        );
        config.database_url = db.database_url();
        let app = clm_contacts::Application::build(config).await.unwrap();
        let addr = app.local_addr();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let mut contacts =
            ContactsServiceClient::new(clm_e2e::serving(addr, clm_contacts::SERVICE_NAME).await);
        let ada = create(&mut contacts, "ada@example.com", "").await;
        let interactions: Vec<cpb::Interaction> = (0..300)
            .map(|i| interaction(&format!("e{i}"), &ada, "email_click"))
            .collect();
        contacts
            .record_interactions(tokio_stream::iter(vec![cpb::RecordInteractionsRequest {
                interactions,
            }]))
            .await
            .unwrap();

        let contacts_db = clm_store::connect("contacts", db.location()).await.unwrap();
        let options = clm_outbox::RelayOptions {
            batch_size: 100,
            ..clm_e2e::quick_relay()
        };
        let delivery = LosingAcks {
            client: ScoringServiceClient::new(scoring),
            lose: std::sync::atomic::AtomicU32::new(2),
        };
        let relay = clm_outbox::Relay::new(
            contacts_db.clone(),
            "scoring",
            delivery,
            clm_outbox::Wake::new(),
            options,
        );
        let mut failed = 0;
        for _ in 0..200 {
            let turn = relay.turn().await.unwrap();
            failed += turn.failed;
            if clm_outbox::stats(&contacts_db, "scoring")
                .await
                .unwrap()
                .depth
                == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert!(
            failed >= 2,
            "acknowledgements were lost and the batches sent again"
        );
        assert_eq!(
            clm_outbox::stats(&contacts_db, "scoring")
                .await
                .unwrap()
                .depth,
            0
        );
        let scoring_db = clm_store::connect("scoring", db.location()).await.unwrap();
        use clm_scoring::store::entities::ledger;
        assert_eq!(
            ledger::Entity::find().count(&scoring_db).await.unwrap(),
            300,
            "one ledger entry per interaction"
        );
        shutdown.trigger();
    }
);
