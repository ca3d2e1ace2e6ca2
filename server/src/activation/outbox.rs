//! The callback outbox worker: claims owed callbacks with a lease, delivers them, retries transient
//! failures with backoff until YClients' pending window closes, and records YClients' answer.

use super::Activation;
use crate::store::{Callback, StoreError};
use crate::yclients::client::backoff_with_jitter;
use crate::yclients::{CallbackRequest, InstallationStatus, YClientsError};
use app::status::LiveEventKind;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);
const IDLE_POLL: Duration = Duration::from_secs(5);

impl Activation {
    /// The outbox worker: delivers owed callbacks until `shutdown` resolves. A delivery in
    /// flight then is broken off and its lease freed, so shutdown is not held up by a slow
    /// YClients and the next instance need not wait for the lease to expire.
    pub async fn run_outbox_worker(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let pass = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                pass = self.deliver_due() => pass,
            };
            let next_wait = match pass {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "outbox pass failed");
                    IDLE_POLL
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next_wait) => {}
            }
        }
        match self.store.release_leases(&self.worker_id).await {
            Ok(0) => {}
            Ok(freed) => tracing::info!(freed, "outbox worker stopped; its leases are free"),
            Err(e) => {
                tracing::warn!(error = %e, "could not free the outbox leases; they expire by themselves")
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
        let sent = std::time::Instant::now();
        let answer = yclients.partner_callback(&body).await;
        self.instruments
            .histogram("ai_admin_callback_round_trip_seconds", &[])
            .record(sent.elapsed().as_secs_f64());
        match answer {
            Ok(()) => self.confirm(&row, true, "201").await,
            Err(YClientsError::AlreadyInstalled(message)) => {
                match yclients
                    .installation_status(body.salon_id, body.application_id)
                    .await
                {
                    // YClients keeps the key and webhook URL it already holds.
                    Ok(Some(InstallationStatus::Active)) => {
                        self.confirm(&row, false, "already active").await
                    }
                    Ok(other) => {
                        let detail = format!(
                            "{message}; статус установки: {}",
                            other
                                .map(|s| s.to_string())
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
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "confirmed")]);
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
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "retry")]);
        self.store.retry_callback_later(row, next, error).await?;
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn fail(&self, row: &Callback, reason: &str) -> Result<(), StoreError> {
        tracing::error!(reason, "activation refused");
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "refused")]);
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
