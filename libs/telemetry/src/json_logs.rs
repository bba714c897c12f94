//! JSON log lines that carry the OpenTelemetry `trace_id` and `span_id` of the span they were
//! written in, so a log line leads to its trace and back.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The subscriber the formatter belongs to, known only once it is built: the OpenTelemetry
/// context of a span is read through it (the thread's current dispatcher is hidden while an
/// event is being written, when a scoped one is in use).
pub(crate) type DispatchCell = Arc<OnceLock<tracing::dispatcher::WeakDispatch>>;

/// tracing-subscriber's JSON format, with `trace_id` and `span_id` added to every line
/// written inside a sampled span.
pub(crate) struct JsonWithTraceIds {
    inner: Format<Json>,
    dispatch: DispatchCell,
}

impl JsonWithTraceIds {
    pub(crate) fn new(dispatch: DispatchCell) -> Self {
        Self {
            inner: Format::default().json().with_current_span(true),
            dispatch,
        }
    }

    /// The trace and span id of the span the thread is in, if it belongs to a sampled
    /// trace. Asked of the whole subscriber, not of the log layer's context, which skips
    /// the spans its filter leaves out (a request's).
    fn current_trace_ids(&self) -> Option<(String, String)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let current = dispatch.current_span();
        let context = tracing_opentelemetry::get_otel_context(current.id()?, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        span_context.is_valid().then(|| {
            (
                span_context.trace_id().to_string(),
                span_context.span_id().to_string(),
            )
        })
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        // Looked up before formatting: the OpenTelemetry layer locks the span's extensions,
        // which the JSON formatter also reads.
        let ids = self.current_trace_ids();
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Some((trace_id, span_id)) = ids else {
            return writer.write_str(&line);
        };
        // The JSON formatter writes one object and a newline; the ids go before its end.
        let body = line.trim_end();
        let Some(open) = body.strip_suffix('}') else {
            return writer.write_str(&line);
        };
        writeln!(
            writer,
            "{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_id_of_their_span() {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::Layer;
        use tracing_subscriber::filter::filter_fn;

        let _alone = crate::one_subscriber_at_a_time();

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let captured = Captured::default();
        let writer = captured.clone();
        let cell = DispatchCell::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(JsonWithTraceIds::new(cell.clone()))
                    .with_writer(move || writer.clone())
                    .with_filter(filter_fn(|m| !crate::propagation::is_trace_span(m))),
            );
        let dispatch = tracing::Dispatch::new(subscriber);
        cell.set(dispatch.downgrade()).unwrap();
        let ids_of = |span: &tracing::Span| {
            let context = span.context();
            let span_ref = context.span();
            let ids = span_ref.span_context();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        };
        let (inner, request) = tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("inner");
            span.in_scope(|| tracing::info!(answer = 42, "inside"));
            tracing::info!("outside");
            // A request's span is left out of the log layer; its lines keep its ids.
            let request = tracing::info_span!("grpc.server", otel.kind = "server");
            request.in_scope(|| tracing::info!(answer = 43, "inside the request"));
            (ids_of(&span), ids_of(&request))
        });
        assert_ne!(inner.0, "0".repeat(32), "a real trace id");
        assert_ne!(request.0, "0".repeat(32), "a real trace id");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let has = |line: &serde_json::Value, answer: i64, (trace, span): &(String, String)| {
            assert_eq!(line["fields"]["answer"], answer, "{text}");
            assert_eq!(line["trace_id"], trace.as_str(), "{text}");
            assert_eq!(line["span_id"], span.as_str(), "{text}");
        };
        has(&lines[0], 42, &inner);
        assert!(
            lines[1].get("trace_id").is_none(),
            "no span, no ids: {text}"
        );
        has(&lines[2], 43, &request);
        assert!(
            lines[2].get("span").is_none(),
            "the span's fields stay in the trace"
        );
    }
}
