//! `GET /marketplace/health`: whether the service is usable, and why not. Never prints secrets.

use crate::bus::EventBus;
use crate::config::YClientsSettings;
use crate::linking::Linking;
use crate::store::Store;
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
}

pub async fn health(State(health): State<Health>) -> Response {
    let database = crate::db::ping(health.store.connection()).await;
    let outbox = health.store.outbox_counts().await.ok();
    let lifecycle = health.store.lifecycle_counts().await.ok();
    let yclients_problem = health.yclients.yclients_problem();
    let failed_sessions = health.linking.failed_count();
    let lifecycle_given_up = lifecycle.map(|c| c.given_up).unwrap_or(0);
    let status = match (
        &database,
        yclients_problem,
        failed_sessions,
        lifecycle_given_up,
    ) {
        (Err(_), _, _, _) => "down",
        (Ok(_), Some(_), _, _) | (Ok(_), None, 1.., _) | (Ok(_), None, 0, 1..) => "degraded",
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
        },
        "activation_outbox": outbox.map(|c| json!({"pending": c.pending, "failed": c.failed})),
        "lifecycle_inbox": lifecycle.map(|c| json!({"pending": c.pending, "given_up": c.given_up})),
        "live_subscribers": health.bus.live_subscriber_count(),
    });
    let code = if status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// `GET /marketplace/metrics`: the same facts as health, in Prometheus' text format, for alerts
/// (an open WhatsApp circuit, a growing outbox, refused activations).
pub async fn metrics(State(health): State<Health>) -> Response {
    let database_up = crate::db::ping(health.store.connection()).await.is_ok();
    let outbox = health.store.outbox_counts().await.unwrap_or_default();
    let (pending, failed) = (outbox.pending, outbox.failed);
    let lifecycle = health.store.lifecycle_counts().await.unwrap_or_default();
    let backend = health.linking.backend_name();
    let body = format!(
        "# HELP ai_admin_up Whether the database answers.\n\
         # TYPE ai_admin_up gauge\n\
         ai_admin_up {}\n\
         # HELP ai_admin_yclients_configured Whether the partner token and application id are set.\n\
         # TYPE ai_admin_yclients_configured gauge\n\
         ai_admin_yclients_configured {}\n\
         # HELP ai_admin_whatsapp_sessions WhatsApp sessions running in this process.\n\
         # TYPE ai_admin_whatsapp_sessions gauge\n\
         ai_admin_whatsapp_sessions{{backend=\"{backend}\"}} {}\n\
         # HELP ai_admin_whatsapp_sessions_failed Sessions whose reconnect circuit is open.\n\
         # TYPE ai_admin_whatsapp_sessions_failed gauge\n\
         ai_admin_whatsapp_sessions_failed{{backend=\"{backend}\"}} {}\n\
         # HELP ai_admin_live_subscribers Browsers on the live channel.\n\
         # TYPE ai_admin_live_subscribers gauge\n\
         ai_admin_live_subscribers {}\n\
         # HELP ai_admin_activation_outbox Activation callbacks by outbox status.\n\
         # TYPE ai_admin_activation_outbox gauge\n\
         ai_admin_activation_outbox{{status=\"pending\"}} {pending}\n\
         ai_admin_activation_outbox{{status=\"failed\"}} {failed}\n\
         # HELP ai_admin_lifecycle_inbox YClients lifecycle events (uninstall, freeze) by inbox state.\n\
         # TYPE ai_admin_lifecycle_inbox gauge\n\
         ai_admin_lifecycle_inbox{{state=\"pending\"}} {}\n\
         ai_admin_lifecycle_inbox{{state=\"given_up\"}} {}\n",
        u8::from(database_up),
        u8::from(health.yclients.yclients_problem().is_none()),
        health.linking.session_count(),
        health.linking.failed_count(),
        health.bus.live_subscriber_count(),
        lifecycle.pending,
        lifecycle.given_up,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
