//! The schema migrates up, down and up again on the test database (SQLite by default,
//! PostgreSQL when `TEST_DATABASE_URL` is set).

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database};

#[tokio::test]
async fn migrations_apply_roll_back_and_apply_again() {
    let (url, schema) = match std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        Some(url) => {
            let schema = format!("m_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&url).await.expect("PostgreSQL reachable");
            admin
                .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .expect("schema");
            (url, Some(schema))
        }
        None => {
            let path = std::env::temp_dir()
                .join(format!("migrations-{}.db", uuid::Uuid::new_v4().simple()));
            (format!("sqlite://{}?mode=rwc", path.display()), None)
        }
    };
    let db = server::db::connect_and_migrate(&url, schema.as_deref())
        .await
        .expect("migrated up");
    let expected = [
        "salons",
        "whatsapp_devices",
        "integration_events",
        "callback_outbox",
        "callback_attempts",
        "lifecycle_events",
        "entity_events",
        "records",
        "whatsapp_credentials",
    ];
    let manager = sea_orm_migration::SchemaManager::new(&db);
    for table in expected {
        assert!(
            manager.has_table(table).await.expect("query"),
            "{table} exists"
        );
    }
    assert_eq!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .len(),
        0
    );
    Migrator::down(&db, None).await.expect("rolled back");
    for table in expected {
        assert!(
            !manager.has_table(table).await.expect("query"),
            "{table} dropped"
        );
    }
    Migrator::up(&db, None).await.expect("up again");
    assert!(manager.has_table("salons").await.expect("query"));
}
