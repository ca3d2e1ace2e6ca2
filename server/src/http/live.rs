//! The live channel over HTTP: `GET /marketplace/api/events` (server-sent events of a
//! [`LiveHub`] stream, with named pings), and the original's status endpoint.

use super::error::ApiError;
use crate::live::{LiveError, LiveHub};
use crate::onboarding::OnboardingService;
use crate::session::OnboardingSession;
use app::domain::SalonId;
use app::status::{ActivationState, LinkState, OnboardingStatus};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::convert::Infallible;

pub use crate::live::PING_INTERVAL;

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::UnknownSalon => ApiError::new(StatusCode::UNAUTHORIZED, "unknown salon"),
            LiveError::Store(e) => e.into(),
        }
    }
}

/// `GET /marketplace/api/events?token=…` (or `Authorization: Bearer …`). The body is the
/// stream's frames as they come: shared bytes, no per-stream keep-alive timer (the hub's one
/// tick sends the pings).
#[tracing::instrument(name = "live_channel", skip_all, fields(salon_id = %session.salon))]
pub async fn salon_events(
    State(service): State<OnboardingService>,
    State(hub): State<LiveHub>,
    session: OnboardingSession,
) -> Result<Response, ApiError> {
    let slot = service.limits.stream_slot(session.salon).map_err(|wait| {
        ApiError::too_many_requests(
            "too many live streams for this salon; close another tab or poll",
            wait.0,
        )
    })?;
    let stream = hub.open(session, slot).await?;
    let frames = futures::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), stream))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response())
}

/// `GET /marketplace/api/status/{sessionId}` (kept from the original): `sessionId` is
/// `company_{salon_id}` and must be the token's own salon.
pub async fn session_status(
    State(service): State<OnboardingService>,
    session: OnboardingSession,
    Path(session_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let salon = session.salon;
    let requested = session_id
        .strip_prefix("company_")
        .and_then(|id| SalonId::parse(id).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "sessionId must look like company_{salon_id}",
            )
        })?;
    if requested != salon {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this token is for another salon",
        ));
    }
    let status = service
        .status(salon)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown salon"))?;
    Ok(Json(status_json(&status)))
}

fn status_json(status: &OnboardingStatus) -> Value {
    let (phone, qr, pairing) = match &status.link {
        LinkState::Linked { phone } => (Some(phone), Value::Null, Value::Null),
        LinkState::Qr {
            seq, expires_at_ms, ..
        } => (
            None,
            json!({"seq": seq, "expires_at": expires_at_ms}),
            Value::Null,
        ),
        LinkState::Pairing {
            code,
            phone,
            expires_at_ms,
        } => (
            None,
            Value::Null,
            json!({"code": code, "phone": phone, "expires_at": expires_at_ms}),
        ),
        _ => (None, Value::Null, Value::Null),
    };
    let activation = match &status.activation {
        ActivationState::Activating {
            attempts,
            last_error,
        } => {
            json!({"state": status.activation.name(), "attempts": attempts, "last_error": last_error})
        }
        ActivationState::Failed { reason } => {
            json!({"state": status.activation.name(), "reason": reason})
        }
        other => json!({"state": other.name()}),
    };
    json!({
        "status": status.link.name(),
        "connected": status.link.is_linked(),
        "phone": phone,
        "qr": qr,
        "pairing": pairing,
        "activation": activation,
        "linked_other_number": status.linked_other_number,
        "number_change_from": status.number_change_from,
        "test_message": status.test_message.as_ref().map(|t| json!({"to": t.to, "status": t.status, "sent_at": t.sent_at_ms})),
        // The typed link state as the page gets it (a retry time, a ban's end).
        "link": status.link,
        "version": status.version,
    })
}
