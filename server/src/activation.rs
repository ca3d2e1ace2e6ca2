//! Activation: once WhatsApp is linked, the integration becomes `active` exactly once, and only
//! when YClients has confirmed it.
//!
//! Exactly once is enforced by the database, not memory: a conditional update moves the salon to
//! `activating` (only one caller can win it, in any process) in the same transaction that writes
//! the API key hash and the callback row. The callback is then owed to YClients: the outbox worker
//! claims rows with a lease (a conditional update, so two workers never deliver one row at once),
//! delivers, retries transient failures with backoff and jitter until YClients' pending window
//! closes, and survives restarts because the row is on disk.

use crate::audit::record_event;
use crate::bus::EventBus;
use crate::db::entities::{callback_outbox, salons};
use crate::onboarding::SalonStatus;
use crate::yclients::client::backoff_with_jitter;
use crate::yclients::{CallbackRequest, YClientsClient, YClientsError};
use app::domain::SalonId;
use app::status::LiveEventKind;
use rand::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sha2::{Digest, Sha256};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationStart {
    /// This call started the activation.
    Started,
    /// Already activating, active, or not allowed from the current state.
    Unchanged,
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
    db: DatabaseConnection,
    yclients: Option<YClientsClient>,
    bus: EventBus,
    settings: Arc<ActivationSettings>,
    wake: Arc<Notify>,
    worker_id: Arc<str>,
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A new API key (128 bits from the OS CSPRNG) as YClients' documented UUID-like string.
pub fn new_api_key() -> String {
    let hex = random_token(16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl Activation {
    pub fn new(
        db: DatabaseConnection,
        yclients: Option<YClientsClient>,
        bus: EventBus,
        settings: ActivationSettings,
    ) -> Self {
        Self {
            db,
            yclients,
            bus,
            settings: Arc::new(settings),
            wake: Arc::new(Notify::new()),
            worker_id: format!("worker-{}", uuid::Uuid::new_v4()).into(),
        }
    }

    /// Starts the activation if this salon is linked and in a state that allows it. Any number of
    /// concurrent calls start it once: one API key, one callback row, one event.
    #[tracing::instrument(skip_all, fields(salon_id = %salon, ?trigger))]
    pub async fn activate_integration(
        &self,
        salon: SalonId,
        trigger: Trigger,
    ) -> Result<ActivationStart, DbErr> {
        let Some(application_id) = self.settings.application_id else {
            tracing::error!("activation impossible: YCLIENTS_APPLICATION_ID is not configured");
            return Ok(ActivationStart::Unchanged);
        };
        let allowed: &[&str] = match trigger {
            Trigger::Linked => &[SalonStatus::New.as_str()],
            Trigger::Admin => &[
                SalonStatus::New.as_str(),
                SalonStatus::ActivationFailed.as_str(),
                SalonStatus::Frozen.as_str(),
            ],
        };
        let api_key = new_api_key();
        let webhook_secret = random_token(24);
        let now = chrono::Utc::now();
        let txn = self.db.begin().await?;
        let won = salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Activating.as_str()),
            )
            .col_expr(
                salons::Column::ApiKeyHash,
                Expr::value(sha256_hex(&api_key)),
            )
            .col_expr(
                salons::Column::ApiKeyPrefix,
                Expr::value(api_key[..8].to_owned()),
            )
            .col_expr(
                salons::Column::WebhookSecretHash,
                Expr::value(sha256_hex(&webhook_secret)),
            )
            .col_expr(
                salons::Column::ActivationError,
                Expr::value(Option::<String>::None),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Status.is_in(allowed.iter().copied()))
            .filter(salons::Column::WhatsappPhone.is_not_null())
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !won {
            txn.rollback().await?;
            return Ok(ActivationStart::Unchanged);
        }
        let Some(row) = salons::Entity::find_by_id(salon.get()).one(&txn).await? else {
            txn.rollback().await?;
            return Ok(ActivationStart::Unchanged);
        };
        let body = CallbackRequest {
            salon_id: salon.get(),
            application_id,
            api_key,
            webhook_urls: vec![format!(
                "{}/webhook/yclients/events/{}/{}",
                self.settings.base_url, salon, webhook_secret
            )],
            channels: vec!["whatsapp".to_owned()],
        };
        let window = chrono::Duration::from_std(self.settings.pending_window)
            .unwrap_or(chrono::Duration::hours(1));
        callback_outbox::ActiveModel {
            salon_id: Set(salon.get()),
            payload: Set(serde_json::to_string(&body).map_err(|e| DbErr::Custom(e.to_string()))?),
            status: Set("pending".into()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            deadline_at: Set(row.registered_at.max(now - window) + window),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        record_event(&txn, Some(salon), "activation_started", serde_json::json!({"trigger": format!("{trigger:?}"), "api_key_prefix": &body.api_key[..8]})).await?;
        txn.commit().await?;
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        self.wake.notify_one();
        Ok(ActivationStart::Started)
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
    pub async fn deliver_due(&self) -> Result<Duration, DbErr> {
        let now = chrono::Utc::now();
        let due = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::Status.eq("pending"))
            .filter(callback_outbox::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(callback_outbox::Column::LeaseUntil.is_null())
                    .add(callback_outbox::Column::LeaseUntil.lt(now)),
            )
            .order_by_asc(callback_outbox::Column::NextAttemptAt)
            .limit(20)
            .all(&self.db)
            .await?;
        for row in due {
            if self.claim(row.id).await? {
                self.deliver(row).await?;
            }
        }
        let next = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::Status.eq("pending"))
            .order_by_asc(callback_outbox::Column::NextAttemptAt)
            .one(&self.db)
            .await?;
        Ok(next
            .map(|row| {
                (row.next_attempt_at
                    .max(row.lease_until.unwrap_or(row.next_attempt_at))
                    - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::from_millis(10))
                .min(IDLE_POLL)
            })
            .unwrap_or(IDLE_POLL))
    }

    /// Takes the row for this worker for a while; `false` if another worker has it.
    async fn claim(&self, id: i32) -> Result<bool, DbErr> {
        let now = chrono::Utc::now();
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let result = callback_outbox::Entity::update_many()
            .col_expr(
                callback_outbox::Column::LeaseOwner,
                Expr::value(self.worker_id.to_string()),
            )
            .col_expr(
                callback_outbox::Column::LeaseUntil,
                Expr::value(lease_until),
            )
            .filter(callback_outbox::Column::Id.eq(id))
            .filter(callback_outbox::Column::Status.eq("pending"))
            .filter(
                Condition::any()
                    .add(callback_outbox::Column::LeaseUntil.is_null())
                    .add(callback_outbox::Column::LeaseUntil.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    #[tracing::instrument(skip_all, fields(salon_id = row.salon_id, attempt = row.attempts + 1))]
    async fn deliver(&self, row: callback_outbox::Model) -> Result<(), DbErr> {
        let salon = SalonId::try_from(row.salon_id).map_err(|e| DbErr::Custom(e.to_string()))?;
        let Some(yclients) = &self.yclients else {
            return self
                .fail(&row, salon, "YCLIENTS_PARTNER_TOKEN не настроен")
                .await;
        };
        let body: CallbackRequest = match serde_json::from_str(&row.payload) {
            Ok(body) => body,
            Err(e) => {
                return self
                    .fail(&row, salon, &format!("повреждённая запись outbox: {e}"))
                    .await
            }
        };
        match yclients.partner_callback(&body).await {
            Ok(()) => self.confirm(&row, salon, "201").await,
            Err(YClientsError::AlreadyInstalled(message)) => {
                match yclients
                    .installation_status(body.salon_id, body.application_id)
                    .await
                {
                    Ok(Some(status)) if status.status == "active" => {
                        self.confirm(&row, salon, "already active").await
                    }
                    Ok(other) => {
                        let detail = format!(
                            "{message}; статус установки: {}",
                            other
                                .map(|s| s.status)
                                .unwrap_or_else(|| "не установлено".into())
                        );
                        self.retry_or_fail(&row, salon, &detail).await
                    }
                    Err(e) => self.retry_or_fail(&row, salon, &e.to_string()).await,
                }
            }
            Err(e) if e.is_transient() => self.retry_or_fail(&row, salon, &e.to_string()).await,
            Err(e) => self.fail(&row, salon, &refusal_message(&e)).await,
        }
    }

    async fn confirm(
        &self,
        row: &callback_outbox::Model,
        salon: SalonId,
        how: &str,
    ) -> Result<(), DbErr> {
        let now = chrono::Utc::now();
        let txn = self.db.begin().await?;
        // The plaintext key existed only until YClients confirmed receipt.
        let redacted = serde_json::from_str::<serde_json::Value>(&row.payload)
            .map(|mut v| {
                v["api_key"] = serde_json::Value::String("[delivered]".into());
                v.to_string()
            })
            .unwrap_or_default();
        end_attempt(row)
            .col_expr(callback_outbox::Column::Status, Expr::value("confirmed"))
            .col_expr(callback_outbox::Column::Payload, Expr::value(redacted))
            .exec(&txn)
            .await?;
        let moved = salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::Active.as_str()),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Status.eq(SalonStatus::Activating.as_str()))
            .exec(&txn)
            .await?
            .rows_affected;
        if moved == 1 {
            record_event(
                &txn,
                Some(salon),
                "integration_activated",
                serde_json::json!({"confirmed_by": how, "attempts": row.attempts + 1}),
            )
            .await?;
        }
        txn.commit().await?;
        tracing::info!(how, "integration active");
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn retry_or_fail(
        &self,
        row: &callback_outbox::Model,
        salon: SalonId,
        error: &str,
    ) -> Result<(), DbErr> {
        let attempts = row.attempts + 1;
        let next = chrono::Utc::now()
            + chrono::Duration::from_std(backoff_with_jitter(
                self.settings.retry_base,
                attempts as u32,
            ))
            .unwrap_or_default();
        if next > row.deadline_at {
            return self
                .fail(row, salon, &format!("YClients не подтвердил активацию за отведённый час (последняя ошибка: {error})"))
                .await;
        }
        tracing::warn!(error, attempts, "callback not confirmed yet; will retry");
        end_attempt(row)
            .col_expr(callback_outbox::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                callback_outbox::Column::LastError,
                Expr::value(error.to_owned()),
            )
            .exec(&self.db)
            .await?;
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    async fn fail(
        &self,
        row: &callback_outbox::Model,
        salon: SalonId,
        reason: &str,
    ) -> Result<(), DbErr> {
        tracing::error!(reason, "activation refused");
        let now = chrono::Utc::now();
        let txn = self.db.begin().await?;
        end_attempt(row)
            .col_expr(callback_outbox::Column::Status, Expr::value("failed"))
            .col_expr(
                callback_outbox::Column::LastError,
                Expr::value(reason.to_owned()),
            )
            .exec(&txn)
            .await?;
        salons::Entity::update_many()
            .col_expr(
                salons::Column::Status,
                Expr::value(SalonStatus::ActivationFailed.as_str()),
            )
            .col_expr(
                salons::Column::ActivationError,
                Expr::value(reason.to_owned()),
            )
            .col_expr(salons::Column::UpdatedAt, Expr::value(now))
            .filter(salons::Column::Id.eq(salon.get()))
            .filter(salons::Column::Status.eq(SalonStatus::Activating.as_str()))
            .exec(&txn)
            .await?;
        record_event(
            &txn,
            Some(salon),
            "activation_failed",
            serde_json::json!({"reason": reason}),
        )
        .await?;
        txn.commit().await?;
        self.bus.publish(salon, LiveEventKind::ActivationUpdate);
        Ok(())
    }

    /// How many callbacks are owed and how many ended refused (for health).
    pub async fn outbox_counts<C: ConnectionTrait>(db: &C) -> Result<(u64, u64), DbErr> {
        use sea_orm::PaginatorTrait;
        let pending = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::Status.eq("pending"))
            .count(db)
            .await?;
        let failed = callback_outbox::Entity::find()
            .filter(callback_outbox::Column::Status.eq("failed"))
            .count(db)
            .await?;
        Ok((pending, failed))
    }
}

/// The update that ends this worker's attempt on a row: counts the attempt and releases the
/// lease; the caller adds what the outcome changes.
fn end_attempt(row: &callback_outbox::Model) -> sea_orm::UpdateMany<callback_outbox::Entity> {
    callback_outbox::Entity::update_many()
        .col_expr(
            callback_outbox::Column::Attempts,
            Expr::value(row.attempts + 1),
        )
        .col_expr(
            callback_outbox::Column::LeaseUntil,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(
            callback_outbox::Column::UpdatedAt,
            Expr::value(chrono::Utc::now()),
        )
        .filter(callback_outbox::Column::Id.eq(row.id))
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
    use super::*;

    #[test]
    fn api_keys_are_random_uuid_shaped_strings() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(sha256_hex(&a).len(), 64);
    }
}
