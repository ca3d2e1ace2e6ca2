//! YClients' webhooks. Lifecycle events (`uninstall`, `freeze`) arrive at the Callback URL set in
//! the developer cabinet; entity events (records, clients, …) at the per-salon URL we registered in
//! the activation callback. Both: authenticate, parse, record once, answer fast, act
//! asynchronously. A 2xx means "on disk"; a duplicate is a 200 that changes nothing.

use crate::audit::record_event;
use crate::bus::EventBus;
use crate::config::Config;
use crate::db::entities::{entity_events, lifecycle_events, records, salons};
use crate::error::ApiError;
use crate::linking::Linking;
use crate::onboarding::SalonStatus;
use app::domain::SalonId;
use app::status::LiveEventKind;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

/// The largest webhook body we accept.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct Webhooks {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub linking: Linking,
    pub bus: EventBus,
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
    lifecycle_events::ActiveModel {
        salon_id: Set(salon.get()),
        application_id: Set(event.application_id),
        event: Set(event.event.chars().take(64).collect()),
        attempts: Set(0),
        created_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&hooks.db)
    .await?;
    hooks.wake.notify_one();
    Ok(Json(json!({"success": true})))
}

impl Webhooks {
    /// Processes stored lifecycle events in order until `shutdown`; events survive restarts.
    pub async fn run_lifecycle_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.process_pending().await {
                tracing::error!(error = %e, "lifecycle pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    pub async fn process_pending(&self) -> Result<usize, DbErr> {
        let pending = lifecycle_events::Entity::find()
            .filter(lifecycle_events::Column::ProcessedAt.is_null())
            .filter(lifecycle_events::Column::Attempts.lt(10))
            .order_by_asc(lifecycle_events::Column::Id)
            .all(&self.db)
            .await?;
        let count = pending.len();
        for event in pending {
            let result = self.apply(&event).await;
            let mut row: lifecycle_events::ActiveModel = event.clone().into();
            row.attempts = Set(event.attempts + 1);
            match result {
                Ok(()) => row.processed_at = Set(Some(chrono::Utc::now())),
                Err(e) => {
                    tracing::error!(salon_id = event.salon_id, error = %e, "lifecycle event failed; will retry");
                    row.last_error = Set(Some(e.to_string()));
                }
            }
            row.update(&self.db).await?;
        }
        Ok(count)
    }

    #[tracing::instrument(skip_all, fields(salon_id = event.salon_id, event = %event.event))]
    async fn apply(&self, event: &lifecycle_events::Model) -> Result<(), DbErr> {
        let salon = SalonId::try_from(event.salon_id).map_err(|e| DbErr::Custom(e.to_string()))?;
        match event.event.as_str() {
            "uninstall" => {
                // Unlink on the phone for real and forget the credentials, even for a salon we
                // never stored (a session may be running from an unfinished onboarding).
                self.linking.logout_and_forget(salon).await?;
                let txn = self.db.begin().await?;
                salons::Entity::update_many()
                    .col_expr(
                        salons::Column::Status,
                        Expr::value(SalonStatus::Uninstalled.as_str()),
                    )
                    .col_expr(
                        salons::Column::ApiKeyHash,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        salons::Column::ApiKeyPrefix,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        salons::Column::WebhookSecretHash,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(salons::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
                    .filter(salons::Column::Id.eq(salon.get()))
                    .exec(&txn)
                    .await?;
                record_event(
                    &txn,
                    Some(salon),
                    "uninstalled",
                    json!({"lifecycle_event_id": event.id}),
                )
                .await?;
                txn.commit().await?;
                tracing::info!(
                    "salon uninstalled: WhatsApp unlinked, credentials and API key gone"
                );
            }
            "freeze" => {
                self.linking.stop(salon).await;
                salons::Entity::update_many()
                    .col_expr(
                        salons::Column::Status,
                        Expr::value(SalonStatus::Frozen.as_str()),
                    )
                    .col_expr(salons::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
                    .filter(salons::Column::Id.eq(salon.get()))
                    .filter(salons::Column::Status.ne(SalonStatus::Uninstalled.as_str()))
                    .exec(&self.db)
                    .await?;
                record_event(
                    &self.db,
                    Some(salon),
                    "frozen",
                    json!({"lifecycle_event_id": event.id}),
                )
                .await?;
            }
            other => {
                record_event(
                    &self.db,
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
    let row = salons::Entity::find_by_id(salon.get())
        .one(&hooks.db)
        .await?
        .ok_or_else(unauthorized)?;
    let expected = row
        .webhook_secret_hash
        .as_deref()
        .ok_or_else(unauthorized)?;
    if !ct_eq(expected, &hex::encode(Sha256::digest(secret.as_bytes()))) {
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
    let duplicate = store_entity_event(&hooks.db, salon, &event, &resource_id).await?;
    Ok(Json(json!({"success": true, "duplicate": duplicate})))
}

/// Stores the event (and, for records, the booking projection) in one transaction.
/// Returns `true` when it was already stored.
async fn store_entity_event(
    db: &DatabaseConnection,
    salon: SalonId,
    event: &EntityWebhook,
    resource_id: &str,
) -> Result<bool, DbErr> {
    let data = event.data.to_string();
    let data_hash = hex::encode(Sha256::digest(data.as_bytes()));
    let dedup_key = hex::encode(Sha256::digest(
        format!(
            "{}|{}|{}|{}|{}",
            salon, event.resource, resource_id, event.status, data_hash
        )
        .as_bytes(),
    ));
    let now = chrono::Utc::now();
    let txn = db.begin().await?;
    let inserted = entity_events::Entity::insert(entity_events::ActiveModel {
        salon_id: Set(salon.get()),
        resource: Set(event.resource.chars().take(64).collect()),
        resource_id: Set(resource_id.chars().take(64).collect()),
        status: Set(event.status.clone()),
        data_hash: Set(data_hash),
        dedup_key: Set(dedup_key),
        data: Set(data),
        created_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(entity_events::Column::DedupKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(true);
    }
    if event.resource == "record" {
        if let Ok(record_id) = resource_id.parse::<i64>() {
            upsert_record(&txn, salon, record_id, event, now).await?;
        }
    }
    txn.commit().await?;
    Ok(false)
}

/// The booking, in the form the next feature (booking messages over WhatsApp) reads.
async fn upsert_record<C: sea_orm::ConnectionTrait>(
    db: &C,
    salon: SalonId,
    record_id: i64,
    event: &EntityWebhook,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let client = &event.data["client"];
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let deleted = event.status == "delete" || event.data["deleted"].as_bool().unwrap_or(false);
    records::Entity::insert(records::ActiveModel {
        salon_id: Set(salon.get()),
        record_id: Set(record_id),
        client_phone: Set(text(&client["phone"])),
        client_name: Set(text(&client["name"])),
        datetime: Set(text(&event.data["datetime"])),
        status: Set(event.status.clone()),
        deleted: Set(deleted),
        updated_at: Set(now),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([records::Column::SalonId, records::Column::RecordId])
            .update_columns([
                records::Column::ClientPhone,
                records::Column::ClientName,
                records::Column::Datetime,
                records::Column::Status,
                records::Column::Deleted,
                records::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}
