//! The YClients user an operator released a salon from (`released_user`), refused until another
//! user has connected it. Releasing only cleared `connected_by`, so the released user — whose
//! signed link has no expiry — could enter again at once and hold the salon before the newcomer
//! the operator released it for (found 2026-12-06 by an audit read as an attacker).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Salons {
    Table,
    ReleasedUser,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .add_column(string_null(Salons::ReleasedUser))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Salons::Table)
                    .drop_column(Salons::ReleasedUser)
                    .to_owned(),
            )
            .await
    }
}
