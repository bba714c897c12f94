//! clm-e2e: runs several clm services in one process against one test database, for
//! tests of the flows between them.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

use clm_outbox::RelayOptions;
use clm_runtime::Shutdown;
use clm_testkit::{Backend, TestDatabase};

/// A free loopback address for a service started later ([`clm_testkit::free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], clm_testkit::free_port()))
}

/// Relay pacing for tests: quick retries so a service that comes back is found fast.
pub fn quick_relay() -> RelayOptions {
    RelayOptions {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        poll_interval: Duration::from_millis(500),
        ..RelayOptions::default()
    }
}

/// Starts contacts on a free port, delivering to scoring at `scoring_addr`.
pub async fn start_contacts(
    db: &TestDatabase,
    scoring_addr: SocketAddr,
    shutdown: &Shutdown,
) -> Channel {
    start_contacts_serving(
        db,
        scoring_addr,
        clm_runtime::ServeOptions::default(),
        shutdown,
    )
    .await
}

/// [`start_contacts`] with the server's limits and timings of `serve`.
pub async fn start_contacts_serving(
    db: &TestDatabase,
    scoring_addr: SocketAddr,
    serve: clm_runtime::ServeOptions,
    shutdown: &Shutdown,
) -> Channel {
    let mut config = clm_contacts::Config::embedded(
        "127.0.0.1:0".parse().expect("an address"),
        db.data_dir().to_path_buf(),
    );
    config.database_url = db.database_url();
    config.scoring_addr = Some(scoring_addr.to_string());
    config.relay = quick_relay();
    config.serve = serve;
    let app = clm_contacts::Application::build(config)
        .await
        .expect("contacts starts");
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    serving(addr, clm_contacts::SERVICE_NAME).await
}

/// Starts scoring on `addr` (the cache matches the backend: Redis with PostgreSQL when
/// `CLM_TEST_REDIS_URL` is set).
pub async fn start_scoring(db: &TestDatabase, addr: SocketAddr, shutdown: &Shutdown) -> Channel {
    start_scoring_for(db, addr, None, shutdown).await
}

/// Starts lifecycle on `addr`; its timed work runs only when a test asks.
pub async fn start_lifecycle(db: &TestDatabase, addr: SocketAddr, shutdown: &Shutdown) -> Channel {
    let mut config = clm_lifecycle::Config::embedded(addr, db.data_dir().to_path_buf());
    config.database_url = db.database_url();
    config.scheduler_interval = None;
    let app = clm_lifecycle::Application::build(config)
        .await
        .expect("lifecycle starts");
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    serving(addr, clm_lifecycle::SERVICE_NAME).await
}

/// Starts contacts, scoring and lifecycle chained by their outboxes; returns their
/// channels in that order.
pub async fn start_chain(db: &TestDatabase, shutdown: &Shutdown) -> (Channel, Channel, Channel) {
    let (scoring_addr, lifecycle_addr) = (free_addr(), free_addr());
    let lifecycle = start_lifecycle(db, lifecycle_addr, shutdown).await;
    let scoring = start_scoring_for(db, scoring_addr, Some(lifecycle_addr), shutdown).await;
    let contacts = start_contacts(db, scoring_addr, shutdown).await;
    (contacts, scoring, lifecycle)
}

/// Starts scoring on `addr`, delivering signals to lifecycle at `lifecycle` when given.
pub async fn start_scoring_for(
    db: &TestDatabase,
    addr: SocketAddr,
    lifecycle: Option<SocketAddr>,
    shutdown: &Shutdown,
) -> Channel {
    let mut config = clm_scoring::Config::embedded(addr, db.data_dir().to_path_buf());
    config.lifecycle_addr = lifecycle.map(|a| a.to_string());
    config.relay = quick_relay();
    config.database_url = db.database_url();
    config.cache_prefix = clm_testkit::unique_prefix();
    // Keys of a test's own prefix expire soon after it; no test flushes Redis.
    config.cache_ttl = Duration::from_secs(60);
    if db.backend() == Backend::Postgres {
        config.redis_url = clm_testkit::test_redis_url().await;
    }
    let app = clm_scoring::Application::build(config)
        .await
        .expect("scoring starts");
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    serving(addr, clm_scoring::SERVICE_NAME).await
}

/// The four services started with one security set-up: their addresses, downstream
/// services found by the upstream ones.
#[derive(Debug, Clone)]
pub struct SecuredSuite {
    /// contacts, scoring, lifecycle, analytics.
    pub addrs: [SocketAddr; 4],
}

/// Starts the four services on free ports, chained by their outboxes, each with
/// `security(subject)` (e.g. `clm-contacts`) as its authentication and TLS.
pub async fn start_secured_suite(
    db: &TestDatabase,
    security: impl Fn(&str) -> clm_runtime::Security,
    shutdown: &Shutdown,
) -> SecuredSuite {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let dir = db.data_dir().to_path_buf();
    let serve = |subject: &str| clm_runtime::ServeOptions {
        security: security(subject),
        ..clm_runtime::ServeOptions::default()
    };

    let mut config = clm_analytics::Config::embedded(any, dir.clone());
    config.database_url = db.database_url();
    config.serve = serve("clm-analytics");
    let app = clm_analytics::Application::build(config)
        .await
        .expect("analytics starts");
    let analytics = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let mut config = clm_lifecycle::Config::embedded(any, dir.clone());
    config.database_url = db.database_url();
    config.scheduler_interval = None;
    config.analytics_addr = Some(analytics.to_string());
    config.relay = quick_relay();
    config.serve = serve("clm-lifecycle");
    let app = clm_lifecycle::Application::build(config)
        .await
        .expect("lifecycle starts");
    let lifecycle = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let mut config = clm_scoring::Config::embedded(any, dir.clone());
    config.database_url = db.database_url();
    config.lifecycle_addr = Some(lifecycle.to_string());
    config.relay = quick_relay();
    config.cache_prefix = clm_testkit::unique_prefix();
    config.cache_ttl = Duration::from_secs(60);
    if db.backend() == Backend::Postgres {
        config.redis_url = clm_testkit::test_redis_url().await;
    }
    config.serve = serve("clm-scoring");
    let app = clm_scoring::Application::build(config)
        .await
        .expect("scoring starts");
    let scoring = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let mut config = clm_contacts::Config::embedded(any, dir);
    config.database_url = db.database_url();
    config.scoring_addr = Some(scoring.to_string());
    config.analytics_addr = Some(analytics.to_string());
    config.relay = quick_relay();
    config.serve = serve("clm-contacts");
    let app = clm_contacts::Application::build(config)
        .await
        .expect("contacts starts");
    let contacts = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    SecuredSuite {
        addrs: [contacts, scoring, lifecycle, analytics],
    }
}

/// A channel to `addr` once its `service` reports SERVING.
pub async fn serving(addr: SocketAddr, service: &str) -> Channel {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    for _ in 0..500 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))
            .expect("a url")
            .connect()
            .await
        {
            let reply = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if reply.is_ok_and(|r| r.into_inner().status == 1) {
                return channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{service} never reported SERVING");
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates `contact` through `contacts` (any channel, intercepted or not) and returns it as
/// stored, with its id.
pub async fn create_contact<T>(
    contacts: &mut clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient<T>,
    contact: clm_proto::contacts::v1::Contact,
) -> clm_proto::contacts::v1::Contact
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    contacts
        .create_contact(clm_proto::contacts::v1::CreateContactRequest {
            contact: Some(contact),
        })
        .await
        .expect("the contact is created")
        .into_inner()
        .contact
        .expect("a created contact comes back")
}
