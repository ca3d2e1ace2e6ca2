//! The lifecycle inbox claimed like the callback outbox: a worker takes an event with a lease
//! (`lease_owner`, `lease_until`) before applying it, so with several instances on one database
//! each event is applied by one of them, once. SQLite adds one column per statement.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LifecycleEvents {
    Table,
    LeaseOwner,
    LeaseUntil,
}

async fn add(manager: &SchemaManager<'_>, column: ColumnDef) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(LifecycleEvents::Table)
                .add_column(column)
                .to_owned(),
        )
        .await
}

async fn drop(manager: &SchemaManager<'_>, column: LifecycleEvents) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(LifecycleEvents::Table)
                .drop_column(column)
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add(manager, string_null(LifecycleEvents::LeaseOwner)).await?;
        add(
            manager,
            timestamp_with_time_zone_null(LifecycleEvents::LeaseUntil),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop(manager, LifecycleEvents::LeaseUntil).await?;
        drop(manager, LifecycleEvents::LeaseOwner).await
    }
}
