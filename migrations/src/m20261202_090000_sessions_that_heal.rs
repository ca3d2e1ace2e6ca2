//! Sessions that heal: the salon's WhatsApp state as the supervisor last wrote it (so health,
//! metrics, a restart and the page agree on `replaced`, `banned` until when, `failed`, `logged_out`
//! even when no session runs), the number the salon had before its phone unlinked us (a relink
//! with another number waits for the admin's confirmation), that pending change, and the phone of
//! the admin who last opened the page (where a test message goes by default).
//! SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Salons {
    Table,
    WhatsappState,
    WhatsappStateUntil,
    WhatsappStateAt,
    WhatsappPreviousPhone,
    NumberChangeFrom,
    AdminPhone,
}

async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Salons::Table)
                .add_column(column)
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, string_null(Salons::WhatsappState)).await?;
        add(
            manager,
            timestamp_with_time_zone_null(Salons::WhatsappStateUntil),
        )
        .await?;
        add(
            manager,
            timestamp_with_time_zone_null(Salons::WhatsappStateAt),
        )
        .await?;
        add(manager, string_null(Salons::WhatsappPreviousPhone)).await?;
        add(manager, string_null(Salons::NumberChangeFrom)).await?;
        add(manager, string_null(Salons::AdminPhone)).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_salons_status_whatsapp_state")
                    .table(Salons::Table)
                    .col(Alias::new("status"))
                    .col(Salons::WhatsappState)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_salons_status_whatsapp_state")
                    .table(Salons::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Salons::AdminPhone,
            Salons::NumberChangeFrom,
            Salons::WhatsappPreviousPhone,
            Salons::WhatsappStateAt,
            Salons::WhatsappStateUntil,
            Salons::WhatsappState,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Salons::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
