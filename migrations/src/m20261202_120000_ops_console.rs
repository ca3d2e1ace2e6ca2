//! The operator's console: an index for every filter of its salons list and for each part of a
//! salon's page. The title search is a case-insensitive substring match (`LOWER(title) LIKE`),
//! which no B-tree index serves: it scans `salons` alone, which the benchmark
//! (`cargo run -p server --features demo --bin ops_bench`) measures on 50,000 rows.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (index, table, columns)
const INDEXES: &[(&str, &str, &[&str])] = &[
    (
        "idx_ops_salons_whatsapp_state",
        "salons",
        &["whatsapp_state"],
    ),
    ("idx_ops_salons_phone", "salons", &["phone"]),
    ("idx_ops_salons_title", "salons", &["title"]),
    (
        "idx_ops_callback_outbox_salon",
        "callback_outbox",
        &["salon_id", "id"],
    ),
    (
        "idx_ops_lifecycle_events_salon",
        "lifecycle_events",
        &["salon_id", "gave_up_at"],
    ),
    (
        "idx_ops_entity_events_salon_resource",
        "entity_events",
        &["salon_id", "resource"],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, columns) in INDEXES {
            let mut index = Index::create();
            index.name(*name).table(Alias::new(*table)).if_not_exists();
            for column in *columns {
                index.col(Alias::new(*column));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            manager
                .drop_index(
                    Index::drop()
                        .name(*name)
                        .table(Alias::new(*table))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
