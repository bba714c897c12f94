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

pub use migration::{CountOutboxMessages, CreateOutboxTable, IndexOutboxById, migrations};
pub use relay::{Deliver, DeliveryError, Relay, RelayOptions, Turn};
pub use store::{Message, NewMessage, OutboxStats, PACK, PACKED, any_pending, enqueue, stats};

use tokio::sync::watch;

/// Wakes relays at once when rows were committed, so the happy path has no polling delay.
/// Every relay subscribed to it wakes, and a wake-up sent while a relay is busy is kept.
#[derive(Debug, Clone)]
pub struct Wake(watch::Sender<u64>);

impl Default for Wake {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Wake {
    /// A new wake-up signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the relays new rows are committed.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Publishes each target's backlog (`clm_outbox_depth`, `clm_outbox_oldest_age_seconds`)
/// on `metrics`, read from `db` at every scrape.
pub fn register_metrics(
    metrics: &clm_runtime::Metrics,
    db: sea_orm::DatabaseConnection,
    targets: &'static [&'static str],
) {
    let depth = metrics.target_gauge(
        "outbox_depth",
        "Outbox messages waiting for delivery, by target",
    );
    let age = metrics.target_gauge(
        "outbox_oldest_age_seconds",
        "Age of the oldest undelivered outbox message, by target",
    );
    metrics.on_scrape(std::sync::Arc::new(move || {
        let (db, depth, age) = (db.clone(), depth.clone(), age.clone());
        Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            for target in targets {
                let labels = clm_runtime::metrics::TargetLabels {
                    target: (*target).to_owned(),
                };
                if let Ok(stats) = stats(&db, target).await {
                    depth.get_or_create(&labels).set(stats.depth as i64);
                    age.get_or_create(&labels)
                        .set(stats.oldest_created_at.map_or(0, |t| (now - t) / 1_000_000));
                }
            }
        })
    }));
}
