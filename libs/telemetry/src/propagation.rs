//! W3C trace context across gRPC calls: clients inject it into metadata, servers extract it
//! into the request span.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Whether `metadata` is that of a span made for traces: one that names its OpenTelemetry
/// `otel.kind` (a request's, a Redis call's, an outbox delivery's). Traces hold them, log
/// lines do not repeat their fields.
pub(crate) fn is_trace_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.fields().field("otel.kind").is_some()
}

/// The span of one incoming gRPC request, following the OpenTelemetry RPC conventions and
/// continuing the caller's W3C trace context. Health checks get no span, so probes do not
/// flood the traces. Meant for tonic's `Server::trace_fn`, which creates it before the
/// request is handled (the parent must be set before the span is first entered).
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    if service.starts_with("grpc.health.") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
    );
    // Without an OpenTelemetry layer no layer wants the span: nothing to fill in or continue.
    if !span.is_disabled() {
        let (address, port) = server_authority(request);
        span.record("server.address", address);
        span.record("server.port", port.unwrap_or_default());
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    span
}

/// The host and port the caller addressed: the request's authority, else its Host header.
fn server_authority(request: &http::Request<()>) -> (&str, Option<u16>) {
    if let Some(authority) = request.uri().authority() {
        return (authority.host(), authority.port_u16());
    }
    let Some(host) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return ("", None);
    };
    host.rsplit_once(':')
        .map_or((host, None), |(name, port)| (name, port.parse().ok()))
}

/// Records a server span's gRPC status code (as text, e.g. `"5"`), and marks the span
/// failed when the code is a server's fault, as the OpenTelemetry gRPC conventions say:
/// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. A caller's
/// mistake (INVALID_ARGUMENT, NOT_FOUND, ...) leaves the status unset.
pub fn record_grpc_status(span: &tracing::Span, code: &str) {
    let code: i64 = code.parse().unwrap_or(2);
    span.record("rpc.grpc.status_code", code);
    if is_server_fault(code) {
        span.record("otel.status_code", "ERROR");
    }
}

fn is_server_fault(code: i64) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// A tonic client interceptor that propagates the current trace context.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_context(request.metadata_mut());
        Ok(request)
    }
}

/// The current span's W3C `traceparent`, or an empty string outside a sampled trace.
pub fn current_traceparent() -> String {
    let mut metadata = tonic::metadata::MetadataMap::new();
    inject_context(&mut metadata);
    metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Makes `span` continue the trace of a stored `traceparent` (a no-op when it is empty).
/// Call it before the span is first entered.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(parent) = stored_context(traceparent) {
        let _ = span.set_parent(parent);
    }
}

/// Links `span` to the trace of a stored `traceparent` (a no-op when it is empty or invalid).
pub fn add_remote_link(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::trace::TraceContextExt;
    if let Some(context) = stored_context(traceparent) {
        let linked = context.span().span_context().clone();
        if linked.is_valid() {
            span.add_link(linked);
        }
    }
}

/// The remote context of a stored `traceparent`.
fn stored_context(traceparent: &str) -> Option<opentelemetry::Context> {
    if traceparent.is_empty() {
        return None;
    }
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_str(traceparent).ok()?,
    );
    Some(opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(&headers))
    }))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn trace_id(span: &tracing::Span) -> opentelemetry::trace::TraceId {
        span.context().span().span_context().trace_id()
    }

    #[test]
    fn trace_context_survives_a_client_to_server_hop() {
        let _alone = crate::one_subscriber_at_a_time();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let client_span = tracing::info_span!("client call");
            let client_trace = trace_id(&client_span);
            assert_ne!(client_trace, opentelemetry::trace::TraceId::INVALID);

            let mut metadata = tonic::metadata::MetadataMap::new();
            client_span.in_scope(|| inject_context(&mut metadata));
            assert!(metadata.get("traceparent").is_some(), "traceparent is sent");

            let mut request = http::Request::builder()
                .uri("http://localhost/clm.contacts.v1.ContactsService/GetContact")
                .body(())
                .unwrap();
            *request.headers_mut() = metadata.into_headers();
            let continued = server_span(&request);
            assert!(is_trace_span(continued.metadata().expect("a span")));
            assert_eq!(
                trace_id(&continued),
                client_trace,
                "the server continues the trace"
            );

            let health = http::Request::builder()
                .uri("http://localhost/grpc.health.v1.Health/Check")
                .body(())
                .unwrap();
            assert!(
                server_span(&health).is_none(),
                "health checks are left out of traces"
            );
        });
    }

    #[test]
    fn only_a_servers_faults_fail_its_span() {
        let _alone = crate::one_subscriber_at_a_time();
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            for code in ["0", "3", "5", "13", "14"] {
                let request = http::Request::builder()
                    .uri("http://127.0.0.1:50051/clm.contacts.v1.ContactsService/GetContact")
                    .body(())
                    .unwrap();
                let span = server_span(&request);
                record_grpc_status(&span, code);
            }
        });
        let spans = exporter.get_finished_spans().unwrap();
        let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        let outcome: Vec<(String, bool)> = spans
            .iter()
            .map(|span| {
                let code = attribute(span, "rpc.grpc.status_code").unwrap_or_default();
                let failed = matches!(span.status, opentelemetry::trace::Status::Error { .. });
                (code, failed)
            })
            .collect();
        let expected = [
            ("0", false),
            ("3", false),
            ("5", false),
            ("13", true),
            ("14", true),
        ];
        let expected: Vec<(String, bool)> = expected
            .iter()
            .map(|(c, f)| ((*c).to_owned(), *f))
            .collect();
        assert_eq!(outcome, expected);
        // Recorded after the span was made, only because a layer wanted it.
        for span in &spans {
            assert_eq!(
                attribute(span, "server.address").as_deref(),
                Some("127.0.0.1")
            );
            assert_eq!(attribute(span, "server.port").as_deref(), Some("50051"));
        }
    }
}
