//! `serve()`: the one way a clm service is put on the network.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::Shutdown;

/// Limits and timings of a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Upper bound of a request's run time; a shorter `grpc-timeout` from the caller wins.
    pub request_timeout: Duration,
    /// Most calls of one method handled at once across all connections. Each method's
    /// limit adapts to its latency below this (see [`crate::admission`]); a call over it
    /// waits at most `admission_wait` (zero: not at all), then is shed with
    /// RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// How long a call over its method's limit may wait for a slot.
    pub admission_wait: Duration,
    /// How long in-flight requests may run on after shutdown begins.
    pub grace_period: Duration,
    /// Who may call, over what transport, and how this service calls others.
    pub security: crate::Security,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 1024,
            admission_wait: Duration::ZERO,
            grace_period: Duration::from_secs(10),
            security: crate::Security::default(),
        }
    }
}

/// The admin HTTP endpoint of a server: its metrics, and where to serve them (none for
/// no endpoint).
#[derive(Debug, Default)]
pub struct Admin {
    /// Where `/metrics` and `/healthz` are served.
    pub listener: Option<TcpListener>,
    /// The server's metrics.
    pub metrics: crate::Metrics,
}

/// The largest encoded message a server accepts, unless a service chooses otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Serves `routes` on `listener` until `shutdown` is triggered.
///
/// `service_names` are the fully qualified gRPC services in `routes`: each is reported
/// SERVING by the standard health service once the server accepts connections, and listed
/// by reflection. When shutdown begins, every one turns NOT_SERVING, the listener closes,
/// and in-flight requests get `grace_period` to finish.
pub async fn serve(
    listener: TcpListener,
    mut routes: Routes,
    service_names: &[&str],
    options: &ServeOptions,
    admin: Admin,
    shutdown: Shutdown,
) -> Result<(), crate::Error> {
    let admin_task = admin.listener.map(|listener| {
        tokio::spawn(crate::metrics::serve_admin(
            listener,
            admin.metrics.clone(),
            shutdown.clone(),
        ))
    });
    let internal = |e: &dyn std::fmt::Display| {
        crate::Error::new(crate::ErrorCode::Internal, format!("server: {e}"))
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(clm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    // Both versions: grpcurl and current clients ask v1, many others (grpcio-reflection,
    // older tools) still ask v1alpha.
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| internal(&e))?;
    let reflection = reflection().build_v1().map_err(|e| internal(&e))?;
    routes = routes
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha);

    let admission = std::sync::Arc::new(crate::admission::Admission::new(
        options.concurrency_limit,
        options.admission_wait,
    ));
    crate::admission::register_metrics(&admin.metrics, admission.clone());
    let layers = tower::ServiceBuilder::new()
        .layer(crate::metrics::RecordRpcs(admin.metrics))
        .layer(crate::admission::Admit(admission))
        .into_inner();
    let mut builder = Server::builder();
    if let Some(tls) = &options.security.tls {
        let config = tls.server_config().map_err(|e| internal(&e))?;
        builder = builder.tls_config(config).map_err(|e| internal(&e))?;
    }
    let router = builder
        .timeout(options.request_timeout)
        .accept_http1(true)
        .trace_fn(clm_telemetry::server_span)
        .layer(layers)
        .layer(tonic_web::GrpcWebLayer::new())
        // Innermost: a refusal is counted by the metrics layer and framed for gRPC-Web.
        .layer(crate::auth::RequireAuth(options.security.verifier.clone()))
        .layer(crate::CatchPanic)
        .add_routes(routes);

    for name in service_names {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;

    let draining = {
        let shutdown = shutdown.clone();
        let reporter = reporter.clone();
        let names: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
        async move {
            shutdown.wait().await;
            for name in &names {
                reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
        }
    };
    // Small gRPC frames must not wait for Nagle's algorithm (40 ms tail latencies).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = router.serve_with_incoming_shutdown(incoming, draining);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(|e| internal(&e)),
        () = shutdown.wait() => {}
    }
    let drained = match tokio::time::timeout(options.grace_period, server).await {
        Ok(result) => result.map_err(|e| internal(&e)),
        Err(_) => {
            tracing::warn!(
                grace_period_ms = options.grace_period.as_millis() as u64,
                "grace period over, dropping requests still running"
            );
            Ok(())
        }
    };
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    drained
}

/// A server's bound sockets.
#[derive(Debug)]
pub struct Bound {
    /// The gRPC listener.
    pub listener: TcpListener,
    /// Its address (the real port when port 0 was asked for).
    pub addr: std::net::SocketAddr,
    /// The admin endpoint's listener, when one was asked for.
    pub admin: Option<TcpListener>,
}

/// Binds the gRPC address and, when given, the admin address; an error names the
/// address that could not be bound.
pub async fn bind(
    listen: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
) -> Result<Bound, (std::net::SocketAddr, std::io::Error)> {
    let listener = TcpListener::bind(listen).await.map_err(|e| (listen, e))?;
    let addr = listener.local_addr().map_err(|e| (listen, e))?;
    let admin = match admin {
        Some(at) => Some(TcpListener::bind(at).await.map_err(|e| (at, e))?),
        None => None,
    };
    Ok(Bound {
        listener,
        addr,
        admin,
    })
}
