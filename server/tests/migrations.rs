//! The schema migrates up, down and up again on the test database (SQLite by default,
//! PostgreSQL when `TEST_DATABASE_URL` is set).

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, TransactionTrait};

#[path = "common/run_id.rs"]
mod run_id;
use run_id::run_id;

/// A fresh database on the test backend, named after the run: its URL and, on PostgreSQL, its
/// own schema.
async fn fresh_database(name: &str) -> (String, Option<String>) {
    match std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    {
        Some(url) => {
            let schema = format!("{}_{name}_{}", run_id(), uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&url).await.expect("PostgreSQL reachable");
            admin
                .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
                .await
                .expect("schema");
            (url, Some(schema))
        }
        None => {
            let dir = std::env::temp_dir()
                .join("ai-admin-connect-tests")
                .join(run_id());
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join(format!(
                "migrations-{name}-{}.db",
                uuid::Uuid::new_v4().simple()
            ));
            (format!("sqlite://{}?mode=rwc", path.display()), None)
        }
    }
}

#[tokio::test]
async fn migrations_apply_roll_back_and_apply_again() {
    let (url, schema) = fresh_database("m").await;
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

/// The outbox's receipt and daily-cap lookups still find their rows through the partial indexes
/// (`m20261206_090000_outbox_partial_indexes`): each backend's planner proves `message_id = ?`
/// and `sent_at >= ?` imply the index's `IS NOT NULL`. On PostgreSQL sequential scans are turned
/// off for the question, so an index it could not use would show as a `Seq Scan`.
/// (The queries are the shapes `store/messages.rs` sends.)
#[tokio::test]
async fn the_outbox_lookups_use_its_partial_indexes() {
    let (url, schema) = fresh_database("p").await;
    let db = server::db::connect_and_migrate(&url, schema.as_deref())
        .await
        .expect("migrated up");
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let txn = db.begin().await.expect("transaction");
    if postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .expect("planner setting");
    }
    // The table's other indexes on `salon_id` would compete; the question is only whether the
    // partial ones can serve these lookups (the transaction is rolled back).
    for other in [
        "idx_message_outbox_salon",
        "idx_message_outbox_record",
        "idx_message_outbox_due",
    ] {
        txn.execute_unprepared(&format!("DROP INDEX {other}"))
            .await
            .expect("index dropped for the question");
    }
    let explain = if postgres {
        "EXPLAIN"
    } else {
        "EXPLAIN QUERY PLAN"
    };
    for (query, index) in [
        (
            "SELECT id FROM message_outbox WHERE salon_id = 1 AND message_id = 'wamid.1' \
             AND status IN ('sent', 'delivered')",
            "idx_message_outbox_message",
        ),
        (
            "SELECT COUNT(*) FROM message_outbox WHERE salon_id = 1 \
             AND sent_at >= '2026-12-01 00:00:00+00'",
            "idx_message_outbox_sent",
        ),
    ] {
        let plan: Vec<String> = txn
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("{explain} {query}"),
            ))
            .await
            .expect("plan")
            .iter()
            .map(|row| {
                let column = if postgres { "QUERY PLAN" } else { "detail" };
                row.try_get::<String>("", column).expect("plan line")
            })
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains(index),
            "{query}\nshould use {index}; the plan was:\n{plan}"
        );
    }
    let definitions: Vec<String> = txn
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            if postgres {
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'message_outbox' \
                 AND schemaname = current_schema() AND indexname IN \
                 ('idx_message_outbox_message', 'idx_message_outbox_sent')"
            } else {
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name IN \
                 ('idx_message_outbox_message', 'idx_message_outbox_sent')"
            }
            .to_owned(),
        ))
        .await
        .expect("index definitions")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("definition"))
        .collect();
    assert_eq!(definitions.len(), 2, "{definitions:?}");
    assert!(
        definitions
            .iter()
            .all(|d| d.to_ascii_uppercase().contains("IS NOT NULL")),
        "both indexes are partial: {definitions:?}"
    );
}

/// The audit rows stored before the trail kept users by id alone
/// (`m20261210_090000_audit_user_id_only`) lose the signed user's name, phone and e-mail, and
/// keep the id and everything else.
#[tokio::test]
async fn the_audit_rows_stored_before_keep_the_entering_users_id_and_nothing_personal() {
    let (url, schema) = fresh_database("a").await;
    let db = server::db::connect_and_migrate(&url, schema.as_deref())
        .await
        .expect("migrated up");
    // Back to before the migration that rewrites the rows (and the ones after it).
    let migrations = Migrator::migrations();
    let rewriting = migrations
        .iter()
        .position(|m| m.name() == "m20261210_090000_audit_user_id_only")
        .expect("the audit rows' migration");
    Migrator::down(&db, Some((migrations.len() - rewriting) as u32))
        .await
        .expect("rolled back to before it");
    let old = r#"{"user":{"user_id":100500,"name":"Андрей Иванов","email":"andrey@example.com","phone":"79990009900","is_approved":true,"salon_name":"Орхидея"},"status":"new","installation":"pending"}"#;
    let other = r#"{"phone":"79990001122","linked":true}"#;
    for (kind, payload) in [("registration_started", old), ("whatsapp_linked", other)] {
        db.execute_unprepared(&format!(
            "INSERT INTO integration_events (salon_id, kind, payload, created_at) \
             VALUES (NULL, '{kind}', '{payload}', CURRENT_TIMESTAMP)"
        ))
        .await
        .expect("an old row");
    }
    Migrator::up(&db, None).await.expect("migrated up again");
    let payload = |kind: &'static str| {
        let db = &db;
        async move {
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    format!("SELECT payload FROM integration_events WHERE kind = '{kind}'"),
                ))
                .await
                .expect("query")
                .expect("the row");
            let text: String = row.try_get("", "payload").expect("payload");
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON")
        }
    };
    assert_eq!(
        payload("registration_started").await,
        serde_json::json!({"user_id": "100500", "status": "new", "installation": "pending"})
    );
    assert_eq!(
        payload("whatsapp_linked").await,
        serde_json::json!({"phone": "79990001122", "linked": true}),
        "other kinds of rows are left as they were"
    );
}
