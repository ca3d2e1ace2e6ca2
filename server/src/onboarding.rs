//! The onboarding service: the salon's state as the page shows it (one builder for the SSR
//! render, the live channel, polling and the original's status endpoint), and the
//! [`OnboardingBackend`] the server functions call.

use crate::activation::{Activation, ActivationError, Trigger};
use crate::bus::EventBus;
use crate::domain::SalonStatus;
use crate::limits::{Action, Limits};
use crate::linking::{Linking, LinkingError};
use crate::session::{SessionVerifier, TokenError};
use crate::store::{Store, StoreError, WhatsappHealth};
use app::api::{AppError, OnboardingBackend};
use app::domain::{PhoneNumber, SalonId};
use app::qr::QrMatrix;
use app::status::{ActivationState, LinkState, OnboardingStatus, TestMessage};

/// The copy of this request's page language (server functions carry the page's `lang`).
fn strings() -> &'static app::i18n::Strings {
    app::request_locale().strings()
}

/// A supervisor's refusal in the page's words.
fn linking_error(e: LinkingError) -> AppError {
    let strings = strings();
    match e {
        LinkingError::RateLimited { retry_after_secs } => {
            AppError::TooManyRequests { retry_after_secs }
        }
        LinkingError::AlreadyLinked => AppError::Conflict(strings.already_linked.to_owned()),
        LinkingError::Gateway(reason) => {
            AppError::Unavailable(format!("{} {reason}", strings.pair_code_not_issued))
        }
        LinkingError::Stopped => AppError::Unavailable(strings.whatsapp_session_stopped.to_owned()),
        LinkingError::NotLinked => AppError::Conflict(strings.not_linked_for_test.to_owned()),
        LinkingError::Banned { .. } => AppError::Conflict(strings.ban_active.to_owned()),
        LinkingError::Send(reason) => {
            AppError::Unavailable(format!("{} {reason}", strings.test_not_sent))
        }
    }
}

#[derive(Clone)]
pub struct OnboardingService {
    pub store: Store,
    pub verifier: SessionVerifier,
    pub linking: Linking,
    pub activation: Activation,
    pub bus: EventBus,
    pub limits: Limits,
    /// Where the app's marketplace card is (shown while the installation is frozen).
    pub yclients: std::sync::Arc<crate::config::YClientsSettings>,
    /// Booking messages (the «Сообщения» section).
    pub messages: crate::messages::Messages,
}

fn unavailable(e: StoreError) -> AppError {
    tracing::error!(error = %e, "the onboarding service could not read the database");
    AppError::Unavailable(strings().database_unavailable.into())
}

impl OnboardingService {
    /// The one status builder. `None` when the salon is unknown.
    ///
    /// The version is taken **before** the first read. A page keeps the status with the highest
    /// version, whichever way it came (the live channel, a poll, an action's answer), so the
    /// highest version must carry the newest state. Taken after the reads (as it was until
    /// 2026-12-04), a read that saw the salon's row before a change and then waited on its other
    /// reads could be stamped after a read that began later and saw the change: the page then
    /// kept «Активируем интеграцию…» over «Интеграция активна» for good (the end-to-end journey
    /// on a loaded machine). Taken first, a read stamped higher began later, so every one of its
    /// reads is at least as new; the read the last change causes (the room's, begun after the
    /// change was written) ends the page on that change.
    pub async fn status(&self, salon: SalonId) -> Result<Option<OnboardingStatus>, StoreError> {
        let version = self.bus.next_version();
        // The salon and, when its session does not run here, the lease of the instance that
        // runs it: one read either way.
        let (row, (link, sent)) = match self.linking.current_here(salon) {
            Some(here) => match self.store.salon(salon).await? {
                Some(row) => (row, here),
                None => return Ok(None),
            },
            None => match self
                .store
                .salon_with_session_elsewhere(salon, self.linking.owner())
                .await?
            {
                Some((row, lease)) => (row, Linking::current_elsewhere(lease)),
                None => return Ok(None),
            },
        };
        let stored_phone = row
            .whatsapp_phone
            .as_deref()
            .and_then(|p| PhoneNumber::parse(p).ok());
        let link = match link {
            // No session runs, here or on another instance (frozen, before the restore
            // reconnects, or one that waits for a person): what the supervisor recorded last.
            LinkState::Idle => self.recorded_link(salon, stored_phone).await?,
            state => state,
        };
        let activation = match row.status {
            SalonStatus::New => ActivationState::NotStarted,
            SalonStatus::Activating => {
                let delivery = self.store.latest_callback(salon).await?;
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
            qr: match &link {
                LinkState::Qr { code, .. } => QrMatrix::encode(code),
                _ => None,
            },
            link: link.masked(),
            activation,
            linked_other_number: row
                .linked_other_number
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok().map(|p| p.masked())),
            number_change_from: row
                .number_change_from
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok().map(|p| p.masked())),
            test_message: sent.map(|sent| TestMessage {
                to: sent.to.masked(),
                status: sent.status,
                sent_at_ms: sent.sent_at_ms,
            }),
            marketplace_url: (row.status == SalonStatus::Frozen)
                .then(|| self.yclients.marketplace_card_url(salon))
                .flatten(),
            version,
            server_time_ms: chrono::Utc::now().timestamp_millis(),
        }))
    }

    /// The link as the store recorded it, for a salon whose session does not run here.
    async fn recorded_link(
        &self,
        salon: SalonId,
        stored_phone: Option<PhoneNumber>,
    ) -> Result<LinkState, StoreError> {
        let recorded = self.store.whatsapp_state(salon).await?;
        Ok(match (recorded, stored_phone) {
            (Some((WhatsappHealth::Replaced, _)), Some(phone)) => LinkState::Replaced { phone },
            (Some((WhatsappHealth::Banned, until)), _)
                if until.is_some_and(|u| u > chrono::Utc::now()) =>
            {
                LinkState::Banned {
                    reason: String::new(),
                    until_ms: until.map(|u| u.timestamp_millis()),
                }
            }
            (_, Some(phone)) => LinkState::Linked { phone },
            (Some((WhatsappHealth::LoggedOut, _)), None) => LinkState::LoggedOut,
            _ => LinkState::Idle,
        })
    }

    /// Booking messages are for a salon whose integration is active.
    async fn active_salon(&self, salon: SalonId) -> Result<crate::store::Salon, AppError> {
        let row = self
            .store
            .salon(salon)
            .await
            .map_err(unavailable)?
            .ok_or(AppError::Unauthorized)?;
        match row.status {
            SalonStatus::Active => Ok(row),
            SalonStatus::Uninstalled => Err(AppError::Unauthorized),
            _ => Err(AppError::Conflict(
                app::messages::MessageStrings::of(app::request_locale())
                    .not_active
                    .to_owned(),
            )),
        }
    }

    async fn status_or_error(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.status(salon)
            .await
            .map_err(unavailable)?
            .ok_or(AppError::Unauthorized)
    }

    /// Actions (a new QR, a pairing code, activation) only for a salon whose installation runs:
    /// a frozen one gets a 409 the page shows, and no WhatsApp session starts for it.
    async fn require_running(&self, salon: SalonId) -> Result<(), AppError> {
        let row = self
            .store
            .salon(salon)
            .await
            .map_err(unavailable)?
            .ok_or(AppError::Unauthorized)?;
        match row.status {
            SalonStatus::Frozen => Err(AppError::Conflict(strings().paused_in_yclients.to_owned())),
            SalonStatus::Uninstalled => Err(AppError::Unauthorized),
            _ => Ok(()),
        }
    }

    async fn start_activation(
        &self,
        salon: SalonId,
        trigger: Trigger,
    ) -> Result<OnboardingStatus, AppError> {
        self.require_running(salon).await?;
        self.activation
            .activate_integration(salon, trigger)
            .await
            .map_err(|e| match e {
                ActivationError::NotConfigured => {
                    AppError::Unavailable(strings().activation_not_configured.into())
                }
                ActivationError::Store(e) => {
                    tracing::error!(error = %e, "activation could not start");
                    AppError::Unavailable(strings().activation_not_started.into())
                }
            })?;
        self.status_or_error(salon).await
    }
}

#[async_trait::async_trait]
impl OnboardingBackend for OnboardingService {
    async fn authorize(&self, token: &str) -> Result<SalonId, AppError> {
        match self.verifier.verify(token).await {
            Ok(session) => Ok(session.salon),
            Err(TokenError::Unavailable) => Err(AppError::Unavailable(
                strings().link_check_unavailable.into(),
            )),
            Err(_) => Err(AppError::Unauthorized),
        }
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
        self.require_running(salon).await?;
        self.linking
            .request_pair_code(salon, phone)
            .await
            .map_err(linking_error)?;
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn restart_linking(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::Restart)?;
        self.require_running(salon).await?;
        self.linking.restart(salon).await.map_err(linking_error)?;
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn disconnect_whatsapp(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::Disconnect)?;
        self.require_running(salon).await?;
        self.linking
            .disconnect(salon)
            .await
            .map_err(linking_error)?;
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn confirm_number_change(&self, salon: SalonId) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::ConfirmNumber)?;
        self.require_running(salon).await?;
        let confirmed = self
            .store
            .confirm_number_change(salon)
            .await
            .map_err(unavailable)?;
        if !confirmed {
            return Err(AppError::Conflict(strings().no_number_change.to_owned()));
        }
        self.bus
            .publish(salon, app::status::LiveEventKind::WhatsappState);
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn send_test_message(
        &self,
        salon: SalonId,
        to: Option<PhoneNumber>,
    ) -> Result<OnboardingStatus, AppError> {
        self.limits.action(salon, Action::TestMessage)?;
        self.require_running(salon).await?;
        let row = self
            .store
            .salon(salon)
            .await
            .map_err(unavailable)?
            .ok_or(AppError::Unauthorized)?;
        let strings = strings();
        let to = match to {
            Some(to) => to,
            None => row
                .admin_phone
                .as_deref()
                .and_then(|p| PhoneNumber::parse(p).ok())
                .ok_or_else(|| AppError::BadRequest(strings.no_admin_phone.to_owned()))?,
        };
        // A client who wrote «СТОП» gets nothing more from the salon: not a test message either.
        if self
            .store
            .is_opted_out(salon, &to)
            .await
            .map_err(unavailable)?
        {
            return Err(AppError::Conflict(strings.test_to_opted_out.to_owned()));
        }
        // The text is fixed, but the number is the token holder's to choose: without a daily
        // bound a link (forwarded, leaked) could have the salon's WhatsApp write to thousands of
        // strangers a day — 12 a minute — and get the number banned. Counted from the audit
        // trail, which every instance shares.
        let cap = self.messages.test_daily_cap();
        let sent = self
            .store
            .audited_since(
                salon,
                "test_message_sent",
                chrono::Utc::now() - chrono::Duration::days(1),
            )
            .await
            .map_err(|e| unavailable(e.into()))?;
        if sent >= u64::from(cap) {
            return Err(AppError::Conflict(
                strings.test_daily_cap.replace("{n}", &cap.to_string()),
            ));
        }
        let text = strings.test_message_text.replace("{salon}", &row.title);
        let masked = to.masked();
        self.linking
            .send_text(salon, to, text)
            .await
            .map_err(linking_error)?;
        // The salon's WhatsApp wrote to a number of the token holder's choosing: on the record
        // (masked, as the page shows numbers), like every other use of the link.
        if let Err(e) = self
            .store
            .audit(
                Some(salon),
                "test_message_sent",
                serde_json::json!({ "to": masked }),
            )
            .await
        {
            tracing::error!(error = %e, "recording a sent test message failed");
        }
        self.status_or_error(salon).await
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn messages(&self, salon: SalonId) -> Result<app::messages::MessagesView, AppError> {
        let row = self.active_salon(salon).await?;
        self.messages.view(&row).await.map_err(unavailable)
    }

    #[tracing::instrument(skip_all, fields(salon_id = %salon))]
    async fn save_message_settings(
        &self,
        salon: SalonId,
        settings: app::messages::MessageSettings,
    ) -> Result<app::messages::MessagesView, AppError> {
        self.limits.action(salon, Action::SaveMessageSettings)?;
        let row = self.active_salon(salon).await?;
        self.messages
            .save_settings(salon, &settings)
            .await
            .map_err(unavailable)?
            .map_err(|e| {
                AppError::BadRequest(
                    app::messages::MessageStrings::of(app::request_locale()).settings_error(&e),
                )
            })?;
        self.messages.view(&row).await.map_err(unavailable)
    }
}
