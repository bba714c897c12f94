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
    pub event_id: String,
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
