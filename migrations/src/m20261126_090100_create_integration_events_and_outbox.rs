use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IntegrationEvents::Table)
                    .if_not_exists()
                    .col(pk_auto(IntegrationEvents::Id))
                    .col(big_integer_null(IntegrationEvents::SalonId))
                    .col(string(IntegrationEvents::Kind))
                    .col(text(IntegrationEvents::Payload))
                    .col(timestamp_with_time_zone(IntegrationEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_integration_events_salon_kind")
                    .table(IntegrationEvents::Table)
                    .col(IntegrationEvents::SalonId)
                    .col(IntegrationEvents::Kind)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CallbackOutbox::Table)
                    .if_not_exists()
                    .col(pk_auto(CallbackOutbox::Id))
                    .col(big_integer(CallbackOutbox::SalonId))
                    .col(text(CallbackOutbox::Payload))
                    .col(string(CallbackOutbox::Status))
                    .col(integer(CallbackOutbox::Attempts).default(0))
                    .col(timestamp_with_time_zone(CallbackOutbox::NextAttemptAt))
                    .col(timestamp_with_time_zone(CallbackOutbox::DeadlineAt))
                    .col(string_null(CallbackOutbox::LeaseOwner))
                    .col(timestamp_with_time_zone_null(CallbackOutbox::LeaseUntil))
                    .col(text_null(CallbackOutbox::LastError))
                    .col(timestamp_with_time_zone(CallbackOutbox::CreatedAt))
                    .col(timestamp_with_time_zone(CallbackOutbox::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_callback_outbox_due")
                    .table(CallbackOutbox::Table)
                    .col(CallbackOutbox::Status)
                    .col(CallbackOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CallbackOutbox::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(IntegrationEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum IntegrationEvents {
    Table,
    Id,
    SalonId,
    Kind,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CallbackOutbox {
    Table,
    Id,
    SalonId,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    DeadlineAt,
    LeaseOwner,
    LeaseUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
}
