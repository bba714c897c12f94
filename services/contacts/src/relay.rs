//! Delivery of contact events to scoring's ApplyInteractions.

use std::time::Duration;

use prost::Message as _;
use tonic::transport::{Channel, Endpoint};

use clm_outbox::{Deliver, DeliveryError, Message};
use clm_proto::common::v1::ContactEvent;
use clm_proto::scoring::v1::ApplyInteractionsRequest;
use clm_proto::scoring::v1::scoring_service_client::ScoringServiceClient;

/// How long one delivery call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends batches of contact events to scoring over one lazily connected channel.
#[derive(Clone)]
pub(crate) struct ScoringDelivery {
    client: ScoringServiceClient<Channel>,
}

impl ScoringDelivery {
    /// A delivery to scoring at `addr` (`host:port` or a URL); connects on first use and
    /// reconnects by itself.
    pub(crate) fn new(addr: &str) -> Result<Self, tonic::transport::Error> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(url)?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(Self {
            client: ScoringServiceClient::new(channel),
        })
    }
}

#[async_trait::async_trait]
impl Deliver for ScoringDelivery {
    async fn deliver(&self, tenant: &str, batch: &[Message]) -> Result<(), DeliveryError> {
        let mut events = Vec::with_capacity(batch.len());
        for message in batch {
            match ContactEvent::decode(message.payload.as_slice()) {
                Ok(event) => events.push(event),
                // Written by this service from a valid message: cannot happen short of
                // corruption, and retrying would not help. Logged and skipped.
                Err(error) => {
                    tracing::error!(outbox_id = message.id, %error, "undecodable outbox row skipped");
                }
            }
        }
        let mut request = tonic::Request::new(ApplyInteractionsRequest { events });
        request.set_timeout(CALL_TIMEOUT);
        let tenant = tenant
            .parse()
            .map_err(|_| DeliveryError(format!("tenant {tenant:?} is not valid metadata")))?;
        request
            .metadata_mut()
            .insert(clm_runtime::TENANT_METADATA_KEY, tenant);
        clm_telemetry::inject_context(request.metadata_mut());
        self.client
            .clone()
            .apply_interactions(request)
            .await
            .map(|_| ())
            .map_err(|status| DeliveryError(format!("{:?}: {}", status.code(), status.message())))
    }
}
