//! sea-orm entities of the analytics tables. Instants are BIGINT microseconds (UTC);
//! days are whole days since 1970-01-01 (UTC).

/// Event ids already ingested: the receiver's dedupe record.
pub mod applied_event {
    use sea_orm::entity::prelude::*;

    /// A `applied_events` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "applied_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub applied_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Contacts as analytics needs them: creation, first touch, attributes for breakdowns.
pub mod contact {
    use sea_orm::entity::prelude::*;

    /// A `contacts` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        pub created_at: i64,
        pub source: String,
        pub campaign: String,
        pub attributes: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every interaction, for funnels, activity and NPS.
pub mod fact {
    use sea_orm::entity::prelude::*;

    /// A `interaction_facts` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "interaction_facts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub contact_id: String,
        pub kind: String,
        pub occurred_at: i64,
        pub amount_micros: i64,
        pub currency: String,
        pub campaign: String,
        pub channel: String,
        pub nps_score: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The orders rollup: one row per contact, UTC day and currency, purchases summed.
pub mod order {
    use sea_orm::entity::prelude::*;

    /// A `orders` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub day: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub currency: String,
        pub amount_micros: i64,
        pub purchases: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stage transitions from lifecycle.
pub mod transition {
    use sea_orm::entity::prelude::*;

    /// A `transitions` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transitions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub contact_id: String,
        pub model_id: String,
        pub from_stage: String,
        pub to_stage: String,
        pub occurred_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Marketing spend per channel or campaign and period.
pub mod spend {
    use sea_orm::entity::prelude::*;

    /// A `spend` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "spend")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub spend_id: String,
        pub channel: String,
        pub campaign: String,
        pub start_at: i64,
        pub end_at: i64,
        pub amount_micros: i64,
        pub currency: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stage rollup: per stage of a model, the contacts in it now, entries and exits.
pub mod stage_total {
    use sea_orm::entity::prelude::*;

    /// A `stage_totals` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stage_totals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub model_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub stage: String,
        pub current: i64,
        pub entries: i64,
        pub exits: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stage rollup: moves from one stage to another, counted.
pub mod stage_move {
    use sea_orm::entity::prelude::*;

    /// A `stage_moves` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stage_moves")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub model_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub from_stage: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub to_stage: String,
        pub transitions: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stage rollup: every ended stay's duration, keyed so that a stage's median is read
/// from the key's order (the stay is named by the transition that began it).
pub mod ended_stay {
    use sea_orm::entity::prelude::*;

    /// A `ended_stays` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ended_stays")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub model_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub stage: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub duration: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Stage rollup: the stage models a tenant has transitions of, with the latest
/// transition's instant (the rollups hold everything up to it).
pub mod stage_mark {
    use sea_orm::entity::prelude::*;

    /// A `stage_marks` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stage_marks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub model_id: String,
        pub latest_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Customers rollup: one row per contact with orders in a currency, holding its order
/// days and its first touch, so money reports read one row per customer.
pub mod customer_order {
    use sea_orm::entity::prelude::*;

    /// A `customer_orders` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "customer_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub currency: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        pub source: String,
        pub campaign: String,
        /// JSON: [[day, micros, purchases], ...], ascending by day.
        pub days: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Entry rollup: each contact's first interaction of each type, so a funnel over all time
/// finds its entries without reading every event of the entry type.
pub mod first_event {
    use sea_orm::entity::prelude::*;

    /// A `first_events` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "first_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        pub first_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How many first events the entry rollup holds per tenant and type, kept beside it, so a
/// funnel over all time counts its entries without stepping through every one.
pub mod entry_count {
    use sea_orm::entity::prelude::*;

    /// An `entry_counts` row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "entry_counts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        /// The rows of the type in `first_events`.
        pub entries: i64,
        /// No first event of the type is later than this (erasures leave it as it was,
        /// so it may be later than the latest that remains).
        pub latest_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
