//! The marketplace entry: `GET /auth/yclients/redirect`. Accepts every parameter shape YClients
//! has been seen to send, verifies the signed user data, learns the salon from the YClients API,
//! stores it, starts its WhatsApp session, and hands the browser a token for its onboarding page.

use crate::audit::record_event;
use crate::config::Config;
use crate::db::entities::salons;
use crate::error::ErrorPage;
use crate::linking::Linking;
use crate::onboarding::SalonStatus;
use crate::session::OnboardingTokens;
use crate::yclients::{Company, YClientsClient};
use app::domain::SalonId;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long the redirect waits for YClients' company info before going on without it.
const COMPANY_INFO_BUDGET: Duration = Duration::from_secs(8);

#[derive(Clone)]
pub struct EntryService {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    pub yclients: Option<YClientsClient>,
    pub tokens: OnboardingTokens,
    pub linking: Linking,
}

/// What the redirect carried, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectQuery {
    pub salon_ids: Vec<SalonId>,
    pub user_data: Option<String>,
    pub user_data_sign: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("В ссылке нет идентификатора филиала (salon_id). Откройте приложение из маркетплейса YClients.")]
    NoSalon,
    #[error("Неверный идентификатор филиала: {0}")]
    BadSalonId(String),
    #[error("Данные пользователя повреждены: {0}")]
    BadUserData(String),
    #[error("Подпись данных пользователя не прошла проверку. Откройте приложение из маркетплейса YClients ещё раз.")]
    BadSignature,
    #[error("Ссылка не подписана YClients. Откройте приложение из маркетплейса YClients — кнопка «Подключить».")]
    Unsigned,
}

impl EntryError {
    fn page(&self) -> ErrorPage {
        let (status, title) = match self {
            EntryError::NoSalon | EntryError::BadSalonId(_) | EntryError::BadUserData(_) => {
                (StatusCode::BAD_REQUEST, "Неверная ссылка подключения")
            }
            EntryError::BadSignature | EntryError::Unsigned => {
                (StatusCode::FORBIDDEN, "Доступ не подтверждён")
            }
        };
        ErrorPage::new(status, title, self.to_string())
    }
}

/// Parses `salon_id`, `salon_ids[0]…`, `salon_ids[]`, `salon_ids=1,2`, `user_data`, `user_data_sign`.
pub fn parse_redirect_query(raw: &str) -> Result<RedirectQuery, EntryError> {
    let mut indexed: Vec<(u32, SalonId)> = Vec::new();
    let mut plain: Vec<SalonId> = Vec::new();
    let mut user_data = None;
    let mut user_data_sign = None;
    let parse_id = |value: &str| {
        SalonId::parse(value).map_err(|_| EntryError::BadSalonId(value.chars().take(40).collect()))
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
    let mut salon_ids: Vec<SalonId> = Vec::new();
    for id in plain
        .into_iter()
        .chain(indexed.into_iter().map(|(_, id)| id))
    {
        if !salon_ids.contains(&id) {
            salon_ids.push(id);
        }
    }
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
        .ok_or_else(|| EntryError::BadUserData("не base64".into()))?;
    let signature = signature.ok_or(EntryError::BadSignature)?;
    yclients::signature::verify(partner_token, &bytes, signature)
        .map_err(|_| EntryError::BadSignature)?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| EntryError::BadUserData("не JSON".into()))?;
    if !value.is_object() {
        return Err(EntryError::BadUserData("ожидался объект JSON".into()));
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
    RawQuery(query): RawQuery,
) -> Response {
    match enter(&entry, query.as_deref().unwrap_or_default()).await {
        Ok(response) => response,
        Err(page) => page.into_response(),
    }
}

async fn enter(entry: &EntryService, raw_query: &str) -> Result<Response, ErrorPage> {
    let (Some(partner_token), Some(yclients)) =
        (entry.config.partner_token(), entry.yclients.as_ref())
    else {
        tracing::error!(
            problem = entry.config.yclients_problem(),
            "marketplace entry refused: configuration incomplete"
        );
        return Err(ErrorPage::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Конфигурация не завершена",
            "Конфигурация не завершена: подключение к YClients ещё не настроено. Мы уже знаем об этом; попробуйте подключиться позже или напишите в поддержку AI Admin.",
        ));
    };
    let query = parse_redirect_query(raw_query).map_err(|e| e.page())?;
    let user = match query.user_data.as_deref() {
        Some(data) => Some(
            verify_user_data(partner_token, data, query.user_data_sign.as_deref()).map_err(
                |e| {
                    tracing::warn!(error = %e, "redirect with bad user data");
                    e.page()
                },
            )?,
        ),
        None if entry.config.require_user_data => return Err(EntryError::Unsigned.page()),
        None => None,
    };
    if let [salon] = query.salon_ids.as_slice() {
        let salon = *salon;
        register_salon(entry, yclients, salon, user.as_ref()).await?;
        let token = entry.tokens.issue(salon).map_err(|e| {
            tracing::error!(error = %e, "issuing the onboarding token failed");
            unavailable(raw_query)
        })?;
        return Ok(Redirect::to(&format!("/marketplace/onboarding?token={token}")).into_response());
    }
    Ok(branch_picker(yclients, &query).await.into_response())
}

fn unavailable(raw_query: &str) -> ErrorPage {
    ErrorPage::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Сервис временно недоступен",
        "Не удалось сохранить подключение. Попробуйте ещё раз через минуту.",
    )
    .with_action("Повторить", format!("/auth/yclients/redirect?{raw_query}"))
}

/// Company info, within a bounded time; `None` if YClients is slow or down (we go on without it:
/// the title is cosmetic and a stuck admin is worse; the next entry refreshes it).
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

#[tracing::instrument(skip_all, fields(salon_id = %salon))]
async fn register_salon(
    entry: &EntryService,
    yclients: &YClientsClient,
    salon: SalonId,
    user: Option<&Value>,
) -> Result<(), ErrorPage> {
    let company = company_info(yclients, salon).await;
    let db_error = |e: sea_orm::DbErr| {
        tracing::error!(error = %e, "storing the salon failed");
        unavailable(&format!("salon_id={salon}"))
    };
    let now = chrono::Utc::now();
    let existing = salons::Entity::find_by_id(salon.get())
        .one(&entry.db)
        .await
        .map_err(db_error)?;
    let status = match existing.as_ref() {
        None => SalonStatus::New,
        Some(row) => match SalonStatus::parse(&row.status).unwrap_or(SalonStatus::New) {
            // A new "Подключить" after removal or a refusal starts a clean onboarding.
            SalonStatus::Uninstalled | SalonStatus::ActivationFailed => SalonStatus::New,
            other => other,
        },
    };
    let fallback_title = format!("Филиал {salon}");
    let mut model: salons::ActiveModel = match existing.clone() {
        Some(row) => row.into(),
        None => salons::ActiveModel {
            id: Set(salon.get()),
            title: Set(fallback_title.clone()),
            created_at: Set(now),
            ..Default::default()
        },
    };
    if let Some(company) = &company {
        model.title = Set(if company.title.trim().is_empty() {
            fallback_title
        } else {
            company.title.clone()
        });
        model.phone = Set(company.phone.clone().filter(|p| !p.is_empty()));
        model.address = Set(company.address.clone());
        model.timezone = Set(company.timezone_name.clone());
    } else if existing.is_none() {
        model.phone = Set(None);
        model.address = Set(None);
        model.timezone = Set(None);
    }
    let reset = existing
        .as_ref()
        .is_some_and(|row| row.status != status.as_str());
    if reset {
        model.api_key_hash = Set(None);
        model.api_key_prefix = Set(None);
        model.webhook_secret_hash = Set(None);
        model.activation_error = Set(None);
    }
    model.status = Set(status.as_str().to_owned());
    model.registered_at = Set(now);
    model.updated_at = Set(now);
    if existing.is_some() {
        model.update(&entry.db).await.map_err(db_error)?;
    } else {
        model.insert(&entry.db).await.map_err(db_error)?;
    }
    record_event(
        &entry.db,
        Some(salon),
        "registration_started",
        serde_json::json!({
            "user": user.map(user_summary),
            "company_info": company.is_some(),
            "status": status.as_str(),
        }),
    )
    .await
    .map_err(db_error)?;
    if status != SalonStatus::Frozen {
        // Eagerly, so the first QR is usually ready before the page asks for it.
        entry.linking.ensure_started(salon);
    }
    Ok(())
}

/// Several branches: the admin picks the one to link (each links its own WhatsApp).
async fn branch_picker(yclients: &YClientsClient, query: &RedirectQuery) -> Html<String> {
    let mut items = String::new();
    for salon in &query.salon_ids {
        let title = company_info(yclients, *salon)
            .await
            .map(|c| c.title)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| format!("Филиал {salon}"));
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
    Html(format!(
        r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>Выберите филиал — AI Admin</title><link rel="stylesheet" href="/pkg/ai-admin-connect.css"></head>
<body><main class="page"><section class="card" data-testid="branch-picker"><h1>Выберите филиал</h1>
<p>Приложение подключено к нескольким филиалам. У каждого филиала свой WhatsApp: выберите, какой подключить сейчас. Остальные можно подключить потом так же.</p>
<ul class="branches">{items}</ul></section></main></body></html>"#
    ))
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
