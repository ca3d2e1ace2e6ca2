//! Trust boundaries: a per-salon token generation (bumped by uninstall and by a new install, so
//! every onboarding token issued before it dies), the company info's refresh time (the entry reads
//! it from YClients at most daily), the pending API key / webhook secret pair on the callback row
//! (it becomes the salon's only when YClients confirms), and the lifecycle inbox's retry schedule.
//! SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Salons {
    Table,
    TokenGeneration,
    CompanyRefreshedAt,
}

#[derive(DeriveIden)]
enum CallbackOutbox {
    Table,
    ApiKeyHash,
    ApiKeyPrefix,
    WebhookSecretHash,
}

#[derive(DeriveIden)]
enum LifecycleEvents {
    Table,
    NextAttemptAt,
    GaveUpAt,
}

async fn add(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).add_column(column).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(
            manager,
            Salons::Table,
            integer(Salons::TokenGeneration).default(0).to_owned(),
        )
        .await?;
        add(
            manager,
            Salons::Table,
            timestamp_with_time_zone_null(Salons::CompanyRefreshedAt),
        )
        .await?;
        add(
            manager,
            CallbackOutbox::Table,
            string_null(CallbackOutbox::ApiKeyHash),
        )
        .await?;
        add(
            manager,
            CallbackOutbox::Table,
            string_null(CallbackOutbox::ApiKeyPrefix),
        )
        .await?;
        add(
            manager,
            CallbackOutbox::Table,
            string_null(CallbackOutbox::WebhookSecretHash),
        )
        .await?;
        add(
            manager,
            LifecycleEvents::Table,
            timestamp_with_time_zone_null(LifecycleEvents::NextAttemptAt),
        )
        .await?;
        add(
            manager,
            LifecycleEvents::Table,
            timestamp_with_time_zone_null(LifecycleEvents::GaveUpAt),
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_lifecycle_events_due")
                    .table(LifecycleEvents::Table)
                    .col(LifecycleEvents::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_lifecycle_events_due")
                    .table(LifecycleEvents::Table)
                    .to_owned(),
            )
            .await?;
        let drops: [(DynIden, DynIden); 7] = [
            (
                Salons::Table.into_iden(),
                Salons::TokenGeneration.into_iden(),
            ),
            (
                Salons::Table.into_iden(),
                Salons::CompanyRefreshedAt.into_iden(),
            ),
            (
                CallbackOutbox::Table.into_iden(),
                CallbackOutbox::ApiKeyHash.into_iden(),
            ),
            (
                CallbackOutbox::Table.into_iden(),
                CallbackOutbox::ApiKeyPrefix.into_iden(),
            ),
            (
                CallbackOutbox::Table.into_iden(),
                CallbackOutbox::WebhookSecretHash.into_iden(),
            ),
            (
                LifecycleEvents::Table.into_iden(),
                LifecycleEvents::NextAttemptAt.into_iden(),
            ),
            (
                LifecycleEvents::Table.into_iden(),
                LifecycleEvents::GaveUpAt.into_iden(),
            ),
        ];
        for (table, column) in drops {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}
