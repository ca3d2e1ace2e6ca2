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
        /// See [`SalonStatus`](crate::domain::SalonStatus); written only by `crate::store`.
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
        /// Carried in every onboarding token; bumped by uninstall and by a new install.
        pub token_generation: i32,
        /// When the company info was last read from YClients (refreshed at most daily).
        pub company_refreshed_at: Option<DateTimeUtc>,
        /// The WhatsApp state the supervisor last wrote (`linked`, `logged_out`, `failed`,
        /// `replaced`, `banned`); see [`WhatsappHealth`](crate::store::WhatsappHealth).
        pub whatsapp_state: Option<String>,
        /// A ban's end, when WhatsApp gave one.
        pub whatsapp_state_until: Option<DateTimeUtc>,
        pub whatsapp_state_at: Option<DateTimeUtc>,
        /// The number linked before the phone unlinked us (or the admin disconnected it).
        pub whatsapp_previous_phone: Option<String>,
        /// Set while a relink with another number waits for the admin's confirmation: the old one.
        pub number_change_from: Option<String>,
        /// The phone of the admin who last came from YClients (`user_data`), if valid.
        pub admin_phone: Option<String>,
        /// The YClients user who connected the app in this branch (the signed `user_data`'s id);
        /// only that user's links open it, until the app is installed again.
        pub connected_by: Option<String>,
        /// The user an operator released the salon from: refused until another user connects it.
        pub released_user: Option<String>,
        /// The holder entered by a signed link naming no user (`connected_by` is then NULL); a
        /// salon stored before `connected_by` existed has NULL there and `false` here.
        pub entered_unnamed: bool,
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
        /// The callback body; the API key and the webhook URL's secret in it are removed once
        /// the delivery ends (confirmed or given up).
        pub payload: String,
        /// See [`OutboxStatus`](crate::domain::OutboxStatus).
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub deadline_at: DateTimeUtc,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// The pair this callback offers YClients; it becomes the salon's only on confirmation.
        pub api_key_hash: Option<String>,
        pub api_key_prefix: Option<String>,
        pub webhook_secret_hash: Option<String>,
        /// See [`CallbackPurpose`](crate::domain::CallbackPurpose).
        pub purpose: String,
        /// The operator who asked for a rotation.
        pub requested_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One attempt of a callback delivery and YClients' answer to it.
pub mod callback_attempts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "callback_attempts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub callback_id: i32,
        pub salon_id: i64,
        /// From 1.
        pub attempt: i32,
        pub started_at: DateTimeUtc,
        pub duration_ms: i64,
        /// `None`: no answer came (a transport error, or nothing was sent).
        pub http_status: Option<i32>,
        /// The transport error, or how the answer was understood when it was not a confirmation.
        pub error: Option<String>,
        /// The start of YClients' answer body, the key and the secret removed.
        pub answer: Option<String>,
        /// `confirmed`, `retry` or `failed`.
        pub outcome: String,
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
        /// When the next attempt is due (`None`: at once).
        pub next_attempt_at: Option<DateTimeUtc>,
        /// Set when the inbox stopped retrying this event.
        pub gave_up_at: Option<DateTimeUtc>,
        /// The worker applying the event now, until `lease_until`.
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
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
        /// Grows with every change of the visit (date and time, staff, services) and with a
        /// booking made again after a cancellation; the message outbox keys on it.
        pub version: i32,
        pub staff: Option<String>,
        /// The services' titles, comma-separated.
        pub services: Option<String>,
        /// YClients' id of the staff member (what the booking is with, whatever their name).
        pub staff_id: Option<i64>,
        /// The services' ids, sorted, comma-separated (`None`: not every service had one).
        pub service_ids: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message_settings {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub salon_id: i64,
        /// `app::messages::MessageSettings` as JSON, validated on save.
        pub settings: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message_outbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        /// 0 for messages that belong to no booking (the opt-out acknowledgement).
        pub record_id: i64,
        pub kind: String,
        /// A reminder's offset before the visit, in minutes (0 for other kinds).
        pub offset_min: i32,
        pub version: i32,
        pub dedup_key: String,
        pub phone: Option<String>,
        pub status: String,
        pub reason: Option<String>,
        pub due_at: DateTimeUtc,
        pub visit_at: Option<DateTimeUtc>,
        pub lease_until: Option<DateTimeUtc>,
        pub attempts: i32,
        pub message_id: Option<String>,
        pub text: Option<String>,
        pub sent_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message_opt_outs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_opt_outs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub salon_id: i64,
        pub phone: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session_leases {
    use sea_orm::entity::prelude::*;

    /// Who runs a salon's WhatsApp session (see `crate::store::SessionLease`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_leases")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub salon_id: i64,
        /// The instance holding the lease; `None` when released.
        pub owner: Option<String>,
        /// Grows on every acquisition; fences the owner's writes.
        pub generation: i64,
        pub expires_at: Option<DateTimeUtc>,
        /// What the owner's session shows now (JSON of `linking::remote::SharedView`), written
        /// by the holder before it tells the other instances of a change.
        pub view: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instances {
    use sea_orm::entity::prelude::*;

    /// A running instance, seen every lease renewal interval.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub started_at: DateTimeUtc,
        pub seen_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance_calls {
    use sea_orm::entity::prelude::*;

    /// A command for a session (or the simulated phone) on another instance, and its answer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instance_calls")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub caller: String,
        pub target: String,
        /// JSON of `linking::remote::Call`.
        pub request: String,
        pub created_at: DateTimeUtc,
        pub taken_at: Option<DateTimeUtc>,
        /// JSON of the answer, once given.
        pub answer: Option<String>,
        pub answered_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod whatsapp_credentials {
    use sea_orm::entity::prelude::*;

    /// One sealed credential of a salon's WhatsApp backend (see `crate::store::credentials`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "whatsapp_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub salon_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub namespace: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// Nonce and AEAD ciphertext; never the plaintext.
        pub value: Vec<u8>,
        /// Which configured key sealed `value`.
        pub key_id: String,
        /// A time (unix seconds) the backend's sweeps delete by; not secret.
        pub stamp: Option<i64>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
