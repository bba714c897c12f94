//! Prometheus metrics of a server and its admin HTTP endpoint (`/metrics`, `/healthz`).
//!
//! RPC metrics are recorded by a tower layer around every request: count and latency by
//! method and gRPC code, requests in flight, and requests shed under load. Services add
//! their own series (outbox backlog, cache counters) through refreshers that run before
//! each scrape.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of RPC series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `service/method`.
    pub method: String,
    /// The gRPC status code, as a number.
    pub code: String,
}

/// Labels of per-target series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The receiving service.
    pub target: String,
}

/// Labels of per-method series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `service/method`.
    pub method: String,
}

/// A refresher updates gauges from their sources before a scrape.
pub type Refresher = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A server's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<std::sync::Mutex<Registry>>,
    requests: Family<RpcLabels, Counter>,
    latency: Family<RpcLabels, Histogram>,
    in_flight: Gauge,
    shed: Counter,
    refreshers: Arc<std::sync::Mutex<Vec<Refresher>>>,
    counters:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Family<TargetLabels, Counter>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Metrics {
    /// The RPC series, registered under the `clm` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clm");
        let requests = Family::<RpcLabels, Counter>::default();
        let latency = Family::<RpcLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ])
        });
        let in_flight = Gauge::default();
        let shed = Counter::default();
        registry.register(
            "rpc_requests",
            "RPCs handled, by method and gRPC code",
            requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "RPC latency, by method and gRPC code",
            latency.clone(),
        );
        registry.register("rpc_in_flight", "RPCs being handled now", in_flight.clone());
        registry.register(
            "rpc_shed",
            "RPCs refused because the server was at its concurrency limit",
            shed.clone(),
        );
        Self {
            registry: Arc::new(std::sync::Mutex::new(registry)),
            requests,
            latency,
            in_flight,
            shed,
            refreshers: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Registers a gauge family labelled by target (outbox backlogs and the like).
    pub fn target_gauge(
        &self,
        name: &str,
        help: &str,
    ) -> Family<TargetLabels, Gauge<i64, AtomicI64>> {
        let family = Family::<TargetLabels, Gauge<i64, AtomicI64>>::default();
        self.registry
            .lock()
            .expect("metrics registry")
            .register(name, help, family.clone());
        family
    }

    /// Registers a gauge family labelled by RPC method.
    pub fn method_gauge(&self, name: &str, help: &str) -> Family<MethodLabels, Gauge> {
        let family = Family::<MethodLabels, Gauge>::default();
        self.registry
            .lock()
            .expect("metrics registry")
            .register(name, help, family.clone());
        family
    }

    /// The counter family `name` labelled by target (relay deliveries and retries),
    /// registered on first use and shared afterwards.
    pub fn target_counter(&self, name: &str, help: &str) -> Family<TargetLabels, Counter> {
        let mut counters = self.counters.lock().expect("metrics counters");
        counters
            .entry(name.to_owned())
            .or_insert_with(|| {
                let family = Family::<TargetLabels, Counter>::default();
                self.registry.lock().expect("metrics registry").register(
                    name,
                    help,
                    family.clone(),
                );
                family
            })
            .clone()
    }

    /// Registers a plain gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        let gauge = Gauge::default();
        self.registry
            .lock()
            .expect("metrics registry")
            .register(name, help, gauge.clone());
        gauge
    }

    /// Runs `refresher` before each scrape.
    pub fn on_scrape(&self, refresher: Refresher) {
        self.refreshers
            .lock()
            .expect("metrics refreshers")
            .push(refresher);
    }

    /// The Prometheus text exposition of every series, refreshed.
    pub async fn render(&self) -> String {
        let refreshers: Vec<Refresher> =
            self.refreshers.lock().expect("metrics refreshers").clone();
        for refresh in refreshers {
            refresh().await;
        }
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry");
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The layer that records RPC metrics.
#[derive(Clone, Debug)]
pub struct RecordRpcs(pub Metrics);

impl<S> tower::Layer<S> for RecordRpcs {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recorded {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// A service whose requests are recorded.
#[derive(Clone, Debug)]
pub struct Recorded<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let metrics = self.metrics.clone();
        metrics.in_flight.inc();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            metrics.in_flight.dec();
            // Errors are trailers-only responses with grpc-status in the headers; a
            // response without it succeeded (its status travels in the trailers). An
            // error from the stack itself is a shed request.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => {
                    metrics.shed.inc();
                    "8".to_owned()
                }
            };
            // The request's span (from the server's trace_fn) gets its status too.
            clm_telemetry::record_grpc_status(&tracing::Span::current(), &code);
            let labels = RpcLabels { method, code };
            metrics.requests.get_or_create(&labels).inc();
            metrics
                .latency
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until `shutdown`; `/healthz` answers
/// 200 SERVING, or 503 NOT_SERVING once shutdown has begun.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: crate::Shutdown,
) {
    use axum::routing::get;
    let health = shutdown.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render().await,
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let draining = health.is_triggered();
                async move {
                    if draining {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
                    } else {
                        (http::StatusCode::OK, "SERVING")
                    }
                }
            }),
        );
    let stop = async move { shutdown.wait().await };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(%error, "admin endpoint stopped");
    }
}
