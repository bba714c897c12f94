//! clm-lifecycle: moves contacts through stage models from the signals scoring sends,
//! keeps real-time segments current, fires timed triggers, and streams every change from
//! a durable, resumable log.
#![forbid(unsafe_code)]

mod convert;
pub mod domain;
mod grpc;
mod relay;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;

use clm_proto::lifecycle::v1::lifecycle_service_server::LifecycleServiceServer;
use clm_runtime::page_token::PageTokens;
use clm_runtime::{ServeOptions, Shutdown};

pub use grpc::{LifecycleApi, MAX_SIGNALS};

use crate::domain::Clock;
use crate::store::{Fired, Store};

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = <LifecycleServiceServer<LifecycleApi> as NamedService>::NAME;
/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50053";

/// How to run the lifecycle service.
#[derive(Clone)]
pub struct Config {
    /// The gRPC address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the SQLite file lives when no database URL is given.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; the service keeps its tables in the `lifecycle` schema.
    pub database_url: Option<String>,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// The secret page tokens are signed with (random per process when unset).
    pub page_token_secret: Option<String>,
    /// Largest accepted request message, in bytes.
    pub max_message_bytes: usize,
    /// Timeouts, limits and grace period.
    pub serve: ServeOptions,
    /// Where `/metrics` and `/healthz` are served (none: no admin endpoint).
    pub admin_listen: Option<SocketAddr>,
    /// Where "now" comes from.
    pub clock: Clock,
    /// How often timed work runs (`None`: never by itself, for tests that drive it).
    pub scheduler_interval: Option<Duration>,
    /// Where analytics listens; transitions are delivered there. Without it they wait in
    /// the outbox.
    pub analytics_addr: Option<String>,
    /// How the outbox relay paces itself.
    pub relay: clm_outbox::RelayOptions,
}

impl Config {
    /// The embedded default on `listen`, with data under `data_dir`.
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            migrate: true,
            page_token_secret: None,
            max_message_bytes: clm_runtime::DEFAULT_MAX_MESSAGE_BYTES,
            serve: ServeOptions::default(),
            admin_listen: None,
            clock: domain::system_clock(),
            scheduler_interval: Some(Duration::from_secs(60)),
            analytics_addr: None,
            relay: clm_outbox::RelayOptions::default(),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] clm_store::StoreError),
    /// The analytics address is not usable.
    #[error("analytics address: {0}")]
    AnalyticsAddr(#[from] clm_runtime::SecurityError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs timed work on demand (the service also runs it on its interval).
#[derive(Clone)]
pub struct Scheduler {
    store: Store,
    clock: Clock,
}

impl Scheduler {
    /// Runs everything due now.
    pub async fn run_due(&self) -> Result<Fired, domain::LifecycleError> {
        self.store.run_due((self.clock)()).await
    }
}

/// A lifecycle service that is bound, migrated and ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<TcpListener>,
    metrics: clm_runtime::Metrics,
    api: LifecycleApi,
    /// Closed when the service stops.
    db: sea_orm::DatabaseConnection,
    scheduler: Scheduler,
    relay: Option<clm_outbox::Relay<relay::AnalyticsDelivery>>,
    config: Config,
}

impl Application {
    /// Opens (and migrates) the database, then binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let location = match &config.database_url {
            Some(url) => clm_store::Location::Postgres(url),
            None => clm_store::Location::DataDir(&config.data_dir),
        };
        let db = clm_store::connect("lifecycle", location).await?;
        let closing = db.clone();
        if config.migrate {
            clm_store::migrate::<store::migration::Migrator>(&db).await?;
        }
        let clm_runtime::Bound {
            listener,
            addr,
            admin,
        } = clm_runtime::bind(config.listen, config.admin_listen)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let metrics = clm_runtime::Metrics::new();
        clm_store::register_pool_metrics(&metrics, db.clone());
        clm_outbox::register_metrics(&metrics, db.clone(), &[store::engine::ANALYTICS]);
        let wake = clm_outbox::Wake::new();
        let relay = match &config.analytics_addr {
            Some(addr) => Some(
                clm_outbox::Relay::new(
                    db.clone(),
                    store::engine::ANALYTICS,
                    relay::AnalyticsDelivery::new(addr, &config.serve.security)?,
                    wake.clone(),
                    config.relay.clone(),
                )
                .with_metrics(&metrics),
            ),
            None => None,
        };
        let store = Store::new(db, wake);
        let api = LifecycleApi::new(
            store.clone(),
            PageTokens::from_config(config.page_token_secret.as_deref()),
            config.clock.clone(),
        );
        let scheduler = Scheduler {
            store,
            clock: config.clock.clone(),
        };
        Ok(Self {
            listener,
            addr,
            admin,
            metrics,
            api,
            db: closing,
            scheduler,
            relay,
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin endpoint's address, when it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The timed-work runner.
    pub fn scheduler(&self) -> Scheduler {
        self.scheduler.clone()
    }

    /// Serves (and runs timed work on its interval) until `shutdown` is triggered.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), clm_runtime::Error> {
        if let Some(interval) = self.config.scheduler_interval {
            let scheduler = self.scheduler.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = stop.wait() => return,
                    }
                    match scheduler.run_due().await {
                        Ok(fired) if fired != Fired::default() => {
                            tracing::info!(
                                churned = fired.churned,
                                actions = fired.actions,
                                "timed work done"
                            );
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "timed work failed"),
                    }
                }
            });
        }
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(shutdown.clone())));
        let service = LifecycleServiceServer::new(self.api)
            .max_decoding_message_size(self.config.max_message_bytes)
            .max_encoding_message_size(self.config.max_message_bytes);
        tracing::info!(addr = %self.addr, service = SERVICE_NAME, "serving");
        let served = clm_runtime::serve(
            self.listener,
            tonic::service::Routes::new(service),
            &[SERVICE_NAME],
            &self.config.serve,
            clm_runtime::Admin {
                listener: self.admin,
                metrics: self.metrics,
            },
            shutdown.clone(),
        )
        .await;
        shutdown.trigger();
        if let Some(relay) = relay
            && let Err(error) = relay.await
        {
            tracing::error!(%error, "outbox relay task failed");
        }
        clm_store::close(&self.db).await;
        served
    }
}
