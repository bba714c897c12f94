//! sea-orm entities of the contacts tables. Instants are BIGINT microseconds (UTC).

/// One contact per row.
pub mod contact {
    use sea_orm::entity::prelude::*;

    /// A contact row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub email: String,
        pub first_name: String,
        pub last_name: String,
        pub phone: String,
        pub company: String,
        pub job_title: String,
        pub country: String,
        pub city: String,
        pub source: String,
        pub campaign: String,
        pub attributes: Json,
        pub email_opt_in: bool,
        pub email_consent_at: Option<i64>,
        pub sms_opt_in: bool,
        pub sms_consent_at: Option<i64>,
        pub created_at: i64,
        pub updated_at: i64,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The interaction timeline.
pub mod interaction {
    use sea_orm::entity::prelude::*;

    /// An interaction row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub contact_id: String,
        pub kind: String,
        pub occurred_at: i64,
        pub amount_micros: Option<i64>,
        pub currency: String,
        pub campaign: String,
        pub channel: String,
        pub properties: Json,
        pub recorded_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Ids of erased contacts, never to be reused. Holds no personal data.
pub mod tombstone {
    use sea_orm::entity::prelude::*;

    /// A tombstone row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_tombstones")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        pub erased_at: i64,
        pub merged_into: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
