//! The WhatsApp credentials of every backend, in the database and sealed: one row per
//! `(salon, namespace, key)`, its `value` an AEAD ciphertext (nonce first) under the key
//! `key_id` names, bound to the row's salon, namespace and key. No per-salon files, so any
//! instance that takes a session over finds its credentials here.
//!
//! `stamp` is the one thing kept in clear beside a value: a time in unix seconds that the
//! backend's sweeps delete by (when a sent message was stored, when a message secret expires),
//! so a sweep is one `DELETE` and not a decryption of every row.
//!
//! The simulator's credentials move here too: the plaintext `whatsapp_devices.credentials` they
//! lived in is emptied (they cannot be sealed here, where no key is known; a simulated device
//! links again with a scan).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WhatsappCredentials {
    Table,
    SalonId,
    Namespace,
    Key,
    Value,
    KeyId,
    Stamp,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WhatsappDevices {
    Table,
    Credentials,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WhatsappCredentials::Table)
                    .if_not_exists()
                    .col(big_integer(WhatsappCredentials::SalonId))
                    .col(string(WhatsappCredentials::Namespace))
                    .col(string(WhatsappCredentials::Key))
                    .col(blob(WhatsappCredentials::Value))
                    .col(string(WhatsappCredentials::KeyId))
                    .col(big_integer_null(WhatsappCredentials::Stamp))
                    .col(timestamp_with_time_zone(WhatsappCredentials::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .name("pk_whatsapp_credentials")
                            .col(WhatsappCredentials::SalonId)
                            .col(WhatsappCredentials::Namespace)
                            .col(WhatsappCredentials::Key),
                    )
                    .to_owned(),
            )
            .await?;
        // Rotation finds the rows still sealed under a retired key.
        manager
            .create_index(
                Index::create()
                    .name("idx_whatsapp_credentials_key_id")
                    .table(WhatsappCredentials::Table)
                    .col(WhatsappCredentials::KeyId)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(WhatsappDevices::Table)
                    .value(WhatsappDevices::Credentials, Option::<String>::None)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WhatsappCredentials::Table).to_owned())
            .await
    }
}
