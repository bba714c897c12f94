//! What every gRPC delivery shares: a lazily connected channel, and a request that carries
//! the tenant, the trace context and a deadline.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::DeliveryError;

/// How long one delivery call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A channel to `addr` (`host:port` or a URL) that connects on first use and reconnects by
/// itself, so a receiver that is down does not stop the sender from starting.
pub fn lazy_channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let url = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(url)?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

/// A request for `tenant`, continuing the current trace, with [`CALL_TIMEOUT`].
pub fn outgoing<T>(tenant: &str, message: T) -> Result<tonic::Request<T>, DeliveryError> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_TIMEOUT);
    let tenant = tenant
        .parse()
        .map_err(|_| DeliveryError(format!("tenant {tenant:?} is not valid metadata")))?;
    request
        .metadata_mut()
        .insert(clm_runtime::TENANT_METADATA_KEY, tenant);
    clm_telemetry::inject_context(request.metadata_mut());
    Ok(request)
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
