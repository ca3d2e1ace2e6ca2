use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LifecycleEvents::Table)
                    .if_not_exists()
                    .col(pk_auto(LifecycleEvents::Id))
                    .col(big_integer(LifecycleEvents::SalonId))
                    .col(big_integer(LifecycleEvents::ApplicationId))
                    .col(string(LifecycleEvents::Event))
                    .col(timestamp_with_time_zone_null(LifecycleEvents::ProcessedAt))
                    .col(integer(LifecycleEvents::Attempts).default(0))
                    .col(text_null(LifecycleEvents::LastError))
                    .col(timestamp_with_time_zone(LifecycleEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EntityEvents::Table)
                    .if_not_exists()
                    .col(pk_auto(EntityEvents::Id))
                    .col(big_integer(EntityEvents::SalonId))
                    .col(string(EntityEvents::Resource))
                    .col(string(EntityEvents::ResourceId))
                    .col(string(EntityEvents::Status))
                    .col(string(EntityEvents::DataHash))
                    .col(string(EntityEvents::DedupKey))
                    .col(text(EntityEvents::Data))
                    .col(timestamp_with_time_zone(EntityEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_entity_events_dedup_key")
                    .table(EntityEvents::Table)
                    .col(EntityEvents::DedupKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Records::Table)
                    .if_not_exists()
                    .col(pk_auto(Records::Id))
                    .col(big_integer(Records::SalonId))
                    .col(big_integer(Records::RecordId))
                    .col(string_null(Records::ClientPhone))
                    .col(string_null(Records::ClientName))
                    .col(string_null(Records::Datetime))
                    .col(string(Records::Status))
                    .col(boolean(Records::Deleted))
                    .col(timestamp_with_time_zone(Records::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_records_salon_record")
                    .table(Records::Table)
                    .col(Records::SalonId)
                    .col(Records::RecordId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Records::Table.into_iden(),
            EntityEvents::Table.into_iden(),
            LifecycleEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum LifecycleEvents {
    Table,
    Id,
    SalonId,
    ApplicationId,
    Event,
    ProcessedAt,
    Attempts,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EntityEvents {
    Table,
    Id,
    SalonId,
    Resource,
    ResourceId,
    Status,
    DataHash,
    DedupKey,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Records {
    Table,
    Id,
    SalonId,
    RecordId,
    ClientPhone,
    ClientName,
    Datetime,
    Status,
    Deleted,
    UpdatedAt,
}
