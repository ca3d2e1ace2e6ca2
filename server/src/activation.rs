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

use crate::bus::EventBus;
use crate::domain::{ApiKey, SalonStatus, WebhookSecret};
use crate::store::{Callback, PendingPair, Store, StoreError};
use crate::yclients::client::backoff_with_jitter;
use crate::yclients::{CallbackRequest, YClientsClient, YClientsError};
use app::domain::SalonId;
use app::status::LiveEventKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const LEASE: Duration = Duration::from_secs(60);
const IDLE_POLL: Duration = Duration::from_secs(5);

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
}

impl Activation {
    pub fn new(
        store: Store,
        yclients: Option<YClientsClient>,
        bus: EventBus,
        settings: ActivationSettings,
    ) -> Self {
        Self {
            store,
            yclients,
            bus,
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4()).into(),
        }
    }

    /// Starts the activation if this salon is linked and in a state that allows it. Any number of
    /// concurrent calls start it once: one API key, one callback row, one event. `true` when this
    /// call started it.
    #[tracing::instrument(skip_all, fields(salon_id = %salon, ?trigger))]
    pub async fn activate_integration(
        &self,
        salon: SalonId,
        trigger: Trigger,
    ) -> Result<bool, ActivationError> {
        let Some(application_id) = self.settings.application_id else {
            tracing::error!("activation impossible: YCLIENTS_APPLICATION_ID is not configured");
            return Err(ActivationError::NotConfigured);
        };
        let from: &[SalonStatus] = match trigger {
            Trigger::Linked => &[SalonStatus::New],
            Trigger::Admin => &[SalonStatus::New, SalonStatus::ActivationFailed],
        };
        let pair = PendingPair {
            api_key: ApiKey::generate(),
            webhook_secret: WebhookSecret::generate(),
        };
        let body = CallbackRequest {
            salon_id: salon.get(),
            application_id,
            api_key: pair.api_key.expose().to_owned(),
            webhook_urls: vec![format!(
                "{}/webhook/yclients/events/{}/{}",
                self.settings.base_url,
                salon,
                pair.webhook_secret.expose()
            )],
            channels: vec!["whatsapp".to_owned()],
        };
        let payload = serde_json::to_string(&body)
            .map_err(|e| StoreError::Corrupt(format!("callback body: {e}")))?;
        let window = chrono::Duration::from_std(self.settings.pending_window)
            .unwrap_or(chrono::Duration::hours(1));
        let started = self
            .store
            .begin_activation(salon, from, &pair, payload, window, &format!("{trigger:?}"))
            .await?;
        if started {
            self.bus.publish(salon, LiveEventKind::ActivationUpdate);
            self.wake.notify_one();
        }
        Ok(started)
    }

    /// Starts activation when a salon's WhatsApp becomes linked (the server's own trigger, so a
    /// closed tab does not strand the salon).
    pub async fn run_link_trigger(
        self,
        mut events: tokio::sync::broadcast::Receiver<crate::bus::SalonChanged>,
    ) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(event)
                    if matches!(
                        event.kind,
                        LiveEventKind::WhatsappConnected | LiveEventKind::WhatsappState
                    ) =>
                {
                    if let Err(e) = self
                        .activate_integration(event.salon, Trigger::Linked)
                        .await
                    {
                        tracing::error!(salon_id = %event.salon, error = %e, "automatic activation failed to start");
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "activation trigger lagged behind the bus")
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// The outbox worker: delivers owed callbacks until `shutdown` resolves.
    pub async fn run_outbox_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next_wait = match self.deliver_due().await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "outbox pass failed");
                    IDLE_POLL
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next_wait) => {}
            }
        }
    }

    /// One pass: claims and delivers every due row; returns how long to sleep.
    pub async fn deliver_due(&self) -> Result<Duration, StoreError> {
        for row in self.store.due_callbacks(20).await? {
            let lease_until =
                chrono::Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
            if self
                .store
                .claim_callback(row.id, &self.worker_id, lease_until)
                .await?
            {
                self.deliver(row).await?;
            }
        }
        Ok(self
            .store
            .next_callback_due()
            .await?
            .map(|at| {
                (at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_millis(10))
                    .min(IDLE_POLL)
            })
            .unwrap_or(IDLE_POLL))
    }

    #[tracing::instrument(skip_all, fields(salon_id = %row.salon, attempt = row.attempts + 1))]
    async fn deliver(&self, row: Callback) -> Result<(), StoreError> {
        let Some(yclients) = &self.yclients else {
            return self.fail(&row, "YCLIENTS_PARTNER_TOKEN не настроен").await;
        };
        let body: CallbackRequest = match serde_json::from_str(&row.payload) {
            Ok(body) => body,
            Err(e) => {
                return self
                    .fail(&row, &format!("повреждённая запись outbox: {e}"))
                    .await
            }
        };
        match yclients.partner_callback(&body).await {
            Ok(()) => self.confirm(&row, true, "201").await,
            Err(YClientsError::AlreadyInstalled(message)) => {
                match yclients
                    .installation_status(body.salon_id, body.application_id)
                    .await
                {
                    // YClients keeps the key and webhook URL it already holds.
                    Ok(Some(status)) if status.status == "active" => {
                        self.confirm(&row, false, "already active").await
                    }
                    Ok(other) => {
                        let detail = format!(
                            "{message}; статус установки: {}",
                            other
                                .map(|s| s.status)
                                .unwrap_or_else(|| "не установлено".into())
                        );
                        self.retry_or_fail(&row, &detail).await
                    }
                    Err(e) => self.retry_or_fail(&row, &e.to_string()).await,
                }
            }
            Err(e) if e.is_transient() => self.retry_or_fail(&row, &e.to_string()).await,
            Err(e) => self.fail(&row, &refusal_message(&e)).await,
        }
    }

    async fn confirm(
        &self,
        row: &Callback,
        offered_pair_accepted: bool,
        how: &str,
    ) -> Result<(), StoreError> {
        self.store
            .confirm_callback(row, offered_pair_accepted, how)
            .await?;
        tracing::info!(how, "integration active");
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn retry_or_fail(&self, row: &Callback, error: &str) -> Result<(), StoreError> {
        let attempts = row.attempts + 1;
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(backoff_with_jitter(
                self.settings.retry_base,
                attempts as u32,
            ))
            .unwrap_or_default();
        if next > row.deadline_at {
            return self
                .fail(row, &format!("YClients не подтвердил активацию за отведённый час (последняя ошибка: {error})"))
                .await;
        }
        tracing::warn!(error, attempts, "callback not confirmed yet; will retry");
        self.store.retry_callback_later(row, next, error).await?;
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn fail(&self, row: &Callback, reason: &str) -> Result<(), StoreError> {
        tracing::error!(reason, "activation refused");
        self.store.fail_callback(row, reason).await?;
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }
}

/// YClients' own words for a definitive refusal.
fn refusal_message(error: &YClientsError) -> String {
    match error {
        YClientsError::Unauthorized(m)
        | YClientsError::Forbidden(m)
        | YClientsError::NotFound(m) => m.clone(),
        YClientsError::Rejected { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
