//! YClients' webhooks. Lifecycle events (`uninstall`, `freeze`) arrive at the Callback URL set in
//! the developer cabinet; entity events (records, clients, …) at the per-salon URL we registered in
//! the activation callback. Both: authenticate, parse, record once, answer fast, act
//! asynchronously. A 2xx means "on disk"; a duplicate is a 200 that changes nothing.

use crate::bus::EventBus;
use crate::config::Config;
use crate::domain::sha256_hex;
use crate::error::ApiError;
use crate::linking::Linking;
use crate::store::{EntityEvent, LifecycleEvent, LifecycleKind, Store, StoreError, Stored};
use crate::yclients::client::backoff_with_jitter;
use app::domain::SalonId;
use app::status::LiveEventKind;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

/// The largest webhook body we accept.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

/// How the lifecycle inbox retries an event that failed to apply.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleRetry {
    /// The first retry's delay; doubling, with jitter, up to five minutes.
    pub base: Duration,
    /// After this long since the event arrived, the inbox gives up (visibly).
    pub give_up_after: Duration,
}

#[derive(Clone)]
pub struct Webhooks {
    pub config: Arc<Config>,
    pub store: Store,
    pub linking: Linking,
    pub bus: EventBus,
    pub retry: LifecycleRetry,
    pub wake: Arc<Notify>,
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

#[derive(Debug, Deserialize)]
struct LifecycleWebhook {
    salon_id: i64,
    application_id: i64,
    event: String,
    partner_token: String,
}

/// `POST /webhook/yclients`: `{salon_id, application_id, event, partner_token}`.
#[tracing::instrument(name = "lifecycle_webhook", skip_all, fields(salon_id))]
pub async fn receive_lifecycle_event(
    State(hooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_json(&headers)?;
    let event: LifecycleWebhook = parse_json(&body)?;
    tracing::Span::current().record("salon_id", event.salon_id);
    let token_ok = hooks
        .config
        .partner_token()
        .is_some_and(|ours| ct_eq(ours, &event.partner_token));
    let app_ok = hooks.config.application_id == Some(event.application_id);
    if !token_ok || !app_ok {
        tracing::warn!(event = %event.event, application_id = event.application_id, token_ok, app_ok, "lifecycle webhook refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "partner_token or application_id does not match",
        ));
    }
    let salon = SalonId::try_from(event.salon_id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    hooks
        .store
        .receive_lifecycle(salon, event.application_id, &event.event)
        .await?;
    hooks.wake.notify_one();
    Ok(Json(json!({"success": true})))
}

impl Webhooks {
    /// Applies stored lifecycle events until `shutdown`; events survive restarts.
    pub async fn run_lifecycle_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.process_pending().await {
                tracing::error!(error = %e, "lifecycle pass failed");
            }
            let wait = match self.store.next_lifecycle_due().await {
                Ok(Some(at)) => (at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_millis(10))
                    .min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over the due events (the oldest unfinished one per salon); returns how many ran.
    pub async fn process_pending(&self) -> Result<usize, StoreError> {
        let due = self.store.due_lifecycle_events().await?;
        let count = due.len();
        for event in due {
            match self.apply(&event).await {
                Ok(()) => self.store.lifecycle_applied(&event).await?,
                Err(e) => self.retry_or_give_up(&event, &e.to_string()).await?,
            }
        }
        Ok(count)
    }

    async fn retry_or_give_up(
        &self,
        event: &LifecycleEvent,
        error: &str,
    ) -> Result<(), StoreError> {
        let attempts = event.attempts + 1;
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(backoff_with_jitter(self.retry.base, attempts as u32))
                .unwrap_or_default();
        let give_up_at = event.created_at
            + chrono::Duration::from_std(self.retry.give_up_after).unwrap_or_default();
        if next > give_up_at {
            tracing::error!(salon_id = %event.salon, attempts, error, "lifecycle event given up");
            return self.store.lifecycle_give_up(event, error).await;
        }
        tracing::warn!(salon_id = %event.salon, attempts, error, "lifecycle event failed; will retry");
        self.store.lifecycle_retry_later(event, next, error).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %event.salon, event = ?event.kind))]
    async fn apply(&self, event: &LifecycleEvent) -> Result<(), StoreError> {
        let salon = event.salon;
        match &event.kind {
            LifecycleKind::Uninstall => {
                // Unlink on the phone for real and forget the credentials, even for a salon we
                // never stored (a session may be running from an unfinished onboarding); then the
                // row, the key, the secret and every token, in one transaction.
                self.linking.logout_and_forget(salon).await?;
                self.store.uninstall(salon, event.id).await?;
                tracing::info!(
                    "salon uninstalled: WhatsApp unlinked, credentials, API key and tokens gone"
                );
            }
            LifecycleKind::Freeze => {
                self.linking.stop(salon).await;
                self.store.freeze(salon, event.id).await?;
            }
            LifecycleKind::Other(other) => {
                self.store
                    .audit(
                        Some(salon),
                        "lifecycle_unknown",
                        json!({"event": other, "lifecycle_event_id": event.id}),
                    )
                    .await?;
            }
        }
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }
}

const IDLE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
struct EntityWebhook {
    company_id: i64,
    resource: String,
    resource_id: Value,
    status: String,
    #[serde(default)]
    data: Value,
}

/// `POST /webhook/yclients/events/{salon_id}/{secret}`: entity events for one salon.
#[tracing::instrument(name = "entity_webhook", skip_all, fields(salon_id = %salon_id))]
pub async fn receive_entity_event(
    State(hooks): State<Webhooks>,
    Path((salon_id, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "unknown webhook URL");
    let salon = SalonId::parse(&salon_id).map_err(|_| unauthorized())?;
    let expected = hooks
        .store
        .webhook_secret_hash(salon)
        .await?
        .ok_or_else(unauthorized)?;
    if !ct_eq(&expected, &sha256_hex(secret.as_bytes())) {
        tracing::warn!("entity webhook with a wrong secret refused");
        return Err(unauthorized());
    }
    require_json(&headers)?;
    let event: EntityWebhook = parse_json(&body)?;
    if event.company_id != salon.get() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "company_id does not belong to this webhook URL",
        ));
    }
    if !matches!(event.status.as_str(), "create" | "update" | "delete") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "status must be create, update or delete",
        ));
    }
    let resource_id = match &event.resource_id {
        Value::Number(n) => n.to_string(),
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "resource_id must be a number or a string",
            ))
        }
    };
    let stored = hooks
        .store
        .store_entity_event(
            salon,
            &EntityEvent {
                resource: event.resource,
                resource_id,
                status: event.status,
                data: event.data,
            },
        )
        .await?;
    Ok(Json(
        json!({"success": true, "duplicate": stored == Stored::Duplicate}),
    ))
}
