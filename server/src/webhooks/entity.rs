//! Entity webhooks (records, clients, …) at the per-salon URL registered in the activation
//! callback: authenticated by the URL's secret, validated, stored once.

use super::{ct_eq, WebhookError, Webhooks};
use crate::domain::sha256_hex;
use crate::store::{EntityEvent, Stored};
use app::domain::SalonId;
use serde::Deserialize;
use serde_json::Value;

/// `{company_id, resource, resource_id, status, data}` as YClients posts it.
/// (The API document, `http/openapi.rs`, describes this type as it is.)
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EntityWebhook {
    /// The branch; must be the webhook URL's salon.
    pub company_id: i64,
    /// `record`, `client`, … (stored as given).
    pub resource: String,
    /// A number or a non-empty string.
    #[schema(value_type = Object)]
    pub resource_id: Value,
    /// `create`, `update` or `delete`.
    pub status: String,
    /// The entity as YClients sends it.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub data: Value,
}

impl Webhooks {
    /// The salon whose registered webhook URL this is (`/…/{salon_id}/{secret}`), checked before
    /// the body is parsed (not before it is read: the handler's extractor reads it first, within
    /// the route's 1 MiB limit): the secret's SHA-256 against the confirmed one, in constant
    /// time. The confirmed hash comes from the store's cache (rotation and uninstall forget it
    /// at once on this instance; elsewhere its entry expires, `store::SECRET_CACHE_TTL`).
    pub async fn authenticate_entity_url(
        &self,
        salon_id: &str,
        secret: &str,
    ) -> Result<SalonId, WebhookError> {
        const UNKNOWN: WebhookError = WebhookError::Unauthorized("unknown webhook URL");
        let salon = SalonId::parse(salon_id).map_err(|_| UNKNOWN)?;
        let expected = self
            .store
            .webhook_secret_hash(salon)
            .await?
            .ok_or(UNKNOWN)?;
        if !ct_eq(&expected, &sha256_hex(secret.as_bytes())) {
            tracing::warn!(salon_id = %salon, "entity webhook with a wrong secret refused");
            return Err(UNKNOWN);
        }
        Ok(salon)
    }

    /// Validates an authenticated entity event and stores it once. `body_bytes` is the size of
    /// the request's body: the writers' queue is bounded in bytes as well as in events.
    #[tracing::instrument(name = "entity_webhook", skip_all, fields(salon_id = %salon))]
    pub async fn accept_entity(
        &self,
        salon: SalonId,
        event: EntityWebhook,
        body_bytes: usize,
    ) -> Result<Stored, WebhookError> {
        if event.company_id != salon.get() {
            return Err(WebhookError::Forbidden(
                "company_id does not belong to this webhook URL",
            ));
        }
        if !matches!(event.status.as_str(), "create" | "update" | "delete") {
            return Err(WebhookError::BadRequest(
                "status must be create, update or delete".into(),
            ));
        }
        let resource_id = match &event.resource_id {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => {
                return Err(WebhookError::BadRequest(
                    "resource_id must be a number or a string".into(),
                ))
            }
        };
        #[cfg(feature = "bench-ceiling")]
        if crate::bench_ceiling::ceiling() == crate::bench_ceiling::Ceiling::Nothing {
            return Ok(Stored::New);
        }
        // The group commit: answered once the batch holding it committed.
        let stored = self
            .writer
            .store(
                salon,
                EntityEvent {
                    resource: event.resource,
                    resource_id,
                    status: event.status,
                    data: event.data,
                },
                body_bytes,
            )
            .await?;
        if stored == Stored::NotInstalled {
            // Uninstalled while the event waited for its batch: the URL is no longer ours, as
            // the next request to it is told.
            tracing::info!("an entity event for a salon uninstalled meanwhile was not stored");
            return Err(WebhookError::Unauthorized("unknown webhook URL"));
        }
        Ok(stored)
    }

    /// One retention pass: the entity events older than `ENTITY_EVENT_RETENTION_DAYS` deleted
    /// (they hold the salon's clients' names and phones as YClients sent them; the bookings
    /// projection and the messages keep what the service uses). Returns how many went.
    pub async fn prune_entity_events(&self) -> Result<u64, crate::store::StoreError> {
        let deleted = self
            .store
            .prune_entity_events(self.writer.settings().retention)
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "entity events past their retention deleted");
        }
        Ok(deleted)
    }

    /// Runs a retention pass at start and every [`RETENTION_EVERY`] until `shutdown`. Every
    /// instance runs it: a pass deletes by id, so two passes at once only find less to do.
    pub async fn run_retention(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.prune_entity_events().await {
                tracing::error!(error = %e, "the entity events' retention pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(RETENTION_EVERY) => {}
            }
        }
    }
}

/// How often the entity events' retention pass runs.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
