//! Starts lifecycle on a port-0 listener with a fresh database and a hand-moved clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use clm_proto::common::v1::Money;
use clm_proto::lifecycle::v1 as pb;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::TestDatabase;

pub use clm_testkit::backend_tests;

/// 2026-01-01T00:00:00Z in micros.
pub const T0: i64 = 1_767_225_600_000_000;
/// One day in micros.
pub const DAY: i64 = 86_400_000_000;

pub struct TestApp {
    pub client: LifecycleServiceClient<Channel>,
    pub scheduler: clm_lifecycle::Scheduler,
    clock: Arc<AtomicI64>,
    shutdown: Shutdown,
    counter: AtomicI64,
}

impl TestApp {
    /// Starts lifecycle over `database` (which the caller keeps alive).
    pub async fn spawn(database: &TestDatabase) -> Self {
        Self::spawn_sharing(database, Arc::new(AtomicI64::new(T0))).await
    }

    /// Starts another instance over the same database and clock.
    pub async fn spawn_sharing(database: &TestDatabase, clock: Arc<AtomicI64>) -> Self {
        let mut config = clm_lifecycle::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            database.data_dir().to_path_buf(),
        );
        config.database_url = database.database_url();
        config.page_token_secret = Some("test".into());
        config.scheduler_interval = None;
        let reader = clock.clone();
        config.clock = Arc::new(move || reader.load(Ordering::SeqCst));
        let app = clm_lifecycle::Application::build(config)
            .await
            .expect("lifecycle starts");
        let addr = app.local_addr();
        let scheduler = app.scheduler();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            client: LifecycleServiceClient::new(channel),
            scheduler,
            clock,
            shutdown,
            counter: AtomicI64::new(0),
        }
    }

    pub fn clock(&self) -> Arc<AtomicI64> {
        self.clock.clone()
    }

    pub fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    pub fn set_now(&self, at: i64) {
        self.clock.store(at, Ordering::SeqCst);
    }

    fn next_id(&self) -> String {
        format!("s{}", self.counter.fetch_add(1, Ordering::SeqCst))
    }

    pub async fn apply(&self, signals: Vec<pb::Signal>) -> pb::ApplySignalsResponse {
        self.client
            .clone()
            .apply_signals(pb::ApplySignalsRequest { signals })
            .await
            .expect("apply signals")
            .into_inner()
    }

    /// An interaction signal at the clock's now.
    pub fn interaction(&self, contact: &str, kind: &str) -> pb::Signal {
        self.interaction_at(contact, kind, self.now())
    }

    pub fn interaction_at(&self, contact: &str, kind: &str, at: i64) -> pb::Signal {
        pb::Signal {
            event_id: self.next_id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(at)),
            kind: Some(pb::signal::Kind::Interaction(pb::InteractionSignal {
                r#type: kind.into(),
                value: (kind == "purchase").then(|| Money {
                    amount_micros: 50_000_000,
                    currency: "EUR".into(),
                }),
                properties: Default::default(),
                score: None,
            })),
        }
    }

    pub fn attributes(&self, contact: &str, attrs: &[(&str, &str)]) -> pb::Signal {
        pb::Signal {
            event_id: self.next_id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(self.now())),
            kind: Some(pb::signal::Kind::Attributes(pb::AttributesChanged {
                attributes: attrs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })),
        }
    }

    pub fn band(&self, contact: &str, band: &str, total: f64) -> pb::Signal {
        pb::Signal {
            event_id: self.next_id(),
            contact_id: contact.into(),
            occurred_at: Some(ts(self.now())),
            kind: Some(pb::signal::Kind::BandChanged(pb::BandChanged {
                model_id: "default".into(),
                from_band: String::new(),
                to_band: band.into(),
                total,
            })),
        }
    }

    /// Creates a segment over `filter`.
    pub async fn create_segment(&self, display_name: &str, filter: &str) -> pb::Segment {
        self.client
            .clone()
            .create_segment(pb::CreateSegmentRequest {
                segment: Some(pb::Segment {
                    display_name: display_name.into(),
                    filter: filter.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .segment
            .unwrap()
    }

    pub async fn stage(&self, contact: &str) -> String {
        self.client
            .clone()
            .get_contact_stage(pb::GetContactStageRequest {
                contact_id: contact.into(),
                model_id: String::new(),
            })
            .await
            .expect("a stage")
            .into_inner()
            .stage
            .unwrap()
            .stage
    }

    pub async fn history(&self, contact: &str) -> Vec<pb::StageHistoryEntry> {
        let mut entries = self
            .client
            .clone()
            .list_stage_history(pb::ListStageHistoryRequest {
                contact_id: contact.into(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        entries.reverse();
        entries
    }

    /// Every event of the log from the start.
    pub async fn all_events(&self) -> Vec<pb::WatchLifecycleEventsResponse> {
        let mut stream = self
            .client
            .clone()
            .watch_lifecycle_events(pb::WatchLifecycleEventsRequest {
                cursor: "0".into(),
                kinds: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        while let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_millis(300), stream.message()).await
        {
            events.push(event);
        }
        events
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

#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
