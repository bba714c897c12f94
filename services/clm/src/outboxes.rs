//! Every outbox of the suite, read straight from the services' databases: what `clm outbox`
//! prints and how `clm bench ingest` knows the chain has drained.

use sea_orm::DatabaseConnection;

use crate::cli::StoreArgs;
use crate::run::BoxError;

/// One outbox: the writing service, the receiving one, and the writer's database.
pub(crate) struct Outbox {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    db: DatabaseConnection,
}

/// The outboxes in the order events flow through them (contacts, scoring, lifecycle), so
/// that reading them in turn and finding all empty means nothing is left anywhere: a row
/// is only deleted after its receiver committed, with its own outbox rows, the work it
/// caused.
pub(crate) async fn open(store: &StoreArgs) -> Result<Vec<Outbox>, BoxError> {
    let scoring_targets = [clm_scoring::store::signals::TARGET];
    let lifecycle_targets = [clm_lifecycle::store::engine::ANALYTICS];
    let mut outboxes = Vec::new();
    for (from, targets) in [
        ("contacts", clm_contacts::store::events::TARGETS),
        ("scoring", &scoring_targets[..]),
        ("lifecycle", &lifecycle_targets[..]),
    ] {
        let db = clm_store::connect(from, crate::run::location(store)).await?;
        for to in targets {
            outboxes.push(Outbox {
                from,
                to,
                db: db.clone(),
            });
        }
    }
    Ok(outboxes)
}

impl Outbox {
    pub(crate) async fn stats(&self) -> Result<clm_outbox::OutboxStats, BoxError> {
        Ok(clm_outbox::stats(&self.db, self.to).await?)
    }
}

/// Whether every outbox is empty, read in flow order.
pub(crate) async fn drained(outboxes: &[Outbox]) -> Result<bool, BoxError> {
    for outbox in outboxes {
        if clm_outbox::any_pending(&outbox.db, outbox.to).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
