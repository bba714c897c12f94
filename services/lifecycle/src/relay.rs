//! Delivery of transitions to analytics' IngestTransitions.

use clm_outbox::delivery::{decode_all, failed, lazy_channel, outgoing};
use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::analytics::v1::IngestTransitionsRequest;
use clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use tonic::transport::Channel;

/// Sends batches of transitions to analytics.
#[derive(Clone)]
pub(crate) struct AnalyticsDelivery {
    client: AnalyticsServiceClient<Channel>,
}

impl AnalyticsDelivery {
    /// A delivery to analytics at `addr`.
    pub(crate) fn new(addr: &str) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            client: AnalyticsServiceClient::new(lazy_channel(addr)?),
        })
    }
}

#[async_trait::async_trait]
impl Deliver for AnalyticsDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = outgoing(
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
