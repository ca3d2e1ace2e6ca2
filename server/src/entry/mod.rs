//! The marketplace entry: `GET /auth/yclients/redirect`. Accepts every parameter shape YClients
//! has been seen to send, verifies the signed user data, and — because that signature proves the
//! user, not the branch — asks YClients whether our app is being installed in the branch before
//! anything is stored or started. Only then: the salon row, its WhatsApp session, and a token for
//! its onboarding page. Company info (title, phone) is cached and refreshed in the background at
//! most daily, so the installation check is the only YClients call in the request's path.

mod query;

pub use query::{
    parse_redirect_query, verify_user_data, RedirectQuery, MAX_BRANCHES, MAX_QUERY_BYTES,
};

use crate::bus::EventBus;
use crate::config::YClientsSettings;
use crate::linking::Linking;
use crate::session::OnboardingTokens;
use crate::store::{fallback_title, Installation, Registered, Store};
use crate::yclients::{Company, InstallationStatus, YClientsClient, YClientsError};
use app::domain::SalonId;
use app::status::LiveEventKind;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long the branch picker waits for a branch's company info before showing "Филиал N".
const COMPANY_INFO_BUDGET: Duration = Duration::from_secs(8);
/// Company info older than this is refreshed in the background on the next entry.
const COMPANY_INFO_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);
#[derive(Clone)]
pub struct EntryService {
    pub config: Arc<YClientsSettings>,
    pub store: Store,
    pub yclients: Option<YClientsClient>,
    pub tokens: OnboardingTokens,
    pub linking: Linking,
    pub bus: EventBus,
    /// The branch picker's budget of YClients calls.
    pub limits: crate::limits::Limits,
}

/// Where a redirect leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entered {
    /// One branch, stored and checked: its onboarding page, with this token.
    Onboarding { token: String },
    /// Several branches: the ones YClients is installing us in, to pick from.
    PickBranch(Vec<Branch>),
}

/// A branch the admin may pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub salon: SalonId,
    pub title: String,
    /// The redirect query that enters this branch alone (the same signed user data).
    pub redirect_query: String,
}

/// Why the entry stage refuses a redirect: developer messages; what the admin reads is
/// [`entry_page`], in the page's language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("the YClients connection is not configured (partner token, client or application id)")]
    NotConfigured,
    #[error("the redirect names no branch (salon_id)")]
    NoSalon,
    #[error("bad branch id: {0}")]
    BadSalonId(String),
    #[error("user_data is damaged: {0}")]
    BadUserData(UserDataDefect),
    #[error("the user_data signature does not verify")]
    BadSignature,
    #[error("the redirect carries no signed user_data")]
    Unsigned,
    #[error("the redirect query is longer than {MAX_QUERY_BYTES} bytes")]
    QueryTooLong,
    #[error("the redirect names more than {MAX_BRANCHES} branches")]
    TooManyBranches,
    /// 404, or a state we do not know: the app is not being installed in this branch.
    #[error("YClients confirms no installation of the app in this branch")]
    NotInstalled,
    /// The branch was connected by another YClients user (or the link names no user): the
    /// signature proves the user, and only the user who connected a branch may open it.
    #[error("the branch was connected by another YClients user")]
    ConnectedByAnother {
        /// The refused user's own id (shown to them: an operator can hand the branch over to it).
        user: Option<String>,
    },
    /// An operator handed the branch over from this YClients user to another one (someone new
    /// at the salon): their links are refused, with a page of their own.
    #[error("the branch was released from this YClients user")]
    Released,
    /// `freezed`: the paid period is over. The branch is the one YClients answered for.
    #[error("the installation in branch {salon} is frozen in YClients")]
    Frozen { salon: SalonId },
    /// Too many installation checks for this YClients user, or of branches nobody entering
    /// holds (`Limits::entry_check`): try again after `retry_after_secs`.
    #[error("too many installation checks; retry after {retry_after_secs} s")]
    TooManyChecks { retry_after_secs: u64 },
    /// YClients could not be asked (after the client's own retries): fail closed.
    #[error("YClients could not be asked about the installation")]
    YClientsUnreachable,
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
}

impl EntryError {
    /// A bounded name of the refusal (metrics label).
    pub fn label(&self) -> &'static str {
        match self {
            EntryError::NotConfigured => "not_configured",
            EntryError::NoSalon => "no_salon",
            EntryError::BadSalonId(_) => "bad_salon_id",
            EntryError::BadUserData(_) => "bad_user_data",
            EntryError::BadSignature => "bad_signature",
            EntryError::Unsigned => "unsigned",
            EntryError::QueryTooLong => "query_too_long",
            EntryError::TooManyBranches => "too_many_branches",
            EntryError::NotInstalled => "not_installed",
            EntryError::ConnectedByAnother { .. } => "connected_by_another",
            EntryError::Released => "released",
            EntryError::Frozen { .. } => "frozen",
            EntryError::TooManyChecks { .. } => "too_many_checks",
            EntryError::YClientsUnreachable => "yclients_unreachable",
            EntryError::StorageUnavailable(_) => "storage_unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserDataDefect {
    #[error("not base64")]
    NotBase64,
    #[error("not JSON")]
    NotJson,
    #[error("not a JSON object")]
    NotObject,
}

/// The user fields we keep: `id` or `user_id`, and whatever else came; all optional.
fn user_summary(user: &Value) -> Value {
    let id = user
        .get("id")
        .or_else(|| user.get("user_id"))
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::json!({
        "user_id": id,
        "name": user.get("name"),
        "email": user.get("email"),
        "phone": user.get("phone"),
        "is_approved": user.get("is_approved"),
        "salon_name": user.get("salon_name"),
    })
}

/// Walks one redirect: configuration, the query, the signature, YClients' installation check,
/// the salon row, its session, and the token — or the branches to pick from.
pub async fn enter(entry: &EntryService, raw_query: &str) -> Result<Entered, EntryError> {
    let (Some(partner_token), Some(yclients), Some(application_id)) = (
        entry.config.partner_token(),
        entry.yclients.as_ref(),
        entry.config.application_id,
    ) else {
        tracing::error!(
            problem = entry.config.yclients_problem(),
            "marketplace entry refused: configuration incomplete"
        );
        return Err(EntryError::NotConfigured);
    };
    let query = parse_redirect_query(raw_query)?;
    let user = match query.user_data.as_deref() {
        Some(data) => Some(
            verify_user_data(partner_token, data, query.user_data_sign.as_deref())
                .inspect_err(|e| tracing::warn!(error = %e, "redirect with bad user data"))?,
        ),
        None if entry.config.require_user_data => return Err(EntryError::Unsigned),
        None => None,
    };
    let installations = Installations {
        yclients,
        application_id,
    };
    if let [salon] = query.salon_ids.as_slice() {
        let salon = *salon;
        spend_check_budget(entry, salon, user.as_ref()).await?;
        let installation = installations.check(salon).await.inspect_err(|refusal| {
            tracing::warn!(salon_id = %salon, %refusal, "entry refused by the installation check");
        })?;
        let registered = register_salon(entry, salon, installation, user.as_ref()).await?;
        let (status, generation) = (registered.status, registered.generation);
        if registered.unfrozen {
            // YClients holds the installation as active again: the salon resumed (an open page
            // hears it); its session comes back from the stored credentials below.
            tracing::info!(salon_id = %salon, "frozen salon resumed at entry");
        }
        if registered.unfrozen || registered.generation_moved {
            // An open page hears the resumption; and the live streams of tokens the new
            // generation ended close (they check the generation on this event, not on every QR
            // code), on every instance.
            entry.bus.publish(salon, LiveEventKind::ActivationUpdate);
        }
        if status.may_run_whatsapp() {
            // Eagerly, so the first QR is usually ready before the page asks for it.
            entry.linking.ensure_started(salon);
        }
        let token = entry.tokens.issue(salon, generation).map_err(|e| {
            tracing::error!(error = %e, "issuing the onboarding token failed");
            EntryError::StorageUnavailable(e.to_string())
        })?;
        tracing::info!(salon_id = %salon, status = status.as_str(), "onboarding token issued");
        return Ok(Entered::Onboarding { token });
    }
    let user_id = user
        .as_ref()
        .map(user_summary)
        .and_then(|summary| crate::store::user_id(&summary));
    Ok(Entered::PickBranch(
        branches(entry, installations.yclients, &query, user_id.as_deref()).await,
    ))
}

/// Takes one installation check from the entry's budgets: the signed user's own, and for a
/// branch that user does not hold (a first entry, or someone else's branch: every made-up id is
/// one) the budget all such entries share. A real admin re-entering their own branch spends only
/// their own.
async fn spend_check_budget(
    entry: &EntryService,
    salon: SalonId,
    user: Option<&Value>,
) -> Result<(), EntryError> {
    let user_id = user
        .map(user_summary)
        .and_then(|summary| crate::store::user_id(&summary));
    let held = match (&user_id, entry.store.salon(salon).await) {
        (Some(user), Ok(Some(stored))) => stored.connected_by.as_ref() == Some(user),
        (_, Ok(_)) => false,
        (_, Err(e)) => {
            tracing::error!(error = %e, "reading the salon failed");
            return Err(EntryError::StorageUnavailable(e.to_string()));
        }
    };
    entry.limits.entry_check(user_id.as_deref(), held).map_err(
        |crate::limits::RetryAfter(retry_after_secs)| {
            tracing::warn!(salon_id = %salon, user_id = ?user_id, held, retry_after_secs,
                "entry refused: installation check budget spent");
            EntryError::TooManyChecks { retry_after_secs }
        },
    )
}

/// Asks YClients for our app's installation in a branch: the one YClients call in the entry's
/// request path.
struct Installations<'a> {
    yclients: &'a YClientsClient,
    application_id: i64,
}

impl Installations<'_> {
    async fn check(&self, salon: SalonId) -> Result<Installation, EntryError> {
        match self
            .yclients
            .installation_status(salon.get(), self.application_id)
            .await
        {
            Ok(Some(status)) => match status {
                InstallationStatus::Pending => Ok(Installation::Pending),
                InstallationStatus::Active => Ok(Installation::Active),
                InstallationStatus::Frozen => Err(EntryError::Frozen { salon }),
                InstallationStatus::Unknown(other) => {
                    tracing::warn!(salon_id = %salon, status = other, "unknown installation status");
                    Err(EntryError::NotInstalled)
                }
            },
            Ok(None) => Err(EntryError::NotInstalled),
            Err(e) => {
                tracing::error!(salon_id = %salon, error = %e, "installation check failed");
                Err(match e {
                    YClientsError::NotFound(_) => EntryError::NotInstalled,
                    _ => EntryError::YClientsUnreachable,
                })
            }
        }
    }
}

/// Stores the salon and, when its company info is missing or a day old, refreshes it in the
/// background.
#[tracing::instrument(skip_all, fields(salon_id = %salon))]
async fn register_salon(
    entry: &EntryService,
    salon: SalonId,
    installation: Installation,
    user: Option<&Value>,
) -> Result<Registered, EntryError> {
    let summary = user.map(user_summary).unwrap_or(Value::Null);
    let user_id = crate::store::user_id(&summary);
    let registered = entry
        .store
        .register(salon, installation, summary)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::ConnectedByAnother(_) => {
                EntryError::ConnectedByAnother { user: user_id }
            }
            crate::store::StoreError::Released(_) => EntryError::Released,
            e => {
                tracing::error!(error = %e, "storing the salon failed");
                EntryError::StorageUnavailable(e.to_string())
            }
        })?;
    let stale = registered
        .company_refreshed_at
        .is_none_or(|at| chrono::Utc::now() - at > COMPANY_INFO_MAX_AGE);
    if stale {
        refresh_company_in_background(entry, salon);
    }
    Ok(registered)
}

fn refresh_company_in_background(entry: &EntryService, salon: SalonId) {
    let Some(yclients) = entry.yclients.clone() else {
        return;
    };
    let store = entry.store.clone();
    let bus = entry.bus.clone();
    tokio::spawn(async move {
        match yclients.company(salon.get()).await {
            Ok(company) => match store.refresh_company(salon, &company).await {
                Ok(()) => bus.publish(salon, LiveEventKind::Snapshot),
                Err(e) => {
                    tracing::warn!(salon_id = %salon, error = %e, "storing company info failed")
                }
            },
            Err(e) => {
                tracing::warn!(salon_id = %salon, error = %e, "company info unavailable; the next entry tries again")
            }
        }
    });
}

/// Company info for the branch picker, within a bounded time; `None` if YClients is slow or down.
async fn company_info(yclients: &YClientsClient, salon: SalonId) -> Option<Company> {
    match tokio::time::timeout(COMPANY_INFO_BUDGET, yclients.company(salon.get())).await {
        Ok(Ok(company)) => Some(company),
        Ok(Err(e)) => {
            tracing::warn!(salon_id = %salon, error = %e, "company info unavailable; going on without it");
            None
        }
        Err(_) => {
            tracing::warn!(salon_id = %salon, "company info timed out; going on without it");
            None
        }
    }
}

/// Several branches: the admin picks the one to link (each links its own WhatsApp). The picker
/// asks YClients nothing about installations and stores nothing: the branch picked enters as a
/// single-branch link, and that entry checks its installation. The branch ids are not covered
/// by the signature, so a picker that checked each one let any YClients user's own link, with
/// 50 made-up ids, spend 50–100 calls of the one YClients client every salon's entries,
/// activation callbacks and frozen checks share, per request (and learn which ids have the
/// app). A title comes from our database when the salon is stored and the signed user holds
/// it, else from YClients within one budget for every client (`RATE_LIMIT_PICKER_TITLES_*`),
/// else it is `Филиал {id}`. Only the holder's: a stored title shown to anyone, beside
/// `Филиал {id}` for the branches we do not store once a stranger's made-up ids had spent the
/// budget, told that stranger which branches are AI Admin's customers (found by an audit).
async fn branches(
    entry: &EntryService,
    yclients: &YClientsClient,
    query: &RedirectQuery,
    user_id: Option<&str>,
) -> Vec<Branch> {
    let mut branches = Vec::new();
    for salon in &query.salon_ids {
        let stored = entry
            .store
            .salon(*salon)
            .await
            .ok()
            .flatten()
            .filter(|row| {
                row.company_refreshed_at.is_some()
                    && user_id.is_some()
                    && row.connected_by.as_deref() == user_id
            })
            .map(|row| row.title);
        let title = match stored {
            Some(title) => title,
            None if entry.limits.picker_title() => company_info(yclients, *salon)
                .await
                .map(|c| c.title)
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| fallback_title(*salon)),
            None => fallback_title(*salon),
        };
        let mut link = form_urlencoded::Serializer::new(String::new());
        link.append_pair("salon_id", &salon.to_string());
        if let Some(data) = &query.user_data {
            link.append_pair("user_data", data);
        }
        if let Some(sign) = &query.user_data_sign {
            link.append_pair("user_data_sign", sign);
        }
        branches.push(Branch {
            salon: *salon,
            title,
            redirect_query: link.finish(),
        });
    }
    branches
}
