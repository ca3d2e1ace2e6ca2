//! YClients' webhooks. Lifecycle events (`uninstall`, `freeze`) arrive at the Callback URL set in
//! the developer cabinet; entity events (records, clients, …) at the per-salon URL we registered in
//! the activation callback. Both: authenticate, parse, record once, answer fast, act
//! asynchronously. A 2xx means "on disk"; a duplicate is a 200 that changes nothing.

mod entity;
mod lifecycle;
mod writer;

pub use entity::EntityWebhook;
pub use lifecycle::LifecycleWebhook;
pub use writer::{EntityWriter, OwnPool};

use crate::bus::EventBus;
use crate::config::{LifecycleSettings, YClientsSettings};
use crate::linking::Linking;
use crate::store::{Store, StoreError};
use crate::yclients::YClientsClient;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

/// Why a webhook is refused; `http::webhooks` turns it into a status.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer's queue is full: try again in a second.
    #[error("too many webhooks at once; retry shortly")]
    Busy,
    /// The event could not be stored (logged); YClients retries.
    #[error("{0}")]
    Unavailable(&'static str),
}

/// How the lifecycle inbox retries an event that failed to apply.
#[derive(Debug, Clone, Copy)]
pub struct LifecycleRetry {
    /// The first retry's delay; doubling, with jitter, up to five minutes.
    pub base: Duration,
    /// After this long since the event arrived, the inbox gives up (visibly).
    pub give_up_after: Duration,
    /// How long an `uninstall` or `freeze` that YClients' installation status contradicts is
    /// asked about again (YClients' API may lag its own webhook) before it is set aside.
    pub confirm_window: Duration,
}

impl From<LifecycleSettings> for LifecycleRetry {
    fn from(settings: LifecycleSettings) -> Self {
        Self {
            base: settings.retry_base,
            give_up_after: settings.give_up_after,
            confirm_window: settings.confirm_window,
        }
    }
}

#[derive(Clone)]
pub struct Webhooks {
    /// Whose partner token and application id a lifecycle event must carry.
    pub yclients: Arc<YClientsSettings>,
    /// Asked about the installation before an `uninstall` or `freeze` is applied (`None`
    /// without a partner token: the event is applied as it came).
    pub yclients_client: Option<YClientsClient>,
    pub store: Store,
    pub linking: Linking,
    pub bus: EventBus,
    pub retry: LifecycleRetry,
    pub wake: Arc<Notify>,
    /// This instance's lifecycle worker, as named on the events it claims.
    pub worker: Arc<str>,
    pub instruments: crate::instruments::Instruments,
    /// The group commit of entity events.
    pub writer: EntityWriter,
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
