//! The callback outbox worker: claims owed callbacks with a lease, delivers them, retries transient
//! failures with backoff until YClients' pending window closes, and records YClients' answer.

use super::Activation;
use crate::domain::CallbackPurpose;
use crate::store::{AttemptRecord, Callback, Claim, StoreError};
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
            if let Some(claim) = self
                .store
                .claim_callback(row.id, &self.worker_id, lease_until)
                .await?
            {
                self.deliver(row, &claim).await?;
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
    async fn deliver(&self, row: Callback, claim: &Claim) -> Result<(), StoreError> {
        let started_at = chrono::Utc::now();
        let not_sent = |error: &str| AttemptRecord {
            started_at,
            duration: Duration::ZERO,
            http_status: None,
            error: Some(error.to_owned()),
            answer: None,
        };
        let Some(yclients) = &self.yclients else {
            let reason = "YCLIENTS_PARTNER_TOKEN не настроен";
            return self.fail(&row, claim, reason, &not_sent(reason)).await;
        };
        let body: CallbackRequest = match serde_json::from_str(&row.payload) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("повреждённая запись outbox: {e}");
                return self.fail(&row, claim, &reason, &not_sent(&reason)).await;
            }
        };
        let sent = std::time::Instant::now();
        let answer = yclients.partner_callback_answered(&body).await;
        let duration = sent.elapsed();
        self.instruments
            .histogram("ai_admin_callback_round_trip_seconds", &[])
            .record(duration.as_secs_f64());
        let mut attempt = AttemptRecord {
            started_at,
            duration,
            http_status: answer.status,
            error: answer
                .result
                .as_ref()
                .err()
                .map(|e| redacted(&e.to_string(), &body)),
            answer: answer.excerpt.as_deref().map(|text| redacted(text, &body)),
        };
        match answer.result {
            Ok(()) => self.confirm(&row, claim, true, "201", &attempt).await,
            Err(YClientsError::AlreadyInstalled(message)) => {
                // YClients' words, as every other answer's: an echo of the key or the URL's
                // secret would otherwise reach the attempt log, the salon's last error (the
                // token holder's page), the console and the log.
                let message = redacted(&message, &body);
                match yclients
                    .installation_status(body.salon_id, body.application_id)
                    .await
                {
                    // YClients keeps the key and webhook URL it already holds: an activation is
                    // confirmed with them; a rotation is refused, the old secret stays.
                    Ok(Some(InstallationStatus::Active)) => match row.purpose {
                        CallbackPurpose::Activation => {
                            self.confirm(&row, claim, false, "already active", &attempt)
                                .await
                        }
                        CallbackPurpose::Rotation => {
                            let reason = format!(
                                "YClients оставил прежний адрес вебхуков и ключ ({message}); старый секрет действует"
                            );
                            attempt.error = Some(reason.clone());
                            self.fail(&row, claim, &reason, &attempt).await
                        }
                    },
                    Ok(other) => {
                        let detail = format!(
                            "{message}; статус установки: {}",
                            other
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "не установлено".into())
                        );
                        attempt.error = Some(detail.clone());
                        self.retry_or_fail(&row, claim, &detail, &attempt).await
                    }
                    Err(e) => {
                        let detail = format!("{message}; статус установки не получен: {e}");
                        attempt.error = Some(detail.clone());
                        self.retry_or_fail(&row, claim, &detail, &attempt).await
                    }
                }
            }
            Err(e) if e.is_transient() => {
                self.retry_or_fail(&row, claim, &redacted(&e.to_string(), &body), &attempt)
                    .await
            }
            Err(e) => {
                self.fail(
                    &row,
                    claim,
                    &redacted(&refusal_message(&e), &body),
                    &attempt,
                )
                .await
            }
        }
    }

    async fn confirm(
        &self,
        row: &Callback,
        claim: &Claim,
        offered_pair_accepted: bool,
        how: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        if !self
            .store
            .confirm_callback(row, claim, offered_pair_accepted, how, attempt)
            .await?
        {
            self.claim_lost(row, attempt, "confirmed").await;
            return Ok(());
        }
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "confirmed")]);
        match row.purpose {
            CallbackPurpose::Activation => tracing::info!(how, "integration active"),
            CallbackPurpose::Rotation => tracing::info!(how, "webhook secret rotated"),
        }
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn retry_or_fail(
        &self,
        row: &Callback,
        claim: &Claim,
        error: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let attempts = row.attempts + 1;
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(backoff_with_jitter(
                self.settings.retry_base,
                attempts as u32,
            ))
            .unwrap_or_default();
        if next > row.deadline_at {
            if self.yclients_holds_it_active(row).await {
                // Accepted, and the answer lost (a timeout, a proxy's 5xx): failing now would
                // leave YClients holding a pair we do not, and a retry would offer another one
                // that YClients refuses as "already installed". This row's pair is the one sent.
                return self
                    .confirm(
                        row,
                        claim,
                        true,
                        "active after an unanswered callback",
                        attempt,
                    )
                    .await;
            }
            let what = match row.purpose {
                CallbackPurpose::Activation => "активацию",
                CallbackPurpose::Rotation => "смену секрета вебхуков",
            };
            return self
                .fail(row, claim, &format!("YClients не подтвердил {what} за отведённый час (последняя ошибка: {error})"), attempt)
                .await;
        }
        if !self
            .store
            .retry_callback_later(row, claim, next, error, attempt)
            .await?
        {
            self.claim_lost(row, attempt, "retry").await;
            return Ok(());
        }
        tracing::warn!(error, attempts, "callback not confirmed yet; will retry");
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "retry")]);
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    /// Whether YClients now holds the installation an activation callback was for as active:
    /// asked once, when its window closes after answers that did not say (a transient failure,
    /// "already installed" while the installation was not yet active). Not for a rotation, and
    /// `false` when YClients cannot be asked.
    async fn yclients_holds_it_active(&self, row: &Callback) -> bool {
        let (CallbackPurpose::Activation, Some(yclients)) = (row.purpose, &self.yclients) else {
            return false;
        };
        let Ok(body) = serde_json::from_str::<CallbackRequest>(&row.payload) else {
            return false;
        };
        match yclients
            .installation_status(body.salon_id, body.application_id)
            .await
        {
            Ok(Some(InstallationStatus::Active)) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "installation status not read as the activation's window closed");
                false
            }
        }
    }

    async fn fail(
        &self,
        row: &Callback,
        claim: &Claim,
        reason: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        if !self
            .store
            .fail_callback(row, claim, reason, attempt)
            .await?
        {
            self.claim_lost(row, attempt, "refused").await;
            return Ok(());
        }
        match row.purpose {
            CallbackPurpose::Activation => tracing::error!(reason, "activation refused"),
            CallbackPurpose::Rotation => {
                tracing::warn!(reason, "webhook secret rotation refused; the old one stays")
            }
        }
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "refused")]);
        self.bus.publish(row.salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    /// The worker's claim on the row ended during the attempt (its lease ran out and another
    /// worker claimed the row, or an uninstall withdrew it): the row is not this worker's to
    /// write, so this attempt's outcome (`would_be`) changes neither the row nor the salon. The
    /// call itself is recorded (`lease_lost`), so the trail shows every call YClients got; it is
    /// logged and counted too.
    async fn claim_lost(&self, row: &Callback, attempt: &AttemptRecord, would_be: &str) {
        tracing::warn!(
            would_be,
            http_status = attempt.http_status,
            error = attempt.error.as_deref(),
            "callback attempt outlived its claim on the row; only the call is recorded"
        );
        if let Err(error) = self.store.record_lost_attempt(row, attempt).await {
            tracing::error!(%error, "the attempt whose lease was lost could not be recorded");
        }
        self.instruments
            .count("ai_admin_callbacks_total", &[("result", "lease_lost")]);
    }
}

/// `text` without the API key or the webhook URL's secret the callback carried (should
/// YClients ever echo them back).
fn redacted(text: &str, body: &CallbackRequest) -> String {
    let mut out = text.to_owned();
    let secrets = std::iter::once(body.api_key.as_str()).chain(
        body.webhook_urls
            .iter()
            .filter_map(|url| url.rsplit('/').next()),
    );
    for secret in secrets.filter(|s| s.len() >= 8) {
        out = out.replace(secret, "[removed]");
    }
    out
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

#[cfg(test)]
mod tests {
    use super::redacted;
    use crate::yclients::CallbackRequest;

    #[test]
    fn an_answer_that_echoes_the_key_or_the_secret_is_kept_without_them() {
        let body = CallbackRequest {
            salon_id: 1,
            application_id: 2,
            api_key: "2f181e2a-5c22-4ae7-9d9b-07104f312c28".into(),
            webhook_urls: vec![
                "https://x.example/webhook/yclients/events/1/abcdef0123456789".into(),
            ],
            channels: vec!["whatsapp".into()],
        };
        let echoed = r#"{"meta":{"message":"bad key 2f181e2a-5c22-4ae7-9d9b-07104f312c28 for https://x.example/webhook/yclients/events/1/abcdef0123456789"}}"#;
        let kept = redacted(echoed, &body);
        assert!(!kept.contains("2f181e2a-5c22"), "{kept}");
        assert!(!kept.contains("abcdef0123456789"), "{kept}");
        assert!(kept.contains("bad key [removed]"));
        assert_eq!(redacted("plain", &body), "plain");
    }
}
