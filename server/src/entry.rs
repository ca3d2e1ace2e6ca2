//! The marketplace entry: `GET /auth/yclients/redirect`. Accepts every parameter shape YClients
//! has been seen to send, verifies the signed user data, and — because that signature proves the
//! user, not the branch — asks YClients whether our app is being installed in the branch before
//! anything is stored or started. Only then: the salon row, its WhatsApp session, and a token for
//! its onboarding page. Company info (title, phone) is cached and refreshed in the background at
//! most daily, so the installation check is the only YClients call in the request's path.

use crate::bus::EventBus;
use crate::config::YClientsSettings;
use crate::domain::SalonStatus;
use crate::error::{page_locale, ErrorPage};
use crate::linking::Linking;
use crate::session::OnboardingTokens;
use crate::store::{fallback_title, Installation, Store};
use crate::yclients::{Company, InstallationStatus, YClientsClient, YClientsError};
use app::domain::SalonId;
use app::i18n::Locale as PageLocale;
use app::status::LiveEventKind;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long the branch picker waits for a branch's company info before showing "Филиал N".
const COMPANY_INFO_BUDGET: Duration = Duration::from_secs(8);
/// Company info older than this is refreshed in the background on the next entry.
const COMPANY_INFO_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// The longest redirect query we read (a real one is well under 1 KiB, user data included).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The most branches one redirect may name.
pub const MAX_BRANCHES: usize = 50;

#[derive(Clone)]
pub struct EntryService {
    pub config: Arc<YClientsSettings>,
    pub store: Store,
    pub yclients: Option<YClientsClient>,
    pub tokens: OnboardingTokens,
    pub linking: Linking,
    pub bus: EventBus,
}

/// What the redirect carried, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery {
    pub salon_ids: Vec<SalonId>,
    pub user_data: Option<String>,
    pub user_data_sign: Option<String>,
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
    /// `freezed`: the paid period is over.
    #[error("the installation is frozen in YClients")]
    Frozen,
    /// YClients could not be asked (after the client's own retries): fail closed.
    #[error("YClients could not be asked about the installation")]
    YClientsUnreachable,
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
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

/// The page an [`EntryError`] shows, in the admin's language: the one place the entry's errors
/// become words.
pub fn entry_page(error: &EntryError, locale: PageLocale, raw_query: &str) -> ErrorPage {
    use EntryError as E;
    let ru = locale == PageLocale::Ru;
    let pick = |ru_text: &str, en_text: &str| {
        if ru {
            ru_text.to_owned()
        } else {
            en_text.to_owned()
        }
    };
    let (status, title, message) = match error {
        E::NotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            pick("Конфигурация не завершена", "Setup is not finished"),
            pick(
                "Конфигурация не завершена: подключение к YClients ещё не настроено. Мы уже знаем об этом; попробуйте подключиться позже или напишите в поддержку AI Admin.",
                "Setup is not finished: the connection to YClients is not configured yet. We know about it; please try again later or write to AI Admin support.",
            ),
        ),
        E::NoSalon => (
            StatusCode::BAD_REQUEST,
            pick("Неверная ссылка подключения", "Invalid connection link"),
            pick(
                "В ссылке нет идентификатора филиала (salon_id). Откройте приложение из маркетплейса YClients.",
                "The link names no branch (salon_id). Open the app from the YClients marketplace.",
            ),
        ),
        E::BadSalonId(raw) => (
            StatusCode::BAD_REQUEST,
            pick("Неверная ссылка подключения", "Invalid connection link"),
            if ru {
                format!("Неверный идентификатор филиала: {raw}")
            } else {
                format!("Invalid branch id: {raw}")
            },
        ),
        E::BadUserData(defect) => (
            StatusCode::BAD_REQUEST,
            pick("Неверная ссылка подключения", "Invalid connection link"),
            match (defect, ru) {
                (UserDataDefect::NotBase64, true) => "Данные пользователя повреждены: не base64",
                (UserDataDefect::NotJson, true) => "Данные пользователя повреждены: не JSON",
                (UserDataDefect::NotObject, true) => {
                    "Данные пользователя повреждены: ожидался объект JSON"
                }
                (UserDataDefect::NotBase64, false) => "The user data is damaged: not base64",
                (UserDataDefect::NotJson, false) => "The user data is damaged: not JSON",
                (UserDataDefect::NotObject, false) => {
                    "The user data is damaged: a JSON object was expected"
                }
            }
            .to_owned(),
        ),
        E::TooManyBranches => (
            StatusCode::BAD_REQUEST,
            pick("Неверная ссылка подключения", "Invalid connection link"),
            pick(
                "Слишком много филиалов в ссылке (больше 50). Откройте AI Admin в маркетплейсе YClients из нужного филиала и нажмите «Подключить» ещё раз.",
                "Too many branches in the link (more than 50). Open AI Admin in the YClients marketplace from the branch you need and press «Подключить» again.",
            ),
        ),
        E::QueryTooLong => (
            StatusCode::URI_TOO_LONG,
            pick("Ссылка повреждена", "The link is damaged"),
            pick(
                "Ссылка подключения повреждена: она слишком длинная. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить» ещё раз.",
                "The connection link is damaged: it is too long. Open AI Admin in the YClients marketplace and press «Подключить» again.",
            ),
        ),
        E::BadSignature => (
            StatusCode::FORBIDDEN,
            pick("Доступ не подтверждён", "Access not confirmed"),
            pick(
                "Подпись данных пользователя не прошла проверку. Откройте приложение из маркетплейса YClients ещё раз.",
                "The user data signature did not verify. Open the app from the YClients marketplace again.",
            ),
        ),
        E::Unsigned => (
            StatusCode::FORBIDDEN,
            pick("Доступ не подтверждён", "Access not confirmed"),
            pick(
                "Ссылка не подписана YClients. Откройте приложение из маркетплейса YClients — кнопка «Подключить».",
                "The link is not signed by YClients. Open the app from the YClients marketplace with the «Подключить» button.",
            ),
        ),
        E::NotInstalled => (
            StatusCode::FORBIDDEN,
            pick(
                "Приложение не устанавливается для этого филиала",
                "The app is not being installed for this branch",
            ),
            pick(
                "YClients не подтвердил установку AI Admin в этом филиале. Откройте AI Admin в маркетплейсе YClients и нажмите «Подключить» ещё раз.",
                "YClients did not confirm an installation of AI Admin in this branch. Open AI Admin in the YClients marketplace and press «Подключить» again.",
            ),
        ),
        E::Frozen => (
            StatusCode::CONFLICT,
            pick("AI Admin приостановлен в YClients", "AI Admin is paused in YClients"),
            pick(
                "Оплаченный период приложения в этом филиале закончился, и YClients приостановил его. Данные и WhatsApp сохранены: продлите AI Admin в маркетплейсе YClients и нажмите «Подключить» снова.",
                "The app's paid period in this branch is over and YClients paused it. Your data and WhatsApp are kept: renew AI Admin in the YClients marketplace and press «Подключить» again.",
            ),
        ),
        E::YClientsUnreachable => (
            StatusCode::SERVICE_UNAVAILABLE,
            pick("YClients не отвечает", "YClients is not answering"),
            pick(
                "Не удалось проверить установку приложения в YClients. Попробуйте ещё раз через минуту.",
                "We could not check the app's installation with YClients. Please try again in a minute.",
            ),
        ),
        E::StorageUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            pick("Сервис временно недоступен", "The service is temporarily unavailable"),
            pick(
                "Не удалось сохранить подключение. Попробуйте ещё раз через минуту.",
                "We could not save the connection. Please try again in a minute.",
            ),
        ),
    };
    let page = ErrorPage::new(status, title, message).in_locale(locale);
    match error {
        E::YClientsUnreachable | E::StorageUnavailable(_) => page.with_action(
            pick("Повторить", "Retry"),
            format!("/auth/yclients/redirect?{raw_query}"),
        ),
        _ => page,
    }
}

/// Parses `salon_id`, `salon_ids[0]…`, `salon_ids[]`, `salon_ids=1,2`, `user_data`, `user_data_sign`.
/// Bounded before any work: more than [`MAX_QUERY_BYTES`] is refused unread, and parsing stops at
/// the first id beyond [`MAX_BRANCHES`] distinct ones; the work is linear in the query's length.
pub fn parse_redirect_query(raw: &str) -> Result<RedirectQuery, EntryError> {
    if raw.len() > MAX_QUERY_BYTES {
        return Err(EntryError::QueryTooLong);
    }
    let mut indexed: Vec<(u32, SalonId)> = Vec::new();
    let mut plain: Vec<SalonId> = Vec::new();
    let mut user_data = None;
    let mut user_data_sign = None;
    let mut distinct: HashSet<SalonId> = HashSet::new();
    let mut parse_id = |value: &str| -> Result<SalonId, EntryError> {
        let id = SalonId::parse(value)
            .map_err(|_| EntryError::BadSalonId(value.chars().take(40).collect()))?;
        if distinct.insert(id) && distinct.len() > MAX_BRANCHES {
            return Err(EntryError::TooManyBranches);
        }
        Ok(id)
    };
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        match key.as_ref() {
            "salon_id" => plain.push(parse_id(&value)?),
            "salon_ids" => {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    plain.push(parse_id(part)?);
                }
            }
            "salon_ids[]" => plain.push(parse_id(&value)?),
            "user_data" => user_data = Some(value.into_owned()),
            "user_data_sign" => user_data_sign = Some(value.into_owned()),
            other => {
                if let Some(index) = other
                    .strip_prefix("salon_ids[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    let index = index
                        .parse()
                        .map_err(|_| EntryError::BadSalonId(other.chars().take(40).collect()))?;
                    indexed.push((index, parse_id(&value)?));
                }
            }
        }
    }
    indexed.sort_by_key(|(index, _)| *index);
    // Each id once, in the order of first appearance.
    let mut kept: HashSet<SalonId> = HashSet::new();
    let salon_ids: Vec<SalonId> = plain
        .into_iter()
        .chain(indexed.into_iter().map(|(_, id)| id))
        .filter(|id| kept.insert(*id))
        .collect();
    if salon_ids.is_empty() {
        return Err(EntryError::NoSalon);
    }
    Ok(RedirectQuery {
        salon_ids,
        user_data: user_data.filter(|u| !u.is_empty()),
        user_data_sign,
    })
}

/// Decodes `user_data` (either base64 alphabet, padded or not; a `+` turned into a space by
/// form decoding is put back) and checks `hex(HMAC-SHA256(partner_token, decoded bytes))` in
/// constant time. Returns the decoded JSON object.
pub fn verify_user_data(
    partner_token: &str,
    user_data: &str,
    signature: Option<&str>,
) -> Result<Value, EntryError> {
    let cleaned: String = user_data.trim().replace(' ', "+");
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|engine| engine.decode(&cleaned).ok())
        .ok_or(EntryError::BadUserData(UserDataDefect::NotBase64))?;
    let signature = signature.ok_or(EntryError::BadSignature)?;
    yclients::signature::verify(partner_token, &bytes, signature)
        .map_err(|_| EntryError::BadSignature)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| EntryError::BadUserData(UserDataDefect::NotJson))?;
    if !value.is_object() {
        return Err(EntryError::BadUserData(UserDataDefect::NotObject));
    }
    Ok(value)
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

#[tracing::instrument(name = "yclients_redirect", skip_all)]
pub async fn yclients_redirect(
    State(entry): State<EntryService>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let raw_query = query.as_deref().unwrap_or_default();
    match enter(&entry, raw_query).await {
        Ok(response) => response,
        Err(error) => entry_page(&error, page_locale(&headers), raw_query).into_response(),
    }
}

async fn enter(entry: &EntryService, raw_query: &str) -> Result<Response, EntryError> {
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
        let installation = installations.check(salon).await.inspect_err(|refusal| {
            tracing::warn!(salon_id = %salon, %refusal, "entry refused by the installation check");
        })?;
        let (status, generation) =
            register_salon(entry, salon, installation, user.as_ref()).await?;
        if status.may_run_whatsapp() {
            // Eagerly, so the first QR is usually ready before the page asks for it.
            entry.linking.ensure_started(salon);
        }
        let token = entry.tokens.issue(salon, generation).map_err(|e| {
            tracing::error!(error = %e, "issuing the onboarding token failed");
            EntryError::StorageUnavailable(e.to_string())
        })?;
        return Ok(Redirect::to(&format!("/marketplace/onboarding?token={token}")).into_response());
    }
    Ok(branch_picker(entry, &installations, &query)
        .await?
        .into_response())
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
                InstallationStatus::Frozen => Err(EntryError::Frozen),
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
/// background. Returns the status and the token generation.
#[tracing::instrument(skip_all, fields(salon_id = %salon))]
async fn register_salon(
    entry: &EntryService,
    salon: SalonId,
    installation: Installation,
    user: Option<&Value>,
) -> Result<(SalonStatus, i32), EntryError> {
    let registered = entry
        .store
        .register(
            salon,
            installation,
            user.map(user_summary).unwrap_or(Value::Null),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing the salon failed");
            EntryError::StorageUnavailable(e.to_string())
        })?;
    let stale = match entry.store.salon(salon).await {
        Ok(Some(row)) => row
            .company_refreshed_at
            .is_none_or(|at| chrono::Utc::now() - at > COMPANY_INFO_MAX_AGE),
        _ => true,
    };
    if stale {
        refresh_company_in_background(entry, salon);
    }
    Ok((registered.status, registered.generation))
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

/// Several branches: the admin picks the one to link (each links its own WhatsApp). Only
/// branches whose installation YClients confirms as pending or active are listed; nothing is
/// stored for any of them until the admin picks one (that entry checks again).
async fn branch_picker(
    entry: &EntryService,
    installations: &Installations<'_>,
    query: &RedirectQuery,
) -> Result<Html<String>, EntryError> {
    let mut items = String::new();
    let mut unreachable = false;
    for salon in &query.salon_ids {
        match installations.check(*salon).await {
            Ok(_) => {}
            Err(EntryError::YClientsUnreachable) => {
                unreachable = true;
                continue;
            }
            Err(_) => continue,
        }
        let stored = entry
            .store
            .salon(*salon)
            .await
            .ok()
            .flatten()
            .filter(|row| row.company_refreshed_at.is_some())
            .map(|row| row.title);
        let title = match stored {
            Some(title) => title,
            None => company_info(installations.yclients, *salon)
                .await
                .map(|c| c.title)
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| fallback_title(*salon)),
        };
        let mut link = form_urlencoded::Serializer::new(String::new());
        link.append_pair("salon_id", &salon.to_string());
        if let Some(data) = &query.user_data {
            link.append_pair("user_data", data);
        }
        if let Some(sign) = &query.user_data_sign {
            link.append_pair("user_data_sign", sign);
        }
        items.push_str(&format!(
            r#"<li><a class="button" data-testid="branch-{salon}" href="/auth/yclients/redirect?{href}">{title}</a></li>"#,
            href = html_escape::encode_double_quoted_attribute(&link.finish()),
            title = html_escape::encode_text(&title),
        ));
    }
    if items.is_empty() {
        let refusal = if unreachable {
            EntryError::YClientsUnreachable
        } else {
            EntryError::NotInstalled
        };
        return Err(refusal);
    }
    Ok(Html(format!(
        r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Выберите филиал — AI Admin</title><link rel="stylesheet" href="/pkg/ai-admin-connect.css"></head>
<body><main class="page"><section class="card" data-testid="branch-picker"><h1>Выберите филиал</h1>
<p>Приложение подключено к нескольким филиалам. У каждого филиала свой WhatsApp: выберите, какой подключить сейчас. Остальные можно подключить потом так же.</p>
<ul class="branches">{items}</ul></section></main></body></html>"#
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yclients::signature::sign;

    fn ids(q: &RedirectQuery) -> Vec<i64> {
        q.salon_ids.iter().map(|s| s.get()).collect()
    }

    #[test]
    fn every_seen_parameter_shape_is_accepted() {
        assert_eq!(
            ids(&parse_redirect_query("salon_id=5").expect("single")),
            vec![5]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids%5B1%5D=2&salon_ids%5B0%5D=1").expect("indexed")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids[0]=1&salon_ids[1]=2").expect("indexed raw")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids[]=3&salon_ids[]=4").expect("brackets")),
            vec![3, 4]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids=1,2").expect("comma")),
            vec![1, 2]
        );
        assert_eq!(
            ids(&parse_redirect_query("salon_ids=1%2C2").expect("comma encoded")),
            vec![1, 2]
        );
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(parse_redirect_query(""), Err(EntryError::NoSalon));
        assert!(matches!(
            parse_redirect_query("salon_id=0"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_id=abc"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_ids=1,-2"),
            Err(EntryError::BadSalonId(_))
        ));
        assert!(matches!(
            parse_redirect_query("salon_ids[x]=1"),
            Err(EntryError::BadSalonId(_))
        ));
    }

    #[test]
    fn the_query_is_bounded_before_it_is_parsed() {
        let list = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let fifty = parse_redirect_query(&format!("salon_ids={}", list(MAX_BRANCHES)))
            .expect("fifty branches");
        assert_eq!(fifty.salon_ids.len(), MAX_BRANCHES);
        assert_eq!(
            parse_redirect_query(&format!("salon_ids={}", list(MAX_BRANCHES + 1))),
            Err(EntryError::TooManyBranches)
        );
        let indexed: String = (0..=MAX_BRANCHES)
            .map(|i| format!("salon_ids[{i}]={}&", i + 1))
            .collect();
        assert_eq!(
            parse_redirect_query(&indexed),
            Err(EntryError::TooManyBranches)
        );
        let repeated = format!("salon_id=7&{}", "salon_ids[]=7&".repeat(200));
        assert_eq!(
            ids(&parse_redirect_query(&repeated).expect("one branch, repeated")),
            vec![7]
        );
        let long = format!("salon_id=1&pad={}", "x".repeat(MAX_QUERY_BYTES));
        assert_eq!(parse_redirect_query(&long), Err(EntryError::QueryTooLong));
        assert_eq!(
            entry_page(&EntryError::QueryTooLong, PageLocale::Ru, "").status,
            StatusCode::URI_TOO_LONG
        );
        assert_eq!(
            entry_page(&EntryError::TooManyBranches, PageLocale::Ru, "").status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn duplicates_keep_the_order_of_first_appearance() {
        assert_eq!(
            ids(&parse_redirect_query(
                "salon_ids=3,1,3,2&salon_id=1&salon_ids[1]=4&salon_ids[0]=2"
            )
            .expect("ids")),
            vec![3, 1, 2, 4]
        );
    }

    #[test]
    fn the_signature_covers_the_decoded_json_not_the_base64() {
        let json = r#"{"id":7,"name":"Андрей"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let good = sign("token", json.as_bytes());
        let over_base64 = sign("token", b64.as_bytes());
        assert!(verify_user_data("token", &b64, Some(&good)).is_ok());
        assert!(verify_user_data("token", &b64, Some(&good.to_uppercase())).is_ok());
        assert_eq!(
            verify_user_data("token", &b64, Some(&over_base64)),
            Err(EntryError::BadSignature)
        );
        assert_eq!(
            verify_user_data("token", &b64, None),
            Err(EntryError::BadSignature)
        );
        assert_eq!(
            verify_user_data("other", &b64, Some(&good)),
            Err(EntryError::BadSignature)
        );
    }

    #[test]
    fn both_base64_alphabets_and_lost_plus_signs_are_tolerated() {
        let json = "{\"user_id\":1,\"name\":\"ÿÿÿ>>>???\"}";
        let good = sign("t", json.as_bytes());
        let standard = base64::engine::general_purpose::STANDARD.encode(json);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert!(standard.contains('+') || standard.contains('/'));
        assert!(verify_user_data("t", &standard, Some(&good)).is_ok());
        assert!(verify_user_data("t", &url_safe, Some(&good)).is_ok());
        assert!(verify_user_data("t", &standard.replace('+', " "), Some(&good)).is_ok());
    }
}
