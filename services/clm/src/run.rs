//! What each command does.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use clm_runtime::{ServeOptions, Shutdown};

use crate::cli::{Cli, Command, ServerArgs, Service, StoreArgs, TokenCommand};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service that is bound and ready, waiting to be run until shutdown.
pub(crate) type Ready = Pin<Box<dyn Future<Output = Result<(), clm_runtime::Error>> + Send>>;

pub(crate) async fn dispatch(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Up(args) => {
            let _telemetry = clm_telemetry::init("clm")?;
            let started = Instant::now();
            let shutdown = Shutdown::new();
            // Downstream first, so each relay finds its receiver at once.
            let analytics = analytics_app(&args.server, args.analytics_addr, &shutdown).await?;
            let dashboard =
                crate::dashboard::bind(args.dashboard_addr, args.analytics_addr, shutdown.clone())
                    .await?;
            let lifecycle = lifecycle_app(
                &args.server,
                args.lifecycle_addr,
                args.analytics_addr.to_string(),
                &shutdown,
            )
            .await?;
            let scoring = scoring_app(
                &args.server,
                args.scoring_addr,
                args.lifecycle_addr.to_string(),
                &shutdown,
            )
            .await?;
            let contacts = contacts_app(
                &args.server,
                args.contacts_addr,
                (
                    args.scoring_addr.to_string(),
                    args.analytics_addr.to_string(),
                ),
                &shutdown,
            )
            .await?;
            if args.demo {
                let demo = crate::demo::for_up(&args)?;
                tokio::spawn(async move {
                    if let Err(error) = crate::demo::demo(demo).await {
                        tracing::error!(%error, "the demo tenant could not be loaded");
                    }
                });
            }
            run_services(
                vec![analytics, lifecycle, scoring, contacts, dashboard],
                shutdown,
                started,
            )
            .await
        }
        Command::Serve(args) => {
            let started = Instant::now();
            let shutdown = Shutdown::new();
            let (name, default) = match args.service {
                Service::Contacts => ("clm-contacts", clm_contacts::DEFAULT_LISTEN),
                Service::Scoring => ("clm-scoring", clm_scoring::DEFAULT_LISTEN),
                Service::Lifecycle => ("clm-lifecycle", clm_lifecycle::DEFAULT_LISTEN),
                Service::Analytics => ("clm-analytics", clm_analytics::DEFAULT_LISTEN),
            };
            let _telemetry = clm_telemetry::init(name)?;
            let listen = args.listen.unwrap_or_else(|| default_addr(default));
            let app = match args.service {
                Service::Contacts => {
                    let peers = (args.scoring_addr, args.analytics_addr);
                    contacts_app(&args.server, listen, peers, &shutdown).await?
                }
                Service::Scoring => {
                    scoring_app(&args.server, listen, args.lifecycle_addr, &shutdown).await?
                }
                Service::Lifecycle => {
                    lifecycle_app(&args.server, listen, args.analytics_addr, &shutdown).await?
                }
                Service::Analytics => analytics_app(&args.server, listen, &shutdown).await?,
            };
            run_services(vec![app], shutdown, started).await
        }
        Command::Token(command) => token(command),
        Command::Demo(args) => crate::demo::demo(args).await,
        Command::Bench(args) => crate::bench::bench(args).await,
        Command::Migrate(store) => migrate(&store).await,
        Command::Outbox(store) => outbox(&store).await,
        Command::Describe { descriptor_set } => {
            crate::describe::describe(descriptor_set.as_deref())
        }
        Command::Contacts(command) => crate::client::contacts(command).await,
        Command::Interactions(command) => crate::client::interactions(command).await,
        Command::Score(command) => crate::client::score(command).await,
        Command::Models(command) => crate::client::models(command).await,
        Command::Stage(command) => crate::client::stage(command).await,
        Command::Segments(command) => crate::client::segments(command).await,
        Command::Report(command) => crate::client::report(command).await,
        Command::Watch {
            client,
            cursor,
            kinds,
        } => crate::client::watch(client, cursor, kinds).await,
    }
}

fn default_addr(text: &str) -> SocketAddr {
    text.parse().expect("a valid default address")
}

/// The admin address of the service at `offset` (0 contacts .. 3 analytics).
fn admin_addr(args: &ServerArgs, offset: u16) -> Option<SocketAddr> {
    let port = if args.admin_base_port == 0 {
        0
    } else {
        args.admin_base_port + offset
    };
    Some(SocketAddr::new(args.admin_host, port))
}

/// The server options of service `subject` (e.g. `clm-contacts`); refuses a non-loopback
/// `listen` without authentication unless `--insecure`.
fn serve_options(
    args: &ServerArgs,
    subject: &str,
    listen: SocketAddr,
) -> Result<ServeOptions, BoxError> {
    let security =
        clm_runtime::Security::from_settings(&args.auth.settings(), args.tls.files(), subject)?;
    refuse_exposure(listen, args.insecure, security.auth_enabled())?;
    if !security.auth_enabled() {
        tracing::info!(%listen, "authentication is off: tokens are not checked, x-tenant-id names the tenant");
    }
    Ok(ServeOptions {
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        concurrency_limit: args.concurrency_limit,
        admission_wait: Duration::from_millis(args.admission_wait_ms),
        grace_period: Duration::from_secs(args.grace_period_secs),
        security,
    })
}

/// How a service's relays deliver: in calls no larger than the receivers take (every
/// service of the suite runs with the same `--max-message-bytes`).
fn relay_options(args: &ServerArgs) -> clm_outbox::RelayOptions {
    clm_outbox::RelayOptions {
        max_call_bytes: args.max_message_bytes,
        ..clm_outbox::RelayOptions::default()
    }
}

/// Contacts, delivering to (scoring, analytics).
async fn contacts_app(
    args: &ServerArgs,
    listen: SocketAddr,
    peers: (String, String),
    shutdown: &Shutdown,
) -> Result<Ready, BoxError> {
    let config = clm_contacts::Config {
        listen,
        data_dir: args.store.data_dir.clone(),
        database_url: args.store.database_url.clone(),
        migrate: !args.no_migrate,
        page_token_secret: args.page_token_secret.clone(),
        max_message_bytes: args.max_message_bytes,
        serve: serve_options(args, "clm-contacts", listen)?,
        admin_listen: admin_addr(args, 0),
        scoring_addr: Some(peers.0),
        analytics_addr: Some(peers.1),
        relay: relay_options(args),
        max_stream_items: clm_contacts::MAX_STREAM_ITEMS,
    };
    let app = clm_contacts::Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr(),
        admin_addr = ?app.admin_addr(),
        "contacts ready"
    );
    Ok(Box::pin(app.run_until_stopped(shutdown.clone())))
}

async fn analytics_app(
    args: &ServerArgs,
    listen: SocketAddr,
    shutdown: &Shutdown,
) -> Result<Ready, BoxError> {
    let mut config = clm_analytics::Config::embedded(listen, args.store.data_dir.clone());
    config.database_url.clone_from(&args.store.database_url);
    config.migrate = !args.no_migrate;
    config.max_message_bytes = args.max_message_bytes;
    config.serve = serve_options(args, "clm-analytics", listen)?;
    config.admin_listen = admin_addr(args, 3);
    let app = clm_analytics::Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr(),
        admin_addr = ?app.admin_addr(),
        "analytics ready"
    );
    Ok(Box::pin(app.run_until_stopped(shutdown.clone())))
}

async fn lifecycle_app(
    args: &ServerArgs,
    listen: SocketAddr,
    analytics_addr: String,
    shutdown: &Shutdown,
) -> Result<Ready, BoxError> {
    let mut config = clm_lifecycle::Config::embedded(listen, args.store.data_dir.clone());
    config.database_url.clone_from(&args.store.database_url);
    config.migrate = !args.no_migrate;
    config.page_token_secret.clone_from(&args.page_token_secret);
    config.max_message_bytes = args.max_message_bytes;
    config.serve = serve_options(args, "clm-lifecycle", listen)?;
    config.relay = relay_options(args);
    config.analytics_addr = Some(analytics_addr);
    config.admin_listen = admin_addr(args, 2);
    let app = clm_lifecycle::Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr(),
        admin_addr = ?app.admin_addr(),
        "lifecycle ready"
    );
    Ok(Box::pin(app.run_until_stopped(shutdown.clone())))
}

async fn scoring_app(
    args: &ServerArgs,
    listen: SocketAddr,
    lifecycle_addr: String,
    shutdown: &Shutdown,
) -> Result<Ready, BoxError> {
    let mut config = clm_scoring::Config::embedded(listen, args.store.data_dir.clone());
    config.database_url.clone_from(&args.store.database_url);
    config.migrate = !args.no_migrate;
    config.redis_url.clone_from(&args.redis_url);
    config.redis_cluster = args.redis_cluster;
    config.cache_local_entries = args.redis_local_entries;
    config.cache_prefix.clone_from(&args.cache_prefix);
    config.page_token_secret.clone_from(&args.page_token_secret);
    config.max_message_bytes = args.max_message_bytes;
    config.serve = serve_options(args, "clm-scoring", listen)?;
    config.relay = relay_options(args);
    config.lifecycle_addr = Some(lifecycle_addr);
    config.admin_listen = admin_addr(args, 1);
    let app = clm_scoring::Application::build(config).await?;
    tracing::info!(
        addr = %app.local_addr(),
        admin_addr = ?app.admin_addr(),
        "scoring ready"
    );
    Ok(Box::pin(app.run_until_stopped(shutdown.clone())))
}

/// Without authentication a server stays on loopback unless told `--insecure`.
fn refuse_exposure(addr: SocketAddr, insecure: bool, auth: bool) -> Result<(), BoxError> {
    if addr.ip().is_loopback() || auth {
        return Ok(());
    }
    if insecure {
        tracing::warn!(%addr, "listening beyond loopback without authentication (--insecure)");
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {addr} without authentication; use a loopback address or pass --insecure"
    )
    .into())
}

async fn run_services(
    apps: Vec<Ready>,
    shutdown: Shutdown,
    started: Instant,
) -> Result<(), BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for app in apps {
        tasks.spawn(app);
    }
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "suite started"
    );
    tokio::select! {
        () = clm_runtime::wait_for_signal() => shutdown.trigger(),
        Some(result) = tasks.join_next() => {
            shutdown.trigger();
            result??;
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    tracing::info!("stopped");
    Ok(())
}

fn token(command: TokenCommand) -> Result<(), BoxError> {
    let TokenCommand::Issue {
        auth,
        tenant,
        scopes,
        ttl,
        subject,
    } = command;
    clm_runtime::validate_tenant(&tenant).map_err(|e| format!("--tenant {tenant:?}: {e}"))?;
    let mut granted = Vec::new();
    for scope in scopes {
        if scope == "all" {
            granted.extend(clm_runtime::auth::public_scopes());
        } else if clm_runtime::auth::ALL_SCOPES.contains(&scope.as_str()) {
            granted.push(scope);
        } else {
            return Err(format!(
                "unknown scope {scope:?}; one of: all, {}",
                clm_runtime::auth::ALL_SCOPES.join(", ")
            )
            .into());
        }
    }
    let issuer = clm_runtime::auth::TokenIssuer::from_settings(&auth.settings())?;
    let token = issuer.issue(&clm_runtime::auth::IssueOptions {
        subject,
        tenant,
        scopes: granted,
        ttl,
    })?;
    println!("{token}");
    Ok(())
}

pub(crate) fn location(store: &StoreArgs) -> clm_store::Location<'_> {
    match &store.database_url {
        Some(url) => clm_store::Location::Postgres(url),
        None => clm_store::Location::DataDir(&store.data_dir),
    }
}

async fn outbox(store: &StoreArgs) -> Result<(), BoxError> {
    let now = chrono::Utc::now().timestamp_micros();
    println!(
        "{:<10} {:<10} {:>10} {:>16}",
        "from", "to", "waiting", "oldest age (s)"
    );
    for outbox in crate::outboxes::open(store).await? {
        let stats = outbox.stats().await?;
        let age = stats.oldest_created_at.map_or_else(
            || "-".to_owned(),
            |t| format!("{:.1}", (now - t) as f64 / 1e6),
        );
        println!(
            "{:<10} {:<10} {:>10} {age:>16}",
            outbox.from, outbox.to, stats.depth
        );
    }
    Ok(())
}

async fn migrate(store: &StoreArgs) -> Result<(), BoxError> {
    let location = || location(store);
    let db = clm_store::connect("contacts", location()).await?;
    clm_store::migrate::<clm_contacts::store::migration::Migrator>(&db).await?;
    println!("contacts: migrated");
    let db = clm_store::connect("scoring", location()).await?;
    clm_store::migrate::<clm_scoring::store::migration::Migrator>(&db).await?;
    println!("scoring: migrated");
    let db = clm_store::connect("lifecycle", location()).await?;
    clm_store::migrate::<clm_lifecycle::store::migration::Migrator>(&db).await?;
    println!("lifecycle: migrated");
    let db = clm_store::connect("analytics", location()).await?;
    clm_store::migrate::<clm_analytics::store::migration::Migrator>(&db).await?;
    println!("analytics: migrated");
    Ok(())
}
