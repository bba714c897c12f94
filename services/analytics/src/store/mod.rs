//! Persistence of facts and rollups, and the queries reports read.

mod customer_rollup;
pub mod entities;
mod entry_rollup;
mod ingest;
pub mod migration;
mod reads;
mod stage_rollup;
mod timelines;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use ingest::{ContactFact, Ingested, TransitionFact};
pub use reads::{Customer, Stay};
pub use stage_rollup::{StageRollup, StageTotals};
pub use timelines::Timeline;

/// The analytics database.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where funnel timelines split into halves, per (tenant, entry type): see
    /// [`timelines`].
    pivots: moka::sync::Cache<(String, String), Arc<str>>,
}

/// Most (tenant, entry type) pivots kept.
const PIVOTS: u64 = 10_000;

impl Store {
    /// A store over an open, migrated connection.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            pivots: moka::sync::Cache::new(PIVOTS),
        }
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// Whole UTC days since 1970-01-01 of an instant in micros.
pub fn day_of(micros: i64) -> i64 {
    micros.div_euclid(86_400_000_000)
}
