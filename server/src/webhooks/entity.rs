//! Entity webhooks (records, clients, …) at the per-salon URL registered in the activation
//! callback: authenticated by the URL's secret, stored once, answered fast.

use super::{ct_eq, parse_json, require_json, Webhooks};
use crate::domain::sha256_hex;
use crate::http::error::ApiError;
use crate::store::{EntityEvent, Stored};
use app::domain::SalonId;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

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
