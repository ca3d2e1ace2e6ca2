//! Whether a salon's current holder entered by a signed link naming no user
//! (`entered_unnamed`). A named user who connects such a salon ends the texts and owed messages
//! that link chose (anyone's, for all we know); a salon stored before `connected_by` existed has
//! it NULL too, but its texts are its own admin's, and its first named entry keeps them. Every
//! row stored before this column is counted as such a salon (`false`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Salons {
    Table,
    EnteredUnnamed,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .add_column(boolean(Salons::EnteredUnnamed).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .drop_column(Salons::EnteredUnnamed)
                    .to_owned(),
            )
            .await
    }
}
