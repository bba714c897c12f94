//! Client commands: call a running suite and print tables for people at a terminal.

mod contacts;
mod interactions;
mod lifecycle;
mod report;
mod retry;
mod scoring;
pub(crate) mod table;

pub(crate) use contacts::{contacts, ids_by_email};
pub(crate) use interactions::{interactions, parse_time};
pub(crate) use lifecycle::{segments, stage, watch};
pub(crate) use report::report;
pub(crate) use retry::ATTEMPTS;
pub(crate) use scoring::{models, score};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use clm_proto::contacts::v1::contacts_service_client::ContactsServiceClient;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

use crate::cli::ClientArgs;
use crate::run::BoxError;

/// Adds the tenant, the bearer token and the trace context to every call.
#[derive(Clone)]
pub(crate) struct CallContext {
    tenant: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    deadline: std::time::Duration,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for CallContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(clm_runtime::TENANT_METADATA_KEY, self.tenant.clone());
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
        }
        clm_telemetry::inject_context(request.metadata_mut());
        // Sent as grpc-timeout: the server gives up when the caller has.
        request.set_timeout(self.deadline);
        Ok(request)
    }
}

/// A channel whose idempotent calls are retried while the server cannot take them.
pub(crate) type Wire = retry::RetryIdempotent<Channel>;

pub(crate) type Contacts = ContactsServiceClient<InterceptedService<Wire, CallContext>>;

pub(crate) type Scoring = ScoringServiceClient<InterceptedService<Wire, CallContext>>;

pub(crate) async fn channel(
    args: &ClientArgs,
    addr: &str,
    name: &str,
) -> Result<Channel, BoxError> {
    let tls = args.tls_ca_file.as_ref().map(|ca| {
        let mut config = tonic::transport::ClientTlsConfig::new();
        let read = |path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        Ok::<_, String>(config)
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("{scheme}://{addr}")
    };
    // The deadline bounds each call until its answer starts (a stream's messages may
    // follow for as long as the server sends them).
    let mut endpoint = Channel::from_shared(endpoint)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(args.call_timeout_secs));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls?)?;
    }
    Ok(endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach {name} at {addr}: {e}"))?)
}

fn context(args: &ClientArgs) -> Result<CallContext, BoxError> {
    let authorization = match &args.token {
        Some(token) => Some(
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| "CLM_TOKEN is not a valid token")?,
        ),
        None => None,
    };
    Ok(CallContext {
        tenant: args.tenant.parse()?,
        deadline: std::time::Duration::from_secs(args.call_timeout_secs),
        authorization,
    })
}

/// A client of the contacts service.
pub(crate) async fn connect_contacts(args: &ClientArgs) -> Result<Contacts, BoxError> {
    let channel = channel(args, &args.contacts_addr, "contacts").await?;
    Ok(ContactsServiceClient::with_interceptor(
        retry::RetryIdempotent::new(channel, args.attempts),
        context(args)?,
    ))
}

/// A client of the scoring service.
pub(crate) async fn connect_scoring(args: &ClientArgs) -> Result<Scoring, BoxError> {
    let channel = channel(args, &args.scoring_addr, "scoring").await?;
    Ok(ScoringServiceClient::with_interceptor(
        retry::RetryIdempotent::new(channel, args.attempts),
        context(args)?,
    ))
}

pub(crate) type Lifecycle = LifecycleServiceClient<InterceptedService<Wire, CallContext>>;

/// A client of the lifecycle service.
pub(crate) async fn connect_lifecycle(args: &ClientArgs) -> Result<Lifecycle, BoxError> {
    let channel = channel(args, &args.lifecycle_addr, "lifecycle").await?;
    Ok(LifecycleServiceClient::with_interceptor(
        retry::RetryIdempotent::new(channel, args.attempts),
        context(args)?,
    ))
}

pub(crate) type Analytics = AnalyticsServiceClient<InterceptedService<Wire, CallContext>>;

/// A client of the analytics service.
pub(crate) async fn connect_analytics(args: &ClientArgs) -> Result<Analytics, BoxError> {
    let channel = channel(args, &args.analytics_addr, "analytics").await?;
    Ok(AnalyticsServiceClient::with_interceptor(
        retry::RetryIdempotent::new(channel, args.attempts),
        context(args)?,
    ))
}

/// A status as a readable error, with its field violations.
pub(crate) fn explain(status: &tonic::Status) -> BoxError {
    use tonic_types::StatusExt;
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            text.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    text.into()
}

/// A proto timestamp as RFC 3339 (UTC).
pub(crate) fn show_time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
