//! Load check for entity webhooks: `cargo run --release -p server --features demo --bin bench -- [events] [concurrency]`.
//!
//! Starts the whole app in-process on loopback (its own SQLite file, or `BENCH_DATABASE_URL` for
//! PostgreSQL), activates one salon through the real flow (sandbox redirect, simulated phone,
//! callback), then posts a burst of distinct entity events to the registered webhook URL and
//! checks that every acknowledged event is in the database. Prints throughput, latency
//! percentiles and the process's peak memory. Bounded: it stops by itself.

use server::config::Settings;
use server::startup::Application;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let events: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000)
        .min(100_000);
    let concurrency: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(32)
        .clamp(1, 512);
    let dir = std::env::temp_dir().join(format!("ai-admin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let mut vars: HashMap<String, String> = [
        ("YCLIENTS_PARTNER_TOKEN", "sandbox-bench-partner-token"),
        ("YCLIENTS_APPLICATION_ID", "1001"),
        ("JWT_SECRET", "bench-jwt-secret-that-is-long-enough-0000"),
        ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
        ("YCLIENTS_SANDBOX", "true"),
        ("YCLIENTS_SANDBOX_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "human"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATABASE_URL".into(), database_url.clone());
    if let Ok(schema) = std::env::var("BENCH_DATABASE_SCHEMA") {
        vars.insert("DATABASE_SCHEMA".into(), schema);
    }
    let application = Application::build(Settings::from_map(&vars)?).await?;
    let handles = application.handles();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let sandbox = handles
        .sandbox
        .clone()
        .ok_or_else(|| anyhow::anyhow!("sandbox not running"))?;
    let simulator = handles
        .simulator
        .clone()
        .ok_or_else(|| anyhow::anyhow!("simulator not running"))?;

    // Activate one salon through the real flow.
    let salon_id = 962302;
    sandbox.create_pending_link(salon_id);
    let entered = client.get(sandbox.redirect_url(&[salon_id])).send().await?;
    anyhow::ensure!(
        entered.status().as_u16() == 303,
        "redirect answered {}",
        entered.status()
    );
    let salon = app::domain::SalonId::try_from(salon_id)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let reference = loop {
        if let app::status::LinkState::Qr { code, .. } = handles.linking.state(salon) {
            break code.split("ref=").nth(1).unwrap_or_default().to_owned();
        }
        anyhow::ensure!(Instant::now() < deadline, "no QR code");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    simulator
        .scan(&reference, app::domain::PhoneNumber::parse("79990009900")?)
        .await?;
    let webhook_url = loop {
        if let Some(url) = sandbox
            .callbacks()
            .iter()
            .find(|c| c.answered == 201)
            .and_then(|c| c.body["webhook_urls"][0].as_str().map(str::to_owned))
        {
            break url;
        }
        anyhow::ensure!(Instant::now() < deadline, "not activated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // The burst.
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(events);
    let mut acknowledged = 0usize;
    let mut refused = 0usize;
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..events {
        let permit = semaphore.clone().acquire_owned().await?;
        let client = client.clone();
        let url = webhook_url.clone();
        tasks.spawn(async move {
            let body = serde_json::json!({"company_id": salon_id, "resource": "record", "resource_id": 1_000_000 + i,
                "status": "create", "data": {"id": 1_000_000 + i, "datetime": "2026-12-01T12:00:00+03:00",
                "client": {"name": "Клиент", "phone": format!("7999{:07}", i)}, "deleted": false}});
            let t0 = Instant::now();
            let result = client.post(url).json(&body).timeout(Duration::from_secs(10)).send().await;
            drop(permit);
            (result.map(|r| r.status().is_success()).unwrap_or(false), t0.elapsed())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (ok, latency) = joined?;
        latencies.push(latency);
        if ok {
            acknowledged += 1
        } else {
            refused += 1
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    use sea_orm::ConnectionTrait;
    let backend = handles.db.get_database_backend();
    let stored: i64 = handles
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM entity_events".to_owned(),
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);

    println!(
        "entity webhook burst on {}",
        if database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!("  events sent           {events} (concurrency {concurrency})");
    println!("  acknowledged (2xx)    {acknowledged}");
    println!("  refused or failed     {refused}");
    println!("  stored in database    {stored}");
    println!("  wall time             {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput            {:.0} events/s",
        acknowledged as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50/p95/p99   {:.1} / {:.1} / {:.1} ms",
        ms(pct(0.50)),
        ms(pct(0.95)),
        ms(pct(0.99))
    );
    println!(
        "  latency max           {:.1} ms",
        ms(latencies[latencies.len() - 1])
    );
    if let Some(peak) = peak_rss_kib() {
        println!("  peak memory (VmHWM)   {:.1} MiB", peak as f64 / 1024.0);
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        stored as usize >= acknowledged,
        "LOST: {acknowledged} acknowledged, {stored} stored"
    );
    println!("  every acknowledged event is on disk: yes");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
