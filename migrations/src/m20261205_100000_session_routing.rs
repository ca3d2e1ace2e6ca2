//! Sessions reachable from every instance (issue 15, third part).
//!
//! - `session_leases.view`: what the owner's session shows now (the QR code of the moment, a
//!   pairing code, the test message's receipts), as JSON, written by the lease's holder before it
//!   tells the other instances of a change, so a page served by any instance shows it.
//! - `instances`: every running instance, seen every lease renewal interval; the live ones share
//!   the sessions to restore between them.
//! - `instance_calls`: commands for a session that runs on another instance (restart, pairing
//!   code, disconnect, stop, test message, the simulated phone's actions), answered by that
//!   instance in the same row. The table is the mailbox; a notification only wakes its reader.
//!
//! SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionLeases {
    Table,
    View,
}

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    StartedAt,
    SeenAt,
}

#[derive(DeriveIden)]
enum InstanceCalls {
    Table,
    Id,
    Caller,
    Target,
    Request,
    CreatedAt,
    TakenAt,
    Answer,
    AnsweredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SessionLeases::Table)
                    .add_column(text_null(SessionLeases::View))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Instances::Table)
                    .if_not_exists()
                    .col(string(Instances::Id).primary_key())
                    .col(timestamp_with_time_zone(Instances::StartedAt))
                    .col(timestamp_with_time_zone(Instances::SeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InstanceCalls::Table)
                    .if_not_exists()
                    .col(pk_auto(InstanceCalls::Id))
                    .col(string(InstanceCalls::Caller))
                    .col(string(InstanceCalls::Target))
                    .col(text(InstanceCalls::Request))
                    .col(timestamp_with_time_zone(InstanceCalls::CreatedAt))
                    .col(timestamp_with_time_zone_null(InstanceCalls::TakenAt))
                    .col(text_null(InstanceCalls::Answer))
                    .col(timestamp_with_time_zone_null(InstanceCalls::AnsweredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_instance_calls_target")
                    .table(InstanceCalls::Table)
                    .col(InstanceCalls::Target)
                    .col(InstanceCalls::TakenAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InstanceCalls::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Instances::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SessionLeases::Table)
                    .drop_column(SessionLeases::View)
                    .to_owned(),
            )
            .await
    }
}
