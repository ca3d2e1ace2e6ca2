//! YClients' webhooks over HTTP: JSON only, a bounded body, and the stage's refusals as 4xx.
//! A 2xx means "on disk"; a duplicate is a 200 that changes nothing.

use super::error::ApiError;
use super::AppState;
use crate::store::Stored;
use crate::webhooks::{EntityWebhook, LifecycleWebhook, WebhookError};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

/// The largest webhook body we accept.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;
const _: () = assert!(MAX_WEBHOOK_BODY <= crate::config::MIN_QUEUE_BYTES);

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Unauthorized(m) => ApiError::new(StatusCode::UNAUTHORIZED, m),
            WebhookError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            WebhookError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            WebhookError::Store(e) => e.into(),
            WebhookError::Busy => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            },
            WebhookError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
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

/// `POST /webhook/yclients`: `{salon_id, application_id, event, partner_token}`.
pub async fn receive_lifecycle_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_json(&headers)?;
    let event: LifecycleWebhook = parse_json(&body)?;
    state.webhooks.accept_lifecycle(event).await?;
    Ok(Json(json!({"success": true})))
}

/// `POST /webhook/yclients/events/{salon_id}/{secret}`: entity events for one salon. The URL's
/// secret is checked before a byte of the body is read: anyone can post here, and a body read
/// first (up to 1 MiB each) let unauthenticated clients hold that much memory per connection.
pub async fn receive_entity_event(
    State(state): State<AppState>,
    Path((salon_id, secret)): Path<(String, String)>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // The app's state, not `State<Webhooks>`: one reference count per request, not a clone of
    // the webhook service's parts.
    let hooks = &state.webhooks;
    let salon = hooks.authenticate_entity_url(&salon_id, &secret).await?;
    let json = require_json(request.headers());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_WEBHOOK_BODY} bytes, or was cut off"),
        )
    };
    // Read up to the limit even when the declared length is over it, as axum's own extractor
    // does: a 413 sent before the client has written most of its body reaches it as a broken
    // connection, not as an answer.
    let body = axum::body::to_bytes(request.into_body(), MAX_WEBHOOK_BODY)
        .await
        .map_err(|_| too_large())?;
    // Refused for its type only once its body is read: a body left unread makes hyper close the
    // connection after the answer, and a client that sent its next request on it meanwhile (a
    // pooled keep-alive connection) gets no answer at all.
    json?;
    let event: EntityWebhook = parse_json(&body)?;
    let stored = hooks.accept_entity(salon, event, body.len()).await?;
    Ok(Json(
        json!({"success": true, "duplicate": stored == Stored::Duplicate}),
    ))
}
