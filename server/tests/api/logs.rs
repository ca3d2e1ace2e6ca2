//! What the logs take from clients: an unauthenticated request cannot write a line of its own
//! choosing or a line as long as its body.

use crate::helpers::{spawn_app, SALON};
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A log sink: the human format and the JSON format (as `telemetry::init` sets them up),
/// installed once for the whole test process (the app logs from its runtime's threads, so a
/// thread-local subscriber would hear nothing).
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

fn captured_logs() -> &'static (Sink, Sink) {
    static LOGS: OnceLock<(Sink, Sink)> = OnceLock::new();
    LOGS.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let human = Sink::default();
        let json = Sink::default();
        let (h, j) = (human.clone(), json.clone());
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(move || h.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_target(false)
                    .with_writer(move || j.clone()),
            );
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        (human, json)
    })
}

/// `POST /webhook/yclients` with a wrong partner token reaches the refusal's log line, which
/// carried the body's `event` as it came: in the human format (the default `LOG_FORMAT`) a
/// newline in it started a line of the sender's choosing, and in the JSON format (production)
/// one request wrote a line as long as the 1 MiB body limit. (The console's refused sign-in
/// name goes through the same `telemetry::client_text`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_request_writes_no_forged_or_unbounded_log_line() {
    let (human, json_logs) = captured_logs();
    let app = spawn_app().await;
    let forged = "2026-12-06T06:00:00.000000Z  INFO lifecycle_webhook{salon_id=962303}: \
                  lifecycle event applied kind=uninstall";
    let response = app
        .post_lifecycle(&json!({
            "salon_id": SALON, "application_id": 1001,
            "event": format!("freeze\n{forged}"), "partner_token": "a guess",
        }))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let huge = "A".repeat(900 * 1024);
    let response = app
        .post_lifecycle(&json!({
            "salon_id": SALON, "application_id": 1001,
            "event": huge, "partner_token": "a guess",
        }))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let human = human.text();
    assert!(
        human.contains("lifecycle webhook refused"),
        "the refusals are logged"
    );
    assert!(
        !human.lines().any(|line| line.starts_with(forged)),
        "a refused webhook wrote a log line of its own"
    );
    let longest_json = json_logs
        .text()
        .lines()
        .filter(|line| line.contains("lifecycle webhook refused"))
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        (1..4096).contains(&longest_json),
        "a refused webhook wrote a JSON line of {longest_json} bytes"
    );
}

/// Found by an audit read as an attacker: the request id a client sends
/// (`X-Request-Id`) is put, as sent, into the span of every log line written while serving the
/// request (`http/layers.rs`, `make_span_with`) — unauthenticated text, unbounded but for hyper's
/// head limit, on any route (`/marketplace/health` here). The README's «a client's text stays
/// the client's» row says an unauthenticated client's text reaches the log at most 64
/// characters long. Behind the documented nginx the id is nginx's own (`$request_id`
/// overwrites it); served directly (`scripts/run.sh`, a load balancer that passes the header)
/// one request writes lines as long as its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_request_id_does_not_write_an_unbounded_log_line() {
    let (_, json_logs) = captured_logs();
    let app = spawn_app().await;
    let marker = "audit8-request-id-";
    let id = format!("{marker}{}", "B".repeat(60 * 1024));
    let response = app
        .client
        .get(app.url("/marketplace/health"))
        .header("x-request-id", &id)
        .send()
        .await
        .expect("health");
    assert!(response.status().is_success());
    let answered = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        !answered.is_empty() && answered.len() <= 64,
        "the answer carried the client's id back: {} bytes",
        answered.len()
    );
    // An id that looks like one (a proxy's) is kept, and answered back.
    let kept = app
        .client
        .get(app.url("/marketplace/health"))
        .header("x-request-id", "0f3c9a7e-req.42")
        .send()
        .await
        .expect("health");
    assert_eq!(
        kept.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("0f3c9a7e-req.42")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let longest = json_logs
        .text()
        .lines()
        .filter(|line| line.contains(marker))
        .map(str::len)
        .max()
        .unwrap_or(0);
    eprintln!("the longest JSON log line carrying the client's request id: {longest} bytes");
    assert!(
        longest < 4096,
        "one request with a 60 KiB X-Request-Id wrote a JSON log line of {longest} bytes"
    );
}
