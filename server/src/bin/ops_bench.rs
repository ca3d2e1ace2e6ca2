//! The operator console's list on 50,000 salons:
//! `cargo run --release -p server --bin ops_bench -- [salons]`.
//!
//! Creates a fresh database (a temporary SQLite file, or `BENCH_DATABASE_URL` for PostgreSQL —
//! give it an empty database), migrates it, inserts the salons (every 7th with WhatsApp
//! logged out while active, every 10th with a failed callback, every 100th with a given-up lifecycle event),
//! then times the list's query (the count and the page, as the console runs them) for each
//! filter and prints the median of 5 runs. Bounded: it stops by itself.

use sea_orm::{EntityTrait, Set};
use server::db::entities::{callback_outbox, lifecycle_events, salons};
use server::domain::SalonStatus;
use server::store::{SalonQuery, Store};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000)
        .clamp(1, 1_000_000);
    let dir = std::env::temp_dir().join(format!("ai-admin-ops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/ops.db?mode=rwc", dir.display()));
    let db = server::db::connect_and_migrate(&url, None).await?;
    let started = Instant::now();
    let now = chrono::Utc::now();
    let statuses = [
        "new",
        "activating",
        "active",
        "active",
        "active",
        "frozen",
        "activation_failed",
    ];
    for chunk in (1..=count).collect::<Vec<_>>().chunks(1_000) {
        let rows = chunk.iter().map(|&id| salons::ActiveModel {
            id: Set(1_000_000 + id),
            title: Set(format!("Салон красоты «Бенчмарк {id}»")),
            phone: Set(Some(format!("+7999{id:07}"))),
            status: Set(statuses[(id as usize) % statuses.len()].to_owned()),
            whatsapp_state: Set(Some(
                if id % 7 == 3 { "logged_out" } else { "linked" }.to_owned(),
            )),
            registered_at: Set(now),
            created_at: Set(now),
            updated_at: Set(now),
            token_generation: Set(0),
            ..Default::default()
        });
        salons::Entity::insert_many(rows).exec(&db).await?;
        let callbacks =
            chunk
                .iter()
                .filter(|&&id| id % 10 == 0)
                .map(|&id| callback_outbox::ActiveModel {
                    salon_id: Set(1_000_000 + id),
                    payload: Set("{}".to_owned()),
                    status: Set("failed".to_owned()),
                    attempts: Set(3),
                    next_attempt_at: Set(now),
                    deadline_at: Set(now),
                    last_error: Set(Some("Ошибка валидации".to_owned())),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                });
        callback_outbox::Entity::insert_many(callbacks)
            .exec(&db)
            .await?;
        let given_up =
            chunk
                .iter()
                .filter(|&&id| id % 100 == 0)
                .map(|&id| lifecycle_events::ActiveModel {
                    salon_id: Set(1_000_000 + id),
                    application_id: Set(1),
                    event: Set("freeze".to_owned()),
                    attempts: Set(5),
                    created_at: Set(now),
                    gave_up_at: Set(Some(now)),
                    ..Default::default()
                });
        lifecycle_events::Entity::insert_many(given_up)
            .exec(&db)
            .await?;
    }
    println!(
        "inserted {count} salons in {:.1} s ({url})",
        started.elapsed().as_secs_f64()
    );
    let store = Store::new(db);
    let base = SalonQuery {
        pending_since: now - chrono::Duration::minutes(10),
        limit: 50,
        ..Default::default()
    };
    let cases: Vec<(&str, SalonQuery)> = vec![
        ("all, first page", base.clone()),
        (
            "all, last page",
            SalonQuery {
                offset: (count as u64 / 50).saturating_sub(1) * 50,
                ..base.clone()
            },
        ),
        (
            "search by id",
            SalonQuery {
                text: Some((1_000_000 + count / 2).to_string()),
                ..base.clone()
            },
        ),
        (
            "search by title",
            SalonQuery {
                text: Some(format!("Бенчмарк {}", count / 3)),
                ..base.clone()
            },
        ),
        (
            "search by phone",
            SalonQuery {
                text: Some(format!("{:07}", count / 4)),
                ..base.clone()
            },
        ),
        (
            "status = frozen",
            SalonQuery {
                status: Some(SalonStatus::Frozen),
                ..base.clone()
            },
        ),
        (
            "whatsapp = logged_out",
            SalonQuery {
                whatsapp: Some(Some("logged_out".into())),
                ..base.clone()
            },
        ),
        (
            "needs attention",
            SalonQuery {
                attention: true,
                ..base.clone()
            },
        ),
        (
            "needs attention, page 20",
            SalonQuery {
                attention: true,
                offset: 19 * 50,
                ..base.clone()
            },
        ),
    ];
    for (name, query) in cases {
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let (_, matched) = store.ops_salons(&query).await?;
            times.push(t.elapsed());
            total = matched;
        }
        times.sort();
        let median: Duration = times[times.len() / 2];
        println!(
            "{name:<28} {total:>6} rows match   median {:>8.2} ms",
            median.as_secs_f64() * 1e3
        );
    }
    if std::env::var("BENCH_DATABASE_URL").is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
