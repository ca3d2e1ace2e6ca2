//! The live channel: server-sent events of one salon's onboarding state, and the original's
//! status endpoint. On connect: subscribe first, then send the snapshot, then every change of
//! *this* salon, each a full status with its version as the event id. A resumed connection
//! (`Last-Event-ID`) gets the current snapshot, which contains everything it missed. When the
//! installation the token was issued for ends (uninstall), the stream ends with it.

use crate::bus::{EventBus, LiveSubscriberGuard, Received, Subscription};
use crate::error::ApiError;
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

struct LiveStream {
    session: OnboardingSession,
    verifier: SessionVerifier,
    service: OnboardingService,
    events: Subscription,
    ping: tokio::time::Interval,
    first: Option<Event>,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _subscriber: LiveSubscriberGuard,
}

fn to_event(kind: LiveEventKind, status: &OnboardingStatus) -> Event {
    Event::default()
        .event(kind.as_str())
        .id(status.version.to_string())
        .data(serde_json::to_string(status).unwrap_or_else(|_| "{}".into()))
}

/// `GET /marketplace/api/events?token=…` (or `Authorization: Bearer …`).
#[tracing::instrument(name = "live_channel", skip_all, fields(salon_id = %session.salon))]
pub async fn salon_events(
    State(service): State<OnboardingService>,
    State(bus): State<EventBus>,
    State(verifier): State<SessionVerifier>,
    session: OnboardingSession,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let salon = session.salon;
    let slot = service.limits.stream_slot(salon)?;
    let subscriber = bus.live_subscriber();
    let events = bus.subscribe_salon(salon);
    let snapshot = service
        .status(salon)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown salon"))?;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    let state = LiveStream {
        session,
        verifier,
        service,
        events,
        ping,
        first: Some(to_event(LiveEventKind::Snapshot, &snapshot)),
        stopped: Box::pin(bus.stopped()),
        _subscriber: subscriber,
    };
    let stream = futures::stream::unfold(state, |mut state| async move {
        if let Some(first) = state.first.take() {
            return Some((Ok(first), state));
        }
        loop {
            let kind = tokio::select! {
                received = state.events.recv() => match received {
                    Some(Received::Changed(changed)) => changed.kind,
                    // Missed some: the snapshot covers them.
                    Some(Received::Resync { .. }) => LiveEventKind::Snapshot,
                    None => return None,
                },
                _ = &mut state.stopped => return None,
                _ = state.ping.tick() => {
                    return Some((Ok(Event::default().event("ping").data("{}")), state));
                }
            };
            if matches!(
                kind,
                LiveEventKind::ActivationUpdate | LiveEventKind::Snapshot
            ) && !matches!(state.verifier.still_valid(&state.session).await, Ok(true))
            {
                // Uninstalled (or installed anew): this token's stream ends here.
                return None;
            }
            match state.service.status(state.session.salon).await {
                Ok(Some(status)) => return Some((Ok(to_event(kind, &status)), state)),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "status for the live channel failed; waiting for the next change")
                }
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
        "version": status.version,
    })
}
