use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Salons::Table)
                    .if_not_exists()
                    .col(big_integer(Salons::Id).primary_key())
                    .col(string(Salons::Title))
                    .col(string_null(Salons::Phone))
                    .col(string_null(Salons::Address))
                    .col(string_null(Salons::Timezone))
                    .col(string(Salons::Status))
                    .col(string_null(Salons::WhatsappPhone))
                    .col(string_null(Salons::LinkedOtherNumber))
                    .col(string_null(Salons::ApiKeyHash))
                    .col(string_null(Salons::ApiKeyPrefix))
                    .col(string_null(Salons::WebhookSecretHash))
                    .col(string_null(Salons::ActivationError))
                    .col(timestamp_with_time_zone(Salons::RegisteredAt))
                    .col(timestamp_with_time_zone(Salons::CreatedAt))
                    .col(timestamp_with_time_zone(Salons::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WhatsappDevices::Table)
                    .if_not_exists()
                    .col(big_integer(WhatsappDevices::SalonId).primary_key())
                    .col(string(WhatsappDevices::Backend))
                    .col(string_null(WhatsappDevices::Phone))
                    .col(text_null(WhatsappDevices::Credentials))
                    .col(timestamp_with_time_zone(WhatsappDevices::CreatedAt))
                    .col(timestamp_with_time_zone(WhatsappDevices::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_whatsapp_devices_salon")
                            .from(WhatsappDevices::Table, WhatsappDevices::SalonId)
                            .to(Salons::Table, Salons::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WhatsappDevices::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Salons::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Salons {
    Table,
    Id,
    Title,
    Phone,
    Address,
    Timezone,
    Status,
    WhatsappPhone,
    LinkedOtherNumber,
    ApiKeyHash,
    ApiKeyPrefix,
    WebhookSecretHash,
    ActivationError,
    RegisteredAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WhatsappDevices {
    Table,
    SalonId,
    Backend,
    Phone,
    Credentials,
    CreatedAt,
    UpdatedAt,
}
