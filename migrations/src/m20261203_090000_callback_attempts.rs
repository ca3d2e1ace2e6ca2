//! Every attempt of a callback delivery with YClients' answer (`callback_attempts`: when, how
//! long, the HTTP status or the transport error, a bounded excerpt of the answer's body — never
//! the API key or the webhook secret), and what a callback is for (`callback_outbox.purpose`:
//! `activation`, or `rotation` of the webhook secret an operator asked for, with
//! `requested_by`). SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CallbackAttempts {
    Table,
    Id,
    CallbackId,
    SalonId,
    Attempt,
    StartedAt,
    DurationMs,
    HttpStatus,
    Error,
    Answer,
    Outcome,
}

#[derive(DeriveIden)]
enum CallbackOutbox {
    Table,
    Purpose,
    RequestedBy,
}

async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(CallbackOutbox::Table)
                .add_column(column)
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CallbackAttempts::Table)
                    .if_not_exists()
                    .col(pk_auto(CallbackAttempts::Id))
                    .col(integer(CallbackAttempts::CallbackId))
                    .col(big_integer(CallbackAttempts::SalonId))
                    .col(integer(CallbackAttempts::Attempt))
                    .col(timestamp_with_time_zone(CallbackAttempts::StartedAt))
                    .col(big_integer(CallbackAttempts::DurationMs))
                    .col(integer_null(CallbackAttempts::HttpStatus))
                    .col(text_null(CallbackAttempts::Error))
                    .col(text_null(CallbackAttempts::Answer))
                    .col(string(CallbackAttempts::Outcome))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_callback_attempts_callback")
                    .table(CallbackAttempts::Table)
                    .col(CallbackAttempts::CallbackId)
                    .col(CallbackAttempts::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_callback_attempts_salon")
                    .table(CallbackAttempts::Table)
                    .col(CallbackAttempts::SalonId)
                    .col(CallbackAttempts::Id)
                    .to_owned(),
            )
            .await?;
        add(
            manager,
            string(CallbackOutbox::Purpose)
                .default("activation")
                .to_owned(),
        )
        .await?;
        add(manager, string_null(CallbackOutbox::RequestedBy)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [CallbackOutbox::RequestedBy, CallbackOutbox::Purpose] {
            manager
                .alter_table(
                    Table::alter()
                        .table(CallbackOutbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(CallbackAttempts::Table).to_owned())
            .await
    }
}
