//! YClients' webhooks. Lifecycle events (`uninstall`, `freeze`) arrive at the Callback URL set in
//! the developer cabinet; entity events (records, clients, …) at the per-salon URL we registered in
//! the activation callback. Both: authenticate, parse, record once, answer fast, act
//! asynchronously. A 2xx means "on disk"; a duplicate is a 200 that changes nothing.

mod entity;
mod lifecycle;

pub use entity::receive_entity_event;
pub use lifecycle::receive_lifecycle_event;

use crate::bus::EventBus;
use crate::config::{LifecycleSettings, YClientsSettings};
use crate::http::error::ApiError;
use crate::linking::Linking;
use crate::store::Store;
use axum::http::{header, HeaderMap, StatusCode};
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

impl From<LifecycleSettings> for LifecycleRetry {
    fn from(settings: LifecycleSettings) -> Self {
        Self {
            base: settings.retry_base,
            give_up_after: settings.give_up_after,
        }
    }
}

#[derive(Clone)]
pub struct Webhooks {
    /// Whose partner token and application id a lifecycle event must carry.
    pub yclients: Arc<YClientsSettings>,
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
