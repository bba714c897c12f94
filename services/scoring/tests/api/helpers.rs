//! Starts scoring on a port-0 listener with a fresh database, a cache of the matching
//! backend and a clock the test moves by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use clm_proto::common::v1 as common;
use clm_proto::scoring::v1 as pb;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use clm_runtime::Shutdown;
use clm_testkit::{Backend, TestDatabase};

pub use clm_testkit::backend_tests;

/// 2026-01-01T00:00:00Z in micros.
pub const T0: i64 = 1_767_225_600_000_000;
/// One day in micros.
pub const DAY: i64 = 86_400_000_000;

/// A running scoring service.
pub struct TestApp {
    pub client: ScoringServiceClient<Channel>,
    pub db: sea_orm::DatabaseConnection,
    pub cache: clm_cache::ScoreCache,
    clock: Arc<AtomicI64>,
    shutdown: Shutdown,
    _database: TestDatabase,
}

/// Which cache the app gets.
pub enum CacheChoice {
    /// In-process for SQLite, Redis (when configured) for PostgreSQL.
    Matching,
    /// A Redis URL where nothing listens.
    DeadRedis,
}

impl TestApp {
    pub async fn spawn(database: TestDatabase) -> Self {
        Self::spawn_with(database, CacheChoice::Matching).await
    }

    pub async fn spawn_with(database: TestDatabase, cache: CacheChoice) -> Self {
        let clock = Arc::new(AtomicI64::new(T0));
        let mut config = clm_scoring::Config::embedded(
            "127.0.0.1:0".parse().unwrap(),
            database.data_dir().to_path_buf(),
        );
        config.database_url = database.database_url();
        config.page_token_secret = Some("test".into());
        config.cache_prefix = clm_testkit::unique_prefix();
        // Keys of a test's own prefix expire soon after it; no test flushes Redis.
        config.cache_ttl = Duration::from_secs(60);
        config.redis_url = match cache {
            CacheChoice::DeadRedis => Some("redis://127.0.0.1:1".into()),
            CacheChoice::Matching if database.backend() == Backend::Postgres => {
                clm_testkit::test_redis_url().await
            }
            CacheChoice::Matching => None,
        };
        let reader = clock.clone();
        config.clock = Arc::new(move || reader.load(Ordering::SeqCst));
        let app = clm_scoring::Application::build(config)
            .await
            .expect("scoring starts");
        let addr = app.local_addr();
        let cache = app.cache();
        let shutdown = Shutdown::new();
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let db = clm_store::connect("scoring", database.location())
            .await
            .unwrap();
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        wait_until_serving(channel.clone()).await;
        Self {
            client: ScoringServiceClient::new(channel),
            db,
            cache,
            clock,
            shutdown,
            _database: database,
        }
    }

    /// Moves the clock to `at`.
    pub fn set_now(&self, at: i64) {
        self.clock.store(at, Ordering::SeqCst);
    }

    /// Applies `events` for the default tenant.
    pub async fn apply(&self, events: Vec<common::ContactEvent>) -> pb::ApplyInteractionsResponse {
        self.client
            .clone()
            .apply_interactions(pb::ApplyInteractionsRequest { events })
            .await
            .expect("apply")
            .into_inner()
    }

    pub async fn score(&self, contact: &str) -> pb::Score {
        self.score_in(contact, "").await
    }

    /// The default model's explanation of `contact`'s score, now.
    pub async fn explain(&self, contact: &str) -> pb::ExplainScoreResponse {
        self.client
            .clone()
            .explain_score(pb::ExplainScoreRequest {
                contact_id: contact.into(),
                model_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn score_in(&self, contact: &str, model: &str) -> pb::Score {
        self.client
            .clone()
            .get_score(pb::GetScoreRequest {
                contact_id: contact.into(),
                model_id: model.into(),
            })
            .await
            .expect("get score")
            .into_inner()
            .score
            .unwrap()
    }

    pub async fn ledger_rows(&self) -> u64 {
        clm_scoring::store::entities::ledger::Entity::find()
            .count(&self.db)
            .await
            .unwrap()
    }

    pub async fn band_events(&self) -> Vec<clm_scoring::store::entities::band_event::Model> {
        clm_scoring::store::entities::band_event::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
    }

    pub async fn models_snapshot(
        &self,
    ) -> (Vec<clm_scoring::store::entities::scoring_model::Model>, u64) {
        use clm_scoring::store::entities::{model_version, scoring_model};
        (
            scoring_model::Entity::find().all(&self.db).await.unwrap(),
            model_version::Entity::find().count(&self.db).await.unwrap(),
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn wait_until_serving(channel: Channel) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut health = HealthClient::new(channel);
    for _ in 0..200 {
        let reply = health
            .check(HealthCheckRequest {
                service: clm_scoring::SERVICE_NAME.into(),
            })
            .await;
        if reply.is_ok_and(|r| r.into_inner().status == 1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("scoring never reported SERVING");
}

pub fn ts(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: 0,
    }
}

/// An interaction event.
pub fn interaction(event: &str, contact: &str, kind: &str, at: i64) -> common::ContactEvent {
    interaction_with(event, contact, kind, at, &[])
}

/// An interaction event with properties.
pub fn interaction_with(
    event: &str,
    contact: &str,
    kind: &str,
    at: i64,
    props: &[(&str, &str)],
) -> common::ContactEvent {
    common::ContactEvent {
        event_id: event.into(),
        contact_id: contact.into(),
        occurred_at: Some(ts(at)),
        kind: Some(common::contact_event::Kind::Interaction(
            common::InteractionRecorded {
                r#type: kind.into(),
                properties: props
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Default::default()
            },
        )),
    }
}

/// A contact-attributes event.
pub fn upserted(event: &str, contact: &str, attrs: &[(&str, &str)]) -> common::ContactEvent {
    common::ContactEvent {
        event_id: event.into(),
        contact_id: contact.into(),
        occurred_at: Some(ts(T0)),
        kind: Some(common::contact_event::Kind::Upserted(
            common::ContactUpserted {
                attributes: attrs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                created_at: Some(ts(T0)),
                created: true,
            },
        )),
    }
}

pub fn as_tenant<T>(tenant: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse().unwrap());
    request
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

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}
