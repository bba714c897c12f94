//! clm-outbox: the transactional outbox. A service writes the rows that must reach another
//! service in the same transaction as the change that caused them ([`enqueue`]); a
//! [`Relay`] delivers them in batches, retrying with backoff and jitter until the receiver
//! acknowledges, and removes them. Receivers dedupe by `(tenant_id, event_id)`, so
//! at-least-once delivery gives each effect exactly once.
#![forbid(unsafe_code)]

pub mod delivery;
pub mod entity;
mod migration;
mod relay;
mod store;

pub use migration::CreateOutboxTable;
pub use relay::{Deliver, DeliveryError, Relay, RelayOptions, Turn};
pub use store::{Message, NewMessage, OutboxStats, enqueue, stats};

use std::sync::Arc;

use tokio::sync::Notify;

/// Wakes a relay at once when rows were committed, so the happy path has no polling delay.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// A new wake-up signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the relay new rows are committed. A wake-up sent while the relay is busy is
    /// kept, so none is lost.
    pub fn notify(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn notified(&self) {
        self.0.notified().await;
    }
}
