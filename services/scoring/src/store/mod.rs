//! Persistence of models, the ledger, histories, profiles and scores.

mod apply;
pub mod entities;
pub mod migration;
mod models;
mod scores;
pub mod signals;

use std::collections::BTreeMap;

use sea_orm::DatabaseConnection;

pub use apply::{Applied, Change, Event, EventKind};
pub use scores::HistoryEntry;

/// The scoring database.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    wake: clm_outbox::Wake,
}

impl Store {
    /// A store over an open, migrated connection; `wake` is told about committed signals.
    pub fn new(db: DatabaseConnection, wake: clm_outbox::Wake) -> Self {
        Self { db, wake }
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

fn json_map(map: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(map).expect("a string map always serialises")
}

fn map_json(value: serde_json::Value) -> BTreeMap<String, String> {
    serde_json::from_value(value).unwrap_or_default()
}
