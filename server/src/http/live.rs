//! The live channel over HTTP: `GET /marketplace/api/events` (server-sent events of a
//! [`LiveFeed`], with named pings), and the original's status endpoint.

use super::error::ApiError;
use crate::bus::EventBus;
use crate::live::{LiveError, LiveFeed, Shown};
use crate::onboarding::OnboardingService;
use crate::session::{OnboardingSession, SessionVerifier};
use app::domain::SalonId;
use app::status::{ActivationState, LinkState, LiveEventKind, OnboardingStatus};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

/// A named `ping` event this often: the browser cannot see SSE comments, and uses pings to tell a
/// silent channel from a dead one.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::UnknownSalon => ApiError::new(StatusCode::UNAUTHORIZED, "unknown salon"),
            LiveError::Store(e) => e.into(),
        }
    }
}

fn to_event(kind: LiveEventKind, status: &OnboardingStatus) -> Event {
    Event::default()
        .event(kind.as_str())
        .id(status.version.to_string())
        .data(serde_json::to_string(status).unwrap_or_else(|_| "{}".into()))
}

struct Channel {
    feed: LiveFeed,
    ping: tokio::time::Interval,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// `GET /marketplace/api/events?token=…` (or `Authorization: Bearer …`).
#[tracing::instrument(name = "live_channel", skip_all, fields(salon_id = %session.salon))]
pub async fn salon_events(
    State(service): State<OnboardingService>,
    State(bus): State<EventBus>,
    State(verifier): State<SessionVerifier>,
    session: OnboardingSession,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = service.limits.stream_slot(session.salon).map_err(|wait| {
        ApiError::too_many_requests(
            "too many live streams for this salon; close another tab or poll",
            wait.0,
        )
    })?;
    let feed = LiveFeed::open(service, &bus, verifier, session).await?;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    let channel = Channel {
        feed,
        ping,
        stopped: Box::pin(bus.stopped()),
    };
    let stream = futures::stream::unfold(channel, |mut channel| async move {
        loop {
            let kind = tokio::select! {
                kind = channel.feed.changed() => kind?,
                _ = &mut channel.stopped => return None,
                _ = channel.ping.tick() => {
                    return Some((Ok(Event::default().event("ping").data("{}")), channel));
                }
            };
            match channel.feed.show(kind).await {
                Shown::Status(status) => return Some((Ok(to_event(kind, &status)), channel)),
                Shown::Nothing => continue,
                Shown::End => return None,
            }
        }
    });
    let stream = slot.hold(stream);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
