//! Activation: once WhatsApp is linked, the integration becomes `active` exactly once, and only
//! when YClients has confirmed it.
//!
//! Exactly once is enforced by the database, not memory: the store's `begin_activation` moves the
//! salon to `activating` with a guarded update (only one caller can win it, in any process) in the
//! same transaction that writes the callback row with the API key / webhook secret pair it offers.
//! The pair becomes the salon's only when YClients confirms it (201); "already installed" keeps
//! the pair YClients holds. The outbox worker claims rows with a lease (a conditional update, so
//! two workers never deliver one row at once), delivers, retries transient failures with backoff
//! and jitter until YClients' pending window closes, and survives restarts because the row is on
//! disk. Once a delivery ends, the row keeps no plaintext secret.

mod decision;
mod outbox;
mod trigger;

use crate::bus::EventBus;
use crate::store::{Store, StoreError};
use crate::yclients::YClientsClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Who asked for the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The link was made: the server's own trigger and the page's activation action. Only from
    /// `new`, so a late or repeated request can never re-activate after a refusal.
    Linked,
    /// The admin's explicit retry: also after a refusal, or after a freeze.
    Admin,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("YCLIENTS_APPLICATION_ID is not configured")]
    NotConfigured,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct ActivationSettings {
    pub application_id: Option<i64>,
    pub base_url: String,
    pub pending_window: Duration,
    pub retry_base: Duration,
}

#[derive(Clone)]
pub struct Activation {
    store: Store,
    yclients: Option<YClientsClient>,
    bus: EventBus,
    settings: Arc<ActivationSettings>,
    wake: Arc<Notify>,
    worker_id: Arc<str>,
    instruments: crate::instruments::Instruments,
}

impl Activation {
    pub fn new(
        store: Store,
        yclients: Option<YClientsClient>,
        bus: EventBus,
        settings: ActivationSettings,
        instruments: crate::instruments::Instruments,
    ) -> Self {
        Self {
            store,
            yclients,
            bus,
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4()).into(),
            instruments,
        }
    }
}
