//! The booking messages' outbox indexes what is set only after sending — the WhatsApp message
//! id (delivery receipts look rows up by it) and the time sent (the daily cap counts a salon's
//! sends since midnight) — only where it is set. Every row is inserted with both NULL, so the
//! full indexes cost every `record` webhook two index insertions for entries no query reads;
//! partial, an insert touches five of the table's indexes instead of seven. Both lookups
//! (`message_id = ?`, `sent_at >= ?`) imply the column is not NULL, which PostgreSQL's and
//! SQLite's planners prove, so they keep using the index.
//!
//! Raw SQL: sea-query builds no `WHERE` for an index. The statements are the same on both, and
//! run in one transaction on every backend. Without it SQLite's migrations run statement by
//! statement on whichever pooled connection is free, and the `CREATE INDEX` after the `DROP INDEX`
//! failed with "index … already exists" (seen here): a connection compiles against the schema it
//! has loaded, which can predate another connection's drop.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 4] = [
    "DROP INDEX IF EXISTS idx_message_outbox_message",
    "CREATE INDEX idx_message_outbox_message ON message_outbox (message_id) \
     WHERE message_id IS NOT NULL",
    "DROP INDEX IF EXISTS idx_message_outbox_sent",
    "CREATE INDEX idx_message_outbox_sent ON message_outbox (salon_id, sent_at) \
     WHERE sent_at IS NOT NULL",
];

const DOWN: [&str; 4] = [
    "DROP INDEX IF EXISTS idx_message_outbox_message",
    "CREATE INDEX idx_message_outbox_message ON message_outbox (message_id)",
    "DROP INDEX IF EXISTS idx_message_outbox_sent",
    "CREATE INDEX idx_message_outbox_sent ON message_outbox (salon_id, sent_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &DOWN).await
    }

    /// In a transaction on every backend (one connection; see above).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}
