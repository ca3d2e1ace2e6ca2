//! What a booking's staff and services *are*, beside what they are called: YClients' `staff_id`
//! and the services' ids (sorted, comma-separated). A booking's version — and the client's «ваша
//! запись изменена» — followed the staff's name and the services' titles as text, so renaming a
//! master or a service made the next update of every booking of theirs a move. Rows stored
//! before these columns have them NULL and are compared by the text as before, until their next
//! event stores the ids.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Records {
    Table,
    StaffId,
    ServiceIds,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Records::Table)
                    .add_column(big_integer_null(Records::StaffId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Records::Table)
                    .add_column(text_null(Records::ServiceIds))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Records::ServiceIds, Records::StaffId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Records::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
