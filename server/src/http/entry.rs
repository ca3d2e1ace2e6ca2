//! The marketplace entry over HTTP: `GET /auth/yclients/redirect`, and the pages it answers with
//! — the onboarding redirect, the branch picker, or an [`EntryError`] in the admin's language.

use super::error::{page_locale, ErrorPage};
use crate::config::YClientsSettings;
use crate::entry::{enter, Branch, Entered, EntryError, EntryService, UserDataDefect};
use crate::instruments::Instruments;
use app::i18n::Locale as PageLocale;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

#[tracing::instrument(name = "yclients_redirect", skip_all)]
pub async fn yclients_redirect(
    State(entry): State<EntryService>,
    State(instruments): State<Instruments>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let raw_query = query.as_deref().unwrap_or_default();
    let outcome =
        |label: &str| instruments.count("ai_admin_redirects_total", &[("outcome", label)]);
    match enter(&entry, raw_query).await {
        Ok(Entered::Onboarding { token }) => {
            outcome("onboarding");
            instruments.count("ai_admin_tokens_issued_total", &[]);
            Redirect::to(&format!("/marketplace/onboarding?token={token}")).into_response()
        }
        Ok(Entered::PickBranch(branches)) => {
            outcome("branch_picker");
            branch_picker(&branches).into_response()
        }
        Err(error) => {
            outcome(error.label());
            let mut response =
                entry_page(&error, page_locale(&headers), raw_query, &entry.config).into_response();
            if let EntryError::TooManyChecks { retry_after_secs } = error {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after_secs),
                );
            }
            response
        }
    }
}

/// The page an [`EntryError`] shows, in the admin's language: the one place the entry's errors
/// become words. `yclients` names the app's marketplace card a frozen branch renews on.
pub fn entry_page(
    error: &EntryError,
    locale: PageLocale,
    raw_query: &str,
    yclients: &YClientsSettings,
) -> ErrorPage {
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
        E::ConnectedByAnother { user } => (
            StatusCode::FORBIDDEN,
            pick(
                "AI Admin в этом филиале подключал другой пользователь",
                "AI Admin in this branch was connected by another user",
            ),
            {
                let mut message = pick(
                    "AI Admin в этом филиале подключил другой пользователь YClients, и настройки подключения открываются только ему. Войдите в YClients под учётной записью, с которой приложение подключали, и откройте AI Admin в маркетплейсе ещё раз. Если того человека больше нет в салоне, удалите приложение в маркетплейсе YClients и подключите его заново: подключившим станете вы.",
                    "Another YClients user connected AI Admin in this branch, and its connection settings open only for them. Sign in to YClients with the account that connected the app and open AI Admin in the marketplace again. If that person is no longer with the salon, remove the app in the YClients marketplace and connect it again: you will then be the one who connected it.",
                );
                if let Some(user) = user {
                    message.push(' ');
                    message.push_str(&if ru {
                        format!("Или попросите поддержку AI Admin передать подключение вам: ваш идентификатор пользователя YClients — {user}.")
                    } else {
                        format!("Or ask AI Admin support to hand the connection over to you: your YClients user id is {user}.")
                    });
                }
                message
            },
        ),
        E::Released => (
            StatusCode::FORBIDDEN,
            pick(
                "Подключение этого филиала передано другому пользователю",
                "This branch's connection was handed to another user",
            ),
            pick(
                "По просьбе салона поддержка AI Admin передала подключение этого филиала другому пользователю YClients, и настройки подключения теперь открываются только ему. Если это ошибка, напишите в поддержку AI Admin.",
                "At the salon's request, AI Admin support handed this branch's connection over to another YClients user, and its connection settings now open only for them. If this is a mistake, contact AI Admin support.",
            ),
        ),
        E::Frozen { .. } => (
            StatusCode::CONFLICT,
            pick("AI Admin приостановлен в YClients", "AI Admin is paused in YClients"),
            pick(
                "Оплаченный период AI Admin в этом филиале закончился, и YClients приостановил приложение. WhatsApp и все данные сохранены. Когда подписка будет продлена в маркетплейсе YClients, всё возобновится само в течение нескольких минут: заново сканировать QR-код и нажимать «Подключить» не нужно.",
                "AI Admin's paid period in this branch is over and YClients paused the app. WhatsApp and all your data are kept. Once the subscription is renewed in the YClients marketplace, everything resumes by itself within a few minutes: there is no need to scan a QR code or press «Подключить» again.",
            ),
        ),
        E::TooManyChecks { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            pick("Слишком много попыток", "Too many attempts"),
            if ru {
                format!(
                    "Подключение проверялось в YClients слишком часто. Подождите {} и нажмите «Подключить» в маркетплейсе YClients ещё раз.",
                    super::limits::seconds_ru(*retry_after_secs)
                )
            } else {
                format!(
                    "The connection was checked with YClients too often. Wait {retry_after_secs} s and press «Подключить» in the YClients marketplace again."
                )
            },
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
        // The branch YClients itself answered `freezed` for: its card, where the app is renewed.
        E::Frozen { salon } => match yclients.marketplace_card_url(*salon) {
            Some(card) => page.with_top_level_action(
                pick(
                    "Продлить AI Admin в маркетплейсе YClients",
                    "Renew AI Admin in the YClients marketplace",
                ),
                card,
            ),
            None => page,
        },
        _ => page,
    }
}

/// The branch picker: one button per branch YClients is installing us in.
fn branch_picker(branches: &[Branch]) -> Html<String> {
    let items: String = branches
        .iter()
        .map(|branch| {
            format!(
                r#"<li><a class="button" data-testid="branch-{salon}" href="/auth/yclients/redirect?{href}">{title}</a></li>"#,
                salon = branch.salon,
                href = html_escape::encode_double_quoted_attribute(&branch.redirect_query),
                title = html_escape::encode_text(&branch.title),
            )
        })
        .collect();
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
    use app::domain::SalonId;

    fn yclients() -> YClientsSettings {
        let vars = [("YCLIENTS_APPLICATION_ID", "1001")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into_iter()
            .collect();
        crate::config::Settings::from_map(&vars)
            .expect("loads")
            .yclients
    }

    #[test]
    fn bounds_answer_with_their_own_status() {
        assert_eq!(
            entry_page(&EntryError::QueryTooLong, PageLocale::Ru, "", &yclients()).status,
            StatusCode::URI_TOO_LONG
        );
        assert_eq!(
            entry_page(
                &EntryError::TooManyBranches,
                PageLocale::Ru,
                "",
                &yclients()
            )
            .status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_frozen_branch_links_to_its_own_marketplace_card_in_the_top_window() {
        let salon = SalonId::try_from(962302).expect("positive");
        for (locale, words) in [
            (PageLocale::Ru, "возобновится само"),
            (PageLocale::En, "resumes by itself"),
        ] {
            let page = entry_page(
                &EntryError::Frozen { salon },
                locale,
                "salon_id=962302",
                &yclients(),
            );
            assert_eq!(page.status, StatusCode::CONFLICT);
            let html = page.render();
            assert!(html.contains(words), "{html}");
            assert!(
                html.contains(
                    r#"href="https://yclients.com/appstore/962302/applications/1001/info" target="_top" rel="noopener""#
                ),
                "{html}"
            );
        }
        let mut unconfigured = yclients();
        unconfigured.application_id = None;
        let html = entry_page(
            &EntryError::Frozen { salon },
            PageLocale::Ru,
            "",
            &unconfigured,
        )
        .render();
        assert!(
            !html.contains("962302"),
            "no card without an application id"
        );
    }

    #[test]
    fn only_failures_worth_retrying_offer_a_retry() {
        let retry = entry_page(
            &EntryError::YClientsUnreachable,
            PageLocale::En,
            "salon_id=1",
            &yclients(),
        );
        assert_eq!(retry.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry
            .render()
            .contains("/auth/yclients/redirect?salon_id=1"));
        let refused = entry_page(
            &EntryError::NotInstalled,
            PageLocale::En,
            "salon_id=1",
            &yclients(),
        );
        assert!(!refused
            .render()
            .contains("/auth/yclients/redirect?salon_id=1"));
    }
}
