//! A panic while handling a request becomes that request's INTERNAL error, instead of
//! tearing down the connection and every other call multiplexed on it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;

/// Turns panics of the inner service's futures into INTERNAL responses (logged).
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanic;

impl<S> tower::Layer<S> for CatchPanic {
    type Service = PanicsCaught<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PanicsCaught { inner }
    }
}

/// A service behind [`CatchPanic`].
#[derive(Clone, Debug)]
pub struct PanicsCaught<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for PanicsCaught<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let future = AssertUnwindSafe(self.inner.call(request)).catch_unwind();
        Box::pin(async move {
            match future.await {
                Ok(result) => result,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(rpc = %path, panic = %what, "request handler panicked");
                    Ok(tonic::Status::internal("internal error").into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, Service, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_the_service_goes_on() {
        let inner = tower::service_fn(|request: http::Request<()>| async move {
            assert!(request.uri().path() != "/boom", "a bug in a handler");
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("fine")))
        });
        let mut service = CatchPanic.layer(inner);
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request("/boom"))
            .await
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "13");
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request("/ok"))
            .await
            .unwrap();
        assert_eq!(response.into_body(), "fine");
    }
}
