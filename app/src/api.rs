//! The server functions the onboarding page calls, and the narrow backend they need.
//!
//! Bodies only authorise the salon token and call [`OnboardingBackend`]; the server crate
//! implements it and puts it into the Leptos context, so nothing here knows about databases.

use crate::status::OnboardingStatus;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

/// The error a server function returns. `Display` is for logs; the page words it with
/// `i18n::Strings::app_error` in its own language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("the onboarding link is expired or not valid")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    /// The action does not fit the salon's state (e.g. the app is paused in YClients).
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests; retry after {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("no connection to the server: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = crate::wire::BrowserJsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(msg) | ServerFnErrorErr::MissingArg(msg) => {
                AppError::BadRequest(msg)
            }
            // On the server this is a request whose arguments could not be read (the caller's
            // mistake); in the browser it stays a transport failure.
            ServerFnErrorErr::Deserialization(msg) if cfg!(feature = "ssr") => {
                AppError::BadRequest(format!("the request could not be read: {msg}"))
            }
            other => AppError::Transport(other.to_string()),
        }
    }
}

#[cfg(feature = "ssr")]
pub use backend::{OnboardingBackend, SharedBackend};

#[cfg(feature = "ssr")]
mod backend {
    use super::AppError;
    use crate::domain::{PhoneNumber, SalonId};
    use crate::status::OnboardingStatus;
    use std::sync::Arc;

    /// What the onboarding UI needs from the server, and nothing more.
    #[async_trait::async_trait]
    pub trait OnboardingBackend: Send + Sync + 'static {
        /// The salon an onboarding token is for, checked by the server's one token verifier
        /// (signature, expiry, and the installation it was issued for); else `Unauthorized`.
        async fn authorize(&self, token: &str) -> Result<SalonId, AppError>;
        async fn status(&self, salon: SalonId) -> Result<OnboardingStatus, AppError>;
        /// Starts the activation once the link is made (a no-op when it already started, ended,
        /// or was refused).
        async fn activate(&self, salon: SalonId) -> Result<OnboardingStatus, AppError>;
        /// The admin's explicit new attempt after a refusal or a freeze (a new API key).
        async fn retry_activation(&self, salon: SalonId) -> Result<OnboardingStatus, AppError>;
        async fn request_pairing_code(
            &self,
            salon: SalonId,
            phone: PhoneNumber,
        ) -> Result<OnboardingStatus, AppError>;
        async fn restart_linking(&self, salon: SalonId) -> Result<OnboardingStatus, AppError>;
        /// Unlinks WhatsApp on the phone, purges the credentials, and offers a new QR.
        async fn disconnect_whatsapp(&self, salon: SalonId) -> Result<OnboardingStatus, AppError>;
        /// Accepts the number WhatsApp was linked again with in place of the salon's old one.
        async fn confirm_number_change(&self, salon: SalonId)
            -> Result<OnboardingStatus, AppError>;
        /// Sends a test message through the linked WhatsApp to `to`, or to the admin's own
        /// number from YClients when `None`.
        async fn send_test_message(
            &self,
            salon: SalonId,
            to: Option<PhoneNumber>,
        ) -> Result<OnboardingStatus, AppError>;
        /// The «Сообщения» section: settings, the latest messages, opted-out numbers.
        async fn messages(&self, salon: SalonId)
            -> Result<crate::messages::MessagesView, AppError>;
        /// Saves the salon's message settings (validated: an unknown placeholder is refused).
        async fn save_message_settings(
            &self,
            salon: SalonId,
            settings: crate::messages::MessageSettings,
        ) -> Result<crate::messages::MessagesView, AppError>;
    }

    pub type SharedBackend = Arc<dyn OnboardingBackend>;
}

#[cfg(feature = "ssr")]
impl AppError {
    pub fn status_code(&self) -> http::StatusCode {
        match self {
            AppError::Unauthorized => http::StatusCode::UNAUTHORIZED,
            AppError::BadRequest(_) => http::StatusCode::BAD_REQUEST,
            AppError::Conflict(_) => http::StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::Transport(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// Runs a server function body and gives its error the HTTP status it deserves (a refused token
/// is a 401, not a 500).
#[cfg(feature = "ssr")]
async fn respond<T>(
    body: impl std::future::Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let result = body.await;
    if let Err(error) = &result {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(error.status_code());
            if let AppError::TooManyRequests { retry_after_secs } = error {
                response.insert_header(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(*retry_after_secs),
                );
            }
        }
    }
    result
}

#[cfg(feature = "ssr")]
fn backend() -> Result<SharedBackend, AppError> {
    use_context::<SharedBackend>()
        .ok_or_else(|| AppError::Unavailable("backend is not configured".to_owned()))
}

/// The salon's current onboarding state (the polling fallback and the first render).
#[server(endpoint = "onboarding/status", output = crate::wire::BrowserJson)]
pub async fn get_onboarding_status(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.status(salon).await
    })
    .await
}

/// Activates the integration once WhatsApp is linked. Idempotent: any number of calls make one
/// activation.
#[server(endpoint = "onboarding/activate", output = crate::wire::BrowserJson)]
pub async fn activate_integration(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.activate(salon).await
    })
    .await
}

/// The admin's "Повторить активацию": a new activation after YClients refused, or after a freeze.
#[server(endpoint = "onboarding/retry-activation", output = crate::wire::BrowserJson)]
pub async fn retry_activation(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.retry_activation(salon).await
    })
    .await
}

/// Asks WhatsApp for a pairing code for `phone`, to link without a camera.
#[server(endpoint = "onboarding/pairing-code", output = crate::wire::BrowserJson)]
pub async fn request_pairing_code(
    token: String,
    phone: String,
) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        let phone = crate::domain::PhoneNumber::parse(&phone).map_err(|e| {
            AppError::BadRequest(crate::request_locale().strings().domain_error(&e))
        })?;
        backend.request_pairing_code(salon, phone).await
    })
    .await
}

/// Starts a fresh round of QR codes after they ran out or the phone unlinked us.
#[server(endpoint = "onboarding/restart", output = crate::wire::BrowserJson)]
pub async fn restart_linking(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.restart_linking(salon).await
    })
    .await
}

/// Unlinks the salon's WhatsApp (the page asked for confirmation first): the device disappears
/// from the phone's linked devices and a new QR is offered.
#[server(endpoint = "onboarding/disconnect", output = crate::wire::BrowserJson)]
pub async fn disconnect_whatsapp(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.disconnect_whatsapp(salon).await
    })
    .await
}

/// Keeps the number WhatsApp was linked again with, in place of the salon's old one.
#[server(endpoint = "onboarding/confirm-number", output = crate::wire::BrowserJson)]
pub async fn confirm_number_change(token: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.confirm_number_change(salon).await
    })
    .await
}

/// Sends a test message through the linked WhatsApp; `phone` empty means the admin's own number.
#[server(endpoint = "onboarding/test-message", output = crate::wire::BrowserJson)]
pub async fn send_test_message(token: String, phone: String) -> Result<OnboardingStatus, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        let to = match phone.trim() {
            "" => None,
            raw => Some(crate::domain::PhoneNumber::parse(raw).map_err(|e| {
                AppError::BadRequest(crate::request_locale().strings().domain_error(&e))
            })?),
        };
        backend.send_test_message(salon, to).await
    })
    .await
}

/// The «Сообщения» section of an active salon.
#[server(endpoint = "onboarding/messages", output = crate::wire::BrowserJson)]
pub async fn get_messages(token: String) -> Result<crate::messages::MessagesView, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        backend.messages(salon).await
    })
    .await
}

/// Saves the booking-message settings; `settings` is their JSON (templates, offsets, hours).
#[server(endpoint = "onboarding/message-settings", output = crate::wire::BrowserJson)]
pub async fn save_message_settings(
    token: String,
    settings: String,
) -> Result<crate::messages::MessagesView, AppError> {
    respond(async move {
        let backend = backend()?;
        let salon = backend.authorize(&token).await?;
        if settings.len() > 16 * 1024 {
            return Err(AppError::BadRequest("settings are too large".into()));
        }
        let settings: crate::messages::MessageSettings = serde_json::from_str(&settings)
            .map_err(|e| AppError::BadRequest(format!("settings could not be read: {e}")))?;
        backend.save_message_settings(salon, settings).await
    })
    .await
}
