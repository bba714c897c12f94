//! What each command does.

use std::time::{Duration, Instant};

use clm_runtime::{ServeOptions, Shutdown};

use crate::cli::{Cli, Command, ServerArgs, Service, StoreArgs};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn dispatch(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Up(args) => {
            let _telemetry = clm_telemetry::init("clm")?;
            let started = Instant::now();
            let contacts = contacts_app(&args.server, args.contacts_addr).await?;
            run_services(vec![contacts], started).await
        }
        Command::Serve(args) => {
            let Service::Contacts = args.service;
            let _telemetry = clm_telemetry::init("clm-contacts")?;
            let started = Instant::now();
            let listen = args.listen.unwrap_or_else(|| {
                clm_contacts::DEFAULT_LISTEN
                    .parse()
                    .expect("a valid default address")
            });
            let contacts = contacts_app(&args.server, listen).await?;
            run_services(vec![contacts], started).await
        }
        Command::Migrate(store) => migrate(&store).await,
        Command::Contacts(command) => crate::client::contacts(command).await,
        Command::Interactions(command) => crate::client::interactions(command).await,
    }
}

async fn contacts_app(
    args: &ServerArgs,
    listen: std::net::SocketAddr,
) -> Result<clm_contacts::Application, BoxError> {
    let config = clm_contacts::Config {
        listen,
        data_dir: args.store.data_dir.clone(),
        database_url: args.store.database_url.clone(),
        migrate: !args.no_migrate,
        page_token_secret: args.page_token_secret.clone(),
        max_message_bytes: args.max_message_bytes,
        serve: ServeOptions {
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            concurrency_limit: args.concurrency_limit,
            grace_period: Duration::from_secs(args.grace_period_secs),
        },
    };
    refuse_exposure(listen, args.insecure)?;
    Ok(clm_contacts::Application::build(config).await?)
}

/// Without authentication a server stays on loopback unless told `--insecure`.
fn refuse_exposure(addr: std::net::SocketAddr, insecure: bool) -> Result<(), BoxError> {
    if addr.ip().is_loopback() {
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
    apps: Vec<clm_contacts::Application>,
    started: Instant,
) -> Result<(), BoxError> {
    let shutdown = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    for app in apps {
        let addr = app.local_addr();
        tracing::info!(%addr, "contacts ready");
        let shutdown = shutdown.clone();
        tasks.spawn(async move { app.run_until_stopped(shutdown).await });
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

async fn migrate(store: &StoreArgs) -> Result<(), BoxError> {
    let location = match &store.database_url {
        Some(url) => clm_store::Location::Postgres(url),
        None => clm_store::Location::DataDir(&store.data_dir),
    };
    let db = clm_store::connect("contacts", location).await?;
    clm_store::migrate::<clm_contacts::store::migration::Migrator>(&db).await?;
    println!("contacts: migrated");
    Ok(())
}
