//! clm-contacts: the contacts service: people, their interaction timeline, imports,
//! merges and erasure.
#![forbid(unsafe_code)]

mod convert;
pub mod domain;
mod grpc;
mod relay;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tonic::server::NamedService;

use clm_proto::contacts::v1::contacts_service_server::ContactsServiceServer;
use clm_runtime::{ServeOptions, Shutdown};

pub use grpc::{ContactsApi, MAX_BATCH, MAX_STREAM_ITEMS};

use crate::domain::page_token::PageTokens;
use crate::store::Store;

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = <ContactsServiceServer<ContactsApi> as NamedService>::NAME;
/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// How to run the contacts service.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gRPC address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the SQLite file lives when no database URL is given.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; the service keeps its tables in the `contacts` schema.
    pub database_url: Option<String>,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// The secret page tokens are signed with. Without one, a random secret is drawn at
    /// start and tokens do not survive a restart or cross replicas.
    pub page_token_secret: Option<String>,
    /// Largest accepted request message, in bytes.
    pub max_message_bytes: usize,
    /// Timeouts, limits and grace period.
    pub serve: ServeOptions,
    /// Where `/metrics` and `/healthz` are served (none: no admin endpoint).
    pub admin_listen: Option<SocketAddr>,
    /// Where scoring listens; contact events are delivered there. Without it they wait in
    /// the outbox.
    pub scoring_addr: Option<String>,
    /// Where analytics listens; contact events are delivered there too.
    pub analytics_addr: Option<String>,
    /// How the outbox relay paces itself.
    pub relay: clm_outbox::RelayOptions,
    /// Most elements one call of ImportContacts or RecordInteractions may carry.
    pub max_stream_items: u64,
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
            scoring_addr: None,
            analytics_addr: None,
            relay: clm_outbox::RelayOptions::default(),
            max_stream_items: MAX_STREAM_ITEMS,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] clm_store::StoreError),
    /// The scoring address is not usable.
    #[error("scoring address: {0}")]
    ScoringAddr(#[from] clm_runtime::SecurityError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A contacts service that is bound, migrated and ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<TcpListener>,
    metrics: clm_runtime::Metrics,
    api: ContactsApi,
    /// Closed when the service stops.
    db: sea_orm::DatabaseConnection,
    relays: Vec<Box<dyn FnOnce(Shutdown) -> tokio::task::JoinHandle<()> + Send>>,
    config: Config,
}

impl Application {
    /// Opens (and migrates) the database, then binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let location = match &config.database_url {
            Some(url) => clm_store::Location::Postgres(url),
            None => clm_store::Location::DataDir(&config.data_dir),
        };
        let db = clm_store::connect("contacts", location).await?;
        if config.migrate {
            clm_store::migrate::<store::migration::Migrator>(&db).await?;
        }
        Self::with_database(config, db).await
    }

    /// Binds the listener over an already opened database, which the service closes when
    /// it stops.
    pub async fn with_database(
        config: Config,
        db: sea_orm::DatabaseConnection,
    ) -> Result<Self, StartError> {
        let closing = db.clone();
        let clm_runtime::Bound {
            listener,
            addr,
            admin,
        } = clm_runtime::bind(config.listen, config.admin_listen)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let metrics = clm_runtime::Metrics::new();
        clm_store::register_pool_metrics(&metrics, db.clone());
        clm_outbox::register_metrics(&metrics, db.clone(), store::events::TARGETS);
        let wake = clm_outbox::Wake::new();
        let mut relays: Vec<Box<dyn FnOnce(Shutdown) -> tokio::task::JoinHandle<()> + Send>> =
            Vec::new();
        if let Some(addr) = &config.scoring_addr {
            let relay = clm_outbox::Relay::new(
                db.clone(),
                "scoring",
                relay::ScoringDelivery::new(addr, &config.serve.security)?,
                wake.clone(),
                config.relay.clone(),
            )
            .with_metrics(&metrics);
            relays.push(Box::new(move |shutdown| tokio::spawn(relay.run(shutdown))));
        }
        if let Some(addr) = &config.analytics_addr {
            let relay = clm_outbox::Relay::new(
                db.clone(),
                "analytics",
                relay::AnalyticsDelivery::new(addr, &config.serve.security)?,
                wake.clone(),
                config.relay.clone(),
            )
            .with_metrics(&metrics);
            relays.push(Box::new(move |shutdown| tokio::spawn(relay.run(shutdown))));
        }
        let api = ContactsApi::new(
            Store::new(db, wake),
            PageTokens::from_config(config.page_token_secret.as_deref()),
        )
        .with_max_stream_items(config.max_stream_items);
        Ok(Self {
            listener,
            addr,
            admin,
            metrics,
            api,
            db: closing,
            relays,
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

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves (and relays contact events) until `shutdown` is triggered, then drains.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), clm_runtime::Error> {
        let relays: Vec<_> = self
            .relays
            .into_iter()
            .map(|start| start(shutdown.clone()))
            .collect();
        let service = ContactsServiceServer::new(self.api)
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
        for relay in relays {
            if let Err(error) = relay.await {
                tracing::error!(%error, "outbox relay task failed");
            }
        }
        clm_store::close(&self.db).await;
        served
    }
}
