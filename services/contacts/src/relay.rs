//! Delivery of contact events to scoring's ApplyInteractions and analytics'
//! IngestInteractions.

use clm_outbox::delivery::{Peer, decode_all, failed};
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
    peer: Peer,
}

impl ScoringDelivery {
    /// A delivery to scoring at `addr`.
    pub(crate) fn new(
        addr: &str,
        security: &clm_runtime::Security,
    ) -> Result<Self, clm_runtime::SecurityError> {
        let peer = Peer::connect_lazy(addr, security)?;
        Ok(Self {
            client: ScoringServiceClient::new(peer.channel.clone()),
            peer,
        })
    }
}

#[async_trait::async_trait]
impl Deliver for ScoringDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let request = self.peer.request(
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
