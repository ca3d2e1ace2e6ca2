//! The database: connection (SQLite embedded, PostgreSQL in production), migrations, entities.
//! Entities are storage rows only; they never leave the server as request or response types.

pub mod entities;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};
use std::time::Duration;

/// Connects, creates the SQLite file's folder if needed, and migrates.
pub async fn connect_and_migrate(
    url: &str,
    schema: Option<&str>,
) -> Result<DatabaseConnection, DbErr> {
    if let Some(path) = sqlite_path(url) {
        if let Some(parent) = std::path::Path::new(&path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbErr::Custom(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
    }
    let mut options = options(url, schema);
    options
        .max_connections(if url.starts_with("sqlite:") { 8 } else { 16 })
        .min_connections(1);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL lets readers go on while the outbox worker writes; the busy timeout makes
        // concurrent writers wait for each other instead of failing.
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
        )
        .await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// A pool of `connections` to the (already migrated) PostgreSQL database at `url`, opened as
/// they are first needed, for a runtime of its own: a connection's socket belongs to the runtime
/// that opened it, which is the one that wakes whoever waits on it.
pub async fn connect_own_pool(
    url: &str,
    schema: Option<&str>,
    connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = options(url, schema);
    options
        .max_connections(connections)
        .min_connections(0)
        .connect_lazy(true)
        .idle_timeout(Duration::from_secs(60));
    Database::connect(options).await
}

/// What every pool of the app has: the timeouts, no statement logging, the schema.
fn options(url: &str, schema: Option<&str>) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if let Some(schema) = schema {
        options.set_schema_search_path(schema.to_owned());
    }
    options
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Round-trip time of a trivial query, for health.
pub async fn ping(db: &DatabaseConnection) -> Result<Duration, DbErr> {
    let started = std::time::Instant::now();
    db.execute_unprepared("SELECT 1").await?;
    Ok(started.elapsed())
}
