//! The onboarding service: the salon's state as the page shows it (one builder for the SSR
//! render, the live channel, polling and the original's status endpoint), and the
//! [`OnboardingBackend`] the server functions call.

use crate::activation::{Activation, Trigger};
use crate::bus::EventBus;
use crate::db::entities::{callback_outbox, salons};
use crate::limits::{Action, Limits};
use crate::linking::{Linking, LinkingError};
use crate::session::OnboardingTokens;
use app::api::{AppError, OnboardingBackend};
use app::domain::{PhoneNumber, SalonId};
use app::status::{ActivationState, LinkState, OnboardingStatus};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};

/// A salon's integration status, as stored in `salons.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalonStatus {
    /// Registered through the redirect; WhatsApp not linked or activation not started.
    New,
    /// The callback to YClients is owed (a row in the outbox).
    Activating,
    /// YClients confirmed.
    Active,
    /// YClients refused or the pending window ran out.
    ActivationFailed,
    /// `freeze` webhook: paused, data and credentials kept.
    Frozen,
    /// `uninstall` webhook: WhatsApp unlinked, credentials and API key gone.
    Uninstalled,
}

impl SalonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SalonStatus::New => "new",
            SalonStatus::Activating => "activating",
            SalonStatus::Active => "active",
            SalonStatus::ActivationFailed => "activation_failed",
            SalonStatus::Frozen => "frozen",
            SalonStatus::Uninstalled => "uninstalled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::New,
            Self::Activating,
            Self::Active,
            Self::ActivationFailed,
            Self::Frozen,
            Self::Uninstalled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

#[derive(Clone)]
pub struct OnboardingService {
    pub db: DatabaseConnection,
    pub tokens: OnboardingTokens,
    pub linking: Linking,
    pub activation: Activation,
    pub bus: EventBus,
    pub limits: Limits,
}

impl OnboardingService {
    /// The one status builder. `None` when the salon is unknown.
    pub async fn status(&self, salon: SalonId) -> Result<Option<OnboardingStatus>, DbErr> {
        let Some(row) = salons::Entity::find_by_id(salon.get())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let status = SalonStatus::parse(&row.status).unwrap_or(SalonStatus::New);
        let stored_phone = row
            .whatsapp_phone
            .as_deref()
            .and_then(|p| PhoneNumber::parse(p).ok());
        let link = match (self.linking.state(salon), stored_phone) {
            // Not running (frozen, or before the restore reconnects) but still linked.
            (LinkState::Idle, Some(phone)) => LinkState::Linked { phone },
            (state, _) => state,
        };
        let activation = match status {
            SalonStatus::New => ActivationState::NotStarted,
            SalonStatus::Activating => {
                let delivery = callback_outbox::Entity::find()
                    .filter(callback_outbox::Column::SalonId.eq(salon.get()))
                    .order_by_desc(callback_outbox::Column::Id)
                    .one(&self.db)
                    .await?;
                ActivationState::Activating {
                    attempts: delivery
                        .as_ref()
                        .map(|d| d.attempts.max(0) as u32)
                        .unwrap_or(0),
                    last_error: delivery.and_then(|d| d.last_error),
                }
            }
            SalonStatus::Active => ActivationState::Active,
            SalonStatus::ActivationFailed => ActivationState::Failed {
                reason: row
                    .activation_error
                    .clone()
                    .unwrap_or_else(|| "неизвестная ошибка".into()),
            },
            SalonStatus::Frozen => ActivationState::Frozen,
            SalonStatus::Uninstalled => ActivationState::Uninstalled,
        };
        Ok(Some(OnboardingStatus {
            salon_id: salon,
            salon_title: row.title,
            link,
            activation,
            linked_other_number: row
                .linked_other_number
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok()),
            version: self.bus.next_version(),
            server_time_ms: chrono::Utc::now().timestamp_millis(),
        }))
    }

    async fn start_activation(
        &self,
        salon: SalonId,
        trigger: Trigger,
    ) -> Result<OnboardingStatus, AppError> {
        self.activation
            .activate_integration(salon, trigger)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "activation could not start");
                AppError::Unavailable("не удалось начать активацию, попробуйте ещё раз".into())
            })?;
        self.status_or_error(salon).await
    }

    async fn status_or_error(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.status(salon)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "building the onboarding status failed");
                AppError::Unavailable("база данных недоступна".into())
            })?
            .ok_or(AppError::Unauthorized)
    }
}

#[async_trait::async_trait]
impl OnboardingBackend for OnboardingService {
    fn authorize(&self, token: &str) -> Result<SalonId, AppError> {
        self.tokens
            .verify(token)
            .map_err(|_| AppError::Unauthorized)
    }

    async fn status(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn activate(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.start_activation(salon, Trigger::Linked).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn retry_activation(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::RetryActivation)?;
        self.start_activation(salon, Trigger::Admin).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn request_pairing_code(
        &self,
        salon: SalonId,
        phone: PhoneNumber,
    ) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::PairingCode)?;
        self.linking
            .request_pair_code(salon, phone)
            .await
            .map_err(|e| match e {
                LinkingError::RateLimited { retry_after_secs } => {
                    AppError::TooManyRequests { retry_after_secs }
                }
                LinkingError::AlreadyLinked => AppError::BadRequest(e.to_string()),
                LinkingError::Gateway(_) | LinkingError::Stopped => {
                    AppError::Unavailable(e.to_string())
                }
            })?;
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn restart_linking(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::Restart)?;
        self.linking
            .restart(salon)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        self.status_or_error(salon).await
    }
}
