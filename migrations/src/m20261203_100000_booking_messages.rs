//! Booking messages over the salon's WhatsApp: the booking's version and details on `records`,
//! per-salon settings, the message outbox (one row per salon, record, kind, offset and version
//! under a unique key) and the numbers that opted out.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per statement.
        for column in [
            integer(Records::Version).default(0).to_owned(),
            string_null(Records::Staff).to_owned(),
            text_null(Records::Services).to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Records::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MessageSettings::Table)
                    .if_not_exists()
                    .col(big_integer(MessageSettings::SalonId).primary_key())
                    .col(text(MessageSettings::Settings))
                    .col(timestamp_with_time_zone(MessageSettings::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MessageOutbox::Table)
                    .if_not_exists()
                    .col(pk_auto(MessageOutbox::Id))
                    .col(big_integer(MessageOutbox::SalonId))
                    .col(big_integer(MessageOutbox::RecordId))
                    .col(string(MessageOutbox::Kind))
                    .col(integer(MessageOutbox::OffsetMin).default(0))
                    .col(integer(MessageOutbox::Version))
                    .col(string(MessageOutbox::DedupKey))
                    .col(string_null(MessageOutbox::Phone))
                    .col(string(MessageOutbox::Status))
                    .col(string_null(MessageOutbox::Reason))
                    .col(timestamp_with_time_zone(MessageOutbox::DueAt))
                    .col(timestamp_with_time_zone_null(MessageOutbox::VisitAt))
                    .col(timestamp_with_time_zone_null(MessageOutbox::LeaseUntil))
                    .col(integer(MessageOutbox::Attempts).default(0))
                    .col(string_null(MessageOutbox::MessageId))
                    .col(text_null(MessageOutbox::Text))
                    .col(timestamp_with_time_zone_null(MessageOutbox::SentAt))
                    .col(timestamp_with_time_zone(MessageOutbox::CreatedAt))
                    .col(timestamp_with_time_zone(MessageOutbox::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            ("uq_message_outbox_key", &["dedup_key"][..], true),
            ("idx_message_outbox_due", &["status", "due_at"][..], false),
            ("idx_message_outbox_salon", &["salon_id", "id"][..], false),
            (
                "idx_message_outbox_record",
                &["salon_id", "record_id", "status"][..],
                false,
            ),
            ("idx_message_outbox_message", &["message_id"][..], false),
            (
                "idx_message_outbox_sent",
                &["salon_id", "sent_at"][..],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(MessageOutbox::Table).if_not_exists();
            for column in columns {
                index.col(Alias::new(*column));
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MessageOptOuts::Table)
                    .if_not_exists()
                    .col(pk_auto(MessageOptOuts::Id))
                    .col(big_integer(MessageOptOuts::SalonId))
                    .col(string(MessageOptOuts::Phone))
                    .col(timestamp_with_time_zone(MessageOptOuts::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_message_opt_outs_salon_phone")
                    .table(MessageOptOuts::Table)
                    .col(MessageOptOuts::SalonId)
                    .col(MessageOptOuts::Phone)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            MessageOptOuts::Table.into_iden(),
            MessageOutbox::Table.into_iden(),
            MessageSettings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for column in [Records::Services, Records::Staff, Records::Version] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Records::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Records {
    Table,
    Version,
    Staff,
    Services,
}

#[derive(DeriveIden)]
enum MessageSettings {
    Table,
    SalonId,
    Settings,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MessageOutbox {
    Table,
    Id,
    SalonId,
    RecordId,
    Kind,
    OffsetMin,
    Version,
    DedupKey,
    Phone,
    Status,
    Reason,
    DueAt,
    VisitAt,
    LeaseUntil,
    Attempts,
    MessageId,
    Text,
    SentAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MessageOptOuts {
    Table,
    Id,
    SalonId,
    Phone,
    CreatedAt,
}
