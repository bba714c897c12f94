//! What every gRPC delivery shares: a lazily connected channel to the receiving service, and
//! requests that carry the tenant, this service's credentials, the trace context and a
//! deadline.

use std::time::Duration;

use clm_runtime::auth::Credentials;
use clm_runtime::{Security, SecurityError};
use tonic::transport::Channel;

use crate::DeliveryError;

/// How long one delivery call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A receiving service.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Connects on first use and reconnects by itself, so a receiver that is down does not
    /// stop the sender from starting.
    pub channel: Channel,
    credentials: Credentials,
}

impl Peer {
    /// The service at `addr` (`host:port` or a URL), reached with `security`'s TLS and
    /// credentials.
    pub fn connect_lazy(addr: &str, security: &Security) -> Result<Self, SecurityError> {
        Ok(Self {
            channel: security.endpoint(addr)?.connect_lazy(),
            credentials: security.credentials.clone(),
        })
    }

    /// A request for `tenant` with this service's token for it, continuing the current
    /// trace, with [`CALL_TIMEOUT`].
    pub fn request<T>(&self, tenant: &str, message: T) -> Result<tonic::Request<T>, DeliveryError> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        let value = tenant
            .parse()
            .map_err(|_| DeliveryError(format!("tenant {tenant:?} is not valid metadata")))?;
        let metadata = request.metadata_mut();
        metadata.insert(clm_runtime::TENANT_METADATA_KEY, value);
        self.credentials
            .authorize(tenant, metadata)
            .map_err(|e| DeliveryError(e.to_string()))?;
        clm_telemetry::inject_context(metadata);
        Ok(request)
    }
}

/// A failed call as a delivery error.
pub fn failed(status: &tonic::Status) -> DeliveryError {
    DeliveryError(format!("{:?}: {}", status.code(), status.message()))
}

/// Decodes every payload of `batch` as `M`; a row that does not decode (possible only
/// through corruption, and not helped by retrying) is logged and skipped.
pub fn decode_all<M: prost::Message + Default>(batch: &[crate::Message]) -> Vec<M> {
    batch
        .iter()
        .filter_map(|message| match M::decode(message.payload.as_slice()) {
            Ok(decoded) => Some(decoded),
            Err(error) => {
                tracing::error!(outbox_id = message.id, %error, "undecodable outbox row skipped");
                None
            }
        })
        .collect()
}
