//! The outbox row.

use sea_orm::entity::prelude::*;

/// One message waiting for delivery. The outbox is drained across tenants by the relay,
/// so its index leads with the target rather than the tenant.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub target: String,
    pub tenant_id: String,
    /// The first message's event id.
    pub event_id: String,
    /// How many messages `payload` holds (see `enqueue`).
    pub messages: i32,
    pub payload: Vec<u8>,
    pub traceparent: String,
    pub created_at: i64,
    pub attempts: i32,
    pub available_at: i64,
    pub lease_until: i64,
    pub last_error: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The receiving service (the `target` column without the format's suffix).
    pub fn receiver(&self) -> &str {
        self.target
            .strip_suffix(crate::store::PACKED)
            .unwrap_or(&self.target)
    }

    /// The (event id, payload) of each message the row holds, in the order written;
    /// `None` when a packed row does not parse.
    pub fn messages(&self) -> Option<Vec<(String, Vec<u8>)>> {
        crate::store::row_messages(&self.event_id, self.payload.clone(), self.messages).ok()
    }
}
