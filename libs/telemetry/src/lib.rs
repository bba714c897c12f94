//! clm-telemetry: tracing set-up, OTLP export, and W3C trace-context propagation for
//! every clm server and client.
#![forbid(unsafe_code)]

mod json_logs;
mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt};

pub use propagation::{
    TraceContextInterceptor, add_remote_link, current_traceparent, inject_context,
    record_grpc_status, server_span, set_remote_parent,
};

/// Flushes and shuts down span export when dropped; keep it alive until the process ends.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("span export did not shut down cleanly: {error}");
        }
    }
}

/// Errors while setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("otlp exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

/// Installs the global tracing subscriber: logs to stderr (JSON when `CLM_LOG_FORMAT=json`,
/// level from `RUST_LOG`, default `info`), and spans exported over OTLP/gRPC when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. `default_service_name` is used unless
/// `OTEL_SERVICE_NAME` says otherwise. Must be called inside a Tokio runtime.
pub fn init(default_service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    // The log layer gets its own filter: a global filter would also starve the
    // OpenTelemetry layer, and trace ids would come out all zero. It leaves out the spans
    // made for traces (each request's, each Redis call's): formatting their fields for a
    // layer that writes nothing inside them cost a cached GetScore a quarter of its
    // throughput. Log lines inside them still carry their trace and span ids (JSON).
    let log_filter =
        log_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let json = std::env::var("CLM_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let dispatch_cell = json_logs::DispatchCell::default();
    let log_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .event_format(json_logs::JsonWithTraceIds::new(dispatch_cell.clone()))
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed()
    } else {
        // Colours only on a terminal: a log file or journald would keep the escape codes,
        // and writing them is work on every span a request opens.
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(log_filter)
            .boxed()
    };

    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider(default_service_name)?),
        _ => None,
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("clm"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
            .boxed()
    });
    let dispatch = tracing::Dispatch::new(subscriber(log_layer, otel_layer));
    // Set before the subscriber is installed, so no line is written without it.
    let _ = dispatch_cell.set(dispatch.downgrade());
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    // What try_init also does: messages from crates that use `log` (sqlx, redis) join in.
    tracing_log::LogTracer::init().map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The registry with the log layer and, when traces are exported, the OpenTelemetry
/// layer. A list, not an `Option` layer: an absent `Option` layer counts as wanting every
/// span, so each request's span was made for no one.
fn subscriber(log_layer: BoxedLayer, otel_layer: Option<BoxedLayer>) -> impl tracing::Subscriber {
    let layers: Vec<BoxedLayer> = std::iter::once(log_layer).chain(otel_layer).collect();
    tracing_subscriber::registry().with(layers)
}

/// What the log layer writes: what `env` lets through, without the spans made for traces.
fn log_filter<S>(env: EnvFilter) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The hint keeps `env`'s most verbose level the global one (a filter without a hint
    // makes it TRACE, and every disabled `trace!` of the HTTP/2 stack is looked at again).
    let not_for_traces = filter_fn(|metadata| !propagation::is_trace_span(metadata))
        .with_max_level_hint(tracing_subscriber::filter::LevelFilter::TRACE);
    env.and(not_for_traces)
}

fn otlp_provider(default_service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    // The default detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(default_service_name.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// Serialises this crate's tests that install a scoped subscriber. Callsite interest and
/// the global level are process-wide, combined over every live dispatcher: while another
/// test's subscriber is alive, each callsite is only "sometimes" wanted and the current
/// subscriber is asked `enabled` instead, which a registry with per-layer filters answers
/// yes (its layers drop the span later), so a test saw trace spans made and DEBUG enabled.
#[cfg(test)]
fn one_subscriber_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SUBSCRIBERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::{EnvFilter, Layer};

    #[test]
    fn the_log_layer_alone_leaves_trace_spans_unmade_and_events_written() {
        let _alone = super::one_subscriber_at_a_time();
        let log_layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(super::log_filter(EnvFilter::new("info")))
            .boxed();
        let subscriber = super::subscriber(log_layer, None);
        tracing::subscriber::with_default(subscriber, || {
            let request = http::Request::builder()
                .uri("http://localhost/clm.scoring.v1.ScoringService/GetScore")
                .body(())
                .unwrap();
            assert!(super::server_span(&request).is_disabled());
            assert!(tracing::info_span!("redis", otel.kind = "client").is_disabled());
            assert!(!tracing::info_span!("db.transaction").is_disabled());
            assert!(tracing::enabled!(tracing::Level::INFO));
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
            assert_eq!(
                tracing::level_filters::LevelFilter::current(),
                tracing::level_filters::LevelFilter::INFO,
                "the global fast path still turns DEBUG and TRACE away"
            );
        });
    }
}
