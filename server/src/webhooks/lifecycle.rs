//! Lifecycle webhooks (`uninstall`, `freeze`) at the Callback URL set in the developer cabinet:
//! authenticated by the partner token, stored in the inbox before the 2xx, applied by a worker.

use super::{ct_eq, WebhookError, Webhooks};
use crate::store::{LifecycleEvent, LifecycleKind, StoreError};
use crate::yclients::client::backoff_with_jitter;
use app::domain::SalonId;
use app::status::LiveEventKind;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// `{salon_id, application_id, event, partner_token}` as YClients posts it.
/// (The API document, `http/openapi.rs`, describes this type as it is.)
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LifecycleWebhook {
    /// The branch.
    pub salon_id: i64,
    /// Ours, as registered in YClients.
    pub application_id: i64,
    /// `uninstall`, `freeze`; anything else is stored.
    pub event: String,
    /// Ours (the partner token), compared in constant time.
    pub partner_token: String,
}

impl Webhooks {
    /// Authenticates a lifecycle event (our partner token and application id, compared in
    /// constant time) and stores it in the inbox; the worker applies it.
    #[tracing::instrument(name = "lifecycle_webhook", skip_all, fields(salon_id = event.salon_id))]
    pub async fn accept_lifecycle(&self, event: LifecycleWebhook) -> Result<(), WebhookError> {
        let token_ok = self
            .yclients
            .partner_token()
            .is_some_and(|ours| ct_eq(ours, &event.partner_token));
        let app_ok = self.yclients.application_id == Some(event.application_id);
        if !token_ok || !app_ok {
            tracing::warn!(event = %event.event, application_id = event.application_id, token_ok, app_ok, "lifecycle webhook refused");
            return Err(WebhookError::Unauthorized(
                "partner_token or application_id does not match",
            ));
        }
        let salon = SalonId::try_from(event.salon_id)
            .map_err(|e| WebhookError::BadRequest(e.to_string()))?;
        self.store
            .receive_lifecycle(salon, event.application_id, &event.event)
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

impl Webhooks {
    /// Applies stored lifecycle events until `shutdown`; events survive restarts. A pass in
    /// flight at shutdown finishes its event; the worker then frees what it still holds.
    pub async fn run_lifecycle_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.process_pending().await {
                tracing::error!(error = %e, "lifecycle pass failed");
            }
            let wait = match self.store.next_lifecycle_due().await {
                Ok(Some(at)) => (at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::from_millis(10))
                    .min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if let Err(e) = self.store.release_lifecycle_leases(&self.worker).await {
            tracing::warn!(error = %e, "could not free the lifecycle leases; they expire by themselves");
        }
    }

    /// One pass over the due events (the oldest unfinished one per salon), each claimed first so
    /// that another instance's worker does not apply it too; returns how many this worker ran.
    pub async fn process_pending(&self) -> Result<usize, StoreError> {
        let due = self.store.due_lifecycle_events().await?;
        let mut count = 0;
        for event in due {
            let lease_until =
                chrono::Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
            if !self
                .store
                .claim_lifecycle(&event, &self.worker, lease_until)
                .await?
            {
                continue;
            }
            count += 1;
            let result = match self.apply(&event).await {
                Ok(()) => {
                    self.store.lifecycle_applied(&event, &self.worker).await?;
                    "applied"
                }
                Err(e) => self.retry_or_give_up(&event, &e.to_string()).await?,
            };
            self.instruments.count(
                "ai_admin_lifecycle_events_total",
                &[("kind", event.kind.label()), ("result", result)],
            );
        }
        Ok(count)
    }

    async fn retry_or_give_up(
        &self,
        event: &LifecycleEvent,
        error: &str,
    ) -> Result<&'static str, StoreError> {
        let attempts = event.attempts + 1;
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(backoff_with_jitter(self.retry.base, attempts as u32))
                .unwrap_or_default();
        let give_up_at = event.created_at
            + chrono::Duration::from_std(self.retry.give_up_after).unwrap_or_default();
        if next > give_up_at {
            tracing::error!(salon_id = %event.salon, attempts, error, "lifecycle event given up");
            self.store
                .lifecycle_give_up(event, &self.worker, error)
                .await?;
            return Ok("given_up");
        }
        tracing::warn!(salon_id = %event.salon, attempts, error, "lifecycle event failed; will retry");
        self.store
            .lifecycle_retry_later(event, &self.worker, next, error)
            .await?;
        Ok("retry")
    }

    #[tracing::instrument(skip_all, fields(salon_id = %event.salon, event = ?event.kind))]
    async fn apply(&self, event: &LifecycleEvent) -> Result<(), StoreError> {
        let salon = event.salon;
        if matches!(event.kind, LifecycleKind::Uninstall | LifecycleKind::Freeze)
            && self
                .store
                .registered_after(salon, event.created_at + SUPERSEDED_AFTER)
                .await?
        {
            // An uninstall or freeze still being retried when YClients had since confirmed a
            // new installation (an entry is registered only for a pending or active one, and
            // after an uninstall or a freeze YClients answers neither until the app is installed
            // or paid again): the event is about an installation that is gone. Applied late, it
            // would end the new one.
            tracing::warn!(
                event = event.kind.label(),
                "lifecycle event superseded by a later installation; not applied"
            );
            self.store
                .audit(
                    Some(salon),
                    "lifecycle_superseded",
                    json!({"event": event.kind.label(), "lifecycle_event_id": event.id}),
                )
                .await?;
            return Ok(());
        }
        match &event.kind {
            LifecycleKind::Uninstall => {
                // Unlink on the phone for real and forget the credentials, even for a salon we
                // never stored (a session may be running from an unfinished onboarding); then the
                // row, the key, the secret and every token, in one transaction.
                self.linking.logout_and_purge(salon).await;
                self.store.uninstall(salon, event.id).await?;
                tracing::info!(
                    "salon uninstalled: WhatsApp unlinked, credentials, API key and tokens gone"
                );
            }
            LifecycleKind::Freeze => {
                self.linking.stop(salon).await;
                self.store.freeze(salon, event.id).await?;
            }
            LifecycleKind::Other(other) => {
                self.store
                    .audit(
                        Some(salon),
                        "lifecycle_unknown",
                        json!({"event": other, "lifecycle_event_id": event.id}),
                    )
                    .await?;
            }
        }
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }
}

const IDLE_POLL: Duration = Duration::from_secs(5);
/// An uninstall or freeze is superseded by a registration this long after it arrived: an entry
/// whose installation check YClients answered just before the event could be registered just
/// after it, and must not cancel it.
const SUPERSEDED_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// How long a worker holds an event it applies (far longer than an apply takes; a worker that
/// died holding one lets it go after this).
const LEASE: Duration = Duration::from_secs(60);
