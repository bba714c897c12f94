//! Persistence of stage models, facts, stages, history, segments and the event log.

mod apply;
mod deferred;
pub mod engine;
pub mod entities;
pub mod migration;
mod models;
mod queries;
mod scheduler;

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

pub use apply::{Signal, SignalKind};
pub use queries::{HistoryEntry, LogEvent};
pub use scheduler::Fired;

/// The lifecycle database, and a signal that wakes watchers when events are committed.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    appended: Arc<Notify>,
    wake: clm_outbox::Wake,
}

impl Store {
    /// A store over an open, migrated connection; `wake` is told about committed
    /// transitions waiting in the outbox.
    pub fn new(db: DatabaseConnection, wake: clm_outbox::Wake) -> Self {
        Self {
            db,
            appended: Arc::default(),
            wake,
        }
    }

    /// The connection.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Resolves when events were appended by this process (other replicas' events are
    /// found by the watchers' poll).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    pub(crate) fn wake_watchers(&self) {
        self.appended.notify_waiters();
        self.wake.notify();
    }
}
