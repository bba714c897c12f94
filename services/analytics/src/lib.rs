//! clm-analytics: ingests contact events and stage transitions, keeps rollups current,
//! and answers the reports a business steers by.
#![forbid(unsafe_code)]

pub mod domain;
mod grpc;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tonic::server::NamedService;

use clm_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use clm_runtime::{ServeOptions, Shutdown};

pub use grpc::{AnalyticsApi, MAX_INGEST};

use crate::domain::Clock;
use crate::store::Store;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = <AnalyticsServiceServer<AnalyticsApi> as NamedService>::NAME;
/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50054";

/// How to run the analytics service.
#[derive(Clone)]
pub struct Config {
    /// The gRPC address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the SQLite file lives when no database URL is given.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; the service keeps its tables in the `analytics` schema.
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
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] clm_store::StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// An analytics service that is bound, migrated and ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<TcpListener>,
    metrics: clm_runtime::Metrics,
    api: AnalyticsApi,
    /// Closed when the service stops.
    db: sea_orm::DatabaseConnection,
    config: Config,
}

impl Application {
    /// Opens (and migrates) the database, then binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let location = match &config.database_url {
            Some(url) => clm_store::Location::Postgres(url),
            None => clm_store::Location::DataDir(&config.data_dir),
        };
        let db = clm_store::connect("analytics", location).await?;
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
        let api = AnalyticsApi::new(Store::new(db), config.clock.clone());
        Ok(Self {
            listener,
            addr,
            admin,
            metrics,
            api,
            db: closing,
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

    /// Serves until `shutdown` is triggered, then drains.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), clm_runtime::Error> {
        let service = AnalyticsServiceServer::new(self.api)
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
            shutdown,
        )
        .await;
        clm_store::close(&self.db).await;
        served
    }
}
