//! `cargo run -p migrations -- up` (DATABASE_URL from the environment): the schema, standalone.

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migrations::Migrator).await;
}
