//! The tower layer that authenticates every request before it reaches a service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Access, Verifier, access};
use crate::tenant::TENANT_METADATA_KEY;

/// Requires a valid bearer token with the RPC's scope (see [`access`]) when a verifier is
/// given; without one, requests pass untouched. The token's tenant replaces any
/// `x-tenant-id` the caller sent.
#[derive(Clone, Debug, Default)]
pub struct RequireAuth(pub Option<Verifier>);

impl<S> tower::Layer<S> for RequireAuth {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            verifier: self.0.clone(),
        }
    }
}

/// A service behind [`RequireAuth`].
#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
    verifier: Option<Verifier>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authenticate<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(verifier) = &self.verifier
            && let Err(status) = admit(verifier, &mut request)
        {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        Box::pin(self.inner.call(request))
    }
}

/// Checks the request's token against the path's rule, and puts the token's tenant in
/// place of the caller's `x-tenant-id`.
fn admit<B>(verifier: &Verifier, request: &mut http::Request<B>) -> Result<(), tonic::Status> {
    let rule = access(request.uri().path());
    if rule == Some(Access::Public) {
        return Ok(());
    }
    let token = bearer(request.headers()).ok_or_else(|| {
        tonic::Status::unauthenticated("a bearer token is required (authorization: Bearer ...)")
    })?;
    let caller = verifier
        .verify(token)
        .map_err(|refused| tonic::Status::unauthenticated(refused.0))?;
    match rule {
        None => return Err(tonic::Status::unimplemented("no such method")),
        Some(Access::Scope(scope)) if !caller.has_scope(scope) => {
            return Err(tonic::Status::permission_denied(format!(
                "the token lacks the scope {scope}"
            )));
        }
        Some(_) => {}
    }
    let tenant = http::HeaderValue::from_str(&caller.tenant)
        .map_err(|_| tonic::Status::unauthenticated("the token's tenant_id is not valid"))?;
    request.headers_mut().insert(TENANT_METADATA_KEY, tenant);
    Ok(())
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
