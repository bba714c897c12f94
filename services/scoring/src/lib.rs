//! clm-scoring: the scoring service: rule-based lead scores with decay, caps and MQL/SQL
//! thresholds, folded from an append-only ledger and served through a score cache.
#![forbid(unsafe_code)]

mod convert;
pub mod domain;
mod grpc;
mod models;
mod relay;
pub mod state_bytes;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;

use clm_cache::ScoreCache;
use clm_proto::scoring::v1::scoring_service_server::ScoringServiceServer;
use clm_runtime::page_token::PageTokens;
use clm_runtime::{ServeOptions, Shutdown};

pub use grpc::{MAX_APPLY_EVENTS, MAX_BATCH_IDS, ScoringApi};

use crate::domain::Clock;
use crate::store::{Store, signals};

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = <ScoringServiceServer<ScoringApi> as NamedService>::NAME;
/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";

/// How to run the scoring service.
#[derive(Clone)]
pub struct Config {
    /// The gRPC address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the SQLite file lives when no database URL is given.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL; the service keeps its tables in the `scoring` schema.
    pub database_url: Option<String>,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// Redis for the score cache; the in-process cache without it.
    pub redis_url: Option<String>,
    /// `redis_url` lists seed nodes of a Redis Cluster, comma-separated.
    pub redis_cluster: bool,
    /// Prefix of cache keys (`clm` in production; tests use their own).
    pub cache_prefix: String,
    /// How long a cached score lives.
    pub cache_ttl: Duration,
    /// Scores read from a single Redis that this process keeps a copy of, kept current by
    /// Redis' invalidation messages (0: every read goes to Redis).
    pub cache_local_entries: usize,
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
    /// Where lifecycle listens; signals are delivered there. Without it they wait in the
    /// outbox.
    pub lifecycle_addr: Option<String>,
    /// How the outbox relay paces itself.
    pub relay: clm_outbox::RelayOptions,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("redis", &self.redis_url.is_some())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The embedded default on `listen`, with data under `data_dir`.
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            migrate: true,
            redis_url: None,
            redis_cluster: false,
            cache_prefix: "clm".into(),
            cache_ttl: Duration::from_secs(3600),
            cache_local_entries: 50_000,
            page_token_secret: None,
            max_message_bytes: clm_runtime::DEFAULT_MAX_MESSAGE_BYTES,
            serve: ServeOptions::default(),
            admin_listen: None,
            clock: domain::system_clock(),
            lifecycle_addr: None,
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
    /// The cache URL is not usable.
    #[error("{0}")]
    Cache(#[from] clm_cache::CacheError),
    /// The lifecycle address is not usable.
    #[error("lifecycle address: {0}")]
    LifecycleAddr(#[from] clm_runtime::SecurityError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A scoring service that is bound, migrated and ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    admin: Option<TcpListener>,
    metrics: clm_runtime::Metrics,
    api: ScoringApi,
    /// Closed when the service stops.
    db: sea_orm::DatabaseConnection,
    cache: ScoreCache,
    relay: Option<clm_outbox::Relay<relay::LifecycleDelivery>>,
    config: Config,
}

impl Application {
    /// Opens (and migrates) the database, prepares the cache, then binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let location = match &config.database_url {
            Some(url) => clm_store::Location::Postgres(url),
            None => clm_store::Location::DataDir(&config.data_dir),
        };
        let db = clm_store::connect("scoring", location).await?;
        let closing = db.clone();
        if config.migrate {
            clm_store::migrate::<store::migration::Migrator>(&db).await?;
        }
        let cache = ScoreCache::from_url(
            config.redis_url.as_deref(),
            config.redis_cluster,
            &config.cache_prefix,
            config.cache_ttl,
            1_000_000,
            config.cache_local_entries,
        )?;
        let clm_runtime::Bound {
            listener,
            addr,
            admin,
        } = clm_runtime::bind(config.listen, config.admin_listen)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let metrics = clm_runtime::Metrics::new();
        clm_store::register_pool_metrics(&metrics, db.clone());
        clm_outbox::register_metrics(&metrics, db.clone(), &[signals::TARGET]);
        let (hits, misses, errors) = (
            metrics.gauge("cache_hits", "Score reads answered by the cache"),
            metrics.gauge("cache_misses", "Score reads the cache could not answer"),
            metrics.gauge(
                "cache_errors",
                "Cache operations that failed and fell back to the database",
            ),
        );
        let counted = cache.clone();
        metrics.on_scrape(std::sync::Arc::new(move || {
            let stats = counted.stats();
            hits.set(stats.hits as i64);
            misses.set(stats.misses as i64);
            errors.set(stats.errors as i64);
            Box::pin(async {})
        }));
        let wake = clm_outbox::Wake::new();
        let relay = match &config.lifecycle_addr {
            Some(addr) => Some(
                clm_outbox::Relay::new(
                    db.clone(),
                    signals::TARGET,
                    relay::LifecycleDelivery::new(addr, &config.serve.security)?,
                    wake.clone(),
                    config.relay.clone(),
                )
                .with_metrics(&metrics),
            ),
            None => None,
        };
        let api = ScoringApi::new(
            Store::new(db, wake),
            cache.clone(),
            PageTokens::from_config(config.page_token_secret.as_deref()),
            config.clock.clone(),
        );
        Ok(Self {
            listener,
            addr,
            admin,
            metrics,
            api,
            db: closing,
            cache,
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

    /// The score cache (its counters tell the hit ratio and fallbacks).
    pub fn cache(&self) -> ScoreCache {
        self.cache.clone()
    }

    /// Serves until `shutdown` is triggered, then drains.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), clm_runtime::Error> {
        tokio::spawn(report_cache(self.cache.clone(), shutdown.clone()));
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(shutdown.clone())));
        let service = ScoringServiceServer::new(self.api)
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

/// Logs the score cache's counters once a minute while they change, until shutdown.
async fn report_cache(cache: ScoreCache, shutdown: Shutdown) {
    let mut last = cache.stats();
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = shutdown.wait() => return,
        }
        let stats = cache.stats();
        if stats != last {
            tracing::info!(
                hits = stats.hits,
                misses = stats.misses,
                errors = stats.errors,
                hit_ratio = stats.hit_ratio(),
                "score cache"
            );
            last = stats;
        }
    }
}
