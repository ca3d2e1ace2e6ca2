//! `GET /marketplace/health`: whether the service is usable, and why not. Never prints secrets.

use crate::bus::EventBus;
use crate::config::YClientsSettings;
use crate::instruments::Instruments;
use crate::linking::Linking;
use crate::store::{Store, WhatsappHealth};
use app::status::LinkState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

#[derive(Clone)]
pub struct Health {
    pub yclients: Arc<YClientsSettings>,
    /// The YClients API actually called (the bound sandbox's when it plays YClients).
    pub yclients_api_url: String,
    pub store: Store,
    pub linking: Linking,
    pub bus: EventBus,
    pub instruments: Instruments,
    pub connections: super::connections::Connections,
}

/// Salons active in YClients by what their WhatsApp is doing, every state named (0 when none).
async fn active_salons_by_whatsapp(store: &Store) -> Option<Vec<(&'static str, u64)>> {
    let counts = store
        .whatsapp_health()
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "health: cannot count WhatsApp states"))
        .ok()?;
    let mut named: Vec<(&'static str, u64)> = WhatsappHealth::ALL
        .into_iter()
        .map(|state| (state.as_str(), 0))
        .chain([("never_linked", 0)])
        .collect();
    for (state, n) in counts {
        let name = state.map_or("never_linked", WhatsappHealth::as_str);
        if let Some(slot) = named.iter_mut().find(|(k, _)| *k == name) {
            slot.1 += n;
        }
    }
    Some(named)
}

pub async fn health(State(health): State<Health>) -> Response {
    let database = crate::db::ping(health.store.connection()).await;
    let outbox = health.store.outbox_counts().await.ok();
    let lifecycle = health.store.lifecycle_counts().await.ok();
    let yclients_problem = health.yclients.yclients_problem();
    let failed_sessions = health.linking.failed_count();
    let by_state = active_salons_by_whatsapp(&health.store).await;
    let lifecycle_given_up = lifecycle.map(|c| c.given_up).unwrap_or(0);
    let bus = health.bus.health();
    let status = match (
        &database,
        yclients_problem,
        failed_sessions,
        lifecycle_given_up,
    ) {
        (Err(_), _, _, _) => "down",
        (Ok(_), Some(_), _, _) | (Ok(_), None, 1.., _) | (Ok(_), None, 0, 1..) => "degraded",
        // Deaf to the other instances: their changes reach this one's pages late.
        _ if !bus.listening => "degraded",
        _ => "ok",
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "database": match &database {
            Ok(latency) => json!({"reachable": true, "latency_ms": latency.as_secs_f64() * 1000.0}),
            Err(e) => {
                tracing::error!(error = %e, "health: database unreachable");
                json!({"reachable": false})
            }
        },
        "yclients": {
            "configured": yclients_problem.is_none(),
            "problem": yclients_problem,
            "api_url": health.yclients_api_url,
        },
        "whatsapp": {
            "backend": health.linking.backend_name(),
            "sessions": health.linking.session_count(),
            "failed_sessions": failed_sessions,
            "sessions_by_state": health.linking.state_counts(),
            "zombies_reconnected": health.linking.zombies_detected(),
            // This instance as the owner of session leases, and the leases it lost since start.
            "instance": health.linking.instance_id(),
            "leases_lost": health.linking.leases_lost(),
            // Active in YClients, yet the bot cannot send: logged out, failed, replaced, banned.
            "active_salons": by_state.as_ref().map(|counts| counts.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>()),
            "active_needing_attention": by_state.as_ref().map(|counts| counts
                .iter()
                .filter(|(k, _)| !matches!(*k, "linked" | "never_linked"))
                .map(|(_, n)| n)
                .sum::<u64>()),
        },
        "activation_outbox": outbox.map(|c| json!({"pending": c.pending, "failed": c.failed})),
        "lifecycle_inbox": lifecycle.map(|c| json!({"pending": c.pending, "given_up": c.given_up})),
        "live_subscribers": health.bus.live_subscriber_count(),
        "bus": bus,
    });
    let code = if status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// `GET /marketplace/metrics`: the recorder's counters and histograms (recorded where things
/// happen), and the gauges read now — the same facts as health — in Prometheus' text format.
pub async fn metrics(State(health): State<Health>) -> Response {
    let m = &health.instruments;
    let database_up = crate::db::ping(health.store.connection()).await.is_ok();
    m.gauge("ai_admin_up", &[])
        .set(f64::from(u8::from(database_up)));
    m.gauge("ai_admin_yclients_configured", &[])
        .set(f64::from(u8::from(
            health.yclients.yclients_problem().is_none(),
        )));
    let backend = health.linking.backend_name();
    m.gauge("ai_admin_whatsapp_sessions", &[("backend", backend)])
        .set(health.linking.session_count() as f64);
    m.gauge("ai_admin_whatsapp_sessions_failed", &[("backend", backend)])
        .set(health.linking.failed_count() as f64);
    let running = health.linking.state_counts();
    for state in LinkState::<app::domain::PhoneNumber>::NAMES {
        m.gauge(
            "ai_admin_whatsapp_sessions_by_state",
            &[("backend", backend), ("state", state)],
        )
        .set(running.get(state).copied().unwrap_or(0) as f64);
    }
    for (state, n) in active_salons_by_whatsapp(&health.store)
        .await
        .unwrap_or_default()
    {
        m.gauge("ai_admin_whatsapp_active_salons", &[("state", state)])
            .set(n as f64);
    }
    m.counter("ai_admin_whatsapp_zombies_reconnected_total", &[])
        .absolute(health.linking.zombies_detected());
    m.gauge("ai_admin_live_subscribers", &[])
        .set(health.bus.live_subscriber_count() as f64);
    m.gauge("ai_admin_http_connections", &[])
        .set(health.connections.open() as f64);
    m.gauge("ai_admin_http_connections_max", &[])
        .set(health.connections.max() as f64);
    let outbox = health.store.outbox_counts().await.unwrap_or_default();
    m.gauge("ai_admin_activation_outbox", &[("status", "pending")])
        .set(outbox.pending as f64);
    m.gauge("ai_admin_activation_outbox", &[("status", "failed")])
        .set(outbox.failed as f64);
    m.gauge("ai_admin_activation_outbox_oldest_seconds", &[])
        .set(
            outbox
                .oldest_pending_age
                .map_or(0.0, |age| age.as_secs_f64()),
        );
    let lifecycle = health.store.lifecycle_counts().await.unwrap_or_default();
    m.gauge("ai_admin_lifecycle_inbox", &[("state", "pending")])
        .set(lifecycle.pending as f64);
    m.gauge("ai_admin_lifecycle_inbox", &[("state", "given_up")])
        .set(lifecycle.given_up as f64);
    let body = m.render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
