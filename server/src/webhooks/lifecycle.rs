//! Lifecycle webhooks (`uninstall`, `freeze`) at the Callback URL set in the developer cabinet:
//! authenticated by the partner token, stored in the inbox before the 2xx, applied by a worker.

use super::{ct_eq, WebhookError, Webhooks};
use crate::domain::SalonStatus;
use crate::store::{LifecycleEvent, LifecycleKind, StoreError};
use crate::yclients::client::backoff_with_jitter;
use crate::yclients::InstallationStatus;
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
            tracing::warn!(event = %crate::telemetry::client_text(&event.event), application_id = event.application_id, token_ok, app_ok, "lifecycle webhook refused");
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
    async fn apply(&self, event: &LifecycleEvent) -> Result<(), ApplyError> {
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
        match self.ask_yclients(event).await? {
            YClientsSays::Apply => {}
            YClientsSays::Wait(why) => return Err(ApplyError::NotYet(why)),
            YClientsSays::StillInstalled(status) => {
                // The same body delivered again after the salon installed the app anew (the body
                // carries no time of its own): YClients holds an installation this event would
                // end. Set aside, visibly.
                tracing::warn!(
                    event = event.kind.label(),
                    yclients_status = %status,
                    "lifecycle event contradicted by YClients' installation status; not applied"
                );
                self.store
                    .audit(
                        Some(salon),
                        "lifecycle_superseded",
                        json!({"event": event.kind.label(), "lifecycle_event_id": event.id,
                               "yclients_status": status.as_str()}),
                    )
                    .await?;
                return Ok(());
            }
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

/// Why an event was not applied this time; either way the inbox retries it.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// YClients' installation status contradicts it, or could not be read, for now.
    #[error("{0}")]
    NotYet(String),
}

/// What YClients' installation status says about an `uninstall` or `freeze` about to be applied.
enum YClientsSays {
    /// Apply it: YClients agrees, or nothing we hold can be hurt, or YClients cannot be asked.
    Apply,
    /// Ask again later (within the confirm window): YClients contradicts it or cannot be asked.
    Wait(String),
    /// YClients still holds the installation after the window: a stale repeat.
    StillInstalled(InstallationStatus),
}

impl Webhooks {
    /// Asks YClients about the installation before an `uninstall` or `freeze` changes a salon we
    /// hold. YClients removes (or freezes) the installation before it tells us, so an event it
    /// contradicts is a repeat of an old one: `uninstall` and `freeze` bodies carry no time,
    /// and YClients may deliver one again after the salon installed the app anew. Its API may
    /// lag its webhook, so a contradiction is asked about again for `confirm_window` first.
    /// When YClients cannot be asked past the window, or refuses us, the event is applied as it
    /// came, as it was before this check: a salon that removed the app must not stay served.
    async fn ask_yclients(&self, event: &LifecycleEvent) -> Result<YClientsSays, StoreError> {
        let changes_something = |status: SalonStatus| match event.kind {
            LifecycleKind::Uninstall => status != SalonStatus::Uninstalled,
            LifecycleKind::Freeze => {
                !matches!(status, SalonStatus::Frozen | SalonStatus::Uninstalled)
            }
            LifecycleKind::Other(_) => false,
        };
        let (Some(client), Some(application_id)) =
            (&self.yclients_client, self.yclients.application_id)
        else {
            return Ok(YClientsSays::Apply);
        };
        let Some(stored) = self.store.salon(event.salon).await? else {
            return Ok(YClientsSays::Apply);
        };
        if !changes_something(stored.status) {
            return Ok(YClientsSays::Apply);
        }
        let within_window = chrono::Utc::now()
            < event.created_at
                + chrono::Duration::from_std(self.retry.confirm_window).unwrap_or_default();
        let answer = client
            .installation_status(event.salon.get(), application_id)
            .await;
        Ok(match answer {
            Ok(None) => YClientsSays::Apply,
            Ok(Some(InstallationStatus::Frozen)) if event.kind == LifecycleKind::Freeze => {
                YClientsSays::Apply
            }
            Ok(Some(
                status @ (InstallationStatus::Pending
                | InstallationStatus::Active
                | InstallationStatus::Frozen),
            )) => {
                if within_window {
                    YClientsSays::Wait(format!(
                        "YClients still reports the installation as {status}; asked again shortly"
                    ))
                } else {
                    YClientsSays::StillInstalled(status)
                }
            }
            // A state we do not know: YClients' word is not a contradiction we can read.
            Ok(Some(InstallationStatus::Unknown(_))) => YClientsSays::Apply,
            Err(e) if e.is_transient() && within_window => YClientsSays::Wait(format!(
                "YClients' installation status could not be read ({e}); asked again shortly"
            )),
            Err(e) => {
                tracing::warn!(error = %e, "installation status not read; the lifecycle event is applied as it came");
                YClientsSays::Apply
            }
        })
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
