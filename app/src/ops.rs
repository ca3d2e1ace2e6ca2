//! The operator's console: what crosses the wire, the server functions its pages read through,
//! and the narrow backend they call (implemented by the server's `ops` module).
//!
//! Reads go through server functions authorised by the operator's session cookie; actions are
//! plain form posts to the server (`/ops/salons/{id}/actions/{action}`) carrying the session's
//! CSRF token, so they work before hydration and every one is checked at the boundary.

use crate::api::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The signed-in operator and the CSRF token every action form carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorView {
    pub name: String,
    pub csrf: String,
}

/// The list's filters, as the page's query string carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalonFilter {
    /// Matches the id exactly, or the title or phone as a substring.
    pub q: String,
    /// An installation status (`new`, `activating`, `active`, …) or empty.
    pub status: String,
    /// A recorded WhatsApp state (`linked`, `logged_out`, …), `none`, or empty.
    pub whatsapp: String,
    pub attention: bool,
    /// From 1.
    pub page: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalonRow {
    pub id: i64,
    pub title: String,
    pub phone: Option<String>,
    pub status: String,
    pub whatsapp_state: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalonList {
    pub operator: OperatorView,
    pub rows: Vec<SalonRow>,
    pub total: u64,
    pub page: u64,
    pub pages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub kind: String,
    pub payload: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackRow {
    pub id: i32,
    /// `activation` or `rotation` (of the webhook secret).
    pub purpose: String,
    /// The operator who asked for a rotation.
    pub requested_by: Option<String>,
    pub status: String,
    pub attempts: i32,
    /// YClients' last answer (or the transport error) for this delivery.
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptRow>,
}

/// One attempt of a callback delivery and YClients' answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub started_at: String,
    pub duration_ms: i64,
    /// `None`: no answer came (a transport error, or nothing was sent).
    pub http_status: Option<i32>,
    pub error: Option<String>,
    /// The start of YClients' answer body.
    pub answer: Option<String>,
    /// `confirmed`, `retry`, `failed`, or `lease_lost` (the call was made, but its worker's
    /// claim on the row had ended: another worker held it, or an uninstall withdrew it).
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRow {
    pub id: i32,
    pub event: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub processed: bool,
    pub gave_up: bool,
    pub created_at: String,
}

/// An action's outcome as the console's own redirect carries it back to the salon page
/// (`?done=…&note=…` or `?error=…`, then `at=` and `sig=`): the page hands it to `ops/salon`,
/// which shows it only when `sig` is the server's signature of these words, this salon, this
/// operator's session and `at` (a few minutes old at most). Anything else a URL carries there is
/// a stranger's words and is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlashQuery {
    /// The action done (its name in the console's list).
    pub done: Option<String>,
    /// What it did, in words.
    pub note: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
    /// When the redirect was issued (Unix seconds).
    pub at: Option<i64>,
    /// The server's signature (hex HMAC-SHA256).
    pub sig: Option<String>,
}

/// An action's outcome the server verified came from its own redirect for this session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub done: Option<String>,
    pub note: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalonDetail {
    pub operator: OperatorView,
    pub id: i64,
    pub title: String,
    pub phone: Option<String>,
    pub status: String,
    pub activation_error: Option<String>,
    pub whatsapp_phone: Option<String>,
    /// What the supervisor recorded last.
    pub whatsapp_state: Option<String>,
    /// The session's state when one runs in this process.
    pub live_state: Option<String>,
    /// The YClients user who connected the app here: only their links open the onboarding page
    /// (`None`: the next user to enter with an id connects it).
    pub connected_by: Option<String>,
    pub audit: Vec<AuditRow>,
    pub callbacks: Vec<CallbackRow>,
    pub lifecycle: Vec<LifecycleRow>,
    /// Stored webhook events per resource.
    pub webhook_counts: Vec<(String, u64)>,
    /// The outcome of the action just done, when the page's address carried one the server
    /// signed for this session (`None` otherwise, whatever the address says).
    #[serde(default)]
    pub flash: Option<Flash>,
}

#[cfg(feature = "ssr")]
pub use backend::{OpsBackend, SharedOpsBackend};

#[cfg(feature = "ssr")]
mod backend {
    use super::*;
    use std::sync::Arc;

    /// What the console's pages need from the server, and nothing more.
    #[async_trait::async_trait]
    pub trait OpsBackend: Send + Sync + 'static {
        /// The operator whose session cookie is in `cookie_header`; else `Unauthorized`.
        fn operator(&self, cookie_header: Option<&str>) -> Result<OperatorView, AppError>;
        /// The sign-in form's CSRF token for the browser whose cookies are `cookie_header`, and
        /// the `Set-Cookie` value to send when it had no sign-in cookie yet.
        fn sign_in_form(&self, cookie_header: Option<&str>) -> (String, Option<String>);
        async fn salons(&self, filter: SalonFilter) -> Result<(Vec<SalonRow>, u64), AppError>;
        async fn salon(&self, operator: OperatorView, id: i64) -> Result<SalonDetail, AppError>;
        /// The outcome in `query` if the server signed it, for `operator`'s session and salon
        /// `id`, a few minutes ago at most; else `None`.
        fn flash(&self, operator: &OperatorView, id: i64, query: &FlashQuery) -> Option<Flash>;
    }

    pub type SharedOpsBackend = Arc<dyn OpsBackend>;
}

/// Rows per page of the list.
pub const PAGE_SIZE: u64 = 50;

#[cfg(feature = "ssr")]
fn backend_and_cookies() -> Result<(SharedOpsBackend, Option<String>), AppError> {
    let backend = use_context::<SharedOpsBackend>()
        .ok_or_else(|| AppError::Unavailable("the console is not configured".to_owned()))?;
    let cookie = use_context::<http::request::Parts>().and_then(|parts| {
        parts
            .headers
            .get(http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    Ok((backend, cookie))
}

#[cfg(feature = "ssr")]
fn signed_in() -> Result<(SharedOpsBackend, OperatorView), AppError> {
    let (backend, cookie) = backend_and_cookies()?;
    let operator = backend.operator(cookie.as_deref());
    if operator.is_err() {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::UNAUTHORIZED);
        }
    }
    Ok((backend, operator?))
}

/// One page of salons matching the filters.
#[server(endpoint = "ops/salons", output = crate::wire::BrowserJson)]
pub async fn ops_salons(
    q: String,
    status: String,
    whatsapp: String,
    attention: bool,
    page: u64,
) -> Result<SalonList, AppError> {
    let (backend, operator) = signed_in()?;
    let page = page.max(1);
    let (rows, total) = backend
        .salons(SalonFilter {
            q,
            status,
            whatsapp,
            attention,
            page,
        })
        .await?;
    Ok(SalonList {
        operator,
        rows,
        total,
        page,
        pages: total.div_ceil(PAGE_SIZE).max(1),
    })
}

/// One salon with its history, and the outcome of the action just done when `flash` is the
/// console's own signed redirect for this session and salon (unsigned words are dropped).
#[server(endpoint = "ops/salon", output = crate::wire::BrowserJson)]
pub async fn ops_salon(
    id: i64,
    #[server(default)] flash: FlashQuery,
) -> Result<SalonDetail, AppError> {
    let (backend, operator) = signed_in()?;
    let verified = backend.flash(&operator, id, &flash);
    let mut detail = backend.salon(operator, id).await?;
    detail.flash = verified;
    Ok(detail)
}

/// The sign-in form's CSRF token (bound to this browser's sign-in cookie, which comes with the
/// answer when the browser had none).
#[server(endpoint = "ops/sign_in_form", output = crate::wire::BrowserJson)]
pub async fn ops_sign_in_form() -> Result<String, AppError> {
    let (backend, cookie) = backend_and_cookies()?;
    let (token, set_cookie) = backend.sign_in_form(cookie.as_deref());
    if let (Some(set_cookie), Some(response)) = (
        set_cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        response.append_header(http::header::SET_COOKIE, set_cookie);
    }
    Ok(token)
}
