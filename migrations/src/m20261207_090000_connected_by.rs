//! Who connected the salon: the YClients user id from the signed `user_data` of the entry that
//! stored the installation (or, for a salon stored before this column, of its next entry). The
//! signature proves the user, not the branch, and YClients' installation check proves only that
//! our app is installed there; so a signed link of any YClients user, with another branch's id,
//! opened that branch. Now a branch someone connected opens only for that user, until the app is
//! installed again. Text: YClients has sent the id as a number and as a string.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Salons {
    Table,
    ConnectedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .add_column(string_null(Salons::ConnectedBy))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .drop_column(Salons::ConnectedBy)
                    .to_owned(),
            )
            .await
    }
}
