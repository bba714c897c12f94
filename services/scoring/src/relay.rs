//! Delivery of signals to lifecycle's ApplySignals.

use clm_outbox::delivery::{Peer, decode_all, failed};
use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::lifecycle::v1::ApplySignalsRequest;
use clm_proto::lifecycle::v1::lifecycle_service_client::LifecycleServiceClient;
use tonic::transport::Channel;

/// Sends batches of signals to lifecycle.
#[derive(Clone)]
pub(crate) struct LifecycleDelivery {
    client: LifecycleServiceClient<Channel>,
    peer: Peer,
}

impl LifecycleDelivery {
    /// A delivery to lifecycle at `addr`.
    pub(crate) fn new(
        addr: &str,
        security: &clm_runtime::Security,
    ) -> Result<Self, clm_runtime::SecurityError> {
        let peer = Peer::connect_lazy(addr, security)?;
        Ok(Self {
            client: LifecycleServiceClient::new(peer.channel.clone()),
            peer,
        })
    }
}

#[async_trait::async_trait]
impl Deliver for LifecycleDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = self.peer.request(
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
