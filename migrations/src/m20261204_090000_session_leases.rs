//! One owner per WhatsApp session: a salon's session runs only on the instance holding its row
//! here (`owner`, until `expires_at`, renewed well inside it). `generation` grows on every
//! acquisition and fences the owner's writes to the salon's WhatsApp state: a paused old owner
//! carries a stale one and is refused.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionLeases {
    Table,
    SalonId,
    Owner,
    Generation,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SessionLeases::Table)
                    .if_not_exists()
                    .col(big_integer(SessionLeases::SalonId).primary_key())
                    .col(string_null(SessionLeases::Owner))
                    .col(big_integer(SessionLeases::Generation).default(0))
                    .col(timestamp_with_time_zone_null(SessionLeases::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_leases_owner")
                    .table(SessionLeases::Table)
                    .col(SessionLeases::Owner)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SessionLeases::Table).to_owned())
            .await
    }
}
