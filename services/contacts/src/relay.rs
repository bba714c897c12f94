//! Delivery of contact events to scoring's ApplyInteractions and analytics'
//! IngestInteractions.

use clm_outbox::delivery::{decode_all, failed, lazy_channel, outgoing};
use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::analytics::v1::IngestInteractionsRequest;
use clm_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use clm_proto::scoring::v1::ApplyInteractionsRequest;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use tonic::transport::Channel;

/// Sends batches of contact events to scoring.
#[derive(Clone)]
pub(crate) struct ScoringDelivery {
    client: ScoringServiceClient<Channel>,
}

impl ScoringDelivery {
    /// A delivery to scoring at `addr`.
    pub(crate) fn new(addr: &str) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            client: ScoringServiceClient::new(lazy_channel(addr)?),
        })
    }
}

#[async_trait::async_trait]
impl Deliver for ScoringDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = outgoing(
            tenant,
            ApplyInteractionsRequest {
                events: decode_all(batch),
            },
        )?;
        self.client
            .clone()
            .apply_interactions(request)
            .await
            .map(|_| ())
            .map_err(|s| failed(&s))
    }
}

/// Sends batches of contact events to analytics.
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
            IngestInteractionsRequest {
                events: decode_all(batch),
            },
        )?;
        self.client
            .clone()
            .ingest_interactions(request)
            .await
            .map(|_| ())
            .map_err(|s| failed(&s))
    }
}
