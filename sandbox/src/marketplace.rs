//! The pages a person uses: the marketplace with its "Подключить" buttons (a new tab, or the app
//! card's Settings iframe from the sandbox's own origin) and the lifecycle buttons.

use crate::Sandbox;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

#[derive(Deserialize)]
pub(crate) struct ConnectQuery {
    /// One id, or several separated by commas (an app allowed in several branches).
    ids: String,
    #[serde(default)]
    mode: Option<String>,
}

/// "Подключить": grant access (the link becomes `pending`), then open our redirect URL.
pub(crate) async fn connect(
    State(sandbox): State<Sandbox>,
    Query(query): Query<ConnectQuery>,
) -> Response {
    let ids: Vec<i64> = query
        .ids
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if ids.is_empty() {
        return (StatusCode::BAD_REQUEST, "ids: one or more salon ids").into_response();
    }
    for id in &ids {
        sandbox.create_pending_link(*id);
    }
    let url = sandbox.redirect_url(&ids);
    if query.mode.as_deref() == Some("iframe") {
        let src = html_escape::encode_double_quoted_attribute(&url);
        return Html(format!(
            r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><title>YClients — Настройки приложения</title>
<style>body{{font-family:sans-serif;margin:0;background:#f3f4f6}}header{{background:#1f2937;color:#fff;padding:12px 20px}}
iframe{{border:0;width:100%;height:calc(100vh - 60px);background:#fff}}</style></head>
<body><header>YClients (песочница) · Маркетплейс · AI Admin · Настройки</header>
<iframe id="app-frame" title="AI Admin" src="{src}"></iframe></body></html>"#
        ))
        .into_response();
    }
    Redirect::to(&url).into_response()
}

/// Sends a lifecycle webhook (`uninstall`, `freeze`) to our app, as YClients would.
pub(crate) async fn send_lifecycle_event(
    State(sandbox): State<Sandbox>,
    Path((salon_id, event)): Path<(i64, String)>,
) -> Response {
    sandbox.lifecycle_event_happened(salon_id, &event);
    let body = json!({"salon_id": salon_id, "application_id": sandbox.config.application_id,
        "event": event, "partner_token": sandbox.config.partner_token});
    let url = format!("{}/webhook/yclients", sandbox.app_url());
    match reqwest::Client::new()
        .post(&url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
    {
        Ok(response) => Redirect::to(&format!(
            "/?sent={event}&answer={}",
            response.status().as_u16()
        ))
        .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("could not reach {url}: {e}"),
        )
            .into_response(),
    }
}

pub(crate) async fn marketplace_page(State(sandbox): State<Sandbox>) -> Html<String> {
    let data = sandbox.data();
    let rows: String = data
        .salons
        .iter()
        .map(|(id, salon)| {
            let title = html_escape::encode_text(salon["title"].as_str().unwrap_or_default()).into_owned();
            let status = data.links.get(id).map(|l| l.status.as_str()).unwrap_or("не подключено");
            format!(
                r#"<tr data-salon="{id}"><td>{title}</td><td>{id}</td><td data-testid="link-status-{id}">{status}</td><td>
<a class="btn" data-testid="connect-{id}" href="/connect?ids={id}" target="_blank" rel="opener">Подключить</a>
<a class="btn" data-testid="connect-iframe-{id}" href="/connect?ids={id}&amp;mode=iframe">Подключить (вкладка «Настройки», iframe)</a>
<form method="post" action="/lifecycle/{id}/freeze"><button>Заморозить</button></form>
<form method="post" action="/lifecycle/{id}/uninstall"><button>Удалить приложение</button></form></td></tr>"#
            )
        })
        .collect();
    Html(format!(
        r#"<!DOCTYPE html><html lang="ru"><head><meta charset="utf-8"><title>Маркетплейс YClients (песочница)</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem}}td,th{{padding:.4rem;border-bottom:1px solid #ddd;text-align:left}}
.btn{{display:inline-block;margin:.2rem;padding:.35rem .7rem;background:#16a34a;color:#fff;border-radius:4px;text-decoration:none}}form{{display:inline}}</style></head>
<body><h1>Маркетплейс YClients — песочница</h1>
<p>Это не YClients: песочница играет его роль для демо и тестов. «Подключить» выдаёт доступ (связь <code>pending</code>),
подписывает данные пользователя партнёрским токеном и открывает страницу регистрации AI Admin.</p>
<table><tr><th>Филиал</th><th>ID</th><th>Статус связи</th><th></th></tr>{rows}</table>
<p><a class="btn" data-testid="connect-network" href="/connect?ids=962310,962311" target="_blank" rel="opener">Подключить сеть «Лотос» (2 филиала)</a></p>
</body></html>"#
    ))
}
