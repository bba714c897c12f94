//! Delivery of signals to lifecycle's ApplySignals.

use clm_outbox::delivery::{decode_all, failed, lazy_channel, outgoing};
use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::lifecycle::v1::ApplySignalsRequest;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use tonic::transport::Channel;

/// Sends batches of signals to lifecycle.
#[derive(Clone)]
pub(crate) struct LifecycleDelivery {
    client: LifecycleServiceClient<Channel>,
}

impl LifecycleDelivery {
    /// A delivery to lifecycle at `addr`.
    pub(crate) fn new(addr: &str) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            client: LifecycleServiceClient::new(lazy_channel(addr)?),
        })
    }
}

#[async_trait::async_trait]
impl Deliver for LifecycleDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = outgoing(
            tenant,
            ApplySignalsRequest {
                signals: decode_all(batch),
            },
        )?;
        self.client
            .clone()
            .apply_signals(request)
            .await
            .map(|_| ())
            .map_err(|s| failed(&s))
    }
}
