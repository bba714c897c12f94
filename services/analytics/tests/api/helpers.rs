//! Starts analytics with a fixed clock and builds the facts tests ingest.

use std::sync::Arc;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use clm_proto::analytics::v1 as pb;
use clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use clm_proto::common::v1 as common;
use clm_runtime::Shutdown;
use clm_testkit::TestDatabase;

pub use clm_testkit::backend_tests;

/// One day in micros.
pub const DAY: i64 = 86_400_000_000;
/// "Now" in these tests: day 100, noon.
pub const NOW: i64 = 100 * DAY + DAY / 2;

pub struct TestApp {
    pub client: AnalyticsServiceClient<Channel>,
    shutdown: Shutdown,
    counter: std::sync::atomic::AtomicU64,
}

impl TestApp {
    pub async fn spawn(database: &TestDatabase) -> Self {
        let mut config = clm_analytics::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            database.data_dir().to_path_buf(),
        );
        config.database_url = database.database_url();
        config.clock = Arc::new(|| NOW);
        let app = clm_analytics::Application::build(config)
            .await
            .expect("analytics starts");
        let addr = app.local_addr();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: AnalyticsServiceClient::new(channel),
            shutdown,
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn id(&self) -> String {
        format!(
            "e{}",
            self.counter
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        )
    }

    pub async fn ingest(
        &self,
        events: Vec<common::ContactEvent>,
    ) -> pb::IngestInteractionsResponse {
        self.client
            .clone()
            .ingest_interactions(pb::IngestInteractionsRequest { events })
            .await
            .expect("ingest")
            .into_inner()
    }

    /// A contact with a first-touch source and campaign.
    pub fn contact(&self, contact: &str, source: &str, campaign: &str) -> common::ContactEvent {
        common::ContactEvent {
            event_id: self.id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(0)),
            kind: Some(common::contact_event::Kind::Upserted(
                common::ContactUpserted {
                    attributes: [
                        ("source".to_owned(), source.to_owned()),
                        ("campaign".to_owned(), campaign.to_owned()),
                    ]
                    .into(),
                    created_at: Some(ts(0)),
                    created: true,
                },
            )),
        }
    }

    /// An interaction of `kind` on `day` (at 10:00 UTC) worth `cents` EUR.
    pub fn interaction(
        &self,
        contact: &str,
        kind: &str,
        day: i64,
        cents: i64,
    ) -> common::ContactEvent {
        self.interaction_with(contact, kind, day, cents, &[])
    }

    pub fn interaction_with(
        &self,
        contact: &str,
        kind: &str,
        day: i64,
        cents: i64,
        props: &[(&str, &str)],
    ) -> common::ContactEvent {
        common::ContactEvent {
            event_id: self.id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(day * DAY + 10 * 3_600_000_000)),
            kind: Some(common::contact_event::Kind::Interaction(
                common::InteractionRecorded {
                    r#type: kind.into(),
                    value: (cents > 0).then(|| common::Money {
                        amount_micros: cents * 10_000,
                        currency: "EUR".into(),
                    }),
                    properties: props
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                },
            )),
        }
    }

    pub fn nps(&self, contact: &str, day: i64, score: i32) -> common::ContactEvent {
        self.interaction_with(
            contact,
            "nps_response",
            day,
            0,
            &[("score", &score.to_string())],
        )
    }

    pub fn erased(&self, contact: &str) -> common::ContactEvent {
        common::ContactEvent {
            event_id: self.id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(NOW)),
            kind: Some(common::contact_event::Kind::Erased(
                common::ContactErased {},
            )),
        }
    }

    /// `duplicate` merged into `survivor`.
    pub fn merged(&self, survivor: &str, duplicate: &str) -> common::ContactEvent {
        common::ContactEvent {
            event_id: self.id(),
            contact_id: survivor.into(),
            occurred_at: Some(ts(NOW)),
            kind: Some(common::contact_event::Kind::Merged(
                common::ContactsMerged {
                    duplicate_id: duplicate.into(),
                },
            )),
        }
    }

    pub async fn transitions(&self, moves: &[(&str, &str, &str, i64)]) {
        self.ingest_transitions(self.transition_events(moves)).await;
    }

    /// Transitions of the default model, each (contact, from, to, day).
    pub fn transition_events(&self, moves: &[(&str, &str, &str, i64)]) -> Vec<pb::TransitionEvent> {
        moves
            .iter()
            .map(|(contact, from, to, day)| pb::TransitionEvent {
                event_id: self.id(),
                contact_id: (*contact).into(),
                model_id: "default".into(),
                from_stage: (*from).into(),
                to_stage: (*to).into(),
                occurred_at: Some(ts(day * DAY)),
                cause: "rule:test".into(),
            })
            .collect()
    }

    pub async fn ingest_transitions(
        &self,
        transitions: Vec<pb::TransitionEvent>,
    ) -> pb::IngestTransitionsResponse {
        self.client
            .clone()
            .ingest_transitions(pb::IngestTransitionsRequest { transitions })
            .await
            .expect("ingest transitions")
            .into_inner()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub fn ts(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: 0,
    }
}

/// [from_day, to_day) as a range.
pub fn days(from: i64, to: i64) -> Option<common::TimeRange> {
    Some(common::TimeRange {
        start_time: Some(ts(from * DAY)),
        end_time: Some(ts(to * DAY)),
    })
}

#[track_caller]
pub fn expect_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    match result {
        Ok(value) => panic!("expected INVALID_ARGUMENT on {field}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            let fields: Vec<String> = status
                .get_details_bad_request()
                .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                .unwrap_or_default();
            assert!(
                fields.iter().any(|f| f.starts_with(field)),
                "{field} not in {fields:?}"
            );
        }
    }
}
