//! The dashboard `clm up` serves: one page that draws the funnel, stage counts, cohort
//! retention and RFM segments of a tenant. The page calls the analytics service through
//! gRPC-Web; this server passes those calls on to analytics unchanged (same origin, so no
//! CORS), and only its read methods.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tonic::transport::Channel;
use tower::ServiceExt;

use clm_runtime::Shutdown;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");

/// The reports the page may call.
const READS: [&str; 4] = [
    "GetFunnel",
    "GetStageMetrics",
    "GetCohortRetention",
    "GetRfmSegments",
];

/// Binds `addr` now (so a taken port fails `clm up` at once) and returns the server, which
/// runs until `shutdown`, passing the page's calls to analytics at `analytics`.
pub(crate) async fn bind(
    addr: SocketAddr,
    analytics: SocketAddr,
    shutdown: Shutdown,
) -> Result<crate::run::Ready, crate::run::BoxError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("dashboard: cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let channel = Channel::from_shared(format!("http://{analytics}"))?.connect_lazy();
    let app = router(channel);
    tracing::info!(addr = %bound, "dashboard ready");
    Ok(Box::pin(async move {
        let stop = async move { shutdown.wait().await };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| {
                clm_runtime::Error::new(clm_runtime::ErrorCode::Internal, format!("dashboard: {e}"))
            })
    }))
}

/// The page, its script, and the pass-through of the report calls to `analytics`.
fn router(analytics: Channel) -> axum::Router {
    axum::Router::new()
        .route(
            "/",
            get(|| async { page(PAGE, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route("/clm.analytics.v1.AnalyticsService/{method}", post(pass_on))
        .with_state(analytics)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Sends a gRPC-Web call of the page to analytics, headers (tenant, token, trace context)
/// and body as they came, and streams the answer back.
async fn pass_on(
    State(channel): State<Channel>,
    axum::extract::Path(method): axum::extract::Path<String>,
    request: Request,
) -> Response {
    if !READS.contains(&method.as_str()) {
        return (StatusCode::NOT_FOUND, "not a dashboard report").into_response();
    }
    let (parts, body) = request.into_parts();
    let mut call = http::Request::new(tonic::body::Body::new(body));
    *call.method_mut() = parts.method;
    *call.uri_mut() = format!("http://analytics{}", parts.uri.path())
        .parse()
        .expect("a path of a matched route is a valid URI");
    *call.headers_mut() = parts.headers;
    call.headers_mut().remove(header::HOST);
    match channel.oneshot(call).await {
        Ok(answer) => answer.map(axum::body::Body::new).into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("analytics did not answer: {error}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(path: &str, method: http::Method) -> StatusCode {
        // Nothing listens there: only requests refused before reaching analytics answer
        // other than BAD_GATEWAY.
        let analytics = Channel::from_static("http://127.0.0.1:1").connect_lazy();
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/grpc-web+proto")
            .body(axum::body::Body::empty())
            .unwrap();
        router(analytics).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_page_and_its_script_are_served() {
        assert_eq!(status("/", http::Method::GET).await, StatusCode::OK);
        assert_eq!(
            status("/dashboard.js", http::Method::GET).await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn only_the_reports_pass_through_to_analytics() {
        for method in [
            "IngestInteractions",
            "IngestTransitions",
            "RecordSpend",
            "GetNps",
        ] {
            let path = format!("/clm.analytics.v1.AnalyticsService/{method}");
            assert_eq!(
                status(&path, http::Method::POST).await,
                StatusCode::NOT_FOUND,
                "{method}"
            );
        }
        let path = "/clm.contacts.v1.ContactsService/DeleteContact";
        assert_eq!(
            status(path, http::Method::POST).await,
            StatusCode::NOT_FOUND
        );
        let report = "/clm.analytics.v1.AnalyticsService/GetFunnel";
        assert_eq!(
            status(report, http::Method::POST).await,
            StatusCode::BAD_GATEWAY
        );
    }
}
