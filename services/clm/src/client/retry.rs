//! Retries of idempotent calls. A call the server could not take (UNAVAILABLE: down,
//! restarting or draining; RESOURCE_EXHAUSTED: shedding load) or that never reached it is
//! sent again after a backoff with jitter, up to [`ATTEMPTS`] times, but only when sending
//! it twice is harmless: reads, and RecordInteraction (deduped by the caller's event id).
//! Any other call fails at once: it may have taken effect. A load generator sends each call
//! once ([`RetryIdempotent::once`]): a retried refusal would be measured as one slow call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tower::{Service, ServiceExt};

use crate::run::BoxError;

/// Attempts of one idempotent call, the first included.
pub(crate) const ATTEMPTS: u32 = 4;
/// The delay before the first retry; it doubles for each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);

/// Whether the method at `path` (`/package.Service/Method`) may be sent twice.
fn idempotent(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    const READS: [&str; 5] = ["Get", "List", "BatchGet", "Explain", "Simulate"];
    READS.iter().any(|prefix| method.starts_with(prefix)) || method == "RecordInteraction"
}

/// Whether an answer says the server did not take the call.
fn refused(response: &http::Response<Body>) -> bool {
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    status == Some(tonic::Code::Unavailable as i32)
        || status == Some(tonic::Code::ResourceExhausted as i32)
}

/// A channel whose idempotent calls are retried.
#[derive(Clone, Debug)]
pub(crate) struct RetryIdempotent<S> {
    inner: S,
    /// Attempts of an idempotent call, the first included.
    attempts: u32,
}

impl<S> RetryIdempotent<S> {
    /// Idempotent calls are sent up to `attempts` times (at least once).
    pub(crate) fn new(inner: S, attempts: u32) -> Self {
        Self {
            inner,
            attempts: attempts.max(1),
        }
    }
}

impl<S> Service<http::Request<Body>> for RetryIdempotent<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready takes this call; a clone stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let attempts = self.attempts;
        if attempts == 1 || !idempotent(request.uri().path()) {
            let call = inner.call(request);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            // A unary request is one small message: kept to be sent again.
            let bytes = body.collect().await?.to_bytes();
            let mut delay = FIRST_DELAY;
            let mut attempt = 1;
            loop {
                let mut again = http::Request::new(Body::new(Full::new(bytes.clone())));
                *again.method_mut() = parts.method.clone();
                *again.uri_mut() = parts.uri.clone();
                *again.version_mut() = parts.version;
                *again.headers_mut() = parts.headers.clone();
                let answer = match inner.ready().await {
                    Ok(ready) => ready.call(again).await,
                    Err(error) => Err(error),
                };
                let retry = match &answer {
                    Ok(response) => refused(response),
                    Err(_) => true, // not sent, or the connection failed
                };
                if !retry || attempt == attempts {
                    return answer.map_err(Into::into);
                }
                tokio::time::sleep(delay.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
                delay *= 2;
                attempt += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A server that refuses the first `refusals` calls with `code`, then answers OK.
    fn server(
        refusals: u32,
        code: tonic::Code,
        calls: Arc<AtomicU32>,
    ) -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = BoxError,
        Future = impl Future<Output = Result<http::Response<Body>, BoxError>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |request: http::Request<Body>| {
            let calls = calls.clone();
            async move {
                let body = request.into_body().collect().await?.to_bytes();
                assert_eq!(&body[..], b"message", "every attempt carries the message");
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let status = if n < refusals { code } else { tonic::Code::Ok };
                Ok::<_, BoxError>(
                    http::Response::builder()
                        .header("grpc-status", (status as i32).to_string())
                        .body(Body::empty())
                        .unwrap(),
                )
            }
        })
    }

    async fn call(path: &str, refusals: u32, code: tonic::Code) -> (String, u32) {
        call_with(ATTEMPTS, path, refusals, code).await
    }

    async fn call_with(
        attempts: u32,
        path: &str,
        refusals: u32,
        code: tonic::Code,
    ) -> (String, u32) {
        let calls = Arc::new(AtomicU32::new(0));
        let mut channel = RetryIdempotent::new(server(refusals, code, calls.clone()), attempts);
        let request = http::Request::post(format!("http://server{path}"))
            .body(Body::new(Full::new(bytes::Bytes::from_static(b"message"))))
            .unwrap();
        let response = channel.ready().await.unwrap().call(request).await.unwrap();
        let status = response.headers()["grpc-status"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_read_is_sent_again_while_the_server_is_unavailable_or_shedding() {
        let ok = (tonic::Code::Ok as i32).to_string();
        assert_eq!(
            call(
                "/clm.scoring.v1.ScoringService/GetScore",
                2,
                tonic::Code::Unavailable
            )
            .await,
            (ok.clone(), 3)
        );
        assert_eq!(
            call(
                "/clm.analytics.v1.AnalyticsService/GetFunnel",
                1,
                tonic::Code::ResourceExhausted
            )
            .await,
            (ok, 2)
        );
    }

    #[tokio::test]
    async fn retries_stop_after_the_last_attempt() {
        let unavailable = (tonic::Code::Unavailable as i32).to_string();
        assert_eq!(
            call(
                "/clm.contacts.v1.ContactsService/ListContacts",
                10,
                tonic::Code::Unavailable
            )
            .await,
            (unavailable, ATTEMPTS)
        );
    }

    #[tokio::test]
    async fn a_channel_of_one_attempt_sends_a_refused_read_once() {
        let exhausted = (tonic::Code::ResourceExhausted as i32).to_string();
        assert_eq!(
            call_with(
                1,
                "/clm.analytics.v1.AnalyticsService/GetFunnel",
                1,
                tonic::Code::ResourceExhausted
            )
            .await,
            (exhausted, 1)
        );
    }

    #[tokio::test]
    async fn a_write_that_may_have_taken_effect_is_sent_once() {
        let unavailable = (tonic::Code::Unavailable as i32).to_string();
        assert_eq!(
            call(
                "/clm.contacts.v1.ContactsService/CreateContact",
                1,
                tonic::Code::Unavailable
            )
            .await,
            (unavailable.clone(), 1)
        );
        assert_eq!(
            call(
                "/clm.lifecycle.v1.LifecycleService/TransitionContact",
                1,
                tonic::Code::Unavailable
            )
            .await,
            (unavailable, 1)
        );
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        let invalid = (tonic::Code::InvalidArgument as i32).to_string();
        assert_eq!(
            call(
                "/clm.scoring.v1.ScoringService/GetScore",
                1,
                tonic::Code::InvalidArgument
            )
            .await,
            (invalid, 1)
        );
    }

    #[tokio::test]
    async fn a_read_that_never_reached_the_server_is_sent_again() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let server = tower::service_fn(move |_: http::Request<Body>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    return Err::<http::Response<Body>, BoxError>("connection refused".into());
                }
                Ok(http::Response::new(Body::empty()))
            }
        });
        let mut channel = RetryIdempotent::new(server, ATTEMPTS);
        let request =
            http::Request::post("http://server/clm.contacts.v1.ContactsService/GetContact")
                .body(Body::empty())
                .unwrap();
        channel.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn idempotent_methods_are_reads_and_recording_by_event_id() {
        for path in [
            "/clm.contacts.v1.ContactsService/GetContact",
            "/clm.scoring.v1.ScoringService/BatchGetScores",
            "/clm.scoring.v1.ScoringService/ExplainScore",
            "/clm.contacts.v1.ContactsService/RecordInteraction",
        ] {
            assert!(idempotent(path), "{path}");
        }
        for path in [
            "/clm.contacts.v1.ContactsService/RecordInteractions",
            "/clm.contacts.v1.ContactsService/ImportContacts",
            "/clm.contacts.v1.ContactsService/MergeContacts",
            "/clm.scoring.v1.ScoringService/RescoreAll",
            "/clm.analytics.v1.AnalyticsService/RecordSpend",
        ] {
            assert!(!idempotent(path), "{path}");
        }
    }
}
