//! sea-orm entities, one module per table (schema in the `migrations` crate).

pub mod salons {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "salons")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub title: String,
        pub phone: Option<String>,
        pub address: Option<String>,
        pub timezone: Option<String>,
        /// See [`SalonStatus`](crate::onboarding::SalonStatus).
        pub status: String,
        pub whatsapp_phone: Option<String>,
        pub linked_other_number: Option<String>,
        pub api_key_hash: Option<String>,
        pub api_key_prefix: Option<String>,
        pub webhook_secret_hash: Option<String>,
        pub activation_error: Option<String>,
        pub registered_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod whatsapp_devices {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "whatsapp_devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub salon_id: i64,
        pub backend: String,
        pub phone: Option<String>,
        pub credentials: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod integration_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "integration_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: Option<i64>,
        pub kind: String,
        pub payload: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod callback_outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "callback_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        /// The callback body; the API key in it is removed once YClients confirmed.
        pub payload: String,
        /// `pending`, `confirmed` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub deadline_at: DateTimeUtc,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod lifecycle_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "lifecycle_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        pub application_id: i64,
        pub event: String,
        pub processed_at: Option<DateTimeUtc>,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod entity_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "entity_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        pub resource: String,
        pub resource_id: String,
        pub status: String,
        pub data_hash: String,
        #[sea_orm(unique)]
        pub dedup_key: String,
        pub data: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod records {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "records")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        pub record_id: i64,
        pub client_phone: Option<String>,
        pub client_name: Option<String>,
        pub datetime: Option<String>,
        pub status: String,
        pub deleted: bool,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
