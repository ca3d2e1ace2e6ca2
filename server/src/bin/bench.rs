//! Benchmarks, one command each (release build; bounded, they stop by themselves):
//!
//! - `bench webhooks [events] [concurrency]` (or the old `bench [events] [concurrency]`): the
//!   entity-webhook burst below, 64 connections by default. `ENTITY_WEBHOOK_*` variables in the
//!   environment (writers, batch size, window, queue) reach the app, to compare settings.
//! - `bench live [streams] [salons]`: `streams` live SSE streams over `salons` salons (default
//!   10,000 over 500), each salon's state changing every `BENCH_CHANGE_EVERY_MS` (5,000) for
//!   `BENCH_SECS` (30). The server runs in this process, the streams in a child process (this
//!   binary as `bench live-clients`), so the server's RSS delta / streams is the memory per
//!   stream; the child measures the spread from a salon's first to last stream receiving a
//!   change.
//! - `bench idle`: time from start to healthy, and idle memory.
//! - `bench messages [salons] [events]`: booking messages. `events` `record` events (default
//!   10,000) over `salons` active, linked salons (default 500) go through the group commit: first
//!   half new bookings, then the other half changes (moves, cancellations, duplicates, no-op
//!   updates); the sender drains the outbox after each half (passes driven here, a fixed daytime
//!   clock). Checks that exactly the expected messages were sent, dropped and kept for later, and
//!   prints the outbox's throughput and the memory the sending took.
//! - `bench instances [streams] [changes]`: two instances on one PostgreSQL schema
//!   (`BENCH_DATABASE_URL=postgres://…`, a fresh schema is made and dropped): `streams` live
//!   streams (default 1,000) of one salon held on B, `changes` (default 100) published one at a
//!   time on A; for each change, the time from A's publish to each of B's streams receiving it.
//!   The streams are read in a child process (this binary as `bench instances-clients`, plain
//!   sockets), as browsers read them elsewhere; the two processes compare this machine's wall
//!   clock. Also, from B, the time from the publish to the room's write into the last of the
//!   streams' sockets (`LiveHub::last_fanout`). `BENCH_VIA_HYPER=1` keeps the streams off the
//!   lean path (in hyper), where that second figure is not printed.
//! - `bench failover [rounds]`: two instances on one PostgreSQL schema (`BENCH_DATABASE_URL`),
//!   with the session lease `SESSION_LEASE_MS` (30 s) renewed every `SESSION_LEASE_RENEW_MS` (10 s),
//!   taken from the environment. Each round a fresh
//!   instance A runs a salon's session (a QR code on the page), the page's live stream is held
//!   on B, and A is killed as a crash would (its sessions end without freeing their leases, it
//!   stops serving); the time from the kill to the next QR code — B's own — arriving on the
//!   stream held on B. The goal: within the lease's expiry plus 5 s.
//!
//! - `bench burst {url} [events] [concurrency]`: the webhook load generator alone, against any
//!   URL (`scripts/bench.sh` points it at the Node original too).
//!
//! The webhook burst starts the whole app in-process on loopback (its own SQLite file, or
//! `BENCH_DATABASE_URL` for PostgreSQL), activates one salon through the real flow (sandbox
//! redirect, simulated phone, callback), then posts a burst of distinct entity events to the
//! registered webhook URL from a child process (this binary as `bench burst`) and checks that
//! every acknowledged event is in the database. Prints throughput, latency percentiles and the
//! server's peak memory.

/// jemalloc returns freed memory to the system by itself (see server/Cargo.toml).
#[cfg(all(
    target_os = "linux",
    not(target_env = "musl"),
    not(feature = "dhat-heap")
))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--features dhat-heap`: every allocation counted with its call stack (`bench live` only).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// The heap's live bytes now, when dhat counts them.
fn heap_bytes() -> Option<u64> {
    #[cfg(feature = "dhat-heap")]
    {
        Some(dhat::HeapStats::get().curr_bytes as u64)
    }
    #[cfg(not(feature = "dhat-heap"))]
    {
        None
    }
}

use server::config::Settings;
use server::startup::Application;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some(
            mode @ ("webhooks" | "burst" | "live" | "live-clients" | "idle" | "messages"
            | "instances" | "instances-clients" | "failover"),
        ) => {
            let mode = mode.to_owned();
            args.remove(1);
            mode
        }
        _ => "webhooks".to_owned(),
    };
    match mode.as_str() {
        "live" => live(&args).await,
        "live-clients" => live_clients(&args).await,
        "idle" => idle(started).await,
        "burst" => burst(&args).await,
        "messages" => messages(&args).await,
        "instances" => instances(&args).await,
        "instances-clients" => instances_clients(&args).await,
        "failover" => failover(&args).await,
        _ => webhooks(&args).await,
    }
}

struct Running {
    handles: server::startup::AppHandles,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: std::path::PathBuf,
    database_url: String,
}

async fn start(extra: &[(&str, &str)]) -> anyhow::Result<Running> {
    start_with_clock(extra, server::clock::system()).await
}

async fn start_with_clock(
    extra: &[(&str, &str)],
    clock: server::clock::SharedClock,
) -> anyhow::Result<Running> {
    let dir = std::env::temp_dir().join(format!("ai-admin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/bench.db?mode=rwc", dir.display()));
    let schema = std::env::var("BENCH_DATABASE_SCHEMA").ok();
    start_on(&database_url, schema.as_deref(), &dir, extra, clock).await
}

async fn start_on(
    database_url: &str,
    schema: Option<&str>,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
    clock: server::clock::SharedClock,
) -> anyhow::Result<Running> {
    let database_url = database_url.to_owned();
    let mut vars: HashMap<String, String> = [
        ("YCLIENTS_PARTNER_TOKEN", "sandbox-bench-partner-token"),
        ("YCLIENTS_APPLICATION_ID", "1001"),
        ("JWT_SECRET", "bench-jwt-secret-that-is-long-enough-0000"),
        // Required on PostgreSQL; on SQLite it also keeps a generated key file out of `data/`.
        (
            "CREDENTIALS_KEYS",
            "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ),
        ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
        ("YCLIENTS_SANDBOX", "true"),
        ("YCLIENTS_SANDBOX_ADDR", "127.0.0.1:0"),
        ("LOG_FORMAT", "human"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    // The group commit's settings from the environment, to compare them in one build.
    .chain(std::env::vars().filter(|(k, _)| k.starts_with("ENTITY_WEBHOOK_")))
    .collect();
    vars.insert("DATABASE_URL".into(), database_url.clone());
    if let Some(schema) = schema {
        vars.insert("DATABASE_SCHEMA".into(), schema.to_owned());
    }
    let application = Application::build_with_clock(Settings::from_map(&vars)?, clock).await?;
    let handles = application.handles();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run(async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        handles,
        stop,
        server,
        dir: dir.to_owned(),
        database_url,
    })
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn webhooks(args: &[String]) -> anyhow::Result<()> {
    let events: usize = arg(args, 1, 2_000).min(100_000);
    let concurrency: usize = arg(args, 2, 64).clamp(1, 512);
    let running = start(&[]).await?;
    let handles = running.handles.clone();
    let database_url = running.database_url.clone();
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

    // The service's own metrics, read before and after the burst: its batches and commits.
    let metrics_url = webhook_url
        .split("/webhook/")
        .next()
        .map(|base| format!("{base}/marketplace/metrics"))
        .unwrap_or_default();
    let before = BatchFigures::read(&client, &metrics_url).await?;
    let cpu_before = CpuFigures::read(&database_url);
    // The burst, from a child process (this binary as `bench burst`), over real HTTP.
    let burst =
        tokio::task::spawn_blocking(move || run_burst(&webhook_url, events, concurrency)).await??;
    // Before anything closes: the service's database connections are still open.
    let cpu = CpuFigures::read(&database_url).since(&cpu_before);
    let batches = BatchFigures::read(&client, &metrics_url)
        .await?
        .since(&before);
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
        "entity webhook burst on {} (Rust)",
        if database_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    print!("{burst}");
    println!("  stored in database    {stored}");
    println!("{batches}");
    let acknowledged = burst
        .lines()
        .find_map(|l| l.trim().strip_prefix("acknowledged (2xx)"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    println!("{}", cpu.per_event(acknowledged));
    if let Some(peak) = peak_rss_kib() {
        println!(
            "  server peak memory (VmHWM)   {:.1} MiB",
            peak as f64 / 1024.0
        );
    }
    running.stop().await;
    #[cfg(feature = "bench-ceiling")]
    if server::bench_ceiling::ceiling() == server::bench_ceiling::Ceiling::Nothing {
        println!("  nothing stored, as BENCH_CEILING=nothing asks");
        return Ok(());
    }
    anyhow::ensure!(
        stored as usize >= acknowledged,
        "LOST: {acknowledged} acknowledged, {stored} stored"
    );
    println!("  every acknowledged event is on disk: yes");
    Ok(())
}

/// The group commit's batches, from the service's Prometheus histograms
/// (`ai_admin_webhook_batch_events`, `ai_admin_webhook_commit_seconds`): how many, of how many
/// events, and how long each batch's transaction took — what the rate is made of.
#[derive(Debug, Default, Clone, Copy)]
struct BatchFigures {
    batches: f64,
    events: f64,
    commit_secs: f64,
    wait_secs: f64,
}

impl BatchFigures {
    async fn read(client: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let text = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(Self {
            batches: value("ai_admin_webhook_batch_events_count"),
            events: value("ai_admin_webhook_batch_events_sum"),
            commit_secs: value("ai_admin_webhook_commit_seconds_sum"),
            wait_secs: value("ai_admin_webhook_batch_wait_seconds_sum"),
        })
    }

    fn since(self, before: &Self) -> Self {
        Self {
            batches: self.batches - before.batches,
            events: self.events - before.events,
            commit_secs: self.commit_secs - before.commit_secs,
            wait_secs: self.wait_secs - before.wait_secs,
        }
    }
}

impl std::fmt::Display for BatchFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.batches < 1.0 {
            return write!(f, "  batches               none recorded");
        }
        write!(
            f,
            "  batches               {:.0}, {:.1} events each; its oldest event queued {:.2} ms, \
             then its transaction {:.2} ms",
            self.batches,
            self.events / self.batches,
            self.wait_secs * 1000.0 / self.batches,
            self.commit_secs * 1000.0 / self.batches
        )
    }
}

/// Where a burst's CPU went, from `/proc` (Linux): this process (the service, and the bench's own
/// few requests), its waited-for children (the load generator), every `postgres` process this
/// machine runs (the server's backends, its WAL writer, checkpointer and the rest) when the
/// database is a PostgreSQL on this machine, and the machine's idle time. In clock ticks
/// (`USER_HZ`, 100 per second on Linux); a process that starts during the burst counts from
/// zero, one that ends during it is not counted.
#[derive(Debug, Default, Clone)]
struct CpuFigures {
    service: u64,
    generator: u64,
    /// Each `postgres` process's ticks; `None` when the database is not a PostgreSQL on this
    /// machine.
    postgres: Option<std::collections::HashMap<u32, u64>>,
    idle: u64,
    total: u64,
}

/// What a burst spent: [`CpuFigures`] after it, less before it.
#[derive(Debug, Clone, Copy)]
struct CpuSpent {
    service: u64,
    generator: u64,
    /// `None` when the database is not a PostgreSQL on this machine.
    postgres: Option<u64>,
    idle: u64,
    total: u64,
}

impl CpuFigures {
    fn read(database_url: &str) -> Self {
        let mut figures = Self::default();
        if let Some([user, system, children_user, children_system]) = cpu_times("/proc/self/stat") {
            figures.service = user + system;
            figures.generator = children_user + children_system;
        }
        if local_postgres(database_url) {
            let mut postgres = std::collections::HashMap::new();
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let is_postgres = std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|name| name.trim() == "postgres");
                if let Some([user, system, ..]) = is_postgres
                    .then(|| cpu_times(&format!("/proc/{pid}/stat")))
                    .flatten()
                {
                    postgres.insert(pid, user + system);
                }
            }
            figures.postgres = Some(postgres);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
                let ticks: Vec<u64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal (guest time is within user)
                figures.total = ticks.iter().take(8).sum();
                figures.idle =
                    ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
            }
        }
        figures
    }

    /// What was spent since `before`.
    fn since(&self, before: &Self) -> CpuSpent {
        let postgres = self.postgres.as_ref().map(|now| {
            now.iter()
                .map(|(pid, ticks)| {
                    let then = before.postgres.as_ref().and_then(|b| b.get(pid)).copied();
                    ticks.saturating_sub(then.unwrap_or(0))
                })
                .sum()
        });
        CpuSpent {
            service: self.service.saturating_sub(before.service),
            generator: self.generator.saturating_sub(before.generator),
            postgres,
            idle: self.idle.saturating_sub(before.idle),
            total: self.total.saturating_sub(before.total),
        }
    }
}

impl CpuSpent {
    const TICKS_PER_SECOND: f64 = 100.0;

    /// One line: CPU microseconds per acknowledged event on each side, and the machine's idle share.
    fn per_event(&self, events: usize) -> String {
        if events == 0 || self.total == 0 {
            return "  CPU per event         not measured (no event, or no /proc)".to_owned();
        }
        let micros = |ticks: u64| ticks as f64 / Self::TICKS_PER_SECOND * 1e6 / events as f64;
        let postgres = match self.postgres {
            Some(ticks) => format!("PostgreSQL {:.0} µs", micros(ticks)),
            None => "the database not measured (SQLite is in the service's process; \
                     PostgreSQL is on another host)"
                .to_owned(),
        };
        format!(
            "  CPU per event         service {:.0} µs, load generator {:.0} µs, {postgres}; \
             the machine {:.0} % idle",
            micros(self.service),
            micros(self.generator),
            self.idle as f64 * 100.0 / self.total as f64
        )
    }
}

/// A process's user and system time, and its waited-for children's, in clock ticks: fields
/// 14–17 of its `/proc/<pid>/stat` (proc(5)), counted after its name, which may hold spaces.
fn cpu_times(path: &str) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = || fields.next()?.parse::<u64>().ok();
    Some([next()?, next()?, next()?, next()?])
}

/// Whether `url` is a PostgreSQL on this machine (loopback, or a Unix socket).
fn local_postgres(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    matches!(host, "" | "localhost" | "127.0.0.1" | "::1") || url.contains("host=/")
}

/// Runs `bench burst {url} {events} {concurrency}` as a child process and returns what it printed.
fn run_burst(url: &str, events: usize, concurrency: usize) -> anyhow::Result<String> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["burst", url, &events.to_string(), &concurrency.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(output.status.success(), "the load generator failed");
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `bench burst {url} [events] [concurrency]`: the load generator. Posts `events` distinct
/// entity events (a `record` each) to `url` over `concurrency` keep-alive HTTP/1.1 connections
/// and prints what was acknowledged, the throughput and the latency. The same generator measures
/// the Node original (`scripts/bench.sh`).
///
/// It writes each request's bytes and reads each answer by hand (status line, `Content-Length`
/// or chunked body) on plain sockets: on this 2-core machine the generator shares the cores with
/// the server and the database, and an HTTP client library's per-request work (a task, a pooled
/// connection checkout, a JSON tree for the body) took CPU from the side being measured.
async fn burst(args: &[String]) -> anyhow::Result<()> {
    let url = args
        .get(1)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("bench burst {{url}} [events] [concurrency]"))?;
    let events: usize = arg(args, 2, 2_000).min(1_000_000);
    let concurrency: usize = arg(args, 3, 64).clamp(1, 512);
    let target = burst::Target::parse(&url)?;
    let salon_id: i64 = target
        .path
        .split('/')
        .rev()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let target = std::sync::Arc::new(target);
    let started = Instant::now();
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(events) {
        let (next, target) = (next.clone(), target.clone());
        connections.spawn(async move { burst::connection(&target, salon_id, events, &next).await });
    }
    let mut latencies = Vec::with_capacity(events);
    let (mut acknowledged, mut refused) = (0usize, 0usize);
    while let Some(joined) = connections.join_next().await {
        let tally = joined?;
        acknowledged += tally.acknowledged;
        refused += tally.refused;
        latencies.extend(tally.latencies);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(!latencies.is_empty(), "no request was answered");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("  events sent           {events} (concurrency {concurrency})");
    println!("  acknowledged (2xx)    {acknowledged}");
    println!("  refused or failed     {refused}");
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
    Ok(())
}

/// The load generator's HTTP/1.1, by hand: one request written, one answer read, in turn.
mod burst {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Where the events go: `http://host:port/path` (plain HTTP on loopback).
    pub struct Target {
        pub addr: String,
        pub host: String,
        pub path: String,
    }

    impl Target {
        pub fn parse(url: &str) -> anyhow::Result<Self> {
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| anyhow::anyhow!("the load generator speaks plain http://: {url}"))?;
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let addr = if host.contains(':') {
                host.to_owned()
            } else {
                format!("{host}:80")
            };
            Ok(Self {
                addr,
                host: host.to_owned(),
                path: if path.is_empty() { "/" } else { path }.to_owned(),
            })
        }
    }

    /// What one connection saw.
    #[derive(Default)]
    pub struct Tally {
        pub acknowledged: usize,
        pub refused: usize,
        pub latencies: Vec<Duration>,
    }

    /// Takes event numbers from `next` until `events` are taken, posting each over one
    /// keep-alive connection (a new one after a failure or a `Connection: close`).
    pub async fn connection(
        target: &Target,
        salon_id: i64,
        events: usize,
        next: &AtomicUsize,
    ) -> Tally {
        let mut tally = Tally::default();
        let mut socket: Option<TcpStream> = None;
        let mut request = Vec::with_capacity(1024);
        let mut buffer = Vec::with_capacity(4096);
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= events {
                return tally;
            }
            let body = format!(
                r#"{{"company_id":{salon_id},"resource":"record","resource_id":{id},"status":"create","data":{{"id":{id},"datetime":"2026-12-01T12:00:00+03:00","client":{{"name":"Клиент","phone":"7999{i:07}"}},"deleted":false}}}}"#,
                id = 1_000_000 + i
            );
            request.clear();
            request.extend_from_slice(
                format!(
                    "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    target.path,
                    target.host,
                    body.len()
                )
                .as_bytes(),
            );
            request.extend_from_slice(body.as_bytes());
            let started = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(10), async {
                if socket.is_none() {
                    let stream = TcpStream::connect(&target.addr).await?;
                    stream.set_nodelay(true)?;
                    socket = Some(stream);
                }
                let stream = socket.as_mut().expect("connected above");
                stream.write_all(&request).await?;
                read_answer(stream, &mut buffer).await
            })
            .await;
            tally.latencies.push(started.elapsed());
            match answer {
                Ok(Ok(answer)) => {
                    if (200..300).contains(&answer.status) {
                        tally.acknowledged += 1;
                    } else {
                        tally.refused += 1;
                    }
                    if answer.close {
                        socket = None;
                    }
                }
                _ => {
                    tally.refused += 1;
                    socket = None;
                }
            }
        }
    }

    pub struct Answer {
        pub status: u16,
        pub close: bool,
    }

    /// Reads one answer: the head, then its body by `Content-Length` or chunks.
    pub async fn read_answer(
        stream: &mut TcpStream,
        buffer: &mut Vec<u8>,
    ) -> anyhow::Result<Answer> {
        buffer.clear();
        let head_end = loop {
            if let Some(at) = find(buffer, b"\r\n\r\n") {
                break at + 4;
            }
            fill(stream, buffer).await?;
        };
        let head = std::str::from_utf8(&buffer[..head_end])?.to_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if chunked {
            let mut at = head_end;
            loop {
                let line_end = loop {
                    if let Some(end) = find(&buffer[at..], b"\r\n") {
                        break at + end;
                    }
                    fill(stream, buffer).await?;
                };
                let size_text = std::str::from_utf8(&buffer[at..line_end])?;
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
                let chunk_end = line_end + 2 + size + 2;
                while buffer.len() < chunk_end {
                    fill(stream, buffer).await?;
                }
                at = chunk_end;
                if size == 0 {
                    break;
                }
            }
        } else {
            let total = head_end + length.ok_or_else(|| anyhow::anyhow!("no body length"))?;
            while buffer.len() < total {
                fill(stream, buffer).await?;
            }
        }
        Ok(Answer { status, close })
    }

    async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }
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

/// A line of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time used by this process so far (user + system), in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command name's closing parenthesis: fields 3.. ; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // 100 ticks per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// The `index`th argument as a number, `default` when absent or not a number.
fn arg(args: &[String], index: usize, default: usize) -> usize {
    args.get(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `bench idle`: from the start of this process to a healthy answer, and the memory then.
async fn idle(started: Instant) -> anyhow::Result<()> {
    let running = start(&[]).await?;
    let client = reqwest::Client::new();
    let health = format!("{}/marketplace/health", running.handles.base_url);
    loop {
        if let Ok(response) = client.get(&health).send().await {
            if response.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "never healthy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let healthy = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("idle");
    println!("  start to healthy      {:.0} ms", ms(healthy));
    if let Some(rss) = status_kib("VmRSS:") {
        println!("  idle memory (VmRSS)   {:.1} MiB", rss as f64 / 1024.0);
    }
    running.stop().await;
    Ok(())
}

/// `bench live [streams] [salons]`: the server side (see the module docs).
async fn live(args: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let streams: usize = arg(args, 1, 10_000).clamp(1, 100_000);
    let salons: usize = arg(args, 2, 500).clamp(1, streams);
    let every = Duration::from_millis(env_u64("BENCH_CHANGE_EVERY_MS", 5_000).max(1));
    let secs = env_u64("BENCH_SECS", 30);
    let per_salon = streams.div_ceil(salons).to_string();
    let running = start(&[
        ("SSE_MAX_STREAMS_PER_SALON", per_salon.as_str()),
        ("LOG_FORMAT", "human"),
    ])
    .await?;
    // Written to `dhat-heap.json` when this returns (the clients' process profiles nothing).
    // Started after the app is built: its start-up (the console's Argon2 decoy hash, 19 MiB for
    // a moment) would otherwise be the heap's peak, and the peak is what the profile breaks down.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let handles = running.handles.clone();
    let mut ids = Vec::with_capacity(salons);
    let mut tokens = Vec::with_capacity(salons);
    for n in 0..salons {
        let salon = app::domain::SalonId::try_from(2_000_000 + n as i64)?;
        let registered = handles
            .store
            .register(
                salon,
                server::store::Installation::Active,
                serde_json::json!({}),
            )
            .await?;
        tokens.push(handles.tokens.issue(salon, registered.generation)?);
        ids.push(salon);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let heap_before = heap_bytes();
    let (mut child, mut stdin, mut lines) =
        spawn_clients(&["live-clients", &handles.base_url, &streams.to_string()])?;
    for token in &tokens {
        writeln!(stdin, "{token}")?;
    }
    writeln!(stdin)?;
    stdin.flush()?;
    let opened = Instant::now();
    loop {
        let line = lines
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the clients ended early"))?;
        if line == "ready" {
            break;
        }
        println!("  clients: {line}");
    }
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = status_kib("VmRSS:").unwrap_or(0);
    let heap_open = heap_bytes();
    let open = handles.bus.live_subscriber_count();
    let lean = handles.lean_sse.streams();
    // Changes: each salon every `every`, spread evenly over the period.
    let reads_before = handles.live.status_reads();
    let cpu_before = cpu_secs();
    let driving = Instant::now();
    let step = every / salons as u32;
    let mut changes = 0u64;
    let mut next = tokio::time::Instant::now();
    while driving.elapsed() < Duration::from_secs(secs) {
        handles.bus.publish(
            ids[changes as usize % salons],
            app::status::LiveEventKind::QrUpdate,
        );
        changes += 1;
        next += step;
        tokio::time::sleep_until(next).await;
    }
    let cpu_used = cpu_secs() - cpu_before;
    let driven = driving.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads = handles.live.status_reads() - reads_before;
    drop(stdin);
    let mut report = Vec::new();
    while let Some(line) = lines.recv().await {
        report.push(line);
    }
    let _ = child.wait();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_closed = status_kib("VmRSS:").unwrap_or(0);
    let heap_closed = heap_bytes();
    println!(
        "live streams: {streams} over {salons} salons, each changing every {every:?}, {secs} s"
    );
    println!(
        "  streams open          {open} (opened in {open_secs:.1} s; {lean} served outside hyper)"
    );
    println!(
        "  server RSS            {:.1} MiB before, {:.1} MiB open, {:.1} MiB after all closed",
        rss_before as f64 / 1024.0,
        rss_open as f64 / 1024.0,
        rss_closed as f64 / 1024.0
    );
    println!(
        "  memory per stream     {:.1} KiB (RSS delta / streams)",
        rss_open.saturating_sub(rss_before) as f64 / streams as f64
    );
    if let (Some(before), Some(open), Some(closed)) = (heap_before, heap_open, heap_closed) {
        println!(
            "  heap per stream       {:.2} KiB (dhat: live heap bytes {:.1} MiB before, {:.1} MiB open, {:.1} MiB after all closed)",
            open.saturating_sub(before) as f64 / 1024.0 / streams as f64,
            before as f64 / 1048576.0,
            open as f64 / 1048576.0,
            closed as f64 / 1048576.0
        );
    }
    println!("  changes published     {changes}; status reads for them {reads}");
    println!(
        "  server CPU            {:.2} s over {:.1} s ({:.0} % of one core)",
        cpu_used,
        driven,
        100.0 * cpu_used / driven
    );
    for line in report {
        println!("  {line}");
    }
    running.stop().await;
    Ok(())
}

/// Starts this binary again as a client process (`args`: its mode and arguments): its stdin to
/// write to, and its stdout's lines as they come.
fn spawn_clients(
    args: &[&str],
) -> anyhow::Result<(
    std::process::Child,
    std::process::ChildStdin,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (lines_tx, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, stdin, lines))
}

/// `bench live-clients {base_url} {streams}`, tokens on stdin (one per salon, then an empty
/// line): opens the streams, says `ready`, and when stdin closes prints the spreads.
async fn live_clients(args: &[String]) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    let base = args.get(1).cloned().unwrap_or_default();
    let streams: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let (tokens, closed) = tokio::task::spawn_blocking(|| {
        let mut tokens = Vec::new();
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
            let token = line.trim().to_owned();
            line.clear();
            if token.is_empty() {
                break;
            }
            tokens.push(token);
        }
        let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut rest = String::new();
            while std::io::stdin().read_line(&mut rest).unwrap_or(0) > 0 {}
            let _ = closed_tx.send(());
        });
        (tokens, closed)
    })
    .await?;
    anyhow::ensure!(!tokens.is_empty(), "no tokens");
    type Seen = HashMap<(usize, u64), (Instant, Instant, usize)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    // Streams opening at once (`BENCH_OPEN_AT_ONCE`, 200): under dhat a lower figure keeps the
    // openings' passing allocations (database reads) below the open streams, so the profile's
    // peak is the streams themselves.
    let at_once = usize::try_from(env_u64("BENCH_OPEN_AT_ONCE", 200).max(1))?;
    let gate = Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut per_salon = vec![0usize; tokens.len()];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..streams {
        let salon = n % tokens.len();
        per_salon[salon] += 1;
        let url = format!("{base}/marketplace/api/events?token={}", tokens[salon]);
        let (client, seen, ready, gate) =
            (client.clone(), seen.clone(), ready.clone(), gate.clone());
        tasks.spawn(async move {
            let mut permit = gate.acquire_owned().await.ok();
            let Ok(mut response) = stream_request(&client, &url).send().await else {
                eprintln!("a stream failed to open");
                return;
            };
            let mut buffer: Vec<u8> = Vec::new();
            let mut first = true;
            while let Ok(Some(chunk)) = response.chunk().await {
                let now = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&frame);
                    let event = text.lines().find_map(|l| l.strip_prefix("event: "));
                    let id = text
                        .lines()
                        .find_map(|l| l.strip_prefix("id: "))
                        .and_then(|v| v.parse::<u64>().ok());
                    if first {
                        first = false;
                        permit.take();
                        ready.add_permits(1);
                        continue;
                    }
                    if let (Some(event), Some(id)) = (event, id) {
                        if event != "ping" && event != "snapshot" {
                            let mut seen = seen
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let entry = seen.entry((salon, id)).or_insert((now, now, 0));
                            entry.0 = entry.0.min(now);
                            entry.1 = entry.1.max(now);
                            entry.2 += 1;
                        }
                    }
                }
            }
        });
    }
    let all = ready.acquire_many(u32::try_from(streams)?).await?;
    all.forget();
    println!("ready");
    let _ = closed.await;
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut spreads: Vec<Duration> = Vec::new();
    let mut incomplete = 0;
    for ((salon, _), (first, last, count)) in seen.iter() {
        if *count == per_salon[*salon] {
            spreads.push(*last - *first);
        } else {
            incomplete += 1;
        }
    }
    spreads.sort();
    if spreads.is_empty() {
        println!("no change reached every stream of its salon ({incomplete} partial)");
    } else {
        let pct = |p: f64| spreads[((spreads.len() as f64 * p) as usize).min(spreads.len() - 1)];
        println!(
            "first→last stream of a salon, per change: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} changes complete, {incomplete} partial)",
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(spreads[spreads.len() - 1]),
            spreads.len()
        );
    }
    tasks.abort_all();
    Ok(())
}

/// Now on this machine's wall clock, in nanoseconds since 1970: what two processes compare.
fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `bench instances-clients {events_url} {streams}`: opens `streams` streams of one salon, says
/// `ready`; for each `go {unix_nanos}` line on stdin waits until every stream received the next
/// change (2 s at most) and says `done`; when stdin closes, prints the latencies from each `go`
/// to each stream's frame.
async fn instances_clients(args: &[String]) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    let url = args.get(1).cloned().unwrap_or_default();
    let streams: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let (go_tx, mut go) = tokio::sync::mpsc::unbounded_channel::<u128>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
            if let Some(at) = line.trim().strip_prefix("go ").and_then(|t| t.parse().ok()) {
                if go_tx.send(at).is_err() {
                    return;
                }
            }
            line.clear();
        }
    });
    // When each stream received a change's frame (the wall clock, nanoseconds).
    let arrivals: Arc<Mutex<Vec<u128>>> = Arc::default();
    // A plain socket per stream, not an HTTP client library: the streams stand for browsers on
    // other machines, so reading them should cost these two cores as little as it can.
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("an http:// URL"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{}\r\n",
        if std::env::var("BENCH_VIA_HYPER").is_ok_and(|v| v == "1") {
            "Content-Length: 0\r\n"
        } else {
            ""
        }
    );
    let (host, request) = (Arc::new(host.to_owned()), Arc::new(request));
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (host, request, arrivals, ready, gate) = (
            host.clone(),
            request.clone(),
            arrivals.clone(),
            ready.clone(),
            gate.clone(),
        );
        tasks.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut permit = gate.acquire_owned().await.ok();
            let opened = async {
                let mut socket = tokio::net::TcpStream::connect(host.as_str()).await?;
                socket.set_nodelay(true)?;
                socket.write_all(request.as_bytes()).await?;
                std::io::Result::Ok(socket)
            };
            let Ok(mut socket) = opened.await else {
                eprintln!("a stream failed to open");
                return;
            };
            let mut buffer: Vec<u8> = Vec::with_capacity(8192);
            let mut read = [0u8; 8192];
            while let Ok(n @ 1..) = socket.read(&mut read).await {
                let now = unix_nanos();
                buffer.extend_from_slice(&read[..n]);
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let frame = &buffer[..end];
                    let has = |event: &[u8]| frame.windows(event.len()).any(|w| w == event);
                    if has(b"event: snapshot") && permit.is_some() {
                        permit.take();
                        ready.add_permits(1);
                    } else if has(b"event: qr-update") {
                        arrivals
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(now);
                    }
                    buffer.drain(..end + 2);
                }
            }
        });
    }
    ready.acquire_many(u32::try_from(streams)?).await?.forget();
    println!("ready");
    let mut latencies: Vec<Duration> = Vec::new();
    let mut changes = 0usize;
    let mut incomplete = 0usize;
    while let Some(published) = go.recv().await {
        changes += 1;
        let deadline = Instant::now() + Duration::from_secs(2);
        while arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
            < streams
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let got = std::mem::take(
            &mut *arrivals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if got.len() < streams {
            incomplete += 1;
        }
        latencies.extend(got.iter().map(|at| {
            Duration::from_nanos(u64::try_from(at.saturating_sub(published)).unwrap_or(u64::MAX))
        }));
        println!("done {}", got.len());
    }
    tasks.abort_all();
    latencies.sort();
    anyhow::ensure!(!latencies.is_empty(), "no change reached the streams");
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "publish on A → frame on B's stream: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} deliveries over {changes} changes, {incomplete} incomplete)",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(latencies[latencies.len() - 1]),
        latencies.len()
    );
    Ok(())
}

/// A live stream's request. With `BENCH_VIA_HYPER=1` it carries `Content-Length: 0`, which
/// changes nothing in the route's answer but keeps the stream off the lean path
/// (`server/src/http/lean_sse.rs`): the same build measured both ways, on the same machine.
fn stream_request(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    let request = client.get(url);
    if std::env::var("BENCH_VIA_HYPER").is_ok_and(|v| v == "1") {
        request.header(reqwest::header::CONTENT_LENGTH, "0")
    } else {
        request
    }
}

/// `bench messages`: see the module's documentation.
async fn messages(args: &[String]) -> anyhow::Result<()> {
    use app::domain::{PhoneNumber, SalonId};
    use server::store::EntityEvent;
    let salons: usize = arg(args, 1, 500).clamp(1, 5_000);
    let events: usize = arg(args, 2, 10_000).clamp(20, 200_000);
    // Per salon: half new bookings (one of ten without a phone), half changes of them.
    let per_salon = (events / salons / 20).max(1) * 10;
    let clock = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 12, 3, 10, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("clock"))?;
    let running = start_with_clock(
        &[
            ("MESSAGES_WORKER", "false"),
            ("MESSAGES_INTERVAL_MS", "0"),
            ("MESSAGES_JITTER_MS", "0"),
            ("MESSAGES_DAILY_CAP", "100000"),
            ("LOG_FORMAT", "human"),
            ("RUST_LOG", "warn"),
        ],
        std::sync::Arc::new(server::clock::ManualClock::new(clock)),
    )
    .await?;
    let handles = running.handles.clone();
    let database = if running.database_url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut ids = Vec::with_capacity(salons);
    for n in 0..salons {
        let salon = SalonId::try_from(3_000_000 + n as i64)?;
        handles
            .store
            .register(
                salon,
                server::store::Installation::Active,
                serde_json::json!({}),
            )
            .await?;
        let phone = PhoneNumber::parse(&format!("7990{:07}", n))?;
        // Credential writes carry the session lease: taken here as this instance, which its
        // session then takes again (the same owner).
        let lease = handles
            .store
            .acquire_session_lease(
                salon,
                handles.linking.instance_id(),
                chrono::Utc::now() + chrono::Duration::seconds(30),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("the lease of salon {salon} is held elsewhere"))?;
        handles
            .store
            .save_device_credentials(&lease, "simulator", &phone, "sim-bench")
            .await?;
        handles.linking.ensure_started(salon);
        ids.push(salon);
    }
    // Active as a confirmed callback leaves a salon, with a webhook secret's hash (the
    // activation flow itself is `bench webhooks`'s and the API tests' subject; 500 activations
    // here would measure it, not messages). Without the hash the group commit stores nothing:
    // an event is stored only for a salon whose app is installed.
    {
        use sea_orm::ConnectionTrait;
        let db = &handles.db;
        db.execute_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "UPDATE salons SET status = 'active', webhook_secret_hash = 'bench' \
                 WHERE id >= 3000000 AND id < {}",
                3_000_000 + salons as i64
            ),
        ))
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.iter().any(|s| !handles.linking.state(*s).is_linked()) {
        anyhow::ensure!(Instant::now() < deadline, "sessions did not link");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // YClients' record ids start at 1 (the outbox keeps 0 for messages of no booking).
    let record = |salon: SalonId, n: usize, status: &str, time: &str, phone: bool| {
        let id = n + 1;
        EntityEvent {
            resource: "record".into(),
            resource_id: id.to_string(),
            status: status.into(),
            data: serde_json::json!({"id": id, "datetime": format!("2026-12-20T{time}:00+03:00"),
            "services": [{"title": "Стрижка"}], "staff": {"name": "Анна"},
            "client": {"name": "Клиент", "phone": if phone { serde_json::json!(format!("8916{:07}", salon.get() % 10_000_000 + id as i64)) } else { serde_json::Value::Null }},
            "deleted": status == "delete"}),
        }
    };
    // The second half, per ten bookings: 4 moves, 2 cancellations, 2 repeated creates, 1 update
    // that changes nothing about the visit, 1 repeated move.
    let change = |salon: SalonId, n: usize| {
        let base = n / 10 * 10;
        match n % 10 {
            0..=3 => record(salon, base + n % 10, "update", "16:00", true),
            4 | 5 => record(salon, base + n % 10, "delete", "12:00", true),
            6 | 7 => record(salon, base + n % 10, "create", "12:00", true),
            8 => {
                let mut same = record(salon, base + 8, "update", "12:00", true);
                same.data["comment"] = serde_json::json!("позвонить");
                same
            }
            _ => record(salon, base, "update", "16:00", true),
        }
    };
    let mut total_events = 0;
    let mut webhook_secs = 0.0;
    let mut send_secs = 0.0;
    let mut sent_total = 0usize;
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let mut rss_peak = rss_before;
    for phase in 0..2 {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for salon in &ids {
            let salon = *salon;
            let writer = handles.webhooks.writer.clone();
            let batch: Vec<EntityEvent> = (0..per_salon)
                .map(|n| {
                    if phase == 0 {
                        record(salon, n, "create", "12:00", n % 10 != 9)
                    } else {
                        change(salon, n)
                    }
                })
                .collect();
            tasks.spawn(async move {
                for event in batch {
                    loop {
                        // About the body YClients would have sent (the writer's byte budget).
                        let size = event.data.to_string().len() + 100;
                        match writer.store(salon, event.clone(), size).await {
                            Ok(_) => break,
                            Err(server::webhooks::WebhookError::Busy) => {
                                tokio::time::sleep(Duration::from_millis(2)).await
                            }
                            Err(e) => return Err(anyhow::anyhow!("{e}")),
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        webhook_secs += started.elapsed().as_secs_f64();
        total_events += per_salon * ids.len();
        let started = Instant::now();
        // Until nothing is due (reminders wait for their day, which this clock never reaches).
        while handles.messages.pass().await? > 0 {
            rss_peak = rss_peak.max(status_kib("VmRSS:").unwrap_or(0));
        }
        sent_total = count(&handles, "status IN ('sent', 'delivered', 'read')").await? as usize;
        send_secs += started.elapsed().as_secs_f64();
    }
    let tens = (per_salon / 10 * ids.len()) as i64;
    let expected = [
        (
            "kind = 'confirmation' AND status IN ('sent', 'delivered', 'read')",
            9 * tens,
        ),
        (
            "kind = 'confirmation' AND status = 'dropped' AND reason = 'no_phone'",
            tens,
        ),
        (
            "kind = 'moved' AND status IN ('sent', 'delivered', 'read')",
            4 * tens,
        ),
        (
            "kind = 'cancelled' AND status IN ('sent', 'delivered', 'read')",
            2 * tens,
        ),
        ("kind = 'reminder' AND status = 'pending'", 14 * tens),
        (
            "kind = 'reminder' AND status = 'dropped' AND reason = 'superseded'",
            8 * tens,
        ),
        (
            "kind = 'reminder' AND status = 'dropped' AND reason = 'booking_cancelled'",
            4 * tens,
        ),
        ("1 = 1", (9 + 1 + 4 + 2 + 14 + 8 + 4) * tens),
    ];
    let mut wrong = Vec::new();
    for (condition, want) in expected {
        let got = count(&handles, condition).await?;
        if got != want {
            wrong.push(format!("{condition}: {got} instead of {want}"));
        }
    }
    println!("booking messages on {database}");
    println!("  salons (linked)       {}", ids.len());
    println!("  record events         {total_events}");
    println!(
        "  group commit          {:.0} events/s ({:.2} s)",
        total_events as f64 / webhook_secs,
        webhook_secs
    );
    println!("  messages sent         {sent_total}");
    println!(
        "  sender throughput     {:.0} messages/s ({:.2} s)",
        sent_total as f64 / send_secs,
        send_secs
    );
    println!(
        "  memory while sending  +{:.1} MiB RSS (peak {:.1} MiB)",
        rss_peak.saturating_sub(rss_before) as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    running.stop().await;
    anyhow::ensure!(wrong.is_empty(), "UNEXPECTED: {}", wrong.join("; "));
    println!("  exactly the expected messages: yes");
    Ok(())
}

async fn count(handles: &server::startup::AppHandles, condition: &str) -> anyhow::Result<i64> {
    use sea_orm::ConnectionTrait;
    let backend = handles.db.get_database_backend();
    Ok(handles
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            backend,
            format!("SELECT COUNT(*) FROM message_outbox WHERE {condition}"),
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

/// `bench instances [streams] [changes]`: a change on A reaching the streams held on B (see the
/// module docs).
async fn instances(args: &[String]) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let streams: usize = arg(args, 1, 1_000).clamp(1, 20_000);
    let changes: usize = arg(args, 2, 100).clamp(1, 10_000);
    let url = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "bench instances needs BENCH_DATABASE_URL=postgres://… (the bus across instances)"
            )
        })?;
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&url).await?;
    admin
        .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
        .await?;
    let dir = std::env::temp_dir().join(format!("ai-admin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let per_salon = streams.to_string();
    let extra = [
        ("SSE_MAX_STREAMS_PER_SALON", per_salon.as_str()),
        // The bench holds its own sandbox-free setup: no second sandbox port for B.
        ("YCLIENTS_SANDBOX", "false"),
        ("YCLIENTS_API_URL", "http://127.0.0.1:9"),
    ];
    let a = start_on(&url, Some(&schema), &dir, &extra, server::clock::system()).await?;
    let b = start_on(&url, Some(&schema), &dir, &extra, server::clock::system()).await?;
    let salon = app::domain::SalonId::try_from(3_000_000)?;
    let registered = a
        .handles
        .store
        .register(
            salon,
            server::store::Installation::Active,
            serde_json::json!({}),
        )
        .await?;
    let token = b.handles.tokens.issue(salon, registered.generation)?;

    // The streams on B, read in a child process (this binary as `bench instances-clients`), as
    // browsers would read them: the client work is not charged to the instances' cores.
    use std::io::Write;
    let events_url = format!(
        "{}/marketplace/api/events?token={token}",
        b.handles.base_url
    );
    let (mut child, mut stdin, mut lines) =
        spawn_clients(&["instances-clients", &events_url, &streams.to_string()])?;
    let opened = Instant::now();
    let mut next_line = async || {
        lines
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the clients ended early"))
    };
    while next_line().await? != "ready" {}
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = b.handles.bus.live_subscriber_count();
    let lean = b.handles.lean_sse.streams();

    // One change at a time on A; the clients time each stream's frame from the publish (the
    // wall clock of this machine, shared by both processes) and say `done` when every stream
    // has it (2 s at most).
    // B's side too: from the publish to the room's write of the frame into the last of the
    // streams' sockets (over loopback the frame is then in the reader's receive buffer).
    let mut written: Vec<Duration> = Vec::with_capacity(changes);
    for _ in 0..changes {
        writeln!(stdin, "go {}", unix_nanos())?;
        stdin.flush()?;
        let published = Instant::now();
        a.handles
            .bus
            .publish(salon, app::status::LiveEventKind::QrUpdate);
        while !next_line().await?.starts_with("done") {}
        if let Some(at) = b.handles.live.last_fanout().filter(|at| *at > published) {
            written.push(at - published);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    written.sort();
    drop(stdin);
    let mut report = Vec::new();
    while let Some(line) = lines.recv().await {
        report.push(line);
    }
    let _ = child.wait();
    println!("across instances: {streams} streams on B, {changes} changes published on A (PostgreSQL LISTEN/NOTIFY)");
    println!(
        "  streams open          {open} (opened in {open_secs:.1} s; {lean} served outside hyper)"
    );
    for line in report {
        println!("  {line}");
    }
    if !written.is_empty() {
        let pct = |p: f64| written[((written.len() as f64 * p) as usize).min(written.len() - 1)];
        println!(
            "  publish on A → written to the last of B's {} streams: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} changes)",
            lean,
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(written[written.len() - 1]),
            written.len()
        );
    }
    println!(
        "  status reads on B     {} (one per change, whatever the streams)",
        b.handles.live.status_reads()
    );
    a.stop().await;
    b.stop().await;
    admin
        .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}

async fn failover(args: &[String]) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let rounds: usize = arg(args, 1, 3).clamp(1, 20);
    let url = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "bench failover needs BENCH_DATABASE_URL=postgres://… (instances on one database)"
            )
        })?;
    let lease_ms = env_u64("SESSION_LEASE_MS", 30_000);
    let renew_ms = env_u64("SESSION_LEASE_RENEW_MS", 10_000);
    let (lease, renew) = (lease_ms.to_string(), renew_ms.to_string());
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&url).await?;
    admin
        .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
        .await?;
    let dir = std::env::temp_dir().join(format!("ai-admin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let extra = [
        ("YCLIENTS_SANDBOX", "false"),
        ("YCLIENTS_API_URL", "http://127.0.0.1:9"),
        ("WHATSAPP_BACKEND", "simulator"),
        ("SESSION_LEASE_MS", lease.as_str()),
        ("SESSION_LEASE_RENEW_MS", renew.as_str()),
    ];
    let b = start_on(&url, Some(&schema), &dir, &extra, server::clock::system()).await?;
    let client = reqwest::Client::new();
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let a = start_on(&url, Some(&schema), &dir, &extra, server::clock::system()).await?;
        let salon = app::domain::SalonId::try_from(4_000_000 + round as i64)?;
        let registered = a
            .handles
            .store
            .register(
                salon,
                server::store::Installation::Active,
                serde_json::json!({}),
            )
            .await?;
        // A runs the session: a QR code on the page.
        a.handles.linking.ensure_started(salon);
        let waited = Instant::now();
        while !matches!(
            a.handles.linking.state(salon),
            app::status::LinkState::Qr { .. }
        ) {
            anyhow::ensure!(
                waited.elapsed() < Duration::from_secs(10),
                "A showed no QR code"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The page's live stream, held on B.
        let token = b.handles.tokens.issue(salon, registered.generation)?;
        let mut response = client
            .get(format!(
                "{}/marketplace/api/events?token={token}",
                b.handles.base_url
            ))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the stream on B did not open"
        );
        let b_origin = b.handles.base_url.clone();
        let killed = Instant::now();
        let Running {
            handles,
            server,
            stop,
            ..
        } = a;
        handles.linking.abandon_sessions().await;
        server.abort();
        let _ = server.await;
        // Dropped only now: a dropped sender would have asked for a graceful shutdown.
        drop(stop);
        // Until a frame on B's stream carries B's own QR code.
        let mut buffer: Vec<u8> = Vec::new();
        let deadline = killed + Duration::from_millis(lease_ms) + Duration::from_secs(60);
        let arrived = loop {
            let chunk = tokio::time::timeout_at(deadline.into(), response.chunk()).await;
            let Ok(Ok(Some(chunk))) = chunk else {
                break None;
            };
            buffer.extend_from_slice(&chunk);
            let mut found = None;
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&frame);
                let data: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                let Ok(status) = serde_json::from_str::<serde_json::Value>(&data) else {
                    continue;
                };
                let code = status["link"]["code"].as_str().unwrap_or_default();
                if status["link"]["state"] == "qr" && code.starts_with(&b_origin) {
                    found = Some(killed.elapsed());
                }
            }
            if found.is_some() {
                break found;
            }
        };
        let took = arrived.ok_or_else(|| anyhow::anyhow!("round {round}: no QR code from B"))?;
        println!(
            "  round {}: owner killed → B's QR code on the page in {:.2} s",
            round + 1,
            took.as_secs_f64()
        );
        times.push(took);
    }
    times.sort();
    let goal = Duration::from_millis(lease_ms) + Duration::from_secs(5);
    println!(
        "failover: {rounds} rounds, session lease {:.1} s renewed every {:.1} s: kill → next QR on the page min {:.2} s, max {:.2} s (goal ≤ {:.1} s: {})",
        lease_ms as f64 / 1000.0,
        renew_ms as f64 / 1000.0,
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64(),
        goal.as_secs_f64(),
        if times[times.len() - 1] <= goal { "met" } else { "NOT met" }
    );
    b.stop().await;
    admin
        .execute_unprepared(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await?;
    Ok(())
}
