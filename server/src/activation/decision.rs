//! The decision: whether this call starts the salon's activation (one winner, in the database).

use super::{Activation, ActivationError, Trigger};
use crate::domain::{ApiKey, SalonStatus, WebhookSecret};
use crate::store::{PendingPair, StoreError};
use crate::yclients::CallbackRequest;
use app::domain::SalonId;
use app::status::LiveEventKind;

impl Activation {
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
        let (pair, payload) = self.offer(salon, application_id)?;
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

    /// A new API key and webhook secret, and the callback body that offers them.
    fn offer(
        &self,
        salon: SalonId,
        application_id: i64,
    ) -> Result<(PendingPair, String), ActivationError> {
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
        Ok((pair, payload))
    }

    /// An operator's rotation of an active salon's webhook secret: queues a callback offering a
    /// new webhook URL secret — and a new API key, since the contract requires `api_key` in every
    /// callback and only its hash is kept here. The salon's pair changes only when YClients
    /// confirms (201); until then the old URL keeps working, and on a refusal it stays the only
    /// one. `Ok(Err(reason))` when the salon cannot rotate now.
    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    pub async fn rotate_webhook_secret(
        &self,
        salon: SalonId,
        operator: &str,
    ) -> Result<Result<(), String>, ActivationError> {
        let Some(application_id) = self.settings.application_id else {
            return Err(ActivationError::NotConfigured);
        };
        let (pair, payload) = self.offer(salon, application_id)?;
        let window = chrono::Duration::from_std(self.settings.pending_window)
            .unwrap_or(chrono::Duration::hours(1));
        let queued = self
            .store
            .begin_rotation(salon, &pair, payload, window, operator)
            .await?;
        if queued.is_ok() {
            self.bus.publish(salon, LiveEventKind::ActivationUpdate);
            self.wake.notify_one();
        }
        Ok(queued)
    }
}
