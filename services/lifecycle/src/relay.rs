//! Delivery of transitions to analytics' IngestTransitions.

use clm_outbox::delivery::{Peer, decode_all, failed};
use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::analytics::v1::IngestTransitionsRequest;
use clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use tonic::transport::Channel;

/// Sends batches of transitions to analytics.
#[derive(Clone)]
pub(crate) struct AnalyticsDelivery {
    client: AnalyticsServiceClient<Channel>,
    peer: Peer,
}

impl AnalyticsDelivery {
    /// A delivery to analytics at `addr`.
    pub(crate) fn new(
        addr: &str,
        security: &clm_runtime::Security,
    ) -> Result<Self, clm_runtime::SecurityError> {
        let peer = Peer::connect_lazy(addr, security)?;
        Ok(Self {
            client: AnalyticsServiceClient::new(peer.channel.clone()),
            peer,
        })
    }
}

#[async_trait::async_trait]
impl Deliver for AnalyticsDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = self.peer.request(
            tenant,
            IngestTransitionsRequest {
                transitions: decode_all(batch),
            },
        )?;
        self.client
            .clone()
            .ingest_transitions(request)
            .await
            .map(|_| ())
            .map_err(|s| failed(&s))
    }
}
